"""Namespace lifetime: deleting or closing a namespace while requests use it never crashes or
fails with anything but a clean not-found; open namespaces are bounded; one namespace that
cannot be opened is its own problem."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from contextd import Engine, NotFound
from contextd.embedding import HashEmbedder


def test_delete_namespace_while_requests_use_it(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(kind: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if kind == "upsert":
                    engine.upsert_documents([{"id": f"d{n}", "text": f"olive grove number {n}"}],
                                            namespace="busy")
                elif kind == "search":
                    engine.search("olive grove", namespace="busy", top_k=3)
                elif kind == "append":
                    engine.append_messages("s", [{"role": "user", "content": f"turn {n}"}],
                                           namespace="busy")
                else:
                    engine.assemble(namespace="busy", query="olive?", max_tokens=500,
                                    session_id="s")
            except NotFound:
                pass  # the namespace (or session) was just deleted: a clean 404
            except BaseException as exc:  # noqa: BLE001 - any other failure is the bug
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,))
               for k in ("upsert", "search", "append", "assemble")]
    for t in threads:
        t.start()
    # Until several deletes have cut through the traffic (the cap only guards a hang: each
    # delete waits for the requests in flight, however slow the machine).
    deadline = time.monotonic() + 60.0
    deletes = 0
    while deletes < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
        if engine.registry.exists("busy"):
            engine.delete_namespace("busy")
            deletes += 1
    stop.set()
    for t in threads:
        t.join()
    assert deletes == 4
    assert errors == []


def test_open_namespaces_are_bounded(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(max_open_namespaces=3)
    for i in range(12):
        engine.upsert_documents([{"id": "d", "text": f"document of tenant {i}"}],
                                namespace=f"t{i}")
        assert len(engine.registry._open) <= 3
    # Closed namespaces reopen on use, with everything they held.
    assert [h.id for h in engine.search("tenant 0", namespace="t0").hits] == ["d"]
    assert len(engine.namespaces()) == 12


def test_a_namespace_that_cannot_open_does_not_block_the_others(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    data = tmp_path / "d"
    other_model = Engine(data, make_engine().settings.model_copy(update={"data_dir": data}),
                         embedder=HashEmbedder(dim=64))
    other_model.upsert_documents([{"id": "x", "text": "indexed with another model"}],
                                 namespace="odd")
    other_model.close()
    engine = make_engine(data)
    engine.upsert_documents([{"id": "y", "text": "fine"}], namespace="good")
    engine.warm_up()  # skips "odd" instead of failing
    assert [n.name for n in engine.namespaces()] == ["good"]
    assert engine.delete_namespace("odd") is True
    assert not engine.registry.exists("odd")
