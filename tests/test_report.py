"""The usage log and `contextd report`: one parseable line per assemble, no text unless
configured, rotation by size with rotated files read back, and report sums that match the
responses the engine returned."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd import Engine
from contextd.cli import main
from contextd.jsonl_log import JsonlLog, log_files, read_records
from contextd.models import AssembleResponse
from contextd.report import parse_since
from contextd.telemetry import SECTIONS

DOCS = [{"id": f"d{i}", "text": f"Refunds are issued within {i + 3} days. " * 15}
        for i in range(6)]


@pytest.fixture(autouse=True)
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONTEXTD_DATA_DIR", "CONTEXTD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONTEXTD_EMBEDDER", "hash")


def traffic(engine: Engine) -> list[AssembleResponse]:
    engine.upsert_documents(DOCS)
    engine.append_messages("s1", [{"role": "user" if n % 2 else "assistant",
                                   "content": f"turn {n} about refunds and returns " * 6}
                                  for n in range(12)])
    out = []
    for n in range(4):
        out.append(engine.assemble(query=f"refund days {n}", max_tokens=300 + 100 * n,
                                   session_id="s1", query_type="qa"))
    for _ in range(3):
        out.append(engine.assemble(query="how long do refunds take", max_tokens=600,
                                   top_k=4, query_type="billing_dispute"))
    out.append(engine.assemble(query="returns", max_tokens=200, namespace="default"))
    return out


def report(capsys: pytest.CaptureFixture[str], data: Path, *flags: str) -> dict:
    assert main(["report", "--data-dir", str(data), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_assemble_leaves_one_line_without_text(make_engine: Callable[..., Engine],
                                                    tmp_path: Path) -> None:
    data = tmp_path / "data"
    responses = traffic(make_engine(data))
    path = data / "usage.jsonl"
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(responses)
    for record, response in zip(records, responses, strict=True):
        assert record["tokens"]["total"] == response.usage.total
        assert record["budget"] == response.usage.budget
        assert record["timings_ms"] == response.timings_ms
        assert record["namespace"] == "default" and record["profile"] == "default"
        assert record["request_id"] is None  # in process: no HTTP request id
        assert record["cache"] == {"hit": response.cache.hit,
                                   "similarity": response.cache.similarity,
                                   "age_s": response.cache.age_s}
        assert "query" not in record
    assert records[0]["query_type"] == "qa" and records[-1]["query_type"] is None
    assert records[0]["history_available_tokens"] > 0
    assert "refund" not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_text_only_when_configured(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data", usage_log_text=True)
    engine.assemble(query="where is my parcel", max_tokens=100)
    (record,) = read_records(tmp_path / "data" / "usage.jsonl")
    assert record["query"] == "where is my parcel"


def test_usage_log_off(make_engine: Callable[..., Engine], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(tmp_path / "data", usage_log=None)
    engine.assemble(query="q", max_tokens=100)
    assert not list((tmp_path / "data").glob("usage*"))
    assert main(["report", "--data-dir", str(tmp_path / "data")]) == 0  # default path: empty
    assert "no requests" in capsys.readouterr().err


def test_report_sums_match_the_responses(make_engine: Callable[..., Engine], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    # Small files: the log rotates several times and the report must read every file.
    responses = traffic(make_engine(data, usage_log_max_bytes=1024, usage_log_backups=50))
    assert len(log_files(data / "usage.jsonl")) > 2
    every = report(capsys, data)
    assert every["requests"] == len(responses)
    group = every["groups"]["all"]
    for section in (*SECTIONS, "total"):
        assert group["tokens"][section]["sum"] == sum(getattr(r.usage, section)
                                                      for r in responses), section
    assert group["tokens"]["total"]["p95"] == max(r.usage.total for r in responses)
    saved_docs = sum(max(0, r.usage.documents_available - r.usage.documents)
                     for r in responses)
    saved_history = sum(max(0, r.usage.history_available - r.usage.summary - r.usage.history
                            - r.usage.recalled) for r in responses)
    assert saved_docs > 0 and group["saved_vs_documents"]["tokens"] == saved_docs
    assert saved_history > 0 and group["saved_vs_history"]["tokens"] == saved_history

    by_type = report(capsys, data, "--by", "query_type")["groups"]
    assert {k: v["requests"] for k, v in by_type.items()} == {
        "qa": 4, "billing_dispute": 3, "none": 1}
    assert by_type["qa"]["tokens"]["documents"]["sum"] == sum(
        r.usage.documents for r in responses[:4])

    assert main(["report", "--data-dir", str(data), "--by", "namespace"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| namespace | requests |") and table[2].startswith(
        f"| default | {len(responses)} |")


def test_since_leaves_out_older_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      make_engine: Callable[..., Engine]) -> None:
    data = tmp_path / "data"
    old = {"time": "2020-01-01T00:00:00.000Z", "tokens": {"total": 999}, "budget": 1000}
    JsonlLog(data / "usage.jsonl", 1 << 20, 1).write(old)
    make_engine(data).assemble(query="q", max_tokens=100)
    assert report(capsys, data)["requests"] == 2
    assert report(capsys, data, "--since", "24h")["requests"] == 1
    assert report(capsys, data, "--since", "2019-12-31")["requests"] == 2
    assert main(["report", "--data-dir", str(data), "--since", "yesterday"]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err


def test_parse_since() -> None:
    assert parse_since("30m", now=7200.0) == 5400.0
    assert parse_since("1970-01-01T01:00:00Z") == 3600.0
    assert parse_since("1970-01-01T01:00:00") == 3600.0


def test_report_failures_lists_the_failure_log(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    log = JsonlLog(data / "failures.jsonl", 1 << 20, 1)
    log.write({"time": "2026-12-01T10:00:00.000Z", "request_id": "r-1", "status": 500,
               "type": "internal", "exception": "RuntimeError"})
    log.write({"time": "2026-12-01T11:00:00.000Z", "request_id": "r-2", "status": 503,
               "type": "unavailable"})
    rows = report(capsys, data, "--failures")
    assert [r["request_id"] for r in rows] == ["r-2", "r-1"]
    assert main(["report", "--data-dir", str(data), "--failures"]) == 0
    table = capsys.readouterr().out
    assert "| r-1 | 500 | internal | RuntimeError |" in table


def test_rotation_keeps_the_backups_it_is_told(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "u.jsonl", max_bytes=300, backups=2)
    for n in range(40):
        log.write({"n": n, "pad": "x" * 40})
    files = log_files(tmp_path / "u.jsonl")
    assert [f.name for f in files] == ["u.jsonl.2", "u.jsonl.1", "u.jsonl"]
    numbers = [r["n"] for r in read_records(tmp_path / "u.jsonl")]
    assert numbers == list(range(numbers[0], 40))  # oldest first, nothing out of order
    assert all(f.stat().st_size <= 300 for f in files)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_a_writer_follows_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    first, second = JsonlLog(path, 400, 5), JsonlLog(path, 400, 5)
    first.write({"n": 0})
    second.write({"n": 1})
    first.write({"n": 2, "pad": "x" * 370})  # past 400 bytes with the others: rotates
    assert [r["n"] for r in read_records(path.with_name("u.jsonl.1"))] == [0, 1]
    second.write({"n": 3})  # to the file now at the path, not the one renamed under it
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [2, 3]
