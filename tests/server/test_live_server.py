"""The real service: `python -m contextd.cli serve` on a free port, driven over loopback by
`Client`, stopped with SIGTERM and started again on the same data directory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from contextd import Client, DocumentNotFound
from contextd.server.serve import SAMPLES_DIR

pytestmark = pytest.mark.server

STARTUP_S = 60
SAMPLES = SAMPLES_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(data_dir: Path, *extra: str) -> Iterator[tuple[str, list[str]]]:
    """A server process; yields its URL and, after it stops, its stdout lines."""
    port = free_port()
    env = {**os.environ, "CONTEXTD_EMBEDDER": "hash", "CONTEXTD_API_KEY": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "contextd.cli", "serve", "--port", str(port), "--data-dir",
         str(data_dir), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        wait_ready(url, process)
        yield url, output
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        output.extend(out.splitlines())
    # uvicorn re-raises SIGTERM once it has shut down gracefully, hence -SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out, out


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stdout.read()}")  # type: ignore
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server not ready in time")


def test_serve_persist_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    docs = [{"id": "wire-1", "text": "Loopback sockets carry requests between processes."},
            {"id": "wire-2", "text": "Graceful shutdown lets in-flight requests finish."},
            {"id": "wire-3", "text": "Snapshots of the vector index are flushed on close."}]
    with running_server(data, "--sample") as (url, output), Client(url) as client:
        sample = {i.name: i for i in client.namespaces()}["default"]
        assert sample.documents == len(list(SAMPLES.glob("*.md")))
        assert client.upsert_documents(docs, namespace="wire").upserted == 3
        assert client.search("graceful shutdown", namespace="wire").hits[0].id == "wire-2"
        client.append_messages("chat", [{"role": "user", "content": "How is data kept?"},
                                        {"role": "assistant", "content": "In SQLite."}],
                               namespace="wire")
        response = client.assemble(namespace="wire", session_id="chat", max_tokens=400,
                                   query="what happens to snapshots on close?")
        assert response.documents[0].id == "wire-3"
        assert client.delete_document("wire-1", namespace="wire").deleted
        assert httpx.get(url + "/metrics").text.count("contextd_http_request_duration") > 0

    # The printed curl example is ready to paste: its body is a valid assemble request with
    # no session (so running it again changes nothing), and its output is pretty-printed.
    printed = "\n".join(output)
    assert f"curl -s {url}/v1/namespaces/default/assemble" in printed
    assert "| python3 -m json.tool" in printed
    assert f"{url}/inspect" in printed and f"{url}/docs" in printed
    body = json.loads(re.search(r"-d '(.+)'", printed).group(1))  # type: ignore[union-attr]
    assert "session_id" not in body and "messages" not in body

    with running_server(data) as (url, _), Client(url) as client:
        assert client.get_document("wire-2", namespace="wire").text == docs[1]["text"]
        with pytest.raises(DocumentNotFound):
            client.get_document("wire-1", namespace="wire")
        hits = client.search("snapshots vector index", namespace="wire", mode="dense").hits
        assert [h.id for h in hits][:1] == ["wire-3"] and "wire-1" not in {h.id for h in hits}
        session = client.get_session("chat", namespace="wire")
        assert [t.content for t in session.turns] == ["How is data kept?", "In SQLite."]
        first, again = client.assemble(body), client.assemble(body)
        assert first.usage.total <= body["max_tokens"]
        assert [m.content for m in again.messages] == [m.content for m in first.messages]


def test_serve_logs_json_lines_with_request_ids(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--log-format", "json") as (url, output):
        assert httpx.get(url + "/v1/namespaces", headers={"X-Request-ID": "live-1"}).is_success
    lines = [json.loads(line) for line in output]  # every line, uvicorn's too, is JSON
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert any(line["request_id"] == "live-1" and "GET /v1/namespaces" in line["message"]
               for line in access), access
    assert {line["logger"] for line in lines} >= {"uvicorn.error", "contextd.server"}
    assert not any(line["logger"].startswith("faiss") for line in lines)


def test_serve_limits_native_thread_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadpoolctl import threadpool_info

    from contextd.native_threads import limit_native_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    limiter = limit_native_threads()
    try:
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
    finally:
        limiter.restore_original_limits()


def worker_pids(parent: int) -> set[int]:
    """The child processes of `parent` that are uvicorn workers (spawned Python processes)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()}


def start_workers(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`contextd serve --http-workers 2` on a free port; its process and URL."""
    port = free_port()
    env = {**os.environ, "CONTEXTD_EMBEDDER": "hash", "CONTEXTD_API_KEY": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "contextd.cli", "serve", "--port", str(port), "--data-dir",
         str(data_dir), "--http-workers", "2", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def replace_workers(process: subprocess.Popen[str]) -> None:
    """SIGHUP the supervisor and wait until both of its workers are new ones."""
    before = worker_pids(process.pid)
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + STARTUP_S
    while len(now := worker_pids(process.pid)) != 2 or now & before:
        assert time.monotonic() < deadline, "the workers were not replaced"
        time.sleep(0.2)


def metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_serve_with_worker_processes_shares_one_store_and_adds_up_metrics(
        tmp_path: Path) -> None:
    process, url = start_workers(tmp_path / "data", "--sample")
    try:
        wait_ready(url, process)
        deadline = time.monotonic() + STARTUP_S
        while metric_sum(httpx.get(url + "/metrics").text, "contextd_ready") != 1:
            assert time.monotonic() < deadline, "not every worker became ready"
            time.sleep(0.2)  # 1 only once every live worker is ready
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        # Every worker sees the samples (ingested once) and a write made through any one.
        written = {"id": "spread", "text": "Replicas on one port share one data directory."}
        with Client(url) as client:
            client.upsert_documents([written], namespace="spread")
        for _ in range(20):  # a fresh connection each: the kernel hands them to either worker
            with Client(url) as client:
                assert [h.id for h in client.search("replicas port", namespace="spread",
                                                    top_k=1).hits] == ["spread"]
                sample = {i.name: i.documents for i in client.namespaces()}["default"]
                assert sample == len(list(SAMPLES.glob("*.md")))
        metrics = httpx.get(url + "/metrics").text
        searches = metric_sum(metrics, 'contextd_http_request_duration_seconds_count{'
                                       'method="POST",route="/v1/namespaces/{namespace}/search"')
        assert searches == 20  # both workers' requests, whichever answered the scrape
        assert "process_resident_memory_bytes" not in metrics  # per process: left out
        # A worker that dies is replaced; its in-flight gauge does not linger.
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + STARTUP_S
        while len(now := worker_pids(process.pid)) < 2 or min(workers) in now:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.2)
        with Client(url) as client:
            assert client.search("replicas", namespace="spread", top_k=1).hits[0].id == "spread"
        assert metric_sum(httpx.get(url + "/metrics").text,
                          "contextd_http_requests_in_flight") == 1  # the scrape itself
        # SIGHUP replaces every worker, one by one, each with a listening socket of its own.
        replace_workers(process)
        for _ in range(10):
            with Client(url) as client:
                assert client.search("replicas", namespace="spread", top_k=1).hits[0].id == (
                    "spread")
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode in (0, -signal.SIGTERM), out
    assert out.count("contextd is ready. Try:") == 1, out  # one banner, not one a worker
    assert "Finished server process" in out, out


def test_serve_with_worker_processes_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "contextd.cli", "serve", "--port", str(port), "--data-dir",
             str(tmp_path), "--http-workers", "2"],
            env={**os.environ, "CONTEXTD_EMBEDDER": "hash", "CONTEXTD_API_KEY": ""},
            capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr


def test_worker_sockets_say_tcp_so_asyncio_turns_nagle_off() -> None:
    import asyncio.base_events

    from contextd.server.serve import _listening_socket

    with _listening_socket("127.0.0.1", 0) as first:
        port = first.getsockname()[1]
        with _listening_socket("127.0.0.1", port) as second:  # beside it, SO_REUSEPORT
            assert second.getsockname()[1] == port
            with socket.create_connection(("127.0.0.1", port)):
                accepted, _ = (first if _ready(first) else second).accept()
                with accepted:
                    asyncio.base_events._set_nodelay(accepted)  # what asyncio does on accept
                    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _ready(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 1)[0])


def test_workers_started_by_sighup_serve_the_profiles_the_config_file_has_now(
        tmp_path: Path) -> None:
    config = tmp_path / "contextd.toml"
    config.write_text("profiles_poll_s = 0\n[profiles.before]\nweight = 100\n")
    process, url = start_workers(tmp_path / "data", "--config", str(config))

    def profiles() -> set[str]:
        seen = set()
        for _ in range(12):  # fresh connections: either worker may answer
            with Client(url) as client:
                seen.add(client.assemble(query="anything", max_tokens=200, top_k=0).profile)
        return seen

    try:
        wait_ready(url, process)
        assert profiles() == {"before"}
        # Polling is off: only the restart can pick the edit up.
        config.write_text("profiles_poll_s = 0\n[profiles.after]\nweight = 100\n")
        replace_workers(process)
        wait_ready(url, process)
        assert profiles() == {"after"}
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert process.returncode in (0, -signal.SIGTERM), out
