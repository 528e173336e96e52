"""Extractive summariser: keeps the most informative sentences of evicted turns.

Deterministic and cheap. Sentences score higher for what later questions tend to need: names,
dates and times, numbers, places, and decisions or changes of mind. The summary is updated
incrementally: the previous summary's lines compete with the new turns' sentences for the token
budget; nothing older is re-read.

    >>> from contextd.tokens import get_counter
    >>> s = ExtractiveSummariser()
    >>> s.summarise(None, ["Alice: We decided to meet on 3 May in Lisbon. ok."], 40, get_counter())
    '- Alice: We decided to meet on 3 May in Lisbon.'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from contextd.chunking import split_sentences
from contextd.protocols import TokenCounter

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(
    rf"\b(?:{_MONTHS}|monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|"
    r"tomorrow|today|tonight|week|month|year|weekend)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_DECISION = re.compile(
    r"\b(?:decided|decide|decision|agreed|chose|choose|will|plan|planning|going to|moved|move|"
    r"changed|switch|switched|instead|actually|prefer|favourite|favorite|love|hate|bought|"
    r"started|quit|joined|married|born|named|called|live|lives|work|works|must|need|deadline)\b",
    re.IGNORECASE,
)
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
    score += 1.5 * min(len(_DATE.findall(body)), 2)
    score += 1.0 * min(len(_DECISION.findall(body)), 2)
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
    """The best lines (by `sentence_score`, then recency) that fit, kept in their order."""
    costs = [counter.count(_LINE_PREFIX + line + "\n") for line in lines]
    # Later lines win ties: newer facts supersede older ones (changes of mind).
    order = sorted(range(len(lines)), key=lambda i: (-sentence_score(lines[i]), -i))
    chosen: set[int] = set()
    used = 0
    for i in order:
        if sentence_score(lines[i]) <= 0:
            break
        if used + costs[i] <= max_tokens:
            chosen.add(i)
            used += costs[i]
    text = "\n".join(_LINE_PREFIX + lines[i] for i in sorted(chosen))
    # Joining may merge tokens differently than counted piecewise; trim until exact.
    while chosen and counter.count(text) > max_tokens:
        chosen.discard(max(chosen, key=lambda i: (sentence_score(lines[i]) * -1, i)))
        text = "\n".join(_LINE_PREFIX + lines[i] for i in sorted(chosen))
    return text


def _turn_sentences(turn: str) -> list[str]:
    """Sentences of one formatted turn ("[date] Speaker: text"), each keeping the prefix."""
    head, sep, body = turn.partition(": ")
    if not sep or len(head) > 80:
        head, body = "", turn
    prefix = f"{head}: " if head else ""
    return [prefix + body[a:b].replace("\n", " ") for a, b in split_sentences(body)]
