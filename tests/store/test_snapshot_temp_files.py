"""A kill during a snapshot save leaks its temp file forever (defect): opening the namespace
removes temp files no process is writing (checked under the snapshot lock every save holds),
and never one a live save is writing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from contextd import Engine
from contextd.store.namespace import SNAPSHOT_TEMP_GLOB, snapshot_lock

# Killed by SIGKILL between writing its temp file and renaming it over the snapshot.
KILLED_SAVE = """
import os, signal, sys
from contextd import Engine, Settings
from contextd.embedding import HashEmbedder
engine = Engine(sys.argv[1], Settings(embedder="hash", batch_wait_ms=0), embedder=HashEmbedder())
engine.upsert_documents([{"id": "a", "text": "Alpha beta gamma."}])
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
engine.registry.get("default").save_snapshot()
"""

# Holds the snapshot lock with a temp file of its own, as a save in progress does.
LIVE_SAVE = """
import sys
from pathlib import Path
from contextd.store.namespace import snapshot_lock
folder = Path(sys.argv[1])
with snapshot_lock(folder):
    temp = folder / ".vectors.faiss.999999.1.tmp"
    temp.write_bytes(b"half a snapshot")
    print("writing", flush=True)
    sys.stdin.readline()
    temp.unlink()
"""


def temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(SNAPSHOT_TEMP_GLOB))


def run(script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, text=True,
                            **kwargs)  # type: ignore[call-overload]


def test_kill_during_snapshot_save_leaks_no_temp_file(make_engine: Callable[..., Engine],
                                                      tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = run(KILLED_SAVE, str(data))
    assert proc.wait(60) == -9
    folder = data / "namespaces" / "default"
    assert len(temps(folder)) == 1  # what the kill left behind
    engine = make_engine(data)
    assert engine.get_document("a").chunks == 1
    assert temps(folder) == []


def test_a_temp_file_being_written_is_not_removed(make_engine: Callable[..., Engine],
                                                  tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_engine(data).upsert_documents([{"id": "a", "text": "Alpha beta gamma."}])
    folder = data / "namespaces" / "default"
    writer = run(LIVE_SAVE, str(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert writer.stdout.readline().strip() == "writing"
    opened: list[object] = []
    opener = threading.Thread(target=lambda: opened.append(
        make_engine(data).registry.get("default")))  # waits for the lock the writer holds
    opener.start()
    assert len(temps(folder)) == 1  # still there: its writer is alive and holds the lock
    writer.stdin.write("done\n")
    writer.stdin.flush()
    assert writer.wait(30) == 0
    opener.join(30)
    assert opened and temps(folder) == []
    with snapshot_lock(folder):  # the lock is free again
        pass
