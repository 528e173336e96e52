"""History assembly: the turns a query needs, and the summary, within a budget.

Two steps, at different times:
- compaction, when turns are appended (`compact`): once a session's unsummarised turns
  outgrow its window target (`session_window_tokens`, a setting, not any request's budget),
  the oldest leave in blocks and fold into the running summary stored with the session;
- assembly (`build`), a pure read: while the whole history fits the request's budget it is
  sent verbatim; once it does not, every turn competes for the budget in one priority order
  for the query (`contextd.memory.priority`: the last exchange, then turns by relevance per token,
  then the summary lines the chosen turns do not hold, then the rest, newest first), and the
  longest prefix of that order that fits is sent: the newest unbroken run of chosen turns as
  chat messages, the others as one block of dated paragraphs in conversation order. A small
  budget selects from the stored state without changing it, and a larger one selects a
  superset of its turns.

    >>> memory = ConversationMemory(ExtractiveSummariser(), TurnRecaller())  # doctest: +SKIP
    >>> result = memory.build(state, budget=2000, query="...", ...)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from contextd.assembler import (
    RECALLED_HEADER,
    RECALLED_OTHERS_HEADER,
    SUMMARY_HEADER,
    newest_groups,
)
from contextd.memory.priority import (
    best_seqs,
    by_value_per_token,
    fused_scores,
    later_statements,
    priority_seqs,
    relevance_order,
)
from contextd.memory.recall import (
    SUPERSEDE_SEEDS,
    OtherSessionHits,
    SessionTurns,
    TurnRecaller,
    UserScope,
)
from contextd.memory.summariser import select_lines
from contextd.memory.window import orphan_tool_results, plan_eviction, tool_groups
from contextd.models import Dropped
from contextd.protocols import Summariser
from contextd.store.protocols import SessionStore
from contextd.store.records import TurnRow
from contextd.tokens import TiktokenCounter, message_framing, message_tokens

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
    encoding: str | None = None  # what the stored turn costs were counted with
    # recall_scope "user": the user's other sessions, whose relevant turns compete too.
    others: UserScope | None = None


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


def format_day(ts: float) -> str:
    """A turn's day as people write it ("8 May 2023")."""
    when = datetime.fromtimestamp(ts, tz=UTC)
    return f"{when.day} {when:%B %Y}"


def _turn_text(turn: TurnRow) -> str:
    text = (turn.content or "").strip()
    if turn.tool_calls:
        calls = ", ".join(f"{c['function']['name']}({c['function'].get('arguments', '')})"
                          for c in turn.tool_calls)
        text = f"{text} [called {calls}]".strip()
    return text


def _origin_label(turn: TurnRow) -> str:
    """Where a turn of another session was said: that conversation and the turn's day (else
    the day the conversation started)."""
    assert turn.origin is not None
    if turn.ts is not None:
        return f"conversation {turn.origin.session_id}, {format_day(turn.ts)}"
    return (f"conversation {turn.origin.session_id}, started "
            f"{format_day(turn.origin.session_created_at)}")


def render_recalled(turns: Sequence[TurnRow]) -> str:
    """Turns as the recalled block shows them: in conversation order, one paragraph each,
    the day written once, on the first turn of each day. A turn of the user's other sessions
    (first, as they are older) is marked with its conversation and day every time.

        >>> t = TurnRow(1, "t1", "user", "We land at 9.", "Ana", None, None, 1683554160.0, 9)
        >>> print(render_recalled([t, TurnRow(**{**t.__dict__, "seq": 2, "content": "Ok."})]))
        Earlier turns of this conversation relevant to the question:
        <BLANKLINE>
        [8 May 2023] Ana: We land at 9.
        <BLANKLINE>
        Ana: Ok.
    """
    parts = [RECALLED_OTHERS_HEADER if any(t.origin for t in turns) else RECALLED_HEADER]
    day = None
    for turn in sorted(turns, key=lambda t: t.seq):
        head = f"{turn.name or turn.role}:"
        if turn.origin is not None:
            head = f"[{_origin_label(turn)}] {head}"
        elif turn.ts is not None and (today := format_day(turn.ts)) != day:
            head, day = f"[{today}] {head}", today
        parts.append(f"{head} {_turn_text(turn)}".rstrip())
    return "\n\n".join(parts)


def format_turn(turn: TurnRow) -> str:
    """A turn as one line of text with its date, for summaries and recalled turns."""
    speaker = turn.name or turn.role
    text = _turn_text(turn)
    if turn.ts is not None:
        return f"[{format_when(turn.ts)}] {speaker}: {text}"
    return f"{speaker}: {text}"


@dataclass
class ConversationMemory:
    summariser: Summariser
    recaller: TurnRecaller
    keep_fraction: float = 0.6  # compaction leaves the window at this share of its target
    neighbours: bool = False  # a relevant question brings the turn after it (measured: no gain)
    # Later turns about the subject of the best hits compete too (changes of mind, updates).
    supersede: bool = True
    # The floor: the newest turns of the last exchange that fit this many tokens together.
    floor_tokens: int = 256
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
                              self.keep_fraction)
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
        """The history for one request within `budget` tokens (see the module docstring and
        `contextd.memory.priority`): verbatim while it fits, else the longest prefix of the
        query's priority order that fits, turns in conversation order with their dates."""
        result = HistoryResult(summary_through=state.summary_through)
        turns = state.turns
        messages = [t.message() for t in turns]
        orphans = set(orphan_tool_results(messages))
        if orphans:
            result.dropped.extend(Dropped(kind="turn", id=turns[i].id, reason="orphan_tool_result",
                                          tokens=turns[i].tokens) for i in sorted(orphans))
            turns = [t for i, t in enumerate(turns) if i not in orphans]
            messages = [m for i, m in enumerate(messages) if i not in orphans]
        # Turn costs are stored with the turns (recounted upstream for another encoding).
        costs = [t.tokens for t in turns]
        others = (self.recaller.other_sessions(state.namespace or "", state.sessions,
                                               state.others, query, query_vector)
                  if recall and state.others is not None and state.sessions is not None
                  else None)
        if state.summary_through == 0 and sum(costs) <= budget and not others:
            result.window, result.window_messages = turns, messages
            result.window_tokens = sum(costs)
            return result
        _Selection(self, state, turns, messages, costs, orphans, budget, counter, others).run(
            result, query, query_vector, recall)
        return result


_SUMMARY = -1  # the summary's place in the priority order
_FETCH = 64  # rows read from the store at a time while walking the order


class _Selection:
    """One overflowing build: walk the priority order, take the longest prefix that fits."""

    def __init__(self, memory: ConversationMemory, state: HistoryState, turns: list[TurnRow],
                 messages: list[dict], costs: list[int], orphans: set[int], budget: int,
                 counter: TiktokenCounter, others: OtherSessionHits | None = None) -> None:
        self.memory, self.state, self.turns, self.messages = memory, state, turns, messages
        self.costs, self.budget, self.counter = costs, budget, counter
        self.index = {t.seq: i for i, t in enumerate(turns)}
        self.skip = {state.turns[i].seq for i in orphans}
        self.rows: dict[int, TurnRow] = {t.seq: t for t in turns}
        self.recount = state.encoding is not None and state.encoding != counter.encoding_name
        self.others = others
        for key, row in (others.rows.items() if others else ()):  # under their stand-in keys
            self.rows[key] = TurnRow(**{**row.__dict__, "tokens": message_tokens(
                row.message(), counter)}) if self.recount else row
        header = RECALLED_OTHERS_HEADER if others else RECALLED_HEADER
        self.header = message_tokens({"role": "system", "content": header}, counter)
        self._prefixes: dict[str, int] = {}

    def run(self, result: HistoryResult, query: str, query_vector: np.ndarray | None,
            recall: bool) -> None:
        turns, state, budget = self.turns, self.state, self.budget
        groups = tool_groups(self.messages)
        last_seq = turns[-1].seq if turns else state.summary_through
        # The floor: the last exchange (the last user turn, what answered it, and the reply
        # before it when nothing answered it yet), newest groups first.
        user = max((i for i, t in enumerate(turns) if t.role == "user"), default=len(turns) - 1)
        floor_start = max(0, user) if turns else 0
        if floor_start == len(turns) - 1 and floor_start > 0:
            floor_start -= 1
        while floor_start > 0 and groups[floor_start - 1] == groups[floor_start]:
            floor_start -= 1
        # A small floor: its newest turns that fit `floor_tokens` (whole tool groups); a
        # long reply competes by relevance instead of taking a small budget whatever the
        # query. The cap is a setting, not the request's budget, so the order stays the same
        # at every budget.
        while floor_start < len(turns) and (
                sum(self.costs[floor_start:]) > self.memory.floor_tokens
                or (floor_start > 0 and groups[floor_start - 1] == groups[floor_start])):
            floor_start += 1
        start = max(floor_start, newest_groups(self.costs, groups, budget))
        used = sum(self.costs[start:])
        complete = start == floor_start
        floor = {t.seq for t in turns[start:]}

        hits: Iterable[int] = ()
        if (complete and recall and state.sessions is not None and state.session_id
                and (last_seq > 0 or self.others)):
            recaller = self.memory.recaller
            known = recaller.known_turns(state.namespace or "", state.sessions,
                                         state.session_id, state.generation)
            dense, lexical = recaller.rankings(state.namespace or "", state.sessions,
                                               state.session_id, query, query_vector,
                                               last_seq, state.generation, self.others, known)
            later = self._later(dense, lexical, last_seq, known)
            ranked = [s for s in relevance_order(dense, lexical, last_seq, later=later)
                      if s not in self.skip]
            # Relevance per token needs every ranked turn's cost: the cached one of each turn
            # with a vector (stored costs hold for the request's encoding), else its row's.
            self._fetch([s for s in ranked if self.recount or known.position(s) is None])

            def cost(seq: int) -> int | None:
                row = self.rows.get(seq)
                if row is not None:
                    return row.tokens
                at = known.position(seq)
                return None if at is None else int(known.turns.tokens[at])

            ranked = by_value_per_token(ranked, cost)
            asks = self._asks(ranked) if self.memory.neighbours else None
            hits = priority_seqs(ranked, last_seq, exclude=floor | self.skip, asks=asks)
        placed = set(floor) | self.skip
        hit_list: list[int] = []

        def relevant() -> Iterator[int]:
            for seq in hits:
                placed.add(seq)
                hit_list.append(seq)
                yield seq

        # Evaluated once the relevant turns are exhausted, when `placed` holds them all.
        rest = (s for s in range(last_seq, 0, -1) if s not in placed)
        order = itertools.chain(relevant(), [_SUMMARY] if state.summary else [], rest)

        taken: list[TurnRow] = []  # non-floor turns, in priority order
        summary: tuple[dict[str, str], int, bool] | None = None
        header_paid = False
        days: set[str] = set()
        pending: list[int] = []
        stream = iter(order) if complete else iter(())
        while True:
            if not pending:
                pending = list(itertools.islice(stream, _FETCH))
                if not pending:
                    break
                self._fetch([s for s in pending if s != _SUMMARY])
            seq = pending.pop(0)
            if seq == _SUMMARY:
                assert state.summary is not None
                covered = [self.rows[s] for s in hit_list if s in self.rows]
                lines = self._uncovered(state.summary, covered)
                if not lines:  # the chosen turns say it all: the summary takes nothing
                    continue
                summary = self._summary(lines, budget - used)
                if summary is None:  # not even its best line fits: nothing after it does
                    break
                used += summary[1]
                if summary[2]:  # cut to fit: nothing after it fits
                    break
                continue
            row = self.rows.get(seq)
            if row is None:
                continue
            cost = self._line_bound(row, days) + (0 if header_paid else self.header)
            if used + cost > budget:
                break
            taken.append(row)
            used += cost
            header_paid = True
        self._present(result, turns[start:], taken, summary, groups, start)
        if state.summary and result.summary_message is None:
            result.dropped.append(Dropped(kind="summary", id="summary",
                                          reason="history_share",
                                          tokens=self.counter.count(state.summary)))
        kept = {t.seq for t in result.window} | {t.seq for t in result.recalled}
        result.dropped.extend(
            Dropped(kind="turn", id=t.id, reason="history_share", tokens=c)
            for t, c in zip(turns, self.costs, strict=True) if t.seq not in kept)

    def _later(self, dense: list[int], lexical: list[int], last_seq: int,
               known: SessionTurns) -> list[int]:
        """The turns that may supersede the best hits (`priority.later_statements`): seeds are
        the best hits by relevance alone (recency would seed from what was said last), the
        candidates later turns of this session about the same subject, said by the seed's
        speaker, a person (role "user": what changes is what people say of themselves; an
        assistant's later replies on a subject are more of the same, and measured, they only
        take budget). Both have vectors, so the cache tells who spoke."""
        state, recaller = self.state, self.memory.recaller
        if not self.memory.supersede or state.sessions is None or state.session_id is None:
            return []
        seeds = best_seqs(fused_scores((dense, lexical)), SUPERSEDE_SEEDS,
                          lambda s: s > 0 and s not in self.skip)
        candidates = recaller.later_turns(known, seeds, last_seq)

        def same_speaker(seed: int, seq: int) -> bool:
            a, b = known.position(seed), known.position(seq)
            return (a is not None and b is not None and seq not in self.skip
                    and known.turns.speakers[a] == known.turns.speakers[b]
                    and known.turns.speakers[a].startswith("user\x00"))

        return later_statements(seeds, candidates, same_speaker)

    def _asks(self, ranked: list[int]) -> Callable[[int], bool]:
        """Whether a ranked turn asks a question; rows are read a chunk ahead as needed."""
        position = {seq: n for n, seq in enumerate(ranked)}

        def asks(seq: int) -> bool:
            if seq not in self.rows:
                n = position[seq]
                self._fetch(ranked[n:n + _FETCH])
            row = self.rows.get(seq)  # another session's turn: its next is not this one's
            return row is not None and row.origin is None and "?" in (row.content or "")

        return asks

    def _fetch(self, seqs: list[int]) -> None:
        missing = [s for s in seqs if s not in self.rows]
        if not missing or self.state.sessions is None or self.state.session_id is None:
            return
        for seq, row in self.state.sessions.turns_by_seq(self.state.session_id,
                                                         missing).items():
            if self.recount:
                row = TurnRow(**{**row.__dict__, "tokens": message_tokens(row.message(),
                                                                          self.counter)})
            self.rows[seq] = row

    def _line_bound(self, row: TurnRow, days: set[str]) -> int:
        """What the turn costs as a paragraph of the recalled block (the day's date too when
        no turn taken before it has that day; `days` is updated) or, if it may join the
        recent run, as a chat message, whichever is more, without encoding its content again:
        the paragraph's head counted word by word (a space always starts a new pre-token, so
        the sum is its count; words repeat from turn to turn, so each is encoded once) plus
        the content's share of the stored message cost. Joining can in rare cases cost a
        token more; the block is counted exactly at the end and trimmed if so. Costs only
        grow as turns are added, so the longest prefix that fits only grows with the
        budget."""
        head = f"{row.name or row.role}:"
        if row.origin is not None:
            head = f"[{_origin_label(row)}] {head}"
        elif row.ts is not None and (day := format_day(row.ts)) not in days:
            head = f"[{day}] {head}"
            days.add(day)
        # Only an unsummarised turn can join the recent run of chat messages.
        message = row.tokens if row.seq in self.index else 0
        if not row.content or row.tool_calls:
            return max(message, self.counter.count(f"\n\n{head} {_turn_text(row)}"))
        cost = 0
        for n, word in enumerate(head.split(" ")):
            piece = ("\n\n" if n == 0 else " ") + word
            known = self._prefixes.get(piece)
            if known is None:
                known = self._prefixes[piece] = self.counter.count(piece)
            cost += known
        plain = {"role": row.role, "name": row.name} if row.name else {"role": row.role}
        key = f"{row.role}\x00{row.name or ''}"
        framing = self._prefixes.get(key)
        if framing is None:
            framing = self._prefixes[key] = message_framing(plain, self.counter) + (
                self.counter.count(row.name) if row.name else 0)
        return max(message, cost + row.tokens - framing)

    @staticmethod
    def _uncovered(summary: str, covered: list[TurnRow]) -> list[str]:
        """The summary's lines that no turn of `covered` already holds word for word."""
        texts = " ".join(format_turn(t).replace("\n", " ") for t in covered)
        return [line[2:] for line in summary.splitlines()
                if line.startswith("- ") and line[2:] not in texts]

    def _summary(self, lines: list[str], room: int
                 ) -> tuple[dict[str, str], int, bool] | None:
        """The summary message of `lines`, cut to `room` when it does not fit whole:
        (message, tokens, cut); None when not even one line fits."""
        message = {"role": "system", "content": SUMMARY_HEADER + "\n" + "\n".join(
            "- " + line for line in lines)}
        cost = message_tokens(message, self.counter)
        if cost <= room:
            return message, cost, False
        overhead = message_tokens({"role": "system", "content": SUMMARY_HEADER + "\n"},
                                  self.counter)
        fitted = select_lines(lines, max(room - overhead - 1, 0), self.counter)
        if not fitted:
            return None
        message = {"role": "system", "content": f"{SUMMARY_HEADER}\n{fitted}"}
        cost = message_tokens(message, self.counter)
        return (message, cost, True) if cost <= room else None

    def _present(self, result: HistoryResult, floor: list[TurnRow], taken: list[TurnRow],
                 summary: tuple[dict[str, str], int, bool] | None, groups: list[int],
                 start: int) -> None:
        """Chat messages for the newest unbroken run of chosen turns (whole tool groups),
        one dated block in conversation order for the others."""
        chosen = {t.seq for t in taken}
        begin = start
        while begin > 0:
            group = groups[begin - 1]
            first = begin - 1
            while first > 0 and groups[first - 1] == group:
                first -= 1
            if not all(t.seq in chosen for t in self.turns[first:begin]):
                break
            begin = first
        result.window = self.turns[begin:]
        result.window_messages = self.messages[begin:]
        result.window_tokens = sum(self.costs[begin:])
        in_window = {t.seq for t in result.window}
        block = [t for t in taken if t.seq not in in_window]  # priority order
        if summary is not None:
            result.summary_message, result.summary_tokens = summary[0], summary[1]
        room = self.budget - result.window_tokens - result.summary_tokens
        while block:
            message = {"role": "system", "content": render_recalled(block)}
            cost = message_tokens(message, self.counter)
            if cost <= room:
                result.recalled = sorted(block, key=lambda t: t.seq)
                result.recalled_message, result.recalled_tokens = message, cost
                return
            block.pop()  # joining merged tokens differently than bounded: the least relevant


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
