"""Embedders: the hashing fake (fast) and the bundled model on both backends (marked `model`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from contextd import embedding
from contextd.embedding import HashEmbedder, SentenceTransformerEmbedder
from contextd.protocols import Embedder

# --------------------------------------------------------------------------- HashEmbedder


def test_hash_embedder_satisfies_protocol() -> None:
    emb = HashEmbedder()
    assert isinstance(emb, Embedder)
    assert emb.dim == 384
    assert emb.model_id == "hash-384-v1"
    assert HashEmbedder(dim=64).model_id == "hash-64-v1"


def test_hash_embedder_is_deterministic_across_instances() -> None:
    texts = ["FAISS searches dense vectors", "SQLite FTS5 ranks with BM25"]
    first = HashEmbedder().embed(texts)
    second = HashEmbedder().embed(list(reversed(texts)))[::-1]
    np.testing.assert_array_equal(first, second)


def test_hash_embedder_rows_are_unit_float32() -> None:
    vecs = HashEmbedder(dim=128).embed(["one", "two words", "a much longer piece of text " * 20])
    assert vecs.shape == (3, 128)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_hash_embedder_shared_words_score_higher() -> None:
    query, near, far = HashEmbedder().embed(
        [
            "how do solar panels convert sunlight",
            "solar panels convert sunlight into electricity",
            "the recipe needs two eggs and flour",
        ]
    )
    assert float(query @ near) > float(query @ far) + 0.3


def test_hash_embedder_stems_plurals_and_tenses() -> None:
    base, inflected, other = HashEmbedder().embed(
        ["the cat jumps", "the cats jumped", "the dog barks"]
    )
    assert float(base @ inflected) > 0.8
    assert float(base @ inflected) > float(base @ other)


def test_hash_embedder_empty_text_is_a_fixed_unit_vector() -> None:
    vecs = HashEmbedder().embed(["", "   ", "!!!"])
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0)
    np.testing.assert_array_equal(vecs[0], vecs[1])


def test_hash_embedder_empty_batch() -> None:
    assert HashEmbedder(dim=32).embed([]).shape == (0, 32)


def test_hash_embedder_rejects_tiny_dim() -> None:
    with pytest.raises(ValueError, match="dim"):
        HashEmbedder(dim=2)


def test_sentence_embedder_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        SentenceTransformerEmbedder(backend="tensorrt")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real model

SENTENCES = [
    "A cat is sleeping on the sofa.",
    "The kitten naps on the couch.",
    "Interest rates rose sharply this quarter.",
    "Vitamin D deficiency is associated with bone loss in older adults.",
    "Low vitamin D levels are linked to osteoporosis in the elderly.",
]


@pytest.fixture(scope="session")
def torch_embedder() -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder(backend="torch")
    emb.warm_up()
    return emb


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache: Path) -> SentenceTransformerEmbedder:
    # The export needs the optional `onnx` package; loading needs onnxruntime.
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    # One export per test session; the later tests reuse the cached file.
    emb = SentenceTransformerEmbedder(backend="onnx", cache_dir=onnx_cache)
    emb.warm_up()
    return emb


@pytest.mark.model
def test_torch_embedder_gives_unit_384d_vectors(torch_embedder) -> None:
    vecs = torch_embedder.embed(SENTENCES)
    assert vecs.shape == (len(SENTENCES), 384)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert torch_embedder.embed([]).shape == (0, 384)


@pytest.mark.model
@pytest.mark.parametrize("which", ["torch_embedder", "onnx_embedder"])
def test_paraphrases_are_closer_than_unrelated(which, request) -> None:
    vecs = request.getfixturevalue(which).embed(SENTENCES)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert sims[3, 4] > sims[3, 0] + 0.3
    assert sims[3, 4] > sims[3, 2] + 0.3


@pytest.mark.model
def test_onnx_backend_agrees_with_torch(torch_embedder, onnx_embedder) -> None:
    assert onnx_embedder.backend == "onnx-int8"
    reference = torch_embedder.embed(SENTENCES)
    fast = onnx_embedder.embed(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert (np.sum(reference * fast, axis=1) > 0.98).all()


@pytest.mark.model
def test_batching_barely_moves_int8_vectors(onnx_embedder) -> None:
    # Dynamic int8 scales activations per batch, so vectors move slightly with batch-mates.
    together = onnx_embedder.embed(SENTENCES)
    one_by_one = np.vstack([onnx_embedder.embed([s]) for s in SENTENCES])
    assert (np.sum(together * one_by_one, axis=1) > 0.99).all()


@pytest.mark.model
def test_int8_keeps_the_feed_forward_down_projections_fp32(onnx_cache, onnx_embedder) -> None:
    import onnx

    model = onnx.load(str(embedding.ensure_onnx_model(embedding.bundled_model_path(),
                                                      onnx_cache)))
    fp32 = sorted(n.name for n in model.graph.node if n.op_type == "MatMul"
                  and any(i.endswith("weight") or "onnx::MatMul" in i for i in n.input))
    integer = [n.name for n in model.graph.node if n.op_type == "MatMulInteger"]
    # One down-projection a layer stays fp32; every other weight product is int8.
    assert fp32 == sorted(f"/encoder/encoder/layer.{i}/output/dense/MatMul" for i in range(6))
    assert len(integer) == 6 * 5 and not any("/output/dense/" in n and "attention" not in n
                                             for n in integer)


@pytest.mark.model
def test_torch_vectors_do_not_depend_on_batch(torch_embedder) -> None:
    together = torch_embedder.embed(SENTENCES)
    one_by_one = np.vstack([torch_embedder.embed([s]) for s in SENTENCES])
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


@pytest.mark.model
def test_model_id_differs_per_backend(torch_embedder, onnx_embedder) -> None:
    assert torch_embedder.model_id != onnx_embedder.model_id
    assert "all-MiniLM-L6-v2" in torch_embedder.model_id
    assert "fp32" in torch_embedder.model_id and "int8" in onnx_embedder.model_id


@pytest.mark.model
def test_export_is_cached_and_leaves_no_temp_files(onnx_cache, onnx_embedder) -> None:
    models = onnx_cache
    files = sorted(p.name for p in models.iterdir())
    int8 = [name for name in files if name.endswith(f"-{embedding.INT8_KIND}.onnx")]
    assert len(int8) == 1 and all(name.endswith(".onnx") for name in files)
    again = embedding.ensure_onnx_model(embedding.bundled_model_path(), models)
    assert again.name == int8[0]
    assert sorted(p.name for p in models.iterdir()) == files


@pytest.mark.model
def test_onnx_falls_back_to_torch_when_export_fails(tmp_path, monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("exporter missing")

    monkeypatch.setattr(embedding, "ensure_onnx_model", broken)
    emb = SentenceTransformerEmbedder(backend="onnx", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="contextd.embedding"):
        assert emb.backend == "torch-fp32"
    assert "exporter missing" in caplog.text
    assert emb.embed(["still works"]).shape == (1, 384)


def test_fp32_ids_name_the_function_and_need_no_loading(tmp_path) -> None:
    auto = SentenceTransformerEmbedder(backend="onnx-fp32", cache_dir=tmp_path,
                                       max_seq_length=128)
    torch = SentenceTransformerEmbedder(backend="torch", cache_dir=tmp_path, max_seq_length=128)
    assert auto.model_id == torch.model_id == "all-MiniLM-L6-v2/fp32/len128"
    assert list(tmp_path.iterdir()) == []
    assert auto._runner is None and torch._runner is None


@pytest.fixture(scope="session")
def auto_embedder(onnx_cache: Path) -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder(backend="onnx-fp32", cache_dir=onnx_cache)
    emb.warm_up()
    return emb


@pytest.mark.model
def test_onnx_fp32_gives_the_vectors_of_torch(torch_embedder, auto_embedder) -> None:
    assert auto_embedder.backend == "onnx-fp32"
    assert auto_embedder.model_id == torch_embedder.model_id  # so they share the cache
    reference = torch_embedder.embed(SENTENCES)
    together = auto_embedder.embed(SENTENCES)
    np.testing.assert_allclose(together, reference, atol=2e-5)
    one_by_one = np.vstack([auto_embedder.embed([s]) for s in SENTENCES])
    np.testing.assert_allclose(one_by_one, reference, atol=2e-5)


@pytest.mark.model
def test_onnx_fp32_falls_back_to_torch_when_onnx_runtime_fails(tmp_path, monkeypatch,
                                                               caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no onnxruntime here")

    monkeypatch.setattr(embedding, "OnnxSentenceModel", broken)
    emb = SentenceTransformerEmbedder(backend="onnx-fp32", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="contextd.embedding"):
        assert emb.backend == "torch-fp32"
    assert "no onnxruntime here" in caplog.text
    assert emb.model_id == "all-MiniLM-L6-v2/fp32/len256"


@pytest.mark.model
def test_bf16_vectors_are_interchangeable_with_fp32(torch_embedder) -> None:
    bf16 = SentenceTransformerEmbedder(backend="torch-bf16")
    assert bf16.backend == "torch-bf16"
    assert bf16.model_id == "all-MiniLM-L6-v2/bf16/len256"  # its own cache key, same family
    reference = torch_embedder.embed(SENTENCES)
    vectors = bf16.embed(SENTENCES)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (np.sum(reference * vectors, axis=1) > 0.999).all()


@pytest.mark.model
def test_texts_of_mixed_lengths_embed_in_one_call_as_they_do_alone() -> None:
    # The default runtime (ONNX fp32) cuts a list into batches of similar lengths; each row is
    # what it is alone. (int8's activation scales depend on the batch, so not there.)
    embedder = SentenceTransformerEmbedder(backend="onnx-fp32")
    texts = [" ".join(["word"] * n) + f" {n}" for n in (3, 40, 5, 90, 12, 41, 7, 200)]
    together = embedder.embed(texts)
    assert embedder.backend == "onnx-fp32"
    alone = np.vstack([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.model
def test_embed_each_hands_out_the_vectors_of_embed_batch_by_batch() -> None:
    embedder = SentenceTransformerEmbedder(backend="onnx-fp32")
    texts = [" ".join(["word"] * n) + f" {n}" for n in (3, 40, 5, 90, 12, 41, 7, 200)]
    delivered: list[tuple[list[int], np.ndarray]] = []
    embedder.embed_each(texts, lambda rows, vectors: delivered.append((list(rows), vectors)))
    assert len(delivered) > 1  # lengths this far apart are not padded into one batch
    rows = [r for group, _ in delivered for r in group]
    assert sorted(rows) == list(range(len(texts)))
    got = np.empty((len(texts), embedder.dim), np.float32)
    for group, vectors in delivered:
        got[group] = vectors
    np.testing.assert_array_equal(got, embedder.embed(texts))


@pytest.mark.model
@pytest.mark.parametrize(("int8_ms", "fp32_ms", "serves"), [
    (4.0, 6.0, "onnx-int8"), (7.0, 6.0, "onnx-fp32")])
def test_where_int8_may_serve_the_faster_of_int8_and_fp32_serves(
        onnx_cache, onnx_embedder, auto_embedder, monkeypatch, int8_ms, fp32_ms, serves) -> None:
    # As on a CPU with VNNI: the flags allow int8, and both runtimes are timed at start.
    monkeypatch.setattr(embedding, "choose_runtime", lambda: "onnx-int8")
    timed: list[str] = []

    def fake_ms(model) -> float:  # type: ignore[no-untyped-def]
        kind = "int8" if embedding.INT8_KIND in model_name(model) else "fp32"
        timed.append(kind)
        return int8_ms if kind == "int8" else fp32_ms

    monkeypatch.setattr(embedding, "query_ms", fake_ms)
    emb = SentenceTransformerEmbedder(backend="auto", cache_dir=onnx_cache)
    emb.warm_up()
    assert timed == ["int8", "fp32", "int8", "fp32"]  # side by side, alternating
    assert emb.backend == serves and emb.start_timings == {"onnx-int8": int8_ms,
                                                            "onnx-fp32": fp32_ms}
    reference = (onnx_embedder if serves == "onnx-int8" else auto_embedder)
    assert emb.model_id == reference.model_id
    np.testing.assert_allclose(emb.embed(SENTENCES), reference.embed(SENTENCES), atol=1e-5)


@pytest.mark.model
def test_a_runtime_named_in_the_settings_is_not_timed(onnx_cache, onnx_embedder,
                                                      monkeypatch) -> None:
    monkeypatch.setattr(embedding, "query_ms", lambda model: pytest.fail("timed"))
    emb = SentenceTransformerEmbedder(backend="onnx-int8", cache_dir=onnx_cache)
    emb.warm_up()
    assert emb.backend == "onnx-int8" and emb.start_timings is None


@pytest.mark.model
def test_query_timing_measures_one_query_at_a_time(auto_embedder) -> None:
    assert auto_embedder._onnx is not None
    ms = embedding.query_ms(auto_embedder._onnx, rounds=1)
    assert 0 < ms < 10_000


def model_name(model) -> str:  # type: ignore[no-untyped-def]
    return str(model.path)


@pytest.mark.model
def test_a_sibling_on_the_same_runtime_shares_the_loaded_model() -> None:
    queries = SentenceTransformerEmbedder(backend="onnx-fp32")
    same = queries.with_runtime("onnx-fp32")
    other = queries.with_runtime("torch-fp32")
    same.warm_up()
    assert same._onnx is queries._onnx and same.backend == "onnx-fp32"
    assert np.allclose(same.embed(["tidal power"]), queries.embed(["tidal power"]))
    assert other.runtime == "torch-fp32" and other.model_id == queries.model_id


@pytest.mark.model
@pytest.mark.parametrize("faster", ["torch-bf16", "onnx-fp32"])
def test_a_document_runtime_timed_against_a_rival_serves_the_faster(faster,
                                                                    monkeypatch) -> None:
    times = {"torch-bf16": 50.0, "onnx-fp32": 80.0}
    if faster == "onnx-fp32":
        times = {"torch-bf16": 90.0, "onnx-fp32": 60.0}
    monkeypatch.setattr(embedding, "document_batch_ms", lambda e: times[e.runtime])
    queries = SentenceTransformerEmbedder(backend="onnx-fp32")
    documents = queries.with_runtime("torch-bf16", timed_against="onnx-fp32")
    assert documents.runtime == "torch-bf16" and documents._runner is None
    # The model id (the embedding cache's key) is the winner's: asking for it times them.
    assert documents.model_id == f"all-MiniLM-L6-v2/{faster.rsplit('-', 1)[1]}/len256"
    assert documents.runtime == faster and documents.start_timings == times
    if faster == "onnx-fp32":  # the rival on the query runtime is the query model itself
        assert documents._onnx is queries._onnx
    vectors = documents.embed(["tidal power", "glacier retreat"])
    assert (np.sum(queries.embed(["tidal power", "glacier retreat"]) * vectors, axis=1)
            > 0.999).all()


@pytest.mark.model
def test_document_batches_are_timed_on_document_length_text() -> None:
    from contextd.embedding import TIMING_DOCUMENTS, document_batch_ms

    embedder = SentenceTransformerEmbedder(backend="onnx-fp32")
    assert document_batch_ms(embedder) > 0
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(embedding.bundled_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    lengths = [len(tokenizer.encode(t).ids) for t in TIMING_DOCUMENTS]
    assert min(lengths) >= 150 and max(lengths) < 256  # a chunk's length, within the window


@pytest.mark.model
def test_a_document_runtime_that_fails_to_load_leaves_its_rival_serving(monkeypatch) -> None:
    def broken(self, model_path, bf16=False):
        raise RuntimeError("no PyTorch here")

    monkeypatch.setattr(SentenceTransformerEmbedder, "_load_torch", broken)
    queries = SentenceTransformerEmbedder(backend="onnx-fp32")
    documents = queries.with_runtime("torch-bf16", timed_against="onnx-fp32")
    assert documents.model_id == "all-MiniLM-L6-v2/fp32/len256"
    assert documents.runtime == "onnx-fp32"
    assert documents.embed(["tidal power"]).shape == (1, 384)
