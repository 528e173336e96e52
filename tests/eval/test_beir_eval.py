"""`eval beir` end to end on the tiny BEIR-layout fixture."""

from __future__ import annotations

import json
from pathlib import Path

from contextd.cli import main
from contextd.eval.beir_runner import run_beir

TINY = Path(__file__).parents[1] / "data" / "tiny-beir"


def test_run_beir_scores_every_mode(engine, monkeypatch) -> None:
    computed: list[str] = []
    embed = engine.embedder.embed
    monkeypatch.setattr(engine.embedder, "embed", lambda texts: computed.extend(texts) or
                        embed(texts))
    reports = {}
    for mode in ("lexical", "dense", "hybrid"):
        before = len(computed)
        reports[mode] = run_beir(engine, TINY, mode=mode)
        reports[mode]["computed"] = len(computed) - before
    for report in reports.values():
        assert report["queries"] == 7
        assert 0.3 < report["metrics"]["ndcg@10"] <= 1.0
        assert report["metrics"]["recall@100"] >= report["metrics"]["recall@10"]
        assert report["ingest"]["documents"] == 16
    # Each run deletes its namespace first, and deleting a namespace purges the embeddings
    # only it contributed: every run embeds its 16 documents afresh (queries on top).
    for report in reports.values():
        assert (report["ingest"]["embedded"], report["ingest"]["cached"]) == (16, 0)
        assert report["computed"] >= 16


def test_cli_eval_beir(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CONTEXTD_EMBEDDER", "hash")
    out = tmp_path / "beir.json"
    assert main(["eval", "beir", str(TINY), "--mode", "lexical", "--out", str(out), "--quiet",
                 "--data-dir", str(tmp_path / "d")]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "lexical" and "ndcg@10" in report["metrics"]
    assert "nDCG@10" in capsys.readouterr().out
