"""Many concurrent upserts, deletes and assembles against one app: no corruption, no
deadlock; afterwards every acknowledged document is searchable and every deleted one gone.
And shutdown lets running Engine calls finish before it closes the engine."""

from __future__ import annotations

import random
import threading
import time

import anyio
import pytest
from conftest import started_client
from fastapi import FastAPI
from openapi_check import OpenAPIBook

from contextd import AsyncClient, DocumentNotFound, Engine, NamespaceInfo

pytestmark = pytest.mark.anyio

WRITERS = 4
BATCHES = 4
PER_BATCH = 4
READERS = 4


def marker(doc_id: str) -> str:
    """A word found in this document only, so a search can single it out."""
    return "zq" + doc_id.replace("-", "x")


def doc(writer: int, batch: int, k: int) -> dict[str, str]:
    doc_id = f"w{writer}-b{batch}-k{k}"
    return {"id": doc_id,
            "text": f"Report {marker(doc_id)}: measurements of panel output under load."}


async def test_concurrent_writes_deletes_and_assembles(client: AsyncClient) -> None:
    acknowledged: set[str] = set()
    deleted: set[str] = set()
    assembled = 0
    writing_done = anyio.Event()

    async def writer(w: int) -> None:
        rng = random.Random(w)
        for b in range(BATCHES):
            docs = [doc(w, b, k) for k in range(PER_BATCH)]
            result = await client.upsert_documents(docs, namespace="load")
            assert result.upserted == PER_BATCH
            acknowledged.update(d["id"] for d in docs)
            victim = rng.choice(docs)["id"]
            await client.delete_document(victim, namespace="load")
            deleted.add(victim)

    async def reader(r: int) -> None:
        nonlocal assembled
        while not writing_done.is_set():
            response = await client.assemble(namespace="load", query="panel output under load",
                                              max_tokens=300, session_id=f"reader-{r}",
                                              messages=[{"role": "user", "content": "next"}])
            assert response.usage.total <= 300
            assembled += 1

    await client.upsert_documents([doc(99, 0, 0)], namespace="load")  # namespace exists
    async with anyio.create_task_group() as readers:
        for r in range(READERS):
            readers.start_soon(reader, r)
        async with anyio.create_task_group() as writers:
            for w in range(WRITERS):
                writers.start_soon(writer, w)
        writing_done.set()

    assert assembled >= READERS
    live = acknowledged - deleted
    assert len(live) == WRITERS * BATCHES * (PER_BATCH - 1)
    info = {i.name: i for i in await client.namespaces()}["load"]
    assert info.documents == len(live) + 1
    for doc_id in sorted(live):
        for mode in ("lexical", "dense"):
            hits = (await client.search(marker(doc_id), namespace="load", top_k=3,
                                        mode=mode)).hits
            assert hits and hits[0].id == doc_id, (mode, doc_id, [h.id for h in hits])
    for doc_id in sorted(deleted):
        with pytest.raises(DocumentNotFound):
            await client.get_document(doc_id, namespace="load")
        hits = (await client.search(marker(doc_id), namespace="load", top_k=50)).hits
        assert doc_id not in {h.id for h in hits}
    for r in range(READERS):
        session = await client.get_session(f"reader-{r}", namespace="load")
        assert [t.seq for t in session.turns] == list(range(1, len(session.turns) + 1))


async def test_shutdown_waits_for_running_engine_calls(
        app: FastAPI, book: OpenAPIBook, server_engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    closed_while_running: list[bool] = []
    real_namespaces, real_close = server_engine.namespaces, server_engine.close

    def slow_namespaces() -> list[NamespaceInfo]:
        entered.set()
        release.wait(30)
        return real_namespaces()

    def watched_close() -> None:
        closed_while_running.append(not release.is_set())
        real_close()

    def release_once_shutdown_began() -> None:
        while not app.state.engine_closed:
            time.sleep(0.01)
        release.set()

    monkeypatch.setattr(server_engine, "namespaces", slow_namespaces)
    monkeypatch.setattr(server_engine, "close", watched_close)
    answers: list[object] = []
    async with anyio.create_task_group() as tasks, app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        client = await started_client(app, book)

        async def call() -> None:
            answers.append(await client.namespaces())

        tasks.start_soon(call)
        await anyio.to_thread.run_sync(entered.wait, 30)
        threading.Thread(target=release_once_shutdown_began, daemon=True).start()
        # Leaving the lifespan ran shutdown: it waited for the call, then closed the engine.
    assert answers == [[]] and closed_while_running == [False]
