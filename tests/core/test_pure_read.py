"""Assemble is a pure read: compaction happens on append, against the session's own window
target; no request's budget changes what the next request sees."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contextd import BudgetTooSmall, Engine
from contextd.store.sqlite_store import SqliteStore


def chat(n: int, start: int = 0) -> list[dict]:
    base = datetime(2024, 3, 1, tzinfo=UTC)
    topics = ["my cat Miso likes tuna", "the train to Porto leaves at 9", "I booked a table",
              "the report is due Friday", "we painted the kitchen green"]
    return [{"role": "user" if i % 2 == 0 else "assistant", "id": f"t{i}",
             "content": f"Turn {i}: {topics[i % len(topics)]}, and some more words here.",
             "timestamp": (base + timedelta(minutes=i)).isoformat()}
            for i in range(start, start + n)]


@pytest.fixture
def no_writes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], object]:
    """A context in which any write transaction on any store fails the test."""

    @contextmanager
    def forbidden(self: SqliteStore):  # type: ignore[no-untyped-def]
        raise AssertionError("assemble opened a write transaction")
        yield

    @contextmanager
    def active():  # type: ignore[no-untyped-def]
        original = SqliteStore.transaction
        monkeypatch.setattr(SqliteStore, "transaction", forbidden)
        try:
            yield
        finally:
            monkeypatch.setattr(SqliteStore, "transaction", original)

    return active


def test_assemble_opens_no_write_transaction(make_engine: Callable[..., Engine],
                                             no_writes: Callable[[], object]) -> None:
    engine = make_engine()
    engine.upsert_documents([{"id": "d", "text": "Miso is a cat who eats tuna every day."}])
    engine.append_messages("s", chat(400))
    assert engine.get_session("s").summary_through > 0  # compacted on append
    with no_writes():  # type: ignore[attr-defined]
        for budget in (300, 1200, 5000, 100_000):
            r = engine.assemble(query="what does Miso eat?", max_tokens=budget, session_id="s")
            assert r.usage.total <= budget


def test_a_small_budget_call_does_not_change_what_a_large_one_sees(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    first, alone = make_engine(tmp_path / "a"), make_engine(tmp_path / "b")
    for engine in (first, alone):
        engine.append_messages("s", chat(120))
    before = first.get_session("s")
    first.assemble(query="when does the train leave?", max_tokens=200, session_id="s", top_k=0)
    after_small = first.assemble(query="when does the train leave?", max_tokens=20_000,
                                 session_id="s", top_k=0)
    large = alone.assemble(query="when does the train leave?", max_tokens=20_000,
                           session_id="s", top_k=0)
    assert first.get_session("s").summary_through == before.summary_through
    assert after_small.messages == large.messages
    assert after_small.history_turn_ids == large.history_turn_ids


def test_a_budget_that_holds_the_whole_session_gets_every_turn_verbatim(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(session_window_tokens=200)
    engine.append_messages("s", chat(60))
    info = engine.get_session("s")
    assert info.summary_through > 0
    r = engine.assemble(query="anything?", max_tokens=50_000, session_id="s", top_k=0)
    assert r.history_turn_ids == [t.id for t in info.turns]
    assert r.usage.summary == 0


def test_compaction_follows_the_session_target_not_the_request(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(session_window_tokens=300)
    engine.append_messages("s", chat(10))
    assert engine.get_session("s").summary_through == 0
    engine.assemble(query="hello?", max_tokens=120, session_id="s", top_k=0)
    assert engine.get_session("s").summary_through == 0  # no request folds turns
    engine.append_messages("s", chat(30, start=10))
    info = engine.get_session("s")
    unsummarised = sum(t.tokens for t in info.turns if t.seq > info.summary_through)
    assert info.summary_through > 0 and unsummarised <= 300


def test_a_rejected_assemble_stores_none_of_its_messages(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.append_messages("s", chat(2))
    with pytest.raises(BudgetTooSmall):
        engine.assemble(query="a long question " * 40, max_tokens=20, session_id="s",
                        messages=[{"role": "user", "content": "new turn"}])
    assert [t.id for t in engine.get_session("s").turns] == ["t0", "t1"]


def test_auto_turn_ids_never_collide_with_chosen_ones(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.append_messages("s", [{"role": "user", "content": "hi", "id": "turn-2"}])
    result = engine.append_messages("s", [{"role": "assistant", "content": "hello"}])
    assert result.turn_ids == ["turn-2-2"]
    engine.append_messages("s", [{"role": "user", "content": "again"}])
    assert len({t.id for t in engine.get_session("s").turns}) == 3
