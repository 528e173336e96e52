"""Packing sections into chat messages within an exact token budget.

Each section is its own message, so a message's cost is counted on its final text and the
prompt's total is exactly the sum of its messages plus reply priming. Blocks of entries
(documents, recalled turns) are packed greedily in priority order, an entry that does not fit
whole is cut at a sentence boundary when a useful part fits, and the finished message is
counted exactly and trimmed if joining changed the count.

    >>> from contextd.tokens import get_counter
    >>> block = pack_block("Context:", [BlockItem("a", "One. Two.", rank=1)], 40, get_counter())
    >>> block.content
    'Context:\\n\\nOne. Two.'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from contextd.chunking import split_sentences
from contextd.tokens import TiktokenCounter, message_tokens

DOCUMENTS_HEADER = (
    "Context documents, numbered. Use them to answer and cite them by number, e.g. [1]."
)
RECALLED_HEADER = "Earlier turns of this conversation relevant to the question:"
# When turns of the user's other sessions are among them (recall_scope "user").
RECALLED_OTHERS_HEADER = ("Earlier turns relevant to the question, from this conversation "
                          "and, where marked, from the user's other conversations:")
SUMMARY_HEADER = "Summary of the earlier conversation:"


@dataclass
class BlockItem:
    key: str
    text: str
    rank: int
    order: float = 0.0  # position when rendered (documents: rank; turns: seq)
    cuttable: bool = False
    render: Callable[[int, str], str] | None = None  # (number, text) -> entry text
    payload: Any = None
    # A shorter entry standing in for this one when it does not fit whole (a document's best
    # chunk without its neighbours), tried before cutting.
    fallback: BlockItem | None = None


@dataclass
class PackedItem:
    item: BlockItem
    text: str
    tokens: int
    truncated: bool


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
    """Pack `items` (best first) under `header` into one message of at most `budget` tokens."""
    base = message_tokens({"role": role, "content": header}, counter)
    if budget <= base or not items:
        return PackedBlock(None, 0, [], [(it, counter.count(it.text)) for it in items])
    used = base
    taken: list[PackedItem] = []
    dropped: list[tuple[BlockItem, int]] = []
    for listed in items:
        number = len(taken) + 1
        item = listed
        text = _render(item, number, item.text)
        cost = whole = counter.count("\n\n" + text)
        while used + cost > budget and item.fallback is not None:
            item = item.fallback
            text = _render(item, number, item.text)
            cost = counter.count("\n\n" + text)
        if used + cost <= budget:
            taken.append(PackedItem(item, text, cost, False))
            used += cost
            continue
        part = _leading_part(item, number, budget - used, counter) if item.cuttable else None
        if part is not None and part[1] >= min_partial_tokens:
            taken.append(PackedItem(item, part[0], part[1], True))
            used += part[1]
        else:
            dropped.append((listed, whole))
    while taken:
        content = _join(header, taken)
        exact = message_tokens({"role": role, "content": content}, counter)
        if exact <= budget:
            return PackedBlock(content, exact, taken, dropped)
        # Joining merged tokens differently than counted piece by piece: give up the last.
        last = taken.pop()
        dropped.append((last.item, last.tokens))
    return PackedBlock(None, 0, [], dropped)


def _render(item: BlockItem, number: int, text: str) -> str:
    return item.render(number, text) if item.render else text


def _join(header: str, taken: Sequence[PackedItem]) -> str:
    ordered = sorted(taken, key=lambda p: p.item.order)
    return header + "".join("\n\n" + p.text for p in ordered)


def _leading_part(
    item: BlockItem, number: int, room: int, counter: TiktokenCounter
) -> tuple[str, int] | None:
    """The longest run of leading sentences of `item` whose entry fits `room` tokens."""
    spans = split_sentences(item.text)
    lo, hi, best = 1, len(spans) - 1, None
    while lo <= hi:  # whole-text never fits here, so search among proper prefixes
        mid = (lo + hi) // 2
        text = _render(item, number, item.text[: spans[mid - 1][1]] + " …")
        cost = counter.count("\n\n" + text)
        if cost <= room:
            best = (text, cost)
            lo = mid + 1
        else:
            hi = mid - 1
    return best


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
