"""`eval conversations` end to end on the small hand-written conversation."""

from __future__ import annotations

from pathlib import Path

from contextd.cli import main
from contextd.eval.conversations import last_turns_baseline, run_conversations
from contextd.eval.locomo import load_locomo, replay_turns

SMALL = Path(__file__).parents[1] / "data" / "conversation_small.json"


def test_last_turns_baseline_keeps_the_newest_that_fit() -> None:
    messages = replay_turns(load_locomo(SMALL)[0])
    kept = last_turns_baseline(messages, 120)
    assert kept and kept[-1] is messages[-1]
    assert kept == messages[len(messages) - len(kept):]
    assert len(last_turns_baseline(messages, 10_000)) == len(messages)


def test_memory_beats_the_sliding_window_at_small_budgets(engine) -> None:
    report = run_conversations(engine, SMALL, [150, 300])
    assert report["conversations"] == 1 and report["skipped_questions"] >= 1
    for budget in ("150", "300"):
        r = report["budgets"][budget]
        assert r["questions"] == report["questions"] > 0
        assert r["evidence_recall"] > r["last_turns_baseline"]["evidence_recall"]
        assert r["tokens_mean"] <= int(budget)
    assert report["overall"]["full_history"]["evidence_recall"] == 1.0
    assert report["full_history_tokens"]["mean"] > 300


def test_cli_writes_the_report(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CONTEXTD_EMBEDDER", "hash")
    out = tmp_path / "r.json"
    code = main(["eval", "conversations", str(SMALL), "--budgets", "200", "--out", str(out),
                 "--quiet", "--data-dir", str(tmp_path / "d")])
    assert code == 0 and out.exists()
    assert "| 200 |" in capsys.readouterr().out
