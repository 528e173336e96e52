"""The sliding history window: which turns stay verbatim and which are evicted, in blocks.

Eviction happens in blocks, down to a fraction of the window's budget, so that the prompt
prefix (system, summary, recent turns) stays the same for many requests in a row; providers
discount a repeated prefix. An assistant turn with tool calls and the tool results answering it
form one group: they are kept or evicted together. A tool result that answers no earlier call
is never sent (providers reject it); `orphan_tool_results` finds them.

    >>> plan_eviction([10, 10, 10, 10], groups=[0, 1, 2, 3], budget=25, keep_fraction=0.5)
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def tool_groups(messages: Sequence[dict[str, Any]]) -> list[int]:
    """A group number per message: tool results share the group of the call they answer."""
    groups: list[int] = []
    open_calls: dict[str, int] = {}
    current = -1
    for message in messages:
        call_id = message.get("tool_call_id")
        if message.get("role") == "tool" and call_id in open_calls:
            groups.append(open_calls[call_id])
            continue
        current += 1
        groups.append(current)
        for call in message.get("tool_calls") or ():
            open_calls[call["id"]] = current
    return groups


def orphan_tool_results(messages: Sequence[dict[str, Any]]) -> list[int]:
    """Positions of `tool` messages whose tool_call_id answers no assistant tool call before.

    >>> orphan_tool_results([{"role": "tool", "tool_call_id": "c1", "content": "42"}])
    [0]
    """
    calls: set[str] = set()
    orphans = []
    for i, message in enumerate(messages):
        if message.get("role") == "tool" and message.get("tool_call_id") not in calls:
            orphans.append(i)
        for call in message.get("tool_calls") or ():
            calls.add(call["id"])
    return orphans


def plan_eviction(
    tokens: Sequence[int], groups: Sequence[int], budget: int, keep_fraction: float
) -> int:
    """How many of the oldest turns to evict; 0 when all fit `budget`.

    When they do not fit, evict whole groups, oldest first, until the rest fits
    `keep_fraction * budget`, leaving room for the window to grow before the next eviction.
    """
    total = sum(tokens)
    if total <= budget:
        return 0
    target = int(budget * keep_fraction)
    evict = 0
    n = len(tokens)
    while evict < n and total > target:
        group = groups[evict]
        while evict < n and groups[evict] == group:
            total -= tokens[evict]
            evict += 1
    return evict

