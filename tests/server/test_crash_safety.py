"""Crash safety kept and proven: a real server under concurrent writes is killed with SIGKILL
at random points and restarted; after every kill no acknowledged write is lost, nothing
deleted comes back, no write is half there, a retried append is stored once, the vector
snapshot agrees with SQLite, every database passes its integrity check and no temp file is
left (the short run of benchmarks/crash_test.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from crash_test import run  # noqa: E402

pytestmark = pytest.mark.server


def test_kills_under_load_lose_nothing_acknowledged(tmp_path: Path) -> None:
    report = run(kills=4, seed=11, data_dir=tmp_path / "data", max_load_s=1.5, verbose=False)
    assert report["failures"] == {} and report["total_failures"] == 0, report
    assert report["acknowledged_writes"] > 0 and report["facts_checked"] > report["kills"]
