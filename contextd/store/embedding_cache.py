"""Embedding cache keyed by embedder model id and content hash.

Unchanged text is never embedded twice, across namespaces and restarts. The cache is shared
for speed, and a shared cache is a side channel: if a caller could see that a text came from
the cache, it would learn that some other tenant stored that exact text. So the cache records
which namespaces contributed each vector, and `embed` counts as `cached` only texts the same
namespace stored before; a vector another namespace contributed is reused but reported as
embedded. Deleting a namespace (`forget_namespace`) purges the vectors only it contributed.
(Reuse still makes such an upsert faster than a fresh one; the counts reveal nothing.)

    >>> cache = EmbeddingCache(Path("indexes/embedding_cache.sqlite3"))  # doctest: +SKIP
    >>> vectors, embedded, cached = cache.embed(embedder, ["some text"],
    ...                                         namespace="acme")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contextd.protocols import Embedder
from contextd.store.files import private_dir
from contextd.store.schema import connect
from contextd.store.sqlite_store import blob_vector, vector_blob


def content_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).digest()


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self._conn = connect(str(path))
        # A lost cache entry only costs a recomputation, so the cache need not fsync.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, hash BLOB NOT NULL, "
            "vector BLOB NOT NULL, PRIMARY KEY (model, hash)) WITHOUT ROWID"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS contributors (model TEXT NOT NULL, hash BLOB NOT NULL, "
            "namespace TEXT NOT NULL, PRIMARY KEY (model, hash, namespace)) WITHOUT ROWID"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS contributors_by_namespace "
                           "ON contributors(namespace)")
        self._lock = threading.Lock()

    def get(self, model_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(hashes), 500):
                part = list(hashes[start : start + 500])
                marks = ",".join("?" * len(part))
                for digest, blob in self._conn.execute(
                    f"SELECT hash, vector FROM embeddings WHERE model = ? AND hash IN ({marks})",
                    [model_id, *part],
                ):
                    out[bytes(digest)] = blob_vector(blob)
        return out

    def put(self, model_id: str, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings(model, hash, vector) VALUES (?, ?, ?)",
                [(model_id, h, vector_blob(v)) for h, v in zip(hashes, vectors, strict=True)],
            )
            self._conn.execute("COMMIT")

    def contributed(self, model_id: str, namespace: str,
                    hashes: Sequence[bytes]) -> set[bytes]:
        """Which of `hashes` `namespace` has contributed before."""
        out: set[bytes] = set()
        with self._lock:
            for start in range(0, len(hashes), 500):
                part = list(hashes[start : start + 500])
                marks = ",".join("?" * len(part))
                out.update(bytes(row[0]) for row in self._conn.execute(
                    f"SELECT hash FROM contributors WHERE model = ? AND namespace = ? "
                    f"AND hash IN ({marks})", [model_id, namespace, *part]))
        return out

    def _record(self, model_id: str, namespace: str, hashes: Sequence[bytes]) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR IGNORE INTO contributors(model, hash, namespace) VALUES (?, ?, ?)",
                [(model_id, h, namespace) for h in hashes])
            self._conn.execute("COMMIT")

    def forget_namespace(self, namespace: str) -> int:
        """Drop `namespace`'s contributions and the vectors no other namespace contributed;
        returns how many vectors went.

            >>> cache.forget_namespace("acme")  # doctest: +SKIP
            12
        """
        with self._lock:
            self._conn.execute("BEGIN")
            gone = self._conn.execute(
                "DELETE FROM embeddings WHERE EXISTS (SELECT 1 FROM contributors c "
                "WHERE c.model = embeddings.model AND c.hash = embeddings.hash "
                "AND c.namespace = ?) AND NOT EXISTS (SELECT 1 FROM contributors o "
                "WHERE o.model = embeddings.model AND o.hash = embeddings.hash "
                "AND o.namespace != ?)", (namespace, namespace)).rowcount
            self._conn.execute("DELETE FROM contributors WHERE namespace = ?", (namespace,))
            self._conn.execute("COMMIT")
        return int(gone)

    def embed(
        self, embedder: Embedder, texts: Sequence[str], batch_size: int = 256, *,
        namespace: str,
    ) -> tuple[np.ndarray, int, int]:
        """Vectors for `texts` (n, dim), computing only those not cached.

        Returns (vectors, embedded, cached): `cached` counts the texts `namespace` itself
        stored before (and repeats within `texts`); everything else counts as embedded, even
        when another namespace's vector was reused, so the split says nothing about other
        namespaces.
        """
        if not texts:
            return np.zeros((0, embedder.dim), np.float32), 0, 0
        hashes = [content_hash(t) for t in texts]
        unique = list(dict.fromkeys(hashes))
        own = self.contributed(embedder.model_id, namespace, unique)
        found = self.get(embedder.model_id, unique)
        missing: dict[bytes, str] = {}
        for digest, text in zip(hashes, texts, strict=True):
            if digest not in found and digest not in missing:
                missing[digest] = text
        if missing:
            # Longest first, so each batch holds texts of similar length: a batch is padded to
            # its longest text, and unsorted batches of 64 waste ~7% of the model's work on
            # padding (SciFact), sorted ones ~0.2%.
            keys = sorted(missing, key=lambda digest: -len(missing[digest]))
            for start in range(0, len(keys), batch_size):
                part = keys[start : start + batch_size]
                vectors = embedder.embed([missing[k] for k in part])
                self.put(embedder.model_id, part, vectors)
                found.update(zip(part, vectors, strict=True))
        matrix = np.vstack([found[h] for h in hashes]).astype(np.float32, copy=False)
        new_here = [h for h in unique if h not in own]
        if new_here:
            self._record(embedder.model_id, namespace, new_here)
        return matrix, len(new_here), len(texts) - len(new_here)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
