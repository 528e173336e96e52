"""`contextd migrate`: a data directory copied into PostgreSQL answers as the original did,
without embedding anything again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from contextd import Engine, Settings
from contextd.cli import main
from contextd.embedding import HashEmbedder
from contextd.errors import Conflict, NotFound
from contextd.store.idempotency import IdempotencyKeyReused

DOCS = [{"id": f"d{i}", "title": f"Note {i}", "metadata": {"shelf": i % 3},
         "text": f"Grove {i}: the {word} harvest starts when the {word} is ripe. "
                 f"Growers sell {word} oil at the market."}
        for i, word in enumerate(["olive", "barley", "lavender", "walnut", "saffron", "quince",
                                  "fig", "almond", "chestnut", "hazelnut"])]
QUERIES = ["olive oil market", "when is the fig ripe", "walnut harvest", "saffron growers"]


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def embed(self, texts, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        self.texts += len(texts)
        return super().embed(texts, *args, **kwargs)


def answers(engine: Engine) -> list[object]:
    out: list[object] = []
    for q in QUERIES:
        for mode in ("dense", "lexical", "hybrid"):
            out.append([(h.id, h.chunk) for h in engine.search(q, mode=mode, top_k=5).hits])
        out.append([h.id for h in engine.search(q, top_k=5, filters={"shelf": 1}).hits])
        response = engine.assemble(query=q, session_id="s1", max_tokens=400)
        out.append([m.model_dump() for m in response.messages])
    return out


def test_copy_answers_the_same_and_embeds_nothing(
        make_engine: Callable[..., Engine], postgres_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    source_dir = tmp_path / "source"
    source = make_engine(source_dir, session_window_tokens=60)
    source.upsert_documents(DOCS)
    source.upsert_documents(DOCS[:2], namespace="other")
    for i in range(8):
        source.append_messages("s1", [{"role": "user", "content": f"I planted tree {i} "
                                                                  "beside the stone wall."}])
    assert source.get_session("s1").summary_through > 0  # the copy must carry a summary
    expected = answers(source)
    source.close()

    assert main(["migrate", "--from", str(source_dir), "--to", postgres_url]) == 0
    report = capsys.readouterr().out
    assert '"default"' in report and '"other"' in report

    embedder = CountingEmbedder()
    copy = Engine(tmp_path / "replica", Settings(embedder="hash", store=postgres_url,
                                                 batch_wait_ms=0), embedder=embedder)
    try:
        session = copy.get_session("s1")
        assert session.summary_through > 0 and len(session.turns) == 8
        before = embedder.texts
        assert answers(copy) == expected
        # Only the queries embed (dense, hybrid, filtered hybrid, assemble): no document.
        assert embedder.texts - before == len(QUERIES) * 4
        # A second copy into the same database is refused, not merged.
        with pytest.raises(Conflict):
            from contextd.store.postgres.copy import copy_data_directory

            copy_data_directory(source_dir, postgres_url, ["other"])
    finally:
        copy.close()


def test_copy_carries_idempotency_keys(make_engine: Callable[..., Engine], postgres_url: str,
                                       tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    source = make_engine(source_dir)
    upserted = source.upsert_documents(DOCS[:3], idempotency_key="up-1")
    appended = source.append_messages("s1", [{"role": "user", "content": "Hello"}],
                                      idempotency_key="ap-1")
    source.close()
    assert main(["migrate", "--from", str(source_dir), "--to", postgres_url]) == 0

    copy = Engine(tmp_path / "replica", Settings(embedder="hash", store=postgres_url,
                                                 batch_wait_ms=0))
    try:
        # Repeats answer with the first responses and write nothing; another body is refused.
        assert copy.upsert_documents(DOCS[:3], idempotency_key="up-1") == upserted
        assert copy.append_messages("s1", [{"role": "user", "content": "Hello"}],
                                    idempotency_key="ap-1").turn_ids == appended.turn_ids
        assert len(copy.get_session("s1").turns) == 1
        with pytest.raises(IdempotencyKeyReused):
            copy.upsert_documents(DOCS[3:4], idempotency_key="up-1")
        with pytest.raises(NotFound):
            copy.get_document(DOCS[3]["id"])
    finally:
        copy.close()


def test_a_namespace_of_an_older_schema_is_upgraded_on_open(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextd.store.idempotency import IdempotencyKey, Replayed
    from contextd.store.postgres import migrations
    from contextd.store.postgres.database import Database
    from contextd.store.postgres.namespace import PostgresCatalog

    released = migrations.NAMESPACE
    monkeypatch.setattr(migrations, "NAMESPACE", released[:1])  # as before idempotency keys
    old = PostgresCatalog(Database(postgres_url))
    ns = old.open("default", dim=4, model_id="m")
    assert ns is not None
    with old.db.connection() as conn:  # as that release stored a session
        conn.execute(f"INSERT INTO {ns.schema}.sessions(id, created_at, updated_at) "
                     "VALUES ('s1', 1.0, 1.0)")
    old.close()

    monkeypatch.setattr(migrations, "NAMESPACE", released)
    catalog = PostgresCatalog(Database(postgres_url))
    try:
        ns = catalog.open("default", dim=4, model_id="m", create=False)
        assert ns is not None and ns.sessions.session("s1") is not None
        with catalog.db.connection() as conn:
            version = conn.execute("SELECT schema_version FROM contextd.namespaces "
                                   "WHERE name = 'default'").fetchone()[0]
        assert version == released[-1][0]
        key = IdempotencyKey("k1")
        ns.store.remember(key, {"ok": True})
        with pytest.raises(Replayed):
            ns.store.remember(key, {"ok": False})
    finally:
        catalog.close()


def test_a_namespace_before_user_ids_gains_them_on_open(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextd.store.postgres import migrations
    from contextd.store.postgres.database import Database
    from contextd.store.postgres.namespace import PostgresCatalog
    from contextd.store.records import TurnWrite

    released = migrations.NAMESPACE
    monkeypatch.setattr(migrations, "NAMESPACE", released[:2])  # as before user ids
    old = PostgresCatalog(Database(postgres_url))
    ns = old.open("default", dim=4, model_id="m")
    assert ns is not None
    with old.db.connection() as conn:  # the release before wrote sessions without a user
        conn.execute(f"INSERT INTO {ns.schema}.sessions(id, created_at, updated_at) "
                     "VALUES ('s1', 1.0, 1.0)")
    old.close()

    monkeypatch.setattr(migrations, "NAMESPACE", released)
    catalog = PostgresCatalog(Database(postgres_url))
    try:
        ns = catalog.open("default", dim=4, model_id="m", create=False)
        assert ns is not None
        row = ns.sessions.session("s1")
        assert row is not None and row.user_id is None
        ns.sessions.append("s1", [TurnWrite(None, "user", "hi", None, None, None, None, 3,
                                            None)], user_id="ana")
        assert ns.sessions.session("s1").user_id == "ana"  # type: ignore[union-attr]
        with catalog.db.connection() as conn:
            version = conn.execute("SELECT schema_version FROM contextd.namespaces "
                                   "WHERE name = 'default'").fetchone()[0]
            indexes = {r[0] for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'turns'",
                (ns.schema,))}
        assert version == released[-1][0] == 4
        assert any("(session_id, tokens)" in d for d in indexes)
    finally:
        catalog.close()


def test_copy_carries_the_sessions_users(make_engine: Callable[..., Engine], postgres_url: str,
                                         tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    source = make_engine(source_dir)
    source.append_messages("a1", [{"role": "user", "content": "My dog is Rex."}], user_id="ana")
    source.append_messages("a2", [{"role": "user", "content": "Hello."}], user_id="ana")
    source.append_messages("free", [{"role": "user", "content": "Hello."}])
    source.close()
    assert main(["migrate", "--from", str(source_dir), "--to", postgres_url]) == 0

    copy = Engine(tmp_path / "replica", Settings(embedder="hash", store=postgres_url,
                                                 batch_wait_ms=0), embedder=HashEmbedder())
    try:
        assert {s.session_id: s.user_id for s in copy.list_sessions()} == {
            "a1": "ana", "a2": "ana", "free": None}
        r = copy.assemble(query="What is my dog called?", session_id="a2", max_tokens=500,
                          top_k=0, recall_scope="user")
        assert [t.session_id for t in r.recalled_other_turns] == ["a1"]
    finally:
        copy.close()
