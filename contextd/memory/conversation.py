"""History assembly: recent window + running summary + recalled turns, within a budget.

Two steps, at different times:
- compaction, when turns are appended (`compact`): once a session's unsummarised turns
  outgrow its window target (`session_window_tokens`, a setting, not any request's budget),
  the oldest leave in blocks and fold into the running summary stored with the session;
- assembly (`build`), a pure read: while the whole history fits the request's budget it is
  sent verbatim; once it does not, the newest turns that fit form the window, the summary is
  fitted to its share, and earlier turns relevant to the query come back. A small budget
  selects from the stored state without changing it.

    >>> memory = ConversationMemory(ExtractiveSummariser(), TurnRecaller())  # doctest: +SKIP
    >>> result = memory.build(state, budget=2000, query="...", ...)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from contextd.assembler import (
    RECALLED_HEADER,
    SUMMARY_HEADER,
    BlockItem,
    newest_groups,
    pack_block,
)
from contextd.memory.recall import TurnRecaller
from contextd.memory.summariser import select_lines
from contextd.memory.window import WindowShares, orphan_tool_results, plan_eviction, tool_groups
from contextd.models import Dropped
from contextd.protocols import Summariser
from contextd.store.protocols import SessionStore
from contextd.store.records import TurnRow
from contextd.tokens import TiktokenCounter, message_tokens

log = logging.getLogger("contextd.memory")


@dataclass
class HistoryState:
    """What the memory works from: unsummarised turns, the summary, and where to recall."""

    turns: list[TurnRow]
    summary: str | None = None
    summary_through: int = 0
    namespace: str | None = None
    sessions: SessionStore | None = None  # None: ephemeral history, nothing persisted
    session_id: str | None = None
    generation: float = 0.0  # the session's creation time: a recreated session differs
    # Content tokens of every turn the session holds, summarised ones included (telemetry).
    stored_tokens: int = 0


@dataclass
class HistoryResult:
    summary_message: dict[str, str] | None = None
    summary_tokens: int = 0
    summary_through: int = 0
    window: list[TurnRow] = field(default_factory=list)
    window_messages: list[dict] = field(default_factory=list)
    window_tokens: int = 0
    recalled: list[TurnRow] = field(default_factory=list)
    recalled_message: dict[str, str] | None = None
    recalled_tokens: int = 0
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.summary_tokens + self.window_tokens + self.recalled_tokens


def format_when(ts: float) -> str:
    """A turn's time as people write it ("8 May 2023, 13:56"), so relative dates in the turn
    ("yesterday") can be resolved and dates match how questions and answers spell them."""
    when = datetime.fromtimestamp(ts, tz=UTC)
    return f"{when.day} {when:%B %Y, %H:%M}"


def format_turn(turn: TurnRow) -> str:
    """A turn as one line of text with its date, for summaries and recalled turns."""
    speaker = turn.name or turn.role
    text = (turn.content or "").strip()
    if turn.tool_calls:
        calls = ", ".join(f"{c['function']['name']}({c['function'].get('arguments', '')})"
                          for c in turn.tool_calls)
        text = f"{text} [called {calls}]".strip()
    if turn.ts is not None:
        return f"[{format_when(turn.ts)}] {speaker}: {text}"
    return f"{speaker}: {text}"


@dataclass
class ConversationMemory:
    summariser: Summariser
    recaller: TurnRecaller
    shares: WindowShares = field(default_factory=WindowShares)
    # Called after a compaction is stored: (state, folded turns, new summary, previous
    # summary, summary budget). The LLM summary refiner hooks in here, off the request path.
    on_evict: Callable[[HistoryState, list[TurnRow], str, str | None, int], None] | None = None

    def compact(self, state: HistoryState, window_tokens: int, summary_tokens: int,
                counter: TiktokenCounter) -> int:
        """Fold the oldest unsummarised turns into the summary once they outgrow
        `window_tokens`, down to `keep_fraction` of it; the number of turns folded.

        The summary is stored only if no other writer moved it first (a conditional update),
        so concurrent appends fold each turn once."""
        turns = state.turns
        costs = [t.tokens for t in turns]
        evict = plan_eviction(costs, tool_groups([t.message() for t in turns]), window_tokens,
                              self.shares.keep_fraction)
        if not evict:
            return 0
        evicted = turns[:evict]
        summary = self.summariser.summarise(
            state.summary, [format_turn(t) for t in evicted], summary_tokens, counter)
        through = evicted[-1].seq
        if state.sessions is None or state.session_id is None:
            return 0
        stored = state.sessions.update_summary(
            state.session_id, summary, through, counter.count(summary),
            expected_through=state.summary_through)
        if not stored:
            log.info("session %s: summary moved concurrently; left to that writer",
                     state.session_id)
            return 0
        if self.on_evict is not None:
            self.on_evict(state, evicted, summary, state.summary, summary_tokens)
        return evict

    def build(
        self, state: HistoryState, budget: int, query: str, query_vector: np.ndarray | None,
        counter: TiktokenCounter, recall: bool = True,
    ) -> HistoryResult:
        result = HistoryResult(summary_through=state.summary_through)
        turns = state.turns
        messages = [t.message() for t in turns]
        orphans = set(orphan_tool_results(messages))
        if orphans:
            result.dropped.extend(Dropped(kind="turn", id=turns[i].id, reason="orphan_tool_result",
                                          tokens=turns[i].tokens) for i in sorted(orphans))
            turns = [t for i, t in enumerate(turns) if i not in orphans]
            messages = [m for i, m in enumerate(messages) if i not in orphans]
        groups = tool_groups(messages)
        # Turn costs are stored with the turns (recounted upstream for another encoding).
        costs = [t.tokens for t in turns]
        overflow = state.summary_through > 0 or sum(costs) > budget
        window_budget = budget
        if overflow:
            window_budget = int(budget * (1 - self.shares.summary - self.shares.recall))

        start = newest_groups(costs, groups, window_budget)
        result.window = turns[start:]
        result.window_messages = messages[start:]
        result.window_tokens = sum(costs[start:])

        if state.summary:
            self._add_summary(result, state.summary, budget, counter)
        first_window_seq = result.window[0].seq if result.window else (
            turns[-1].seq + 1 if turns else state.summary_through + 1)
        if recall and state.sessions is not None and state.session_id and overflow:
            room = budget - result.window_tokens - result.summary_tokens
            self._add_recalled(result, state, query, query_vector, first_window_seq - 1,
                               room, counter)
        recalled = {t.seq for t in result.recalled}
        result.dropped.extend(
            Dropped(kind="turn", id=turn.id, reason="history_share", tokens=cost)
            for turn, cost in zip(turns[:start], costs[:start], strict=True)
            if turn.seq not in recalled)
        return result

    def _add_summary(
        self, result: HistoryResult, summary: str, budget: int, counter: TiktokenCounter
    ) -> None:
        room = budget - result.window_tokens
        cap = min(room, max(int(budget * self.shares.summary), 0))
        message = {"role": "system", "content": f"{SUMMARY_HEADER}\n{summary}"}
        cost = message_tokens(message, counter)
        if cost > cap:
            overhead = message_tokens({"role": "system", "content": SUMMARY_HEADER + "\n"},
                                      counter)
            lines = [line[2:] for line in summary.splitlines() if line.startswith("- ")]
            fitted = select_lines(lines, max(cap - overhead - 1, 0), counter)
            message = {"role": "system", "content": f"{SUMMARY_HEADER}\n{fitted}"}
            cost = message_tokens(message, counter)
            if not fitted or cost > cap:
                result.dropped.append(Dropped(kind="summary", id="summary",
                                              reason="history_share", tokens=cost))
                return
        result.summary_message, result.summary_tokens = message, cost

    def _add_recalled(
        self, result: HistoryResult, state: HistoryState, query: str,
        query_vector: np.ndarray | None, max_seq: int, room: int, counter: TiktokenCounter,
    ) -> None:
        assert state.sessions is not None and state.session_id is not None
        hits = self.recaller.recall(state.namespace or "", state.sessions, state.session_id,
                                    query, query_vector, max_seq, state.generation)
        if not hits or room <= 0:
            return
        rows = state.sessions.turns_by_seq(state.session_id, [seq for seq, _ in hits])
        items = [
            BlockItem(key=rows[seq].id, text=format_turn(rows[seq]), rank=rank, order=seq,
                      payload=rows[seq])
            for rank, (seq, _) in enumerate(hits, start=1) if seq in rows
        ]
        block = pack_block(RECALLED_HEADER, items, room, counter)
        if block.content is None:
            return
        result.recalled = sorted((p.item.payload for p in block.items), key=lambda t: t.seq)
        result.recalled_message = {"role": "system", "content": block.content}
        result.recalled_tokens = block.tokens


def ephemeral_turns(messages: Sequence[dict], counter: TiktokenCounter) -> list[TurnRow]:
    """Request messages as turns of a history that is not stored."""
    turns = []
    for seq, m in enumerate(messages, start=1):
        ts = m.get("timestamp")
        turns.append(TurnRow(
            seq=seq, id=m.get("id") or f"m{seq}", role=m["role"], content=m.get("content"),
            name=m.get("name"), tool_calls=m.get("tool_calls"),
            tool_call_id=m.get("tool_call_id"),
            ts=ts.timestamp() if isinstance(ts, datetime) else None,
            tokens=message_tokens(m, counter)))
    return turns
