"""Several processes on one data directory: every committed write is seen by every engine,
and snapshots never go backwards. Two `Engine`s on one directory stand in for two processes:
they share nothing but the files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd import Engine
from contextd.store.namespace import SNAPSHOT_FILE
from contextd.store.vector_index import snapshot_seq

DOCS = [{"id": f"d{i}", "text": f"Topic {i}: the {word} grows in the valley."}
        for i, word in enumerate(["olive", "barley", "lavender", "walnut", "saffron"])]


def dense_ids(engine: Engine, query: str) -> list[str]:
    return [h.id for h in engine.search(query, mode="dense", top_k=10).hits]


def test_ingest_in_one_engine_is_found_by_the_others_dense_search(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    server, cli = make_engine(tmp_path / "d"), make_engine(tmp_path / "d")
    server.upsert_documents(DOCS)
    assert dense_ids(server, "saffron")  # warms the server's index before the other writes
    cli.upsert_documents([{"id": "new", "text": "Quinoa terraces in the Andes mountains."}])
    assert dense_ids(server, "quinoa terraces andes")[0] == "new"


def test_delete_in_one_engine_is_gone_in_the_other(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    a, b = make_engine(tmp_path / "d"), make_engine(tmp_path / "d")
    a.upsert_documents(DOCS)
    assert "d4" in dense_ids(b, "saffron valley")
    a.delete_document("d4")
    assert "d4" not in dense_ids(b, "saffron valley")
    # And b's own next write does not resurrect it in either index.
    b.upsert_documents([{"id": "x", "text": "Saffron crocus harvest."}])
    assert "d4" not in dense_ids(a, "saffron valley")
    assert "d4" not in dense_ids(b, "saffron valley")


def test_interleaved_writes_leave_both_indexes_complete(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    a, b = make_engine(tmp_path / "d"), make_engine(tmp_path / "d")
    for i, doc in enumerate(DOCS):
        (a if i % 2 else b).upsert_documents([doc])
    for engine in (a, b):
        for doc in DOCS:
            word = doc["text"].split()[3]
            assert doc["id"] in dense_ids(engine, word)


@pytest.mark.parametrize("first", ["writer", "reader"])
def test_close_in_either_order_then_reopen_loses_nothing_and_rebuilds_nothing(
        make_engine: Callable[..., Engine], tmp_path: Path, first: str,
        caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "d"
    writer, reader = make_engine(data, snapshot_every=1), make_engine(data, snapshot_every=1)
    writer.upsert_documents(DOCS[:3])
    assert dense_ids(reader, "olive")  # the reader's index is now current too
    writer.upsert_documents(DOCS[3:])
    # The writer saved a snapshot and compacted the change log past the reader's index: the
    # reader loads that snapshot instead of missing the changes.
    assert "d4" in dense_ids(reader, "saffron valley")
    for engine in ((writer, reader) if first == "writer" else (reader, writer)):
        engine.close()
    snapshot = data / "namespaces" / "default" / SNAPSHOT_FILE
    saved = snapshot_seq(snapshot)
    assert saved is not None
    with caplog.at_level(logging.WARNING, logger="contextd.store"):
        again = make_engine(data)
        assert {h.id for h in again.search("valley", mode="dense", top_k=10).hits} == {
            d["id"] for d in DOCS}
    assert not [r for r in caplog.records if "rebuilding" in r.getMessage()]
    assert snapshot_seq(snapshot) == saved


def test_a_stale_engine_never_writes_an_older_snapshot(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    data = tmp_path / "d"
    stale, fresh = make_engine(data), make_engine(data, snapshot_every=1)
    stale.upsert_documents(DOCS[:1])  # unsaved in the stale engine
    fresh.upsert_documents(DOCS[1:])  # saved by the fresh one, past the stale engine's seq
    snapshot = data / "namespaces" / "default" / SNAPSHOT_FILE
    newest = snapshot_seq(snapshot)
    stale.close()
    assert snapshot_seq(snapshot) == newest
    fresh.close()
    reopened = make_engine(data)
    assert {h.id for h in reopened.search("valley", mode="dense", top_k=10).hits} == {
        d["id"] for d in DOCS}
