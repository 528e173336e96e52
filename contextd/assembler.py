"""Packing sections into chat messages within an exact token budget.

Each section is its own message, so a message's cost is counted on its final text and the
prompt's total is exactly the sum of its messages plus reply priming. Blocks of entries
(documents, recalled turns) are packed greedily in priority order, an entry that does not fit
whole is cut at a sentence boundary when a useful part fits. The message's tokens are the sum
of its parts, each ending at a tokeniser cut (`contextd.tokens.is_cut`), so stored counts of
chunks serve as they are; where a part does not end at a cut, the finished message is counted
whole and trimmed if joining changed the count.

    >>> from contextd.tokens import get_counter
    >>> block = pack_block("Context:", [BlockItem("a", "One. Two.", rank=1)], 40, get_counter())
    >>> block.content
    'Context:\\n\\nOne. Two.'
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from contextd.chunking import split_sentences
from contextd.tokens import (
    TiktokenCounter,
    appended_count,
    is_cut,
    message_framing,
    message_tokens,
)

DOCUMENTS_HEADER = (
    "Context documents, numbered. Use them to answer and cite them by number, e.g. [1]."
)
RECALLED_HEADER = "Earlier turns of this conversation relevant to the question:"
# When turns of the user's other sessions are among them (recall_scope "user").
RECALLED_OTHERS_HEADER = ("Earlier turns relevant to the question, from this conversation "
                          "and, where marked, from the user's other conversations:")
SUMMARY_HEADER = "Summary of the earlier conversation:"


SEPARATOR = "\n\n"  # between the header and each entry of a block
ELLIPSIS = " …"  # ends an entry cut short


@dataclass
class BlockItem:
    key: str
    text: str
    rank: int
    order: float = 0.0  # position when rendered (documents: rank; turns: seq)
    cuttable: bool = False
    # The entry's first line for its number ("[1] doc-7 (chunk 0)\n"), shown before `text`.
    head: Callable[[int], str] | None = None
    payload: Any = None
    # A shorter entry standing in for this one when it does not fit whole (a document's best
    # chunk without its neighbours), tried before cutting.
    fallback: BlockItem | None = None
    # The tokens of `text` in the block's encoding when already known (a stored chunk's count).
    text_tokens: int | None = None


@dataclass
class PackedItem:
    item: BlockItem
    text: str
    tokens: int  # what the entry adds to the message: its text and the separator after it
    truncated: bool
    last_tokens: int = 0  # its cost without the separator, as the message's last entry


@dataclass
class PackedBlock:
    content: str | None
    tokens: int  # the whole message, framing included; 0 when empty
    items: list[PackedItem] = field(default_factory=list)
    dropped: list[tuple[BlockItem, int]] = field(default_factory=list)


def pack_block(
    header: str, items: Sequence[BlockItem], budget: int, counter: TiktokenCounter,
    role: str = "system", min_partial_tokens: int = 48,
) -> PackedBlock:
    """Pack `items` (best first) under `header` into one message of at most `budget` tokens.

    The message is the header and the entries, each after a separator. Counted as the header
    with the first separator, then each entry with the separator after it, the last without,
    every part ends at a cut (`contextd.tokens.is_cut`) when the entries start with a character
    that is neither white space nor "/", so the message's tokens are the sum of its parts:
    stored counts of the entries' texts are used as they are, and nothing is encoded twice.
    """
    framing = message_framing({"role": role}, counter)
    opening = counter.count(header + SEPARATOR)
    if budget <= framing + counter.count(header) or not items:
        return PackedBlock(None, 0, [], [(it, _text_tokens(it, counter)) for it in items])
    used = framing + opening  # the message with the entries taken, each with its separator
    taken: list[PackedItem] = []
    dropped: list[tuple[BlockItem, int]] = []
    for listed in items:
        number = len(taken) + 1
        item = listed
        entry = _entry(item, number, counter)
        whole = entry.tokens
        while used + entry.last_tokens > budget and item.fallback is not None:
            item = item.fallback
            entry = _entry(item, number, counter)
        if used + entry.last_tokens <= budget:
            taken.append(entry)
            used += entry.tokens
            continue
        room = budget - used
        part = (_leading_part(item, number, room, counter)
                if item.cuttable and room >= min_partial_tokens else None)
        if part is not None and part.last_tokens >= min_partial_tokens:
            taken.append(part)
            used += part.tokens
        else:
            dropped.append((listed, whole))
    while taken:
        ordered = sorted(taken, key=lambda p: p.item.order)
        content = header + "".join(SEPARATOR + p.text for p in ordered)
        # Each entry counted with the separator after it, the last without.
        ordered[-1] = replace(ordered[-1], tokens=ordered[-1].last_tokens)
        if counter.cuts_known and all(_starts_cleanly(p.text) for p in ordered):
            exact = framing + opening + sum(p.tokens for p in ordered)
        else:
            exact = message_tokens({"role": role, "content": content}, counter)
        if exact <= budget:
            return PackedBlock(content, exact, ordered, dropped)
        # Counted whole (an entry not at a cut) or taken out of order (the last taken is not
        # the last shown), the message came out longer than the parts: give up the last taken.
        last = taken.pop()
        dropped.append((last.item, last.tokens))
    return PackedBlock(None, 0, [], dropped)


def _starts_cleanly(text: str) -> bool:
    """Whether the end of the separator before `text` is a cut (see `contextd.tokens`)."""
    return bool(text) and is_cut(SEPARATOR + text, len(SEPARATOR))


def _text_tokens(item: BlockItem, counter: TiktokenCounter) -> int:
    return item.text_tokens if item.text_tokens is not None else counter.count(item.text)


def _entry(item: BlockItem, number: int, counter: TiktokenCounter, text: str | None = None,
           text_tokens: int | None = None, truncated: bool = False) -> PackedItem:
    """The entry for `item` (or for `text`, a part of it) with its costs."""
    if text is None:
        text, text_tokens = item.text, item.text_tokens
    if text_tokens is None:
        text_tokens = counter.count(text)
    head = item.head(number) if item.head else ""
    rendered = head + text
    if head and not (counter.cuts_known and is_cut(rendered + SEPARATOR, len(head))):
        last = counter.count(rendered)
        tokens = counter.count(rendered + SEPARATOR)
    else:
        last = (counter.count(head) if head else 0) + text_tokens
        tokens = last - text_tokens + appended_count(counter, text, text_tokens, SEPARATOR)
    return PackedItem(item, rendered, tokens, truncated, last)


def _leading_part(
    item: BlockItem, number: int, room: int, counter: TiktokenCounter
) -> PackedItem | None:
    """The entry of the longest run of leading sentences of `item` that fits `room` tokens."""
    text = item.text
    spans = split_sentences(text)
    prefix_tokens = _prefix_counter(text, counter)
    ellipsis = counter.count(ELLIPSIS)
    lo, hi, best = 1, len(spans) - 1, None
    while lo <= hi:  # whole-text never fits here, so search among proper prefixes
        mid = (lo + hi) // 2
        end = spans[mid - 1][1]
        part = text[:end] + ELLIPSIS
        # The space before the ellipsis follows the sentence's last character: a cut.
        tokens = prefix_tokens(end) + ellipsis
        entry = _entry(item, number, counter, part, tokens, truncated=True)
        if entry.last_tokens <= room:
            best = entry
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def _prefix_counter(text: str, counter: TiktokenCounter) -> Callable[[int], int]:
    """Tokens of `text[:end]`: from one encoding of `text` where `end` is a cut of it, else
    counted alone."""
    ends: list[int] | None = None

    def tokens(end: int) -> int:
        nonlocal ends
        if not (counter.cuts_known and is_cut(text, end)):
            return counter.count(text[:end])
        if ends is None:
            ends = counter.token_ends(counter.encode(text))
        return bisect_right(ends, len(text[:end].encode("utf-8")))

    return tokens


def newest_groups(costs: Sequence[int], groups: Sequence[int], budget: int) -> int:
    """Index of the first of the newest whole groups whose costs fit `budget`."""
    used, start, i = 0, len(costs), len(costs) - 1
    while i >= 0:
        j, cost = i, 0
        while j >= 0 and groups[j] == groups[i]:
            cost += costs[j]
            j -= 1
        if used + cost > budget:
            break
        used += cost
        start, i = j + 1, j
    return start
