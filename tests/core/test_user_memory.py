"""Memory across a user's sessions: a session names its user once, and an assemble with
recall_scope "user" recalls from the user's other sessions of the namespace, never from
another user's or another namespace's; on both backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from contextd import Engine, InvalidRequest
from contextd.errors import Conflict
from contextd.store.sqlite_store import SqliteStore

FACT = "My sister Marguerite moved to Lyon last spring to teach violin."
QUERY = "Where does my sister Marguerite live now?"
FILLER = ["How was the commute today?", "Slow, the tram broke down again.",
          "Did you finish the crossword?", "Almost, one clue left.",
          "The weather turned cold overnight.", "Bring a coat tomorrow then."]


def chat(n: int, start: int = 0, day: int = 1) -> list[dict]:
    base = datetime(2024, 5, day, 9, tzinfo=UTC)
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"{FILLER[i % len(FILLER)]} (turn {i})",
             "timestamp": (base + timedelta(minutes=i)).isoformat()}
            for i in range(start, start + n)]


@pytest.fixture
def open_engine(backend_engines: Callable[..., Engine]) -> Callable[[], Engine]:
    """Engines over one store of each backend (several share it, as replicas do)."""
    return backend_engines


@pytest.fixture
def engine(open_engine: Callable[[], Engine]) -> Engine:
    engine = open_engine()
    # Ana said the fact in an earlier conversation, Bob said a rival one in his; the current
    # conversation is long enough that its history overflows a small budget.
    engine.append_messages("ana-1", chat(6) + [{"role": "user", "content": FACT}],
                           user_id="ana")
    engine.append_messages("bob-1", [{"role": "user", "content": "My sister Marguerite "
                                      "lives in Porto and sells tiles."}], user_id="bob")
    engine.append_messages("ana-2", chat(30, day=3), user_id="ana")
    return engine


def history_text(response: object) -> str:
    """Every message but the last, the query."""
    messages = response.messages[:-1]  # type: ignore[attr-defined]
    return "\n".join(m.content or "" for m in messages)


def test_a_fact_from_another_session_of_the_user_is_recalled_at_a_small_budget(
        engine: Engine) -> None:
    ask = {"query": QUERY, "session_id": "ana-2", "max_tokens": 250, "top_k": 0}
    mine = engine.assemble(**ask)
    assert "Lyon" not in history_text(mine) and mine.recalled_other_turns == []
    everywhere = engine.assemble(**ask, recall_scope="user")
    assert "Lyon" in history_text(everywhere)
    assert [(t.session_id, t.turn_id) for t in everywhere.recalled_other_turns][0] == (
        "ana-1", "turn-7")
    assert everywhere.usage.total <= 250
    # Marked as another conversation, with its day, so the model can tell.
    block = next(m.content for m in everywhere.messages if "Lyon" in (m.content or ""))
    assert "[conversation ana-1, started" in block and "other conversations" in block
    # The current conversation's last exchange still comes from the current session.
    assert everywhere.history_turn_ids[-1] == mine.history_turn_ids[-1]


def test_another_users_turns_never_come_back(engine: Engine) -> None:
    for budget in (250, 2000, 50_000):
        r = engine.assemble(query="Marguerite sister Porto tiles", session_id="ana-2",
                            max_tokens=budget, top_k=0, recall_scope="user", cache=False)
        assert "Porto" not in history_text(r)
        assert {t.session_id for t in r.recalled_other_turns} <= {"ana-1"}
    # Bob's view is the mirror image: his own fact, never Ana's.
    engine.append_messages("bob-2", [{"role": "user", "content": "Hi again."}], user_id="bob")
    r = engine.assemble(query=QUERY, session_id="bob-2", max_tokens=50_000, top_k=0,
                        recall_scope="user")
    assert "Porto" in history_text(r) and "Lyon" not in history_text(r)


def test_another_namespaces_turns_never_come_back(engine: Engine) -> None:
    engine.append_messages("ana-x", [{"role": "user", "content": "My sister Marguerite "
                                      "lives in Oslo now."}], namespace="other", user_id="ana")
    r = engine.assemble(query=QUERY, session_id="ana-2", max_tokens=50_000, top_k=0,
                        recall_scope="user")
    assert "Oslo" not in history_text(r) and "Lyon" in history_text(r)
    there = engine.assemble(query=QUERY, session_id="ana-x", namespace="other",
                            max_tokens=50_000, top_k=0, recall_scope="user")
    assert "Lyon" not in history_text(there) and there.recalled_other_turns == []


def test_a_larger_budget_keeps_every_turn_a_smaller_one_kept(engine: Engine) -> None:
    kept: set[str] = set()
    for budget in (150, 250, 400, 800, 3000):
        r = engine.assemble(query=QUERY, session_id="ana-2", max_tokens=budget, top_k=0,
                            recall_scope="user")
        now = ({f"ana-2/{i}" for i in r.history_turn_ids + r.recalled_turn_ids}
               | {f"{t.session_id}/{t.turn_id}" for t in r.recalled_other_turns})
        assert kept <= now, budget
        assert r.usage.total <= budget
        kept = now


def test_a_users_sessions_join_a_new_conversation_from_its_first_message(
        engine: Engine) -> None:
    # A new session started by the assemble itself, its only message the question.
    r = engine.assemble(query="", session_id="ana-3", max_tokens=400, top_k=0,
                        messages=[{"role": "user", "content": QUERY}], user_id="ana",
                        recall_scope="user")
    assert "Lyon" in history_text(r)
    assert engine.get_session("ana-3").user_id == "ana"


def test_the_user_id_is_set_once(engine: Engine) -> None:
    assert engine.get_session("ana-1").user_id == "ana"
    assert {s.session_id: s.user_id for s in engine.list_sessions()}["bob-1"] == "bob"
    turns = len(engine.get_session("ana-1").turns)
    with pytest.raises(Conflict, match="belongs to user_id 'ana'"):
        engine.append_messages("ana-1", [{"role": "user", "content": "hi"}], user_id="bob")
    with pytest.raises(Conflict):
        engine.assemble(query="q", session_id="ana-1", max_tokens=500, user_id="bob",
                        messages=[{"role": "user", "content": "hi"}])
    assert len(engine.get_session("ana-1").turns) == turns  # refused whole: nothing stored
    engine.append_messages("ana-1", [{"role": "user", "content": "hi"}])  # none: kept
    engine.append_messages("ana-1", [{"role": "user", "content": "hi"}], user_id="ana")
    assert engine.get_session("ana-1").user_id == "ana"
    # A session started without a user gains one with a later append.
    engine.append_messages("loose", [{"role": "user", "content": "hi"}])
    assert engine.get_session("loose").user_id is None
    engine.append_messages("loose", [{"role": "user", "content": "again"}], user_id="cy")
    assert engine.get_session("loose").user_id == "cy"


def test_user_scope_needs_a_session_with_a_user(engine: Engine) -> None:
    engine.append_messages("loose", [{"role": "user", "content": "hi"}])
    with pytest.raises(InvalidRequest, match="has none: set user_id"):
        engine.assemble(query=QUERY, session_id="loose", max_tokens=500, recall_scope="user")
    with pytest.raises(InvalidRequest, match="set session_id"):
        engine.assemble(query=QUERY, max_tokens=500, recall_scope="user")
    with pytest.raises(InvalidRequest, match="user_id"):
        engine.assemble(query=QUERY, session_id="loose", max_tokens=500, user_id="ana")
    with pytest.raises(InvalidRequest, match="invalid user_id"):
        engine.append_messages("loose", [{"role": "user", "content": "hi"}], user_id="a b")


def test_the_cache_key_moves_with_the_users_other_sessions(engine: Engine) -> None:
    ask = {"query": QUERY, "session_id": "ana-2", "max_tokens": 250, "top_k": 0,
           "recall_scope": "user"}
    first = engine.assemble(**ask)
    again = engine.assemble(**ask)
    assert again.cache.hit and again.messages == first.messages
    # Session scope is another request: it does not serve the user-scope response.
    assert not engine.assemble(**{**ask, "recall_scope": "session"}).cache.hit
    # A new fact in another of Ana's sessions must be seen at once, not the cached prompt.
    engine.append_messages("ana-1", [{"role": "user", "content": "Correction: my sister "
                                      "Marguerite now lives in Nantes."}], user_id="ana")
    after = engine.assemble(**ask)
    assert not after.cache.hit and "Nantes" in history_text(after)
    engine.delete_session("ana-1")
    gone = engine.assemble(**ask)
    assert not gone.cache.hit and "Lyon" not in history_text(gone)
    assert gone.recalled_other_turns == []
    # Bob's writes are not Ana's state: her entry stays valid.
    engine.append_messages("bob-1", [{"role": "user", "content": "More tiles."}])
    assert engine.assemble(**ask).cache.hit


def test_user_scope_assemble_is_a_pure_read(make_engine: Callable[..., Engine],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine()
    engine.append_messages("ana-1", chat(6) + [{"role": "user", "content": FACT}],
                           user_id="ana")
    engine.append_messages("ana-2", chat(30, day=3), user_id="ana")

    def forbidden(self: SqliteStore):  # type: ignore[no-untyped-def]
        raise AssertionError("assemble opened a write transaction")

    monkeypatch.setattr(SqliteStore, "transaction", forbidden)
    for budget in (250, 2000):
        r = engine.assemble(query=QUERY, session_id="ana-2", max_tokens=budget, top_k=0,
                            recall_scope="user")
        assert "Lyon" in history_text(r)
