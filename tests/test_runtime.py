"""The embedding runtime is chosen from the CPU's flags, among runtimes measured close to fp32."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from contextd import runtime
from contextd.embedding import SentenceTransformerEmbedder
from contextd.runtime import allowed, choose_runtime, cpu_flags, explain

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"}, "onnx-int8"),
    ({"avx2", "avx_vnni"}, "onnx-int8"),
    ({"avx2", "avx512_bf16"}, "onnx-fp32"),  # bf16 is allowed but slower per query
    ({"avx2", "fma"}, "onnx-fp32"),
    (set(), "onnx-fp32"),
])
def test_the_cpu_flags_pick_the_runtime_among_allowed_ones(flags, expected, monkeypatch) -> None:
    monkeypatch.setitem(runtime.MEASURED_NDCG_LOSS, "onnx-int8", 0.004)  # as if within
    assert choose_runtime(flags) == expected


def test_the_shipped_measurements_choose_int8_where_vnni_is() -> None:
    # int8 with fp32 down-projections measured 0.0033 above fp32: within the tolerance.
    assert allowed("onnx-int8") and allowed("torch-bf16")
    assert choose_runtime({"avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"}) == "onnx-int8"
    assert choose_runtime({"avx2", "fma", "avx512f"}) == "onnx-fp32"


def test_a_runtime_measured_outside_the_tolerance_is_never_chosen(monkeypatch) -> None:
    monkeypatch.setitem(runtime.MEASURED_NDCG_LOSS, "onnx-int8", runtime.TOLERANCE + 0.001)
    assert not allowed("onnx-int8")
    assert choose_runtime({"avx512_vnni"}) == "onnx-fp32"
    monkeypatch.setitem(runtime.MEASURED_NDCG_LOSS, "onnx-int8", runtime.TOLERANCE)
    assert choose_runtime({"avx512_vnni"}) == "onnx-int8"
    # An unmeasured runtime is not allowed either.
    monkeypatch.delitem(runtime.MEASURED_NDCG_LOSS, "onnx-int8")
    assert choose_runtime({"avx512_vnni"}) == "onnx-fp32"


def test_every_preferred_runtime_was_measured_within_the_tolerance() -> None:
    for name in runtime.PREFERENCE:
        assert name in runtime.MEASURED_NDCG_LOSS, name
    assert runtime.MEASURED_NDCG_LOSS["onnx-fp32"] == 0.0


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_vnni\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_takes_this_machines_choice_and_logs_why(tmp_path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="contextd.embedding"):
        emb = SentenceTransformerEmbedder(cache_dir=tmp_path)
    assert emb.requested == emb.runtime == choose_runtime()
    assert explain(emb.requested) in caplog.text
    assert emb._runner is None  # chosen without loading anything


def test_a_setting_overrides_the_choice(tmp_path) -> None:
    for name in ("onnx-fp32", "onnx-int8", "torch-fp32", "torch-bf16"):
        assert SentenceTransformerEmbedder(backend=name, cache_dir=tmp_path).runtime == name
    assert SentenceTransformerEmbedder(backend="torch", cache_dir=tmp_path).runtime == "torch-fp32"


def test_readyz_and_namespaces_name_the_runtime(make_engine) -> None:
    engine = make_engine()
    engine.upsert_documents([{"id": "a", "text": "Alpha."}])
    assert [n.embedder_runtime for n in engine.namespaces()] == ["hash"]
    assert [n.document_runtime for n in engine.namespaces()] == ["hash"]


@pytest.mark.model
def test_importing_contextd_and_serving_on_onnx_does_not_import_torch(tmp_path) -> None:
    # The export (once per machine) needs torch: do it in this process first.
    SentenceTransformerEmbedder(backend="onnx-int8", cache_dir=tmp_path).warm_up()
    code = ("import sys; from contextd import Engine, Settings\n"
            f"e = Engine({str(tmp_path / 'd')!r}, Settings(embedder='onnx-int8'))\n"
            f"e.embedder._cache_dir = __import__('pathlib').Path({str(tmp_path)!r})\n"
            "e.warm_up(); e.upsert_documents([{'id': 'a', 'text': 'Alpha beta.'}])\n"
            "print(e.search('alpha').hits[0].id, e.embedder.backend, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT),
                                                    "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"})
    assert out.stdout.split() == ["a", "onnx-int8", "False"]


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile"}, ("torch-bf16",)),
    # bf16 dot products alone: faster or not depends on the vector unit, so timed
    ({"avx512_vnni", "avx512_bf16"}, ("torch-bf16", "onnx-fp32")),
    ({"avx2"}, ("onnx-fp32",)),  # int8 documents measured outside the tolerance
])
def test_documents_go_to_bf16_on_amx_and_are_timed_where_bf16_is_dot_products_alone(
        flags, expected) -> None:
    assert runtime.document_runtimes(flags, "onnx-int8") == expected
    assert runtime.document_runtimes(flags - {"amx_bf16", "avx512_bf16"},
                                     "onnx-fp32") == ("onnx-fp32",)


def test_int8_documents_serve_if_measured_within_the_tolerance(monkeypatch) -> None:
    monkeypatch.setitem(runtime.PAIR_NDCG_LOSS, ("onnx-int8", "onnx-int8"), 0.001)
    assert runtime.document_runtimes({"avx512_vnni"}, "onnx-int8") == ("onnx-int8",)


def test_documents_stay_on_the_query_runtime_when_bf16_is_outside_the_tolerance(
        monkeypatch) -> None:
    monkeypatch.setitem(runtime.MEASURED_NDCG_LOSS, "torch-bf16", runtime.TOLERANCE + 0.001)
    assert runtime.document_runtimes({"amx_bf16"}, "onnx-fp32") == ("onnx-fp32",)
    assert runtime.document_runtimes({"avx512_bf16"}, "onnx-fp32") == ("onnx-fp32",)


@pytest.mark.parametrize(("flags", "settings", "expected"), [
    ({"amx_bf16", "avx512_vnni"}, {}, "torch-bf16"),
    ({"avx512_bf16", "avx512_vnni"}, {}, "torch-bf16 or onnx-fp32"),  # timed at first use
    ({"avx512_vnni"}, {}, "onnx-fp32"),  # int8 queries, fp32 documents
    ({"avx2"}, {}, "same"),  # fp32 for both
    ({"amx_bf16", "avx512_vnni"}, {"document_embedder": "same"}, "same"),
    ({"amx_bf16", "avx512_vnni"}, {"embedder": "onnx-fp32"}, "same"),  # queries named one
    ({"avx2"}, {"document_embedder": "torch-fp32"}, "torch-fp32"),
])
def test_the_engine_picks_the_document_embedder(flags, settings, expected, monkeypatch,
                                                tmp_path) -> None:
    from contextd import Engine, Settings

    monkeypatch.setattr(runtime, "cpu_flags", lambda cpuinfo=None: frozenset(flags))
    with Engine(tmp_path, Settings(**settings)) as engine:
        documents = engine.document_embedder
        if expected == "same":
            assert documents is engine.embedder
        else:
            assert documents is not engine.embedder
            first, _, rival = expected.partition(" or ")
            assert documents.runtime == first and documents._rival == (rival or None)
            assert documents.dim == engine.embedder.dim
            assert documents._runner is None  # nothing loaded before the first document
