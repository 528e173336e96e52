"""The ONNX export: once per machine in the user cache directory, announced, written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from contextd import embedding
from contextd.engine import default_embedder
from contextd.settings import Settings


def test_engine_exports_into_the_user_cache_not_the_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for data_dir in (tmp_path / "a", tmp_path / "b"):
        embedder = default_embedder(Settings(data_dir=data_dir))
        assert embedder._cache_dir == tmp_path / "cache" / "contextd"  # type: ignore[attr-defined]


def test_export_is_announced_once_and_leaves_no_temp_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}", encoding="utf-8")
    exports: list[Path] = []

    def fake_export(model_path: Path, out: Path) -> None:
        exports.append(out)
        out.write_bytes(b"onnx graph")

    monkeypatch.setattr(embedding, "_export_fp32", fake_export)
    models = tmp_path / "models"
    with caplog.at_level(logging.INFO, logger="contextd.embedding"):
        first = embedding.ensure_onnx_model(weights, models, quantize=False)
        second = embedding.ensure_onnx_model(weights, models, quantize=False)
    assert first == second and first.read_bytes() == b"onnx graph"
    assert len(exports) == 1 and exports[0].parent != models  # written in a temp dir first
    assert [p.name for p in models.iterdir()] == [first.name]
    status = [r.getMessage() for r in caplog.records if "preparing" in r.getMessage()]
    assert len(status) == 1
    assert status[0].startswith("preparing the embedding model, once per machine, ~10 s")
