"""Soak in the suite (the short run of benchmarks/soak.py): a real server under concurrent
upserts, deletes, appends, assembles and namespace creates/deletes; afterwards no 5xx, no
crash and a clean shutdown, every acknowledged write readable, and memory, threads and open
files flat after the warm-up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from soak import run  # noqa: E402

pytestmark = pytest.mark.server


def test_mixed_load_leaves_no_errors_leaks_or_lost_writes(tmp_path: Path) -> None:
    report = run(duration=15, warmup=0.3, seed=3, data_dir=tmp_path / "data")
    verdict = {k: v for k, v in report.items() if k != "samples"}
    assert report["ok"], verdict
    assert report["documents_checked"] > 0 and report["turns_checked"] > 0, verdict
    assert report["namespaces_deleted"] > 0, verdict
