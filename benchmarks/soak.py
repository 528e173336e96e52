"""Soak test: a real server under mixed concurrent load for a fixed time, then checked.

    python benchmarks/soak.py --duration 600 --json benchmarks/out/soak.json

Runs `contextd serve` (hash embedder) on a temporary data directory and, from threads over
loopback, upserts and deletes documents, appends turns, assembles prompts from the sessions
and documents, and creates and deletes namespaces, for `--duration` seconds. Once a second
it samples the server's resident memory, thread count and open files from /proc. Afterwards:

- no answer was a 5xx and the server is still running (then it must shut down cleanly);
- every acknowledged write is readable: each document's last acknowledged text, no deleted
  document, every acknowledged turn exactly once, no deleted namespace;
- after the warm-up (the first `--warmup` share of the run), memory, threads and open files
  stay flat: the last third of the samples against the first third after warm-up.

Prints a table and writes JSON; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import ServerProcess  # noqa: E402

NAMESPACES = ("soak-a", "soak-b")
IDS_PER_WORKER = 25
WORDS = ["olive", "barley", "lavender", "walnut", "saffron", "quinoa", "millet", "sorghum",
         "fennel", "thyme", "basil", "cumin", "harbour", "valley", "river", "terrace",
         "orchard", "meadow", "granary", "mill", "press", "cellar"]
# Flat means: the last third of the samples after warm-up against the first third.
RSS_SLACK_MB = 24.0
RSS_SLACK_SHARE = 0.10
THREAD_SLACK = 2
FILE_SLACK = 8


def sentence_text(rng: random.Random, tag: str, sentences: int) -> str:
    return " ".join(f"Note {tag}.{i}: the " + " ".join(rng.choices(WORDS, k=10)) + "."
                    for i in range(sentences))


def proc_sample(pid: int) -> dict[str, float]:
    """Resident memory (MB), threads and open files of process `pid`, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "threads": int(fields["Threads"]),
            "open_files": len(list(Path(f"/proc/{pid}/fd").iterdir()))}


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    docs: dict[tuple[str, str], str | None] = field(default_factory=dict)  # None: deleted
    turns: dict[str, list[str]] = field(default_factory=dict)
    namespaces_deleted: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, response: httpx.Response) -> httpx.Response:
        with self.lock:
            self.statuses[response.status_code] += 1
        return response


class Workload:
    def __init__(self, url: str, tally: Tally, seed: int) -> None:
        self.url = url
        self.tally = tally
        self.seed = seed
        self.stop = threading.Event()

    def threads(self) -> list[threading.Thread]:
        roles = [self.documents, self.documents, self.sessions, self.sessions,
                 self.assembles, self.namespaces]
        return [threading.Thread(target=self._loop, args=(role, n), daemon=True)
                for n, role in enumerate(roles)]

    def _loop(self, role: Any, n: int) -> None:
        rng = random.Random(f"{self.seed}-{n}")
        with httpx.Client(base_url=self.url, timeout=60.0) as http:
            while not self.stop.is_set():
                try:
                    role(http, rng, n)
                except httpx.TransportError as exc:
                    self.tally.transport_errors.append(f"{role.__name__}: {exc!r}")
                    return

    def documents(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        namespace = NAMESPACES[n % len(NAMESPACES)]
        doc_id = f"w{n}-d{rng.randrange(IDS_PER_WORKER)}"
        if rng.random() < 0.3:
            response = self.tally.note(http.delete(f"/v1/namespaces/{namespace}/documents/"
                                                   f"{doc_id}"))
            if response.status_code == 200:
                self.tally.docs[(namespace, doc_id)] = None
            return
        text = sentence_text(rng, f"{doc_id}-{uuid.uuid4().hex[:8]}", rng.randint(1, 30))
        response = self.tally.note(http.post(f"/v1/namespaces/{namespace}/documents", json={
            "documents": [{"id": doc_id, "text": text, "metadata": {"worker": n}}]}))
        if response.status_code == 200:
            self.tally.docs[(namespace, doc_id)] = text

    def sessions(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        session = f"s{n}-{rng.randrange(4)}"
        content = f"turn {uuid.uuid4().hex[:12]}: " + " ".join(rng.choices(WORDS, k=15))
        response = self.tally.note(http.post(
            f"/v1/namespaces/{NAMESPACES[0]}/sessions/{session}/messages",
            json={"messages": [{"role": "user", "content": content}]},
            headers={"Idempotency-Key": str(uuid.uuid4())}))
        if response.status_code == 200:
            with self.tally.lock:
                self.tally.turns.setdefault(session, []).append(content)

    def assembles(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        body: dict[str, Any] = {"query": " ".join(rng.choices(WORDS, k=4)),
                                "max_tokens": rng.choice([300, 1000, 3000])}
        with self.tally.lock:
            sessions = list(self.tally.turns)
        if sessions and rng.random() < 0.7:
            body["session_id"] = rng.choice(sessions)
        response = self.tally.note(http.post(f"/v1/namespaces/{NAMESPACES[0]}/assemble",
                                             json=body))
        if response.status_code != 200:
            self.tally.transport_errors.append(f"assemble {response.status_code}: "
                                               f"{response.text[:200]}")

    def namespaces(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        namespace = f"tmp-{uuid.uuid4().hex[:10]}"
        self.tally.note(http.post(f"/v1/namespaces/{namespace}/documents", json={"documents": [
            {"id": "only", "text": sentence_text(rng, namespace, 3)}]}))
        self.tally.note(http.post(f"/v1/namespaces/{namespace}/search",
                                  json={"query": "olive"}))
        if self.tally.note(http.delete(f"/v1/namespaces/{namespace}")).status_code == 204:
            self.tally.namespaces_deleted.append(namespace)


def verify(url: str, tally: Tally) -> dict[str, int]:
    """Every acknowledged write readable, every delete still deleted."""
    lost = resurrected = duplicated = 0
    with httpx.Client(base_url=url, timeout=60.0) as http:
        for (namespace, doc_id), text in tally.docs.items():
            response = http.get(f"/v1/namespaces/{namespace}/documents/{doc_id}")
            if text is None:
                resurrected += response.status_code != 404
            elif response.status_code != 200 or response.json()["text"] != text:
                lost += 1
        for session, contents in tally.turns.items():
            stored = [t["content"] for t in http.get(
                f"/v1/namespaces/{NAMESPACES[0]}/sessions/{session}").json()["turns"]]
            for content in contents:
                lost += stored.count(content) == 0
                duplicated += stored.count(content) > 1
        listed = {n["name"] for n in http.get("/v1/namespaces").json()}
        resurrected += len(listed & set(tally.namespaces_deleted))
    return {"lost": lost, "resurrected": resurrected, "duplicated": duplicated,
            "documents_checked": len(tally.docs),
            "turns_checked": sum(len(c) for c in tally.turns.values()),
            "namespaces_deleted": len(tally.namespaces_deleted)}


def flatness(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Growth from the first third of the post-warm-up samples to the last third."""
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    rss_first = statistics.median(s["rss_mb"] for s in first)
    rss_last = statistics.median(s["rss_mb"] for s in last)
    out: dict[str, Any] = {
        "rss_mb_first": round(rss_first, 1), "rss_mb_last": round(rss_last, 1),
        "threads_first_max": max(s["threads"] for s in first),
        "threads_last_max": max(s["threads"] for s in last),
        "open_files_first_max": max(s["open_files"] for s in first),
        "open_files_last_max": max(s["open_files"] for s in last),
    }
    out["rss_flat"] = rss_last <= rss_first * (1 + RSS_SLACK_SHARE) + RSS_SLACK_MB
    out["threads_flat"] = out["threads_last_max"] <= out["threads_first_max"] + THREAD_SLACK
    out["open_files_flat"] = (out["open_files_last_max"]
                              <= out["open_files_first_max"] + FILE_SLACK)
    return out


def run(duration: float, warmup: float = 0.3, seed: int = 0,
        data_dir: Path | None = None) -> dict[str, Any]:
    """Soak a fresh server for `duration` seconds; the figures and verdicts as a dict."""
    temp = None
    if data_dir is None:
        temp = tempfile.TemporaryDirectory(prefix="contextd-soak-")
        data_dir = Path(temp.name) / "data"
    server = ServerProcess(data_dir, {"CONTEXTD_EMBEDDER": "hash"},
                           log_path=data_dir.parent / "server.log")
    tally = Tally()
    samples: list[tuple[float, dict[str, float]]] = []
    try:
        server.start()
        # The long-lived namespaces exist before the load: an assemble on a namespace that was
        # never written is a 404 by design, not a failure of the soak.
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            for namespace in NAMESPACES:
                http.post(f"/v1/namespaces/{namespace}/documents", json={
                    "documents": [{"id": "seed", "text": "The soak starts here."}]},
                ).raise_for_status()
        workload = Workload(server.url, tally, seed)
        threads = workload.threads()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while (elapsed := time.monotonic() - started) < duration:
            samples.append((elapsed, proc_sample(server.pid)))
            time.sleep(1.0)
        workload.stop.set()
        for thread in threads:
            thread.join(120)
        alive = server.process is not None and server.process.poll() is None
        checks = verify(server.url, tally) if alive else {}
        exit_code = server.stop() if alive else None
    finally:
        server.kill()
        if temp is not None:
            temp.cleanup()
    settled = [s for t, s in samples if t >= duration * warmup]
    requests = sum(tally.statuses.values())
    report: dict[str, Any] = {
        "duration_s": duration, "warmup_share": warmup, "requests": requests,
        "requests_per_s": round(requests / duration, 1),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "server_errors": sum(v for k, v in tally.statuses.items() if k >= 500),
        "alive_at_end": alive, "clean_exit": exit_code in (0, -15),
        "errors": tally.transport_errors[:20], **checks,
        **(flatness(settled) if settled else {}),
        "samples": [{"t": round(t, 1), **s} for t, s in samples],
    }
    report["ok"] = bool(
        report["server_errors"] == 0 and alive and report["clean_exit"]
        and not tally.transport_errors and checks.get("lost") == 0
        and checks.get("resurrected") == 0 and checks.get("duplicated") == 0
        and report.get("rss_flat") and report.get("threads_flat")
        and report.get("open_files_flat"))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds under load")
    parser.add_argument("--warmup", type=float, default=0.3,
                        help="share of the run before resources must be flat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    report = run(args.duration, args.warmup, args.seed)
    print("| figure | value |\n| --- | --- |")
    for name, value in report.items():
        if name != "samples":
            print(f"| {name} | {value} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
