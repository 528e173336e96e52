"""The storage contract: every method of `DocumentStore`, `SessionStore` and `VectorIndex`,
run against each backend. A new backend adds itself to `BACKENDS` and must pass unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from contextd.errors import Conflict
from contextd.retrieval.lexical import fts_query
from contextd.store.filters import parse_filter
from contextd.store.idempotency import IdempotencyKey, IdempotencyKeyReused, Replayed
from contextd.store.protocols import DocumentStore, SessionStore, VectorIndex
from contextd.store.records import DocumentWrite, NewChunk, TurnWrite
from contextd.store.sessions import SqliteSessionStore
from contextd.store.sqlite_store import SqliteStore
from contextd.store.vector_index import FaissVectorIndex

DIM = 8


@dataclass
class Backend:
    documents: DocumentStore
    sessions: SessionStore
    index: Callable[[], VectorIndex]
    # The namespace's documents store opened again, and after it was deleted and made again.
    reopen: Callable[[], DocumentStore]
    recreate: Callable[[], DocumentStore]


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(str(path))
    opened: list[SqliteStore] = []

    def reopen() -> SqliteStore:
        opened.append(SqliteStore(str(path)))
        return opened[-1]

    def recreate() -> SqliteStore:
        for other in (store, *opened):
            other.close()
        for file in tmp_path.glob("store.sqlite3*"):
            file.unlink()
        return reopen()

    yield Backend(store, SqliteSessionStore(store), lambda: FaissVectorIndex(dim=DIM),
                  reopen, recreate)
    for other in (store, *opened):
        other.close()


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    from contextd.store.postgres.database import Database
    from contextd.store.postgres.namespace import PostgresCatalog
    from contextd.store.postgres.vectors import PgVectorIndex

    catalog = PostgresCatalog(Database(request.getfixturevalue("postgres_url")))
    ns = catalog.open("contract", dim=DIM, model_id="m")
    assert ns is not None
    scratch = catalog.open("scratch", dim=DIM, model_id="m")  # a bare index of its own
    assert scratch is not None

    def reopen() -> DocumentStore:
        again = catalog.open("contract", dim=DIM, model_id="m")
        assert again is not None
        return again.store

    def recreate() -> DocumentStore:
        catalog.delete("contract")
        return reopen()

    yield Backend(ns.store, ns.sessions, lambda: PgVectorIndex(catalog.db, scratch.schema, DIM),
                  reopen, recreate)
    catalog.close()


BACKENDS = {"sqlite+faiss": _sqlite, "postgresql+pgvector": _postgres}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from BACKENDS[request.param](request, tmp_path)


def vec(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i % DIM] = 1.0
    return v


def doc(doc_id: str, texts: list[str], **metadata: object) -> DocumentWrite:
    chunks = [NewChunk(n, f"title {doc_id}", t, len(t.split()), vec(n + len(doc_id)))
              for n, t in enumerate(texts)]
    return DocumentWrite(doc_id, f"title {doc_id}", " ".join(texts), dict(metadata),
                         f"hash-{doc_id}-{len(texts)}", sum(c.tokens for c in chunks), chunks)


def test_backends_satisfy_the_protocols(backend: Backend) -> None:
    assert isinstance(backend.documents, DocumentStore)
    assert isinstance(backend.sessions, SessionStore)
    assert isinstance(backend.index(), VectorIndex)


def test_documents_write_read_replace_delete(backend: Backend) -> None:
    store = backend.documents
    first = store.write_documents([doc("a", ["alpha olive grove", "beta barley field"],
                                       lang="en", year=2020),
                                   doc("b", ["gamma walnut tree"], lang="pt", tags=["x", "y"])])
    assert len(first.added_chunk_ids) == 3 and first.removed_chunk_ids == []
    assert first.seq > first.seq_before and store.last_seq() == first.seq
    assert store.content_hashes(["a", "b", "zz"]) == {"a": "hash-a-2", "b": "hash-b-1"}
    assert store.get_document("a")["metadata"] == {"lang": "en", "year": 2020}
    assert store.get_document("missing") is None
    assert store.counts()["documents"] == 2 and store.counts()["chunks"] == 3
    assert store.chunk_count() == 3
    rows = store.chunks(first.added_chunk_ids)
    assert sorted(r.doc_id for r in rows.values()) == ["a", "a", "b"]
    assert store.chunk_documents(set(first.added_chunk_ids)) == {
        cid: rows[cid].doc_id for cid in first.added_chunk_ids}
    replaced = store.write_documents([doc("a", ["delta saffron"])])
    assert sorted(replaced.removed_chunk_ids) == sorted(
        c for c in first.added_chunk_ids if rows[c].doc_id == "a")
    assert replaced.seq_before == first.seq
    deleted = store.delete_document("b")
    assert deleted is not None and len(deleted.removed_chunk_ids) == 1
    assert store.delete_document("b") is None
    assert store.counts()["documents"] == 1


def test_chunk_places(backend: Backend) -> None:
    store = backend.documents
    written = store.write_documents([doc("a", ["one", "two"]), doc("b", ["three"])])
    a0, a1, b0 = written.added_chunk_ids
    assert store.chunk_places({a0, a1, b0, 10_000}) == {a0: ("a", 0), a1: ("a", 1),
                                                        b0: ("b", 0)}
    store.delete_document("a")
    assert store.chunk_places([a0, b0]) == {b0: ("b", 0)}


def keyed(name: str, operation: str, body: object) -> IdempotencyKey:
    key = IdempotencyKey(name, scope="key:1")
    key.bind(operation, body)
    return key


def test_idempotent_document_writes(backend: Backend) -> None:
    store = backend.documents
    first = store.write_documents([doc("a", ["olive"])], keyed("k1", "upsert", [1]),
                                  {"upserted": ["a"], "n": 1})
    with pytest.raises(Replayed) as replay:
        store.write_documents([doc("a", ["other", "text"])], keyed("k1", "upsert", [1]))
    assert replay.value.response == {"upserted": ["a"], "n": 1}
    assert store.stored_response(keyed("k1", "upsert", [1])) == {"upserted": ["a"], "n": 1}
    assert store.stored_response(keyed("k9", "upsert", [1])) is None
    with pytest.raises(IdempotencyKeyReused):
        store.stored_response(keyed("k1", "upsert", [3]))
    assert store.last_seq() == first.seq and store.counts()["chunks"] == 1  # nothing written
    with pytest.raises(IdempotencyKeyReused):
        store.write_documents([doc("b", ["barley"])], keyed("k1", "upsert", [2]))
    assert store.get_document("b") is None
    # The same key under another scope is another key.
    other = IdempotencyKey("k1", scope="key:2")
    other.bind("upsert", [1])
    store.write_documents([doc("b", ["barley"])], other, {"upserted": ["b"]})
    assert store.get_document("b") is not None
    store.remember(keyed("k2", "delete", "zz"), {"deleted": False})
    with pytest.raises(Replayed) as replay:
        store.remember(keyed("k2", "delete", "zz"), {"deleted": True})
    assert replay.value.response == {"deleted": False}


def test_idempotent_appends(backend: Backend) -> None:
    sessions = backend.sessions
    turn = TurnWrite(None, "user", "hello", None, None, None, None, 1, None)
    rows = sessions.append("s1", [turn, turn], keyed("a1", "append", "hello"))
    with pytest.raises(Replayed) as replay:
        sessions.append("s1", [turn, turn], keyed("a1", "append", "hello"))
    assert replay.value.response == {"turn_ids": [r.id for r in rows], "turns": 2}
    assert sessions.session("s1").turns == 2  # type: ignore[union-attr]
    with pytest.raises(IdempotencyKeyReused):
        sessions.append("s1", [turn], keyed("a1", "append", "other"))
    assert sessions.session("s1").turns == 2  # type: ignore[union-attr]


def test_filters_and_lexical_search(backend: Backend) -> None:
    store = backend.documents
    store.write_documents([doc("a", ["olive oil pressing"], lang="en", year=2020),
                           doc("b", ["olive trees in winter"], lang="pt", tags=["x", "y"]),
                           doc("c", ["barley harvest"], lang="en", year=2024)])
    by_doc = store.chunk_documents(set(range(1, 100)))

    def docs(ids: np.ndarray) -> set[str]:
        return {by_doc[int(i)] for i in ids}

    assert docs(store.filtered_chunk_ids({"lang": "en"})) == {"a", "c"}
    assert docs(store.filtered_chunk_ids(parse_filter({"year": {"$gte": 2021}}))) == {"c"}
    assert docs(store.filtered_chunk_ids({"tags": "y"})) == {"b"}
    assert docs(store.filtered_chunk_ids({"tags": {"$exists": False}})) == {"a", "c"}
    assert docs(store.filtered_chunk_ids({"lang": {"$in": ["pt", "de"]}})) == {"b"}
    hits = store.lexical_search(fts_query("olive"), 10)
    assert {by_doc[c] for c, _ in hits} == {"a", "b"}
    assert all(score > 0 for _, score in hits)
    assert [by_doc[c] for c, _ in store.lexical_search(fts_query("olive"), 10,
                                                       {"lang": "pt"})] == ["b"]
    assert store.term_documents("olive") == 2


def test_change_log_catch_up_and_compaction(backend: Backend) -> None:
    store = backend.documents
    w1 = store.write_documents([doc("a", ["one", "two"])])
    changes = store.changes_since(0)
    assert changes is not None and changes[0] == set(w1.added_chunk_ids)
    w2 = store.write_documents([doc("b", ["three"])])
    touched, last = store.changes_since(w1.seq) or (set(), 0)
    assert touched == set(w2.added_chunk_ids) and last == w2.seq
    ids, vectors = store.existing_chunk_vectors(w1.added_chunk_ids + [999])
    assert sorted(ids.tolist()) == sorted(w1.added_chunk_ids) and vectors.shape == (2, DIM)
    every = np.concatenate([i for i, _ in store.all_vectors(batch=2)])
    assert sorted(every.tolist()) == sorted(w1.added_chunk_ids + w2.added_chunk_ids)
    store.compact_changes(w1.seq)
    assert store.changes_since(0) is None  # older than the compacted log: reload a snapshot
    assert store.changes_since(w1.seq) is not None
    store.set_meta("k", "v")
    assert store.get_meta("k") == "v" and store.get_meta("nope") is None


def test_a_namespace_made_again_has_a_new_generation(backend: Backend) -> None:
    store = backend.documents
    store.write_documents([doc("a", ["alpha"])])
    generation, seq = store.generation(), store.last_seq()
    assert generation and backend.reopen().generation() == generation
    again = backend.recreate()
    again.write_documents([doc("b", ["beta"])])
    # The sequences start over; the generation is what tells the two apart.
    assert again.last_seq() == seq
    assert again.generation() and again.generation() != generation


def test_sessions(backend: Backend) -> None:
    sessions = backend.sessions
    turns = [TurnWrite(None, "user", "my dog Rex is brown", None, None, None, 1.0e9, 9, vec(1)),
             TurnWrite("t2", "assistant", "Rex sounds lovely", None, None, None, None, 6, None)]
    rows = sessions.append("s1", turns)
    assert [r.seq for r in rows] == [1, 2] and rows[1].id == "t2"
    info = sessions.session("s1")
    assert info is not None and info.turns == 2 and info.tokens == 15
    assert sessions.session("nope") is None
    assert [t.id for t in sessions.turns("s1", after_seq=1)] == ["t2"]
    assert set(sessions.turns_by_seq("s1", [1, 2])) == {1, 2}
    embedded = sessions.turn_vectors("s1")
    assert embedded.seqs.tolist() == [1] and embedded.vectors.shape == (1, DIM)
    assert embedded.tokens.tolist() == [9] and embedded.speakers == ("user\x00",)
    assert sessions.turn_vectors("s1", after_seq=1).seqs.tolist() == []
    assert [seq for seq, _ in sessions.lexical_turns("s1", fts_query("Rex"), 5, max_seq=1)] == [1]
    assert sessions.update_summary("s1", "- Rex", 1, 3, expected_through=0)
    assert not sessions.update_summary("s1", "- other", 2, 3, expected_through=0)
    assert sessions.session("s1").summary == "- Rex"  # type: ignore[union-attr]
    assert sessions.delete("s1") and not sessions.delete("s1")


def test_sessions_of_a_user(backend: Backend) -> None:
    sessions = backend.sessions

    def turn(text: str, i: int) -> TurnWrite:
        return TurnWrite(None, "user", text, None, None, None, None, 5, vec(i))

    sessions.append("a1", [turn("Rex is my dog", 1), turn("Rex likes the park", 2)],
                    user_id="ana")
    sessions.append("a2", [turn("hello again", 3)], user_id="ana")
    sessions.append("b1", [turn("Rex is my cat", 1)], user_id="bob")
    sessions.append("loose", [turn("Rex here too", 1)])
    assert sessions.session("a1").user_id == "ana"  # type: ignore[union-attr]
    assert sessions.session("loose").user_id is None  # type: ignore[union-attr]
    # Set once: another user is refused whole (no turn stored), the same or none is fine.
    with pytest.raises(Conflict, match="belongs to user_id 'ana'"):
        sessions.append("a1", [turn("mine now", 4)], user_id="bob")
    assert sessions.session("a1").turns == 2  # type: ignore[union-attr]
    sessions.append("a1", [turn("still Ana's", 4)])
    sessions.append("a1", [turn("still Ana's", 4)], user_id="ana")
    sessions.append("loose", [turn("joining", 2)], user_id="cy")
    assert sessions.session("loose").user_id == "cy"  # type: ignore[union-attr]
    assert {r["session_id"]: r["user_id"] for r in sessions.listing()} == {  # type: ignore[attr-defined]
        "a1": "ana", "a2": "ana", "b1": "bob", "loose": "cy"}

    listed = sessions.user_sessions("ana", 10)
    assert [r.id for r in listed] == ["a1", "a2"]  # the most recently updated first
    assert listed[0].turns == 4 and listed[0].user_id == "ana"
    assert [r.id for r in sessions.user_sessions("ana", 1)] == ["a1"]
    assert sessions.user_sessions("nobody", 10) == []

    # Lexical search over the user's other sessions: never another user's, never `exclude`.
    hits = sessions.user_lexical_turns("ana", fts_query("Rex"), 10, exclude="a2")
    assert sorted((sid, seq) for sid, seq, _ in hits) == [("a1", 1), ("a1", 2)]
    assert all(score > 0 for _, _, score in hits)
    assert sessions.user_lexical_turns("ana", fts_query("Rex"), 10, exclude="a1") == []
    assert [(sid, seq) for sid, seq, _ in sessions.user_lexical_turns(
        "bob", fts_query("Rex"), 10, exclude="x")] == [("b1", 1)]
    # Rows are read only from sessions of the user asked for.
    rows = sessions.user_turns("ana", [("a1", 1), ("a1", 4), ("b1", 1), ("loose", 1)])
    assert sorted(rows) == [("a1", 1), ("a1", 4)]
    assert rows[("a1", 1)].content == "Rex is my dog"
    assert sessions.user_turns("ana", []) == {}


def test_vector_index(backend: Backend) -> None:
    index = backend.index()
    index.add(np.array([1, 2, 3]), np.stack([vec(0), vec(1), vec(2)]), seq=3)
    assert len(index) == 3 and index.seq == 3 and index.dim == DIM and index.kind
    scores, ids = index.search(vec(1), k=2)
    assert ids[0] == 2 and len(ids) == 2
    _, only = index.search(vec(1), k=5, allowed=np.array([3]))
    assert only.tolist() == [3]
    index.remove(np.array([2]), seq=4)
    assert 2 not in index.search(vec(1), k=5)[1].tolist() and index.seq == 4
