"""Extractive summariser: keeps the most informative sentences of evicted turns.

Deterministic and cheap. Sentences score higher for what later questions tend to need: names,
dates and times, numbers, places, and decisions or changes of mind. The summary is updated
incrementally: the previous summary's lines compete with the new turns' sentences for the token
budget; nothing older is re-read.

    >>> from contextd.tokens import get_counter
    >>> s = ExtractiveSummariser()
    >>> s.summarise(None, ["Alice: We decided to meet on 3 May in Lisbon. ok."], 40, get_counter())
    '- Alice: We decided to meet on 3 May in Lisbon. ok.'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from contextd.chunking import split_sentences
from contextd.protocols import TokenCounter

_DATE_WORDS = frozenset({
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "monday", "tuesday", "wednesday", "thursday", "friday",
    "saturday", "sunday", "yesterday", "tomorrow", "today", "tonight", "week", "month", "year",
    "weekend",
})
_DECISION_WORDS = frozenset({
    "decided", "decide", "decision", "agreed", "chose", "choose", "will", "plan", "planning",
    "moved", "move", "changed", "switch", "switched", "instead", "actually", "prefer",
    "favourite", "favorite", "love", "hate", "bought", "started", "quit", "joined", "married",
    "born", "named", "called", "live", "lives", "work", "works", "must", "need", "deadline",
})
# Whole words, looked up in sets: one pass over the sentence instead of one alternation
# regex per category, which cost ~20 us a sentence each.
_WORD = re.compile(r"\w+")
_GOING_TO = re.compile(r"\bgoing to\b")
_NUMBER = re.compile(r"\d")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_FILLER = re.compile(r"^(?:ok|okay|sure|thanks|thank you|yes|no|haha|lol|great|cool|nice)\W*$",
                     re.IGNORECASE)
_LINE_PREFIX = "- "


def sentence_score(sentence: str) -> float:
    """How much a sentence is worth keeping; 0 for filler."""
    body = sentence.split(": ", 1)[-1] if ": " in sentence[:80] else sentence
    if _FILLER.match(body.strip()) or len(body) < 12:
        return 0.0
    score = 1.0
    score += 1.5 * min(len(_CAPITALISED.findall(body)), 3)
    score += 1.5 * min(len(_NUMBER.findall(body)), 2)
    lowered = body.lower()
    words_lowered = _WORD.findall(lowered)
    dates = sum(map(_DATE_WORDS.__contains__, words_lowered))
    decisions = sum(map(_DECISION_WORDS.__contains__, words_lowered))
    if "going" in lowered:
        decisions += len(_GOING_TO.findall(lowered))
    score += 1.5 * min(dates, 2)
    score += 1.0 * min(decisions, 2)
    # Favour sentences of useful length; very long ones cost more than they give.
    words = len(body.split())
    if words < 5:
        score *= 0.6
    elif words > 45:
        score *= 0.8
    return score


class ExtractiveSummariser:
    """Keeps the best-scoring sentences within `max_tokens`, in conversation order."""

    def summarise(
        self, previous: str | None, turns: Sequence[str], max_tokens: int, counter: TokenCounter
    ) -> str:
        lines: list[str] = []
        if previous:
            lines.extend(line[len(_LINE_PREFIX):] for line in previous.splitlines()
                         if line.startswith(_LINE_PREFIX))
        for turn in turns:
            lines.extend(_turn_sentences(turn))
        return select_lines(lines, max_tokens, counter)


def select_lines(lines: Sequence[str], max_tokens: int, counter: TokenCounter) -> str:
    """The best lines (by `sentence_score`, then recency) that fit, kept in their order.

        >>> from contextd.tokens import get_counter
        >>> select_lines(["ok", "We moved to Porto in May."], 20, get_counter())
        '- We moved to Porto in May.'
    """
    scores = [sentence_score(line) for line in lines]
    # Later lines win ties: newer facts supersede older ones (changes of mind).
    order = sorted((i for i in range(len(lines)) if scores[i] > 0),
                   key=lambda i: (-scores[i], -i))
    chosen: set[int] = set()
    used = 0
    for i in order:
        if used >= max_tokens:
            break
        # Every white-space-separated word is at least one token (BPE pre-tokenisers never
        # join two), so most lines are ruled out without being tokenised once the budget fills.
        if used + len(lines[i].split()) + 1 > max_tokens:
            continue
        cost = counter.count(_LINE_PREFIX + lines[i] + "\n")  # each line counted once
        if used + cost <= max_tokens:
            chosen.add(i)
            used += cost
    text = "\n".join(_LINE_PREFIX + lines[i] for i in sorted(chosen))
    if not chosen or counter.count(text) <= max_tokens:
        return text
    # Joining may merge tokens differently than counted piecewise; drop the weakest lines
    # (newest first among equals) until the text fits exactly. The fewest drops that fit are
    # found by bisection, so the text is recounted log(lines) times rather than once per drop.
    weakest = sorted(chosen, key=lambda i: (-scores[i], i), reverse=True)

    def kept_text(drops: int) -> str:
        kept = sorted(set(weakest[drops:]))
        return "\n".join(_LINE_PREFIX + lines[i] for i in kept)

    lo, hi = 0, len(weakest)  # lo drops are too few; hi drops fit (nothing left fits)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if counter.count(kept_text(mid)) <= max_tokens:
            hi = mid
        else:
            lo = mid
    text = kept_text(hi)
    return text


def _turn_sentences(turn: str) -> list[str]:
    """Sentences of one formatted turn ("[date] Speaker: text"), each keeping the prefix."""
    head, sep, body = turn.partition(": ")
    if not sep or len(head) > 80:
        head, body = "", turn
    prefix = f"{head}: " if head else ""
    return [prefix + body[a:b].replace("\n", " ") for a, b in split_sentences(body)]
