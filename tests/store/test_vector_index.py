"""FaissVectorIndex: exact and IVF search, deletes, filters, snapshots, concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from contextd.store.protocols import VectorIndex
from contextd.store.vector_index import FaissVectorIndex, SnapshotError

DIM = 32


def clustered(n: int, seed: int, dim: int = DIM, clusters: int = 50) -> np.ndarray:
    """Normalised Gaussian-mixture vectors, closer to text embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(ids, vectors, query, k, allowed=None):
    if allowed is not None:
        mask = np.isin(ids, allowed)
        ids, vectors = ids[mask], vectors[mask]
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return scores[order], ids[order]


def filled(n=500, seed=0, **config):
    vectors = clustered(n, seed)
    ids = np.arange(n, dtype=np.int64) * 3 + 10  # sparse rowids, not positions
    index = FaissVectorIndex(DIM, **config)
    index.add(ids, vectors, seq=1)
    return index, ids, vectors


def test_satisfies_the_protocol():
    assert isinstance(FaissVectorIndex(DIM), VectorIndex)


def test_search_matches_brute_force_best_first():
    index, ids, vectors = filled()
    query = clustered(1, seed=99)[0]
    scores, found = index.search(query, k=10)
    want_scores, want_ids = brute_force(ids, vectors, query, 10)
    assert found.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert index.kind == "flat" and len(index) == 500


def test_query_of_shape_one_by_dim_is_accepted():
    index, ids, vectors = filled()
    _, flat_q = index.search(vectors[3], k=3)
    _, row_q = index.search(vectors[3:4], k=3)
    np.testing.assert_array_equal(flat_q, row_q)
    assert flat_q[0] == ids[3]


def test_k_beyond_size_returns_every_vector_without_padding():
    index, ids, _ = filled(n=7)
    scores, found = index.search(clustered(1, seed=5)[0], k=50)
    assert sorted(found.tolist()) == sorted(ids.tolist())
    assert len(scores) == 7 and (found >= 0).all()


def test_empty_index_and_empty_filter_return_nothing():
    assert len(FaissVectorIndex(DIM).search(np.ones(DIM, np.float32), k=5)[1]) == 0
    index, _, _ = filled()
    assert len(index.search(np.ones(DIM, np.float32), 5, allowed=np.array([], np.int64))[1]) == 0


def test_removed_ids_never_come_back_and_seq_advances():
    index, ids, vectors = filled()
    gone = ids[::2]
    index.remove(np.concatenate([gone, [999_999]]), seq=7)
    assert index.seq == 7 and len(index) == 250
    for query in vectors[:20]:
        _, found = index.search(query, k=500)
        assert not np.isin(found, gone).any()
        assert len(found) == 250


def test_adding_an_existing_id_replaces_it():
    index, ids, vectors = filled()
    index.add(ids[:1], vectors[100:101], seq=2)
    assert len(index) == 500 and index.seq == 2
    _, found = index.search(vectors[100], k=2)
    assert set(found.tolist()) == {ids[0], ids[100]}
    np.testing.assert_allclose(index.reconstruct(ids[:1])[0], vectors[100], rtol=1e-6)


def test_repeated_id_in_one_batch_keeps_the_last_row():
    index = FaissVectorIndex(DIM)
    rows = clustered(2, seed=3)
    index.add(np.array([5, 5]), rows, seq=1)
    assert len(index) == 1
    np.testing.assert_allclose(index.reconstruct(np.array([5]))[0], rows[1], rtol=1e-6)


def test_mismatched_ids_and_vectors_are_refused():
    with pytest.raises(ValueError, match="one id per row"):
        FaissVectorIndex(DIM).add(np.array([1, 2]), clustered(3, seed=1), seq=1)


def test_reconstruct_unknown_id_raises_key_error():
    index, _, _ = filled(n=10)
    with pytest.raises(KeyError):
        index.reconstruct(np.array([123_456]))


@pytest.mark.parametrize("approximate_above", [None, 1_000])
def test_allowed_filter_returns_exactly_the_allowed_in_order(approximate_above):
    config = {} if approximate_above is None else {"approximate_above": approximate_above}
    index, ids, vectors = filled(n=4_000, **config)
    rng = np.random.default_rng(1)
    for size in (3, 40, 2_000):
        allowed = np.concatenate([rng.choice(ids, size, replace=False), [1, 2]])  # 1, 2 absent
        query = clustered(1, seed=size)[0]
        _, found = index.search(query, k=10, allowed=allowed)
        _, want = brute_force(ids, vectors, query, 10, allowed)
        assert len(found) == min(10, size)
        assert np.isin(found, allowed).all()
        if size <= 40:  # small filters are scored exhaustively, even on IVF
            np.testing.assert_array_equal(found, want)
        else:
            assert len(np.intersect1d(found, want)) >= 9


def test_ivf_recall_against_exact_search():
    vectors = clustered(12_000, seed=2, clusters=200)
    ids = np.arange(12_000, dtype=np.int64)
    index = FaissVectorIndex(DIM, approximate_above=5_000)
    index.add(ids, vectors, seq=1)
    assert index.kind == "ivf"
    queries = clustered(100, seed=8, clusters=200)
    overlap = [
        len(np.intersect1d(index.search(q, 10)[1], brute_force(ids, vectors, q, 10)[1])) / 10
        for q in queries
    ]
    assert np.mean(overlap) >= 0.98

    gone = ids[:3_000]
    index.remove(gone, seq=2)
    assert len(index) == 9_000 and index.kind == "ivf"
    rest, rest_vectors = ids[3_000:], vectors[3_000:]
    overlap = []
    for q in queries:
        _, found = index.search(q, 10)
        assert not np.isin(found, gone).any()
        overlap.append(len(np.intersect1d(found, brute_force(rest, rest_vectors, q, 10)[1])) / 10)
    assert np.mean(overlap) >= 0.98


def test_ivf_build_raises_nprobe_until_recall_meets_the_target(tmp_path: Path):
    # Uniform directions do not cluster: the hardest case for IVF. Its cells then cut through
    # every neighbourhood, and a few scanned cells miss most true neighbours.
    rng = np.random.default_rng(5)

    def uniform(n: int) -> np.ndarray:
        x = rng.standard_normal((n, DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    vectors, ids = uniform(12_000), np.arange(12_000, dtype=np.int64) * 2
    queries = uniform(100)

    def recall(index: FaissVectorIndex) -> float:
        return float(np.mean([
            len(np.intersect1d(index.search(q, 10)[1], brute_force(ids, vectors, q, 10)[1])) / 10
            for q in queries]))

    index = FaissVectorIndex(DIM, approximate_above=5_000, nprobe=4)
    index.add(ids, vectors, seq=1)
    assert index.kind == "ivf" and index.nprobe > 4
    assert index.measured_recall is not None and index.measured_recall >= 0.98
    assert recall(index) >= 0.95  # fresh queries, not the sample it was measured on
    chosen = index.nprobe
    index.nprobe = 4
    assert recall(index) < 0.9  # what the starting value alone would have given
    index.nprobe = chosen

    index.save(tmp_path / "ns.faiss")
    loaded = FaissVectorIndex.load(tmp_path / "ns.faiss", DIM, approximate_above=5_000, nprobe=4)
    assert (loaded.nprobe, loaded.measured_recall) == (chosen, index.measured_recall)


def test_index_turns_ivf_when_it_grows_and_flat_when_it_shrinks():
    index = FaissVectorIndex(DIM, approximate_above=2_000)
    vectors = clustered(3_000, seed=4)
    for start in range(0, 3_000, 1_000):
        batch = np.arange(start, start + 1_000, dtype=np.int64)
        index.add(batch, vectors[start : start + 1_000], seq=start)
    assert index.kind == "ivf" and len(index) == 3_000
    index.add(np.arange(500, dtype=np.int64), vectors[:500], seq=5_000)  # upsert on IVF
    assert len(index) == 3_000
    np.testing.assert_allclose(index.reconstruct(np.array([2_999]))[0], vectors[2_999], rtol=1e-6)
    index.remove(np.arange(2_200, dtype=np.int64), seq=6_000)
    assert index.kind == "flat" and len(index) == 800 and index.seq == 6_000
    assert index.search(vectors[2_500], k=1)[1].tolist() == [2_500]


@pytest.mark.parametrize("approximate_above", [None, 1_000])
def test_save_and_load_keep_seq_kind_and_results(tmp_path: Path, approximate_above):
    config = {} if approximate_above is None else {"approximate_above": approximate_above}
    index, ids, vectors = filled(n=2_000, **config)
    index.remove(ids[:10], seq=42)
    path = tmp_path / "ns.faiss"
    index.save(path)
    loaded = FaissVectorIndex.load(path, DIM, **config)
    assert (loaded.seq, loaded.kind, len(loaded)) == (42, index.kind, 1_990)
    for query in clustered(5, seed=6):
        for got, want in zip(loaded.search(query, 10), index.search(query, 10), strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.reconstruct(ids[10:12]), vectors[10:12])
    loaded.remove(ids[10:20], seq=43)  # the loaded index still deletes
    assert len(loaded) == 1_980
    assert [p.name for p in tmp_path.iterdir()] == ["ns.faiss"]  # no temp file left behind


def test_missing_corrupt_or_mismatched_snapshot_raises(tmp_path: Path):
    with pytest.raises(SnapshotError, match="no snapshot"):
        FaissVectorIndex.load(tmp_path / "absent.faiss", DIM)
    index, _, _ = filled(n=50)
    path = tmp_path / "ns.faiss"
    index.save(path)
    good = path.read_bytes()
    with pytest.raises(SnapshotError, match="16-d"):
        FaissVectorIndex.load(path, 16)

    flipped = bytearray(good)
    flipped[-100] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(SnapshotError, match="checksum"):
        FaissVectorIndex.load(path, DIM)
    path.write_bytes(good[:-10])
    with pytest.raises(SnapshotError, match="truncated"):
        FaissVectorIndex.load(path, DIM)
    path.write_bytes(b"not an index at all")
    with pytest.raises(SnapshotError):
        FaissVectorIndex.load(path, DIM)
    path.write_bytes(good[:12])
    with pytest.raises(SnapshotError):
        FaissVectorIndex.load(path, DIM)


@pytest.mark.parametrize("approximate_above", [200_000, 1_500])
def test_concurrent_searches_and_writes_end_consistent(approximate_above):
    vectors = clustered(3_000, seed=7)
    index = FaissVectorIndex(DIM, approximate_above=approximate_above)
    index.add(np.arange(1_000, dtype=np.int64), vectors[:1_000], seq=0)
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not done.is_set():
                q = vectors[rng.integers(0, 3_000)]
                scores, found = index.search(q, 10, allowed=rng.choice(3_000, 300))
                assert (found >= 0).all() and len(found) == len(scores)
                index.search(q, 10)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for seq, start in enumerate(range(1_000, 3_000, 250), start=1):
        index.add(np.arange(start, start + 250, dtype=np.int64), vectors[start : start + 250], seq)
        index.remove(np.arange(start - 1_000, start - 900, dtype=np.int64), seq)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    removed = np.concatenate([np.arange(s - 1_000, s - 900) for s in range(1_000, 3_000, 250)])
    assert len(index) == 3_000 - len(removed) and index.seq == 8
    _, found = index.search(vectors[2_999], k=3_000)
    assert len(found) == len(index) and not np.isin(found, removed).any()


def test_importing_the_module_does_not_load_faiss():
    code = "import sys, contextd.store.vector_index; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("approximate_above", [None, 1_000])
def test_search_many_gives_each_row_what_search_gives_it(approximate_above, monkeypatch):
    import faiss

    config = {} if approximate_above is None else {"approximate_above": approximate_above}
    index, ids, _ = filled(n=4_000, **config)
    queries = clustered(45, seed=7)
    rng = np.random.default_rng(3)
    # A low FAISS threshold puts these queries in several calls: the rows still score alone.
    monkeypatch.setattr(faiss.cvar, "distance_compute_blas_threshold", 20 * DIM)
    for allowed in (None, rng.choice(ids, 30, replace=False), np.array([1, 2])):
        found = index.search_many(queries, k=25, allowed=allowed)
        assert len(found) == len(queries)
        for query, (scores, labels) in zip(queries, found, strict=True):
            want_scores, want_labels = index.search(query, k=25, allowed=allowed)
            np.testing.assert_array_equal(labels, want_labels)
            np.testing.assert_array_equal(scores, want_scores)
    assert index.search_many(np.empty((0, DIM), np.float32), k=5) == []
