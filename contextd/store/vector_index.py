"""The dense index of one namespace: exact while small, IVF once it outgrows exact search.

Below `approximate_above` vectors the index is exact (`IndexIDMap2` over `IndexFlatIP`).
Above it the vectors move into an `IndexIVFFlat` with a hash-table direct map, which keeps
deletes O(batch) and `reconstruct` cheap; benchmarks/results/vector_index.md has the figures
behind that choice over HNSW. Each IVF build measures its own recall: the number of cells a
query scans (nprobe) doubles from the configured start until recall@10 against exact search,
on a sample of the indexed vectors, reaches `target_recall`; how well IVF does depends on how
the data clusters, so a fixed nprobe would promise nothing. The index is a derived snapshot:
SQLite holds the truth, and `seq` says which change the index has caught up to.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from contextd.errors import ContextdError
from contextd.store.files import private_open
from contextd.store.rwlock import ReadWriteLock

_MAGIC = b"CTXDVIX1"
_FORMAT = 1
# Restrictive filters leave probed IVF cells nearly empty; below this many expected hits
# per wanted result the search scans every cell instead (still only scoring allowed ids).
_FILTER_HITS_PER_RESULT = 8
_threads = {"search": 1, "build": os.cpu_count() or 1}
# Queries drawn from the indexed vectors to measure an IVF build's recall.
_CALIBRATION_QUERIES = 256
logger = logging.getLogger(__name__)


class SnapshotError(ContextdError):
    """A saved index is missing, corrupt or does not match; rebuild it from SQLite."""

    title = "Vector index snapshot unusable"
    type_slug = "snapshot-unusable"


def configure_threads(search: int = 1, build: int | None = None) -> None:
    """Set OpenMP threads for one-query searches and for training/adding.

    One thread per search lets concurrent requests use the cores instead of each
    spinning up a team; `build` defaults to every core.

        >>> configure_threads(search=1, build=2)
    """
    _threads["search"] = max(1, search)
    _threads["build"] = max(1, build or os.cpu_count() or 1)


def _use_threads(role: str) -> None:
    import faiss

    # libgomp keeps the thread count per calling thread, so it is set on each call.
    faiss.omp_set_num_threads(_threads[role])


def nlist_for(n: int) -> int:
    """IVF cell count for `n` vectors: a power of two near 4*sqrt(n), >= 40 vectors a cell.

    >>> nlist_for(1_000_000)
    4096
    """
    near = 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))
    return int(max(1, min(65536, near, n // 40)))


class FaissVectorIndex:
    """Inner-product search over int64 chunk ids; thread-safe; upserts replace.

    >>> import numpy as np
    >>> index = FaissVectorIndex(dim=3, approximate_above=200_000, nprobe=64)
    >>> index.add(np.array([1]), np.array([[1.0, 0.0, 0.0]], np.float32), seq=5)
    >>> (len(index), index.seq, index.kind)
    (1, 5, 'flat')
    """

    def __init__(
        self, dim: int, approximate_above: int = 200_000, nprobe: int = 64, seq: int = 0,
        target_recall: float = 0.98,
    ) -> None:
        import faiss

        if not 0 < target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        self._dim = dim
        self._approximate_above = approximate_above
        self._min_nprobe = max(1, nprobe)
        self._nprobe = self._min_nprobe
        self._target_recall = target_recall
        self._measured_recall: float | None = None
        self._seq = seq
        self._trained_on = 0
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._rw = ReadWriteLock()
        self._write_lock = threading.Lock()  # serialises mutations; searches never wait on it

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return "flat" if self._trained_on == 0 else "ivf"

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def nprobe(self) -> int:
        """IVF cells scanned per query: the recall/latency knob of the approximate kind.

        Set by each IVF build to reach `target_recall`; assigning it overrides that."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = max(1, value)

    @property
    def measured_recall(self) -> float | None:
        """Recall@10 against exact search measured at the last IVF build (None while flat)."""
        return self._measured_recall

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        """Insert or replace vectors (L2-normalised float32, shape (n, dim)) under `ids`.

        >>> index = FaissVectorIndex(dim=2)
        >>> index.add(np.array([3]), np.array([[0.0, 1.0]], np.float32), seq=1)
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self._dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors; pass one id per row")
        # Within one batch the last row for an id wins, as repeated upserts would.
        last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
        ids, vectors = ids[last], vectors[last]
        with self._write_lock:
            _use_threads("build")
            index = self._index
            if self._trained_on == 0:
                present = ids[np.isin(ids, _flat_ids(index))]
                n_after = index.ntotal - len(present) + len(ids)
            else:  # IVF membership is not enumerable cheaply; an upper bound decides layout
                present, n_after = ids, index.ntotal + len(ids)
            if n_after > self._approximate_above and (
                self._trained_on == 0 or n_after > 4 * self._trained_on
            ):
                self._relayout(seq, extra=(ids, vectors), approximate=True)
                return
            assign = None if self._trained_on == 0 else index.quantizer.search(vectors, 1)[1]
            with self._rw.exclusive():
                if len(present):
                    _remove(index, present, ivf=self._trained_on > 0)
                if assign is None:
                    index.add_with_ids(vectors, ids)
                else:  # cells were assigned outside the lock, so searches pause only to copy
                    index.add_core(len(ids), _ptr(vectors), _ptr(ids), _ptr(assign))
                self._seq = seq

    def remove(self, ids: np.ndarray, seq: int) -> None:
        """Delete `ids`; unknown ids are ignored.

        >>> FaissVectorIndex(dim=2).remove(np.array([3]), seq=2)
        """
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        with self._write_lock:
            _use_threads("build")
            with self._rw.exclusive():
                if len(ids):
                    _remove(self._index, ids, ivf=self._trained_on > 0)
                self._seq = seq
            if self._trained_on and self._index.ntotal < self._approximate_above // 2:
                self._relayout(seq, extra=None, approximate=False)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), best first, optionally only among `allowed` ids.

        >>> index = FaissVectorIndex(dim=2)
        >>> index.add(np.array([1, 2]), np.eye(2, dtype=np.float32), seq=1)
        >>> index.search(np.array([1.0, 0.0], np.float32), k=5, allowed=np.array([2]))[1]
        array([2])
        """
        return self.search_many(np.reshape(query, (1, -1)), k, allowed)[0]

    def search_many(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k (scores, ids) for each row of `queries` (n, dim), in as few FAISS calls as
        keep every row's scores those of a search of that row alone (see `_exact_rows`).

        >>> index = FaissVectorIndex(dim=2)
        >>> index.add(np.array([1, 2]), np.eye(2, dtype=np.float32), seq=1)
        >>> [ids.tolist() for _, ids in index.search_many(np.eye(2, dtype=np.float32), k=1)]
        [[1], [2]]
        """
        import faiss

        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self._dim)
        if allowed is not None:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64).reshape(-1)
        empty = (np.empty(0, np.float32), np.empty(0, np.int64))
        with self._rw.shared():
            index, ivf = self._index, self._trained_on > 0
            k = min(k, index.ntotal, k if allowed is None else len(allowed))
            if k <= 0 or not len(q):
                return [empty for _ in range(len(q))]
            _use_threads("search")
            sel = None if allowed is None else faiss.IDSelectorBatch(allowed)
            if not ivf:
                params = None if sel is None else faiss.SearchParameters(sel=sel)
            else:
                nprobe = min(self._nprobe, index.nlist)
                if allowed is not None and len(allowed) * nprobe / index.nlist < (
                    _FILTER_HITS_PER_RESULT * k
                ):
                    nprobe = index.nlist
                params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            scores, labels = _exact_rows(index, q, k, params)
            if ivf and sel is not None and nprobe < index.nlist:
                # As `search` does: a row the probed cells left short is searched in all.
                short = np.flatnonzero((labels < 0).any(axis=1))
                if len(short):
                    every = faiss.SearchParametersIVF(sel=sel, nprobe=index.nlist)
                    scores[short], labels[short] = _exact_rows(index, q[short], k, every)
        found = labels >= 0
        return [(scores[i][found[i]], labels[i][found[i]]) for i in range(len(q))]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors for `ids` (for MMR), shape (len(ids), dim); KeyError if one is absent.

        >>> index = FaissVectorIndex(dim=2)
        >>> index.add(np.array([4]), np.array([[0.6, 0.8]], np.float32), seq=1)
        >>> index.reconstruct(np.array([4])).shape
        (1, 2)
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return np.empty((0, self._dim), np.float32)
        with self._rw.shared():
            try:
                return self._index.reconstruct_batch(ids)
            except RuntimeError as exc:
                raise KeyError(f"some of the ids are not in the index: {exc}") from None

    def save(self, path: Path) -> None:
        """Write a snapshot atomically (temp file, fsync, rename, fsync the directory).

        >>> FaissVectorIndex(dim=2).save(Path("/tmp/ns.faiss"))
        """
        import faiss

        path = Path(path)
        with self._rw.shared():
            payload = faiss.serialize_index(self._index)
            meta = {
                "format": _FORMAT,
                "kind": self.kind,
                "dim": self._dim,
                "seq": self._seq,
                "ntotal": int(self._index.ntotal),
                "trained_on": self._trained_on,
                "nprobe": self._nprobe,
                "measured_recall": self._measured_recall,
            }
        meta["payload_bytes"] = int(payload.nbytes)
        meta["crc32"] = zlib.crc32(memoryview(payload))
        header = json.dumps(meta).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with os.fdopen(private_open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
                f.write(_MAGIC + struct.pack("<I", len(header)) + header)
                f.write(memoryview(payload))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path, dim: int, **config: Any) -> FaissVectorIndex:
        """Read a snapshot written by `save`; SnapshotError if it cannot be trusted.

        >>> FaissVectorIndex(dim=2).save(Path("/tmp/ns.faiss"))
        >>> FaissVectorIndex.load(Path("/tmp/ns.faiss"), dim=2).kind
        'flat'
        """
        import faiss

        try:
            with open(path, "rb") as f:
                if f.read(len(_MAGIC)) != _MAGIC:
                    raise SnapshotError(f"{path} is not a vector index snapshot; rebuild it")
                (header_len,) = struct.unpack("<I", f.read(4))
                meta = json.loads(f.read(header_len))
                payload = np.fromfile(f, dtype=np.uint8)
        except FileNotFoundError:
            raise SnapshotError(f"no snapshot at {path}; rebuild the index") from None
        except (OSError, ValueError, struct.error) as exc:
            raise SnapshotError(f"unreadable snapshot {path}: {exc}; rebuild it") from None
        problem = _snapshot_problem(meta, payload, dim)
        if problem:
            raise SnapshotError(f"snapshot {path} {problem}; rebuild the index")
        try:
            index = faiss.deserialize_index(payload)
        except RuntimeError as exc:
            raise SnapshotError(f"snapshot {path} does not deserialise: {exc}") from None
        if (
            index.d != dim
            or index.ntotal != meta["ntotal"]
            or (meta["trained_on"] > 0) != hasattr(index, "nlist")
        ):
            raise SnapshotError(f"snapshot {path} disagrees with its header; rebuild the index")
        loaded = cls(dim, seq=meta["seq"], **config)
        loaded._index, loaded._trained_on = index, meta["trained_on"]
        if loaded._trained_on and isinstance(meta.get("nprobe"), int):
            loaded._nprobe = max(loaded._min_nprobe, meta["nprobe"])
            loaded._measured_recall = meta.get("measured_recall")
        return loaded

    def _relayout(self, seq: int, extra: tuple | None, approximate: bool) -> None:
        """Rebuild into a fresh index while searches go on against the old one."""
        ids, vectors = _contents(self._index, ivf=self._trained_on > 0)
        if extra is not None:
            keep = ~np.isin(ids, extra[0])
            ids = np.concatenate([ids[keep], extra[0]])
            vectors = np.concatenate([vectors[keep], extra[1]])
        nprobe, recall = self._min_nprobe, None
        if approximate:
            new_index = _build_ivf(ids, vectors, self._dim, self._min_nprobe)
            nprobe, recall = calibrate_nprobe(new_index, ids, vectors, self._min_nprobe,
                                              self._target_recall)
            new_index.nprobe = nprobe
            logger.info("IVF over %d vectors, %d cells: nprobe %d, recall@10 %.3f",
                        len(ids), new_index.nlist, nprobe, recall)
        else:
            import faiss

            new_index = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
            new_index.add_with_ids(vectors, ids)
        with self._rw.exclusive():
            self._index, self._seq = new_index, seq
            self._trained_on = len(ids) if approximate else 0
            self._nprobe, self._measured_recall = nprobe, recall


def snapshot_seq(path: Path) -> int | None:
    """The sequence number a snapshot file holds, read from its header; None if unreadable.

        >>> snapshot_seq(Path("/nonexistent.faiss")) is None
        True
    """
    try:
        with open(path, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                return None
            (header_len,) = struct.unpack("<I", f.read(4))
            seq = json.loads(f.read(header_len)).get("seq")
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return seq if isinstance(seq, int) else None


def _exact_rows(index: Any, queries: np.ndarray, k: int,
                params: Any) -> tuple[np.ndarray, np.ndarray]:
    """index.search over `queries` in runs FAISS scores one query at a time.

    From `distance_compute_blas_threshold` on (counted in queries x dimensions by FAISS 1.9 on,
    in queries before), FAISS computes inner products as one matrix product, whose sums round
    differently from the one-query kernel; below it every row gets exactly the scores (and so
    the order) a search of that row alone would. Runs stay below it by either count.
    """
    import faiss

    threshold = int(faiss.cvar.distance_compute_blas_threshold)
    run = max(1, (threshold - 1) // max(queries.shape[1], 1))
    parts = [index.search(queries[i:i + run], k, params=params)
             for i in range(0, len(queries), run)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _ptr(array: np.ndarray) -> Any:
    import faiss

    # A copy made here would be freed before faiss reads it, so only views are allowed.
    assert array.flags.c_contiguous
    return faiss.swig_ptr(array)


def _flat_ids(index: Any) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(index.id_map)


def _remove(index: Any, ids: np.ndarray, ivf: bool) -> int:
    import faiss

    # The IVF hash-table direct map only removes by IDSelectorArray (O(batch), no scan).
    sel = faiss.IDSelectorArray(ids) if ivf else faiss.IDSelectorBatch(ids)
    return int(index.remove_ids(sel))


def _contents(index: Any, ivf: bool) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n, dim = index.ntotal, index.d
    if not ivf:
        if n == 0:
            return np.empty(0, np.int64), np.empty((0, dim), np.float32)
        flat = faiss.rev_swig_ptr(faiss.downcast_index(index.index).get_xb(), n * dim)
        return _flat_ids(index), np.array(flat, copy=True).reshape(n, dim)
    lists, id_parts, vec_parts = index.invlists, [], []
    for cell in range(index.nlist):
        size = lists.list_size(cell)
        if size:
            id_parts.append(faiss.rev_swig_ptr(lists.get_ids(cell), size).copy())
            codes = faiss.rev_swig_ptr(lists.get_codes(cell), size * index.code_size)
            vec_parts.append(codes.copy().view(np.float32).reshape(size, dim))
    if not id_parts:
        return np.empty(0, np.int64), np.empty((0, dim), np.float32)
    return np.concatenate(id_parts), np.concatenate(vec_parts)


def _build_ivf(ids: np.ndarray, vectors: np.ndarray, dim: int, nprobe: int) -> Any:
    import faiss

    nlist = nlist_for(len(ids))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    # 32 points per cell and 10 rounds keep k-means to seconds at 1M; recall is measured.
    index.cp.max_points_per_centroid = 32
    index.cp.niter = 10
    index.cp.seed = 1234
    index.train(vectors)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.add_with_ids(vectors, ids)
    index.nprobe = nprobe
    return index


def calibrate_nprobe(
    index: Any, ids: np.ndarray, vectors: np.ndarray, start: int, target: float, k: int = 10,
    queries: int = _CALIBRATION_QUERIES, seed: int = 0,
) -> tuple[int, float]:
    """Smallest nprobe from `start`, doubling, whose recall@k reaches `target`; and that recall.

    Queries are indexed vectors; each one's own id is left out of both the exact and the IVF
    neighbours, so the measure is of finding the others. Scanning every cell is exact, so the
    search always ends.
    """
    rows = np.random.default_rng(seed).choice(len(ids), size=min(queries, len(ids)),
                                              replace=False)
    query_vectors, own = np.ascontiguousarray(vectors[rows]), ids[rows]
    truth = _exact_top(query_vectors, ids, vectors, k + 1)
    nprobe, recall = min(max(1, start), index.nlist), 0.0
    while True:
        _, found = index.search(query_vectors, k + 1, params=_ivf_params(nprobe))
        hits = 0
        for i in range(len(rows)):
            want = [x for x in truth[i] if x != own[i]][:k]
            got = [x for x in found[i] if x != own[i] and x >= 0][:k]
            hits += len(set(got).intersection(want))
        recall = hits / max(1, len(rows) * min(k, len(ids) - 1))
        if recall >= target or nprobe >= index.nlist:
            return nprobe, recall
        nprobe = min(2 * nprobe, index.nlist)


def _ivf_params(nprobe: int) -> Any:
    import faiss

    return faiss.SearchParametersIVF(nprobe=nprobe)


def _exact_top(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Ids of each query's `k` best inner products over `vectors` (faiss's blocked exact kNN)."""
    import faiss

    _, rows = faiss.knn(queries, vectors, min(k, len(ids)), metric=faiss.METRIC_INNER_PRODUCT)
    return ids[rows]


def _snapshot_problem(meta: Any, payload: np.ndarray, dim: int) -> str | None:
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        return "has an unknown format"
    if meta.get("dim") != dim:
        return f"holds {meta.get('dim')}-d vectors, not {dim}-d"
    if meta.get("payload_bytes") != payload.nbytes:
        return "is truncated"
    if meta.get("crc32") != zlib.crc32(memoryview(payload)):
        return "fails its checksum"
    return None
