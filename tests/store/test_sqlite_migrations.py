"""A namespace written at an older SQLite schema opens and gains what it lacks."""

from __future__ import annotations

from pathlib import Path

from contextd.store.idempotency import SCHEMA as IDEMPOTENCY_SCHEMA
from contextd.store.records import TurnWrite
from contextd.store.schema import SCHEMA, SCHEMA_VERSION, connect
from contextd.store.sessions import SqliteSessionStore
from contextd.store.sqlite_store import SqliteStore


def version(store: SqliteStore) -> int:
    return int(store.get_meta("schema_version") or 0)


def test_a_version_1_namespace_gains_the_user_column_on_open(tmp_path: Path) -> None:
    path = str(tmp_path / "store.sqlite3")
    old = connect(path)  # as the first release wrote it
    old.executescript(SCHEMA)
    old.executescript(IDEMPOTENCY_SCHEMA)
    old.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
    old.execute("INSERT INTO sessions(id, created_at, updated_at) VALUES ('s1', 1.0, 1.0)")
    old.execute("INSERT INTO turns(session_id, seq, id, role, content, tokens) "
                "VALUES ('s1', 1, 'turn-1', 'user', 'my dog Rex', 5)")
    old.close()
    assert "user_id" not in SCHEMA

    store = SqliteStore(path)
    try:
        assert version(store) == SCHEMA_VERSION == 3
        sessions = SqliteSessionStore(store)
        row = sessions.session("s1")
        assert row is not None and row.turns == 1 and row.user_id is None
        sessions.append("s1", [TurnWrite(None, "user", "hi", None, None, None, None, 3, None)],
                        user_id="ana")
        assert sessions.session("s1").user_id == "ana"  # type: ignore[union-attr]
        assert [r.id for r in sessions.user_sessions("ana", 5)] == ["s1"]
        plan = store.reader().execute(
            "EXPLAIN QUERY PLAN SELECT coalesce(sum(tokens), 0) FROM turns "
            "WHERE session_id = 's1'").fetchall()
        assert any("COVERING INDEX turns_costs" in str(step) for step in plan)
    finally:
        store.close()
    again = SqliteStore(path)  # a second open applies nothing twice
    try:
        assert version(again) == SCHEMA_VERSION
        assert SqliteSessionStore(again).session("s1").user_id == "ana"  # type: ignore[union-attr]
    finally:
        again.close()
