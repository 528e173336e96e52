"""Crash test: SIGKILL a loaded server at random points, restart it, and check what survived.

    python benchmarks/crash_test.py --kills 200 --json benchmarks/out/crash_test.json

Runs `contextd serve` (hash embedder, snapshots every few changes so saves are frequent) on a
temporary data directory. Threads drive it over loopback with raw HTTP (no client retries, so
every answer is known): document upserts (batches of 1-3, one transaction each) and deletes in
two long-lived namespaces, session appends under an Idempotency-Key, and namespaces created and
deleted. After a random time under load (or, for one kill in ten, during start-up) the server
gets SIGKILL; it is restarted on the same directory, and once ready the checks run:

- every acknowledged write is present: an acknowledged document has its text, an acknowledged
  turn is in its session exactly once, an acknowledged namespace exists;
- nothing deleted is resurrected (documents, namespaces);
- no partial write: a batch in flight at the kill is wholly there or wholly absent, and so is
  an append; each append in flight is then retried with its key and must end up stored once;
- FAISS and SQLite agree: the vector snapshot on disk, caught up from the change log, holds
  exactly the chunk ids SQLite holds;
- `PRAGMA integrity_check` is ok for every database; no snapshot temp file is left;
- restart-to-ready time (reported as p50 and max).

Prints a table and writes JSON. The exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import ServerProcess  # noqa: E402

from contextd.store.namespace import (  # noqa: E402
    DB_FILE,
    SNAPSHOT_FILE,
    SNAPSHOT_TEMP_GLOB,
    _catch_up,
)
from contextd.store.sqlite_store import SqliteStore  # noqa: E402
from contextd.store.vector_index import FaissVectorIndex, SnapshotError  # noqa: E402

DOC_NAMESPACES = ("crash-a", "crash-b")
SESSION_NAMESPACE = "crash-a"
IDS_PER_WORKER = 12
WORDS = ["olive", "barley", "lavender", "walnut", "saffron", "quinoa", "millet", "sorghum",
         "fennel", "thyme", "basil", "cumin", "harbour", "valley", "river", "terrace",
         "orchard", "meadow", "granary", "mill", "press", "cellar"]
ABSENT = None  # a document state: not stored


def text_for(rng: random.Random, tag: str) -> str:
    sentences = [f"Record {tag} sentence {i}: the " + " ".join(rng.choices(WORDS, k=12)) + "."
                 for i in range(rng.randint(2, 40))]
    return " ".join(sentences)


@dataclass
class DocState:
    acked: str | None = ABSENT  # text, or ABSENT when deleted or never written
    pending: list[str | None] = field(default_factory=list)  # states a lost request may leave


@dataclass
class Append:
    key: str
    namespace: str
    session: str
    contents: list[str]


@dataclass
class Ledger:
    """What the server acknowledged, and what was in flight when it died."""

    docs: dict[tuple[str, str], DocState] = field(default_factory=dict)
    batches: list[list[tuple[str, str, str]]] = field(default_factory=list)  # in flight
    turns: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # acked, in order
    appends: list[Append] = field(default_factory=list)  # in flight
    namespaces: dict[str, bool] = field(default_factory=dict)  # acked: exists?
    namespaces_pending: dict[str, bool] = field(default_factory=dict)
    acked_writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Load:
    """The threads that write until the server dies."""

    def __init__(self, url: str, ledger: Ledger, seed: int, cycle: int) -> None:
        self.url = url
        self.ledger = ledger
        self.seed = seed
        self.cycle = cycle
        self.threads: list[threading.Thread] = []
        self.errors_5xx = 0
        self.unexpected: list[str] = []

    def start(self) -> None:
        targets = [(self.documents, 0), (self.documents, 1), (self.sessions, 0),
                   (self.sessions, 1), (self.namespaces, 0)]
        for target, n in targets:
            thread = threading.Thread(target=self._run, args=(target, n), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)

    def _run(self, target: Any, n: int) -> None:
        rng = random.Random(f"{self.seed}-{self.cycle}-{target.__name__}-{n}")
        with httpx.Client(base_url=self.url, timeout=20.0) as http:
            try:
                while True:
                    target(http, rng, n)
            except httpx.TransportError:
                return  # the server died: whatever was in flight stays pending
            except httpx.HTTPStatusError as exc:
                self.unexpected.append(f"{exc.request.method} {exc.request.url.path}: "
                                       f"{exc.response.status_code} {exc.response.text[:200]}")

    def _ok(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            self.errors_5xx += 1
        response.raise_for_status()

    def documents(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        ledger = self.ledger
        namespace = DOC_NAMESPACES[n % len(DOC_NAMESPACES)]
        ids = rng.sample(range(IDS_PER_WORKER), rng.randint(1, 3))
        keys = [(namespace, f"w{n}-d{i}") for i in ids]
        if rng.random() < 0.25:  # delete one
            key = keys[0]
            with ledger.lock:
                state = ledger.docs.setdefault(key, DocState())
                if state.acked is ABSENT:
                    return
                state.pending.append(ABSENT)
            response = http.delete(f"/v1/namespaces/{namespace}/documents/{key[1]}")
            self._ok(response)
            with ledger.lock:
                state.acked, state.pending = ABSENT, []
                ledger.acked_writes += 1
            return
        batch = [(ns, doc_id, text_for(rng, f"{doc_id}-{uuid.uuid4().hex[:8]}"))
                 for ns, doc_id in keys]
        with ledger.lock:
            for ns, doc_id, text in batch:
                ledger.docs.setdefault((ns, doc_id), DocState()).pending.append(text)
            ledger.batches.append(batch)
        response = http.post(f"/v1/namespaces/{namespace}/documents",
                             json={"documents": [{"id": d, "text": t} for _, d, t in batch]})
        self._ok(response)
        with ledger.lock:
            ledger.batches.remove(batch)
            for ns, doc_id, text in batch:
                state = ledger.docs[(ns, doc_id)]
                state.acked, state.pending = text, []
            ledger.acked_writes += 1

    def sessions(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        ledger = self.ledger
        session = f"s{n}"
        stamp = uuid.uuid4().hex[:10]
        append = Append(str(uuid.uuid4()), SESSION_NAMESPACE, session,
                        [f"turn {stamp}-{j}" for j in range(rng.randint(1, 2))])
        with ledger.lock:
            ledger.appends.append(append)
        response = send_append(http, append)
        self._ok(response)
        with ledger.lock:
            ledger.appends.remove(append)
            ledger.turns.setdefault((append.namespace, session), []).extend(append.contents)
            ledger.acked_writes += 1

    def namespaces(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        ledger = self.ledger
        with ledger.lock:
            live = [ns for ns, exists in ledger.namespaces.items()
                    if exists and ns not in ledger.namespaces_pending]
        if live and rng.random() < 0.5:
            namespace = rng.choice(live)
            with ledger.lock:
                ledger.namespaces_pending[namespace] = False
            self._ok(http.delete(f"/v1/namespaces/{namespace}"))
        else:
            namespace = f"tmp-{uuid.uuid4().hex[:10]}"
            with ledger.lock:
                ledger.namespaces_pending[namespace] = True
            self._ok(http.post(f"/v1/namespaces/{namespace}/documents", json={"documents": [
                {"id": "only", "text": text_for(rng, namespace)}]}))
        with ledger.lock:
            ledger.namespaces[namespace] = ledger.namespaces_pending.pop(namespace)
            ledger.acked_writes += 1


def send_append(http: httpx.Client, append: Append) -> httpx.Response:
    return http.post(f"/v1/namespaces/{append.namespace}/sessions/{append.session}/messages",
                     json={"messages": [{"role": "user", "content": c}
                                        for c in append.contents]},
                     headers={"Idempotency-Key": append.key})


@dataclass
class Failures:
    lost: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    index_mismatch: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    unexpected_status: list[str] = field(default_factory=list)
    server_errors: int = 0

    def total(self) -> int:
        return (len(self.lost) + len(self.resurrected) + len(self.partial)
                + len(self.duplicated) + len(self.index_mismatch) + len(self.integrity)
                + len(self.temp_files) + len(self.unexpected_status) + self.server_errors)


def check_state(http: httpx.Client, ledger: Ledger, failures: Failures) -> int:
    """Compare the restarted server with the ledger; resolve what was in flight. Returns how
    many facts were checked."""
    checked = 0
    actual: dict[tuple[str, str], str | None] = {}
    for key, state in ledger.docs.items():
        response = http.get(f"/v1/namespaces/{key[0]}/documents/{key[1]}")
        if response.status_code >= 500:
            failures.server_errors += 1
        text = response.json()["text"] if response.status_code == 200 else ABSENT
        if response.status_code == 200 and response.json()["chunks"] < 1:
            failures.partial.append(f"document {key} has no chunks")
        actual[key] = text
        allowed = [state.acked, *state.pending]
        if text not in allowed:
            if text is ABSENT:
                failures.lost.append(f"document {key}")
            elif state.acked is ABSENT:
                failures.resurrected.append(f"document {key}")
            else:
                failures.lost.append(f"document {key} has an older or foreign text")
        checked += 1
    for batch in ledger.batches:  # in flight at the kill: all of it or none of it
        landed = [actual.get((ns, d)) == text for ns, d, text in batch]
        if any(landed) and not all(landed):
            failures.partial.append(f"batch {[d for _, d, _ in batch]} landed {landed}")
        checked += 1
    for key, state in ledger.docs.items():
        state.acked, state.pending = actual[key], []
    ledger.batches.clear()

    for append in list(ledger.appends):  # in flight: stored wholly or not; the retry once
        before = session_contents(http, append.namespace, append.session)
        counts = [before.count(c) for c in append.contents]
        if len(set(counts)) > 1 or max(counts) > 1:
            failures.partial.append(f"append {append.key} stored {counts} times")
        retry = send_append(http, append)
        if retry.status_code >= 500:
            failures.server_errors += 1
        after = session_contents(http, append.namespace, append.session)
        if retry.status_code != 200 or any(after.count(c) != 1 for c in append.contents):
            failures.duplicated.append(f"append {append.key} retried: {retry.status_code}, "
                                       f"{[after.count(c) for c in append.contents]}")
        else:
            ledger.turns.setdefault((append.namespace, append.session), []).extend(
                append.contents)
        checked += 1
    ledger.appends.clear()
    for (namespace, session), contents in ledger.turns.items():
        stored = session_contents(http, namespace, session)
        for content in contents:
            if stored.count(content) != 1:
                bucket = failures.lost if stored.count(content) == 0 else failures.duplicated
                bucket.append(f"turn {content!r} stored {stored.count(content)} times")
            checked += 1

    listed = {n["name"] for n in http.get("/v1/namespaces").json()}
    for namespace, exists in list(ledger.namespaces.items()):
        pending = ledger.namespaces_pending.pop(namespace, None)
        present = namespace in listed
        if present != exists and pending is None:
            bucket = failures.lost if exists else failures.resurrected
            bucket.append(f"namespace {namespace}")
        ledger.namespaces[namespace] = present
        checked += 1
    for namespace in list(ledger.namespaces_pending):  # a create in flight
        ledger.namespaces[namespace] = namespace in listed
    ledger.namespaces_pending.clear()
    for namespace, exists in list(ledger.namespaces.items()):
        if not exists:
            del ledger.namespaces[namespace]  # deleted for good: nothing more to check
    return checked


def session_contents(http: httpx.Client, namespace: str, session: str) -> list[str]:
    response = http.get(f"/v1/namespaces/{namespace}/sessions/{session}")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [t["content"] for t in response.json()["turns"]]


def check_files(data_dir: Path, failures: Failures) -> None:
    """Integrity of every database, no temp files, and snapshot + log == SQLite."""
    databases = [data_dir / "embedding_cache.sqlite3", *sorted(
        (data_dir / "namespaces").glob(f"*/{DB_FILE}"))]
    for db in databases:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            failures.integrity.append(f"{db}: {result}")
    for temp in (data_dir / "namespaces").glob(f"*/{SNAPSHOT_TEMP_GLOB}"):
        failures.temp_files.append(str(temp))
    for db in sorted((data_dir / "namespaces").glob(f"*/{DB_FILE}")):
        problem = index_problem(db.parent)
        if problem:
            failures.index_mismatch.append(f"{db.parent.name}: {problem}")


def index_problem(folder: Path) -> str | None:
    """Why the snapshot, caught up from the change log, differs from SQLite (None: agrees)."""
    store = SqliteStore(str(folder / DB_FILE))
    try:
        dim = int(store.get_meta("embedding_dim") or 0)
        for _ in range(3):  # the server may save a newer snapshot meanwhile: read it again
            try:
                index = FaissVectorIndex.load(folder / SNAPSHOT_FILE, dim)
            except SnapshotError as exc:
                return f"snapshot unusable: {exc}"
            changes = store.changes_since(index.seq)
            if changes is None:
                continue
            touched, last_seq = changes
            if touched:
                _catch_up(store, index, touched, last_seq)
            ids = [r[0] for r in store.reader().execute("SELECT id FROM chunks")]
            if len(index) != len(ids):
                return f"{len(index)} vectors for {len(ids)} chunks"
            if ids:
                try:
                    index.reconstruct(np.asarray(ids, dtype=np.int64))
                except KeyError:
                    return "vector ids differ from chunk ids"
            return None
        return "the change log kept moving past the snapshot"
    finally:
        store.close()


def run(kills: int, seed: int = 0, data_dir: Path | None = None, min_load_s: float = 0.3,
        max_load_s: float = 2.0, verbose: bool = True) -> dict[str, Any]:
    """Kill and restart `kills` times; the figures and every failure as a dict."""
    rng = random.Random(seed)
    temp = None
    if data_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="contextd-crash-")
        data_dir = Path(temp.name) / "data"
    server = ServerProcess(data_dir, {"CONTEXTD_EMBEDDER": "hash",
                                      "CONTEXTD_SNAPSHOT_EVERY": "20"},
                           log_path=data_dir.parent / "server.log")
    ledger, failures = Ledger(), Failures()
    ready_times: list[float] = []
    checked = startup_kills = 0
    reported: dict[str, int] = {}
    started = time.monotonic()
    ready_times.append(server.start())
    try:
        for cycle in range(kills):
            if rng.random() < 0.1:  # during start-up: warm-up, snapshot rebuilds
                server.kill()
                server.spawn()
                time.sleep(rng.uniform(0.0, 0.8))
                server.kill()
                startup_kills += 1
            else:
                load = Load(server.url, ledger, seed, cycle)
                load.start()
                time.sleep(rng.uniform(min_load_s, max_load_s))
                server.kill()
                load.join()
                failures.server_errors += load.errors_5xx
                failures.unexpected_status.extend(load.unexpected)
            restart = time.monotonic()
            server.spawn()
            server.wait_ready()
            ready_times.append(time.monotonic() - restart)
            with httpx.Client(base_url=server.url, timeout=30.0) as http:
                checked += check_state(http, ledger, failures)
            check_files(data_dir, failures)
            if verbose:
                print(f"kill {cycle + 1}/{kills}: ready in {ready_times[-1]:.2f} s, "
                      f"{ledger.acked_writes} acknowledged writes, "
                      f"{failures.total()} failures", flush=True)
                for name, values in vars(failures).items():
                    if isinstance(values, list) and len(values) > reported.get(name, 0):
                        print(f"  {name}: {values[reported.get(name, 0):]}", flush=True)
                        reported[name] = len(values)
    finally:
        server.kill()
        if temp is not None:
            temp.cleanup()
    ordered = sorted(ready_times)
    return {
        "kills": kills, "startup_kills": startup_kills, "seed": seed,
        "acknowledged_writes": ledger.acked_writes, "facts_checked": checked,
        "lost": len(failures.lost), "resurrected": len(failures.resurrected),
        "partial": len(failures.partial), "duplicated": len(failures.duplicated),
        "index_mismatch": len(failures.index_mismatch),
        "integrity_failures": len(failures.integrity),
        "leaked_temp_files": len(failures.temp_files),
        "unexpected_status": len(failures.unexpected_status),
        "server_errors": failures.server_errors,
        "ready_s_p50": round(statistics.median(ordered), 3), "ready_s_max": round(ordered[-1], 3),
        "elapsed_s": round(time.monotonic() - started, 1),
        "failures": {name: values for name, values in vars(failures).items()
                     if isinstance(values, list) and values},
        "total_failures": failures.total(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-load-s", type=float, default=2.0,
                        help="longest run under load before a kill")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    report = run(args.kills, args.seed, max_load_s=args.max_load_s)
    rows = [(k, v) for k, v in report.items() if k != "failures"]
    print("\n| figure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for name, values in report["failures"].items():
        print(f"{name}: {values[:10]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["total_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
