"""A replica killed with SIGKILL in the middle of writing loses no acknowledged write and
leaves no half-written document: PostgreSQL commits durably before contextd answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from contextd import Engine, Settings
from contextd.embedding import HashEmbedder

WRITER = textwrap.dedent("""
    import sys
    from contextd import Engine, Settings
    from contextd.embedding import HashEmbedder

    engine = Engine(sys.argv[2], Settings(embedder="hash", store=sys.argv[1],
                                          batch_wait_ms=0, chunk_tokens=16,
                                          chunk_overlap_tokens=0), embedder=HashEmbedder())
    for i in range(100_000):
        text = " ".join(f"Sentence {j} of document {i} about olives." for j in range(12))
        engine.upsert_documents([{"id": f"doc-{i}", "text": text}])
        engine.append_messages("log", [{"role": "user", "content": f"stored doc-{i}"}])
        print(f"doc-{i}", flush=True)  # acknowledged: both calls returned
""")


def test_sigkill_mid_write_loses_no_acknowledged_write(postgres_url: str, tmp_path: Path
                                                       ) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, postgres_url, str(tmp_path / "w")],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline().strip() for _ in range(25)]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert acknowledged[-1] == "doc-24"

    with Engine(tmp_path / "r", Settings(embedder="hash", store=postgres_url, batch_wait_ms=0),
                embedder=HashEmbedder()) as reader:
        stored = {ns.name: ns for ns in reader.namespaces()}["default"]
        assert stored.documents >= 25
        for doc_id in acknowledged:
            assert reader.get_document(doc_id).chunks > 1
        # Every document there, acknowledged or not, came whole: its chunks all made it.
        chunks = {reader.get_document(f"doc-{i}").chunks for i in range(stored.documents)}
        assert len(chunks) == 1
        turns = [t.content for t in reader.get_session("log").turns]
        assert turns[:25] == [f"stored {d}" for d in acknowledged]
