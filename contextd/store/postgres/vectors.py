"""Dense search in pgvector: `contextd.store.protocols.VectorIndex` over a namespace's
`vectors` table and its HNSW index (inner product).

Unrestricted searches walk the HNSW graph with `hnsw.ef_search` at least twice `k` (and at
least the `hnsw_ef_search` setting, `HnswParams.ef_search_for`); should the graph return
fewer than `k` of the rows it holds, the search is repeated exactly. A search restricted to
`allowed` ids (a metadata filter) is exact over those rows inside the database: an HNSW walk
that filters afterwards can return fewer than `k`, so it is never used for one. The table is
the index: nothing is derived, and every replica reads the same rows.

`search_many` answers a group of query vectors in one statement (each row's walk is a
LATERAL subquery on the HNSW index), and `search` is `search_many` of one row, so a row's
result is the same alone or in a group.

    >>> index = PgVectorIndex(db, "ns_1", dim=384)  # doctest: +SKIP
    >>> scores, ids = index.search(query_vector, 10)  # doctest: +SKIP
    >>> [ids for _, ids in index.search_many(query_vectors, 10)]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from psycopg import sql

from contextd.store.postgres.database import Database
from contextd.store.postgres.hnsw import EF_SEARCH_RANGE, HnswParams

MAX_EF_SEARCH = EF_SEARCH_RANGE[1]  # pgvector's limit: a larger k is searched exactly

# The query vectors travel as one binary vector[] (%b): as text, psycopg and the server
# print and parse every float, which made one statement slower than 32 separate searches.
# Each query row (its ordinal `ord`) with its top k, in the order its search returned them
# (`rank`: the walk's order, kept through the join and the final sort).
_WALK = (
    "SELECT q.ord, r.id, r.distance FROM unnest(%b::vector[]) WITH ORDINALITY AS q(v, ord) "
    "CROSS JOIN LATERAL (SELECT id, distance, row_number() OVER () AS rank FROM ("
    "SELECT id, embedding <#> q.v AS distance FROM {s}.vectors "
    "ORDER BY embedding <#> q.v LIMIT %s) walk) r ORDER BY q.ord, r.rank")
# A materialised set has no index to walk: every candidate row is scored, ties by id.
_EXACT = (
    "WITH candidates AS MATERIALIZED (SELECT id, embedding FROM {s}.vectors {where}) "
    "SELECT q.ord, r.id, r.distance FROM unnest(%b::vector[]) WITH ORDINALITY AS q(v, ord) "
    "CROSS JOIN LATERAL (SELECT id, embedding <#> q.v AS distance FROM candidates "
    "ORDER BY distance, id LIMIT %s) r ORDER BY q.ord, r.distance, r.id")

Rows = list[list[tuple[int, float]]]


class PgVectorIndex:
    """Vectors by int64 id in schema `schema`; `seq_of` gives the namespace's change-log
    sequence (the table always holds every committed change), else `seq` is what the last
    `add`/`remove` said."""

    measured_recall: float | None = None

    def __init__(self, db: Database, schema: str, dim: int,
                 seq_of: Callable[[], int] | None = None,
                 params: HnswParams | None = None) -> None:
        self.db = db
        self.schema = schema
        self.params = params or HnswParams()
        self._s = sql.Identifier(schema)
        self._dim = dim
        self._seq_of = seq_of
        self._seq = 0

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    @property
    def kind(self) -> str:
        return "pgvector-hnsw"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def seq(self) -> int:
        return self._seq_of() if self._seq_of is not None else self._seq

    def __len__(self) -> int:
        with self.db.connection() as conn:
            return int(conn.execute(self._q("SELECT count(*) FROM {s}.vectors")).fetchone()[0])

    def add(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        """Insert or replace the vectors of `ids`."""
        rows = [(int(i), np.asarray(v, dtype=np.float32))
                for i, v in zip(ids, vectors, strict=True)]
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(self._q(
                "INSERT INTO {s}.vectors(id, embedding) VALUES (%s, %s) "
                "ON CONFLICT (id) DO UPDATE SET embedding = excluded.embedding"), rows)
        self._seq = max(self._seq, seq)

    def remove(self, ids: np.ndarray, seq: int) -> None:
        with self.db.connection() as conn:
            conn.execute(self._q("DELETE FROM {s}.vectors WHERE id = ANY(%s)"),
                         ([int(i) for i in ids],))
        self._seq = max(self._seq, seq)

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (inner products, ids), best first, never padded."""
        return self.search_many(np.reshape(query, (1, -1)), k, allowed)[0]

    def search_many(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k (inner products, ids) for each row of `queries` (n, dim), best first, never
        padded: one search statement for all rows in one transaction, and one more, exact,
        for the rows whose walk came back short of k (of fewer rows than the table holds).

            >>> found = index.search_many(np.eye(2, dtype=np.float32), 1)  # doctest: +SKIP
            >>> [ids.tolist() for _, ids in found]  # doctest: +SKIP
            [[1], [2]]
        """
        q = [np.ascontiguousarray(v, dtype=np.float32)
             for v in np.asarray(queries, dtype=np.float32).reshape(-1, self._dim)]
        if k <= 0 or not q or (allowed is not None and len(allowed) == 0):
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in q]
        with self.db.connection() as conn:
            if allowed is not None:
                found = self._exact(conn, q, k, [int(i) for i in allowed])
            else:
                found = [[] for _ in q]
                if k <= MAX_EF_SEARCH:
                    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)",
                                 (str(self.params.ef_search_for(k)),))
                    found = _by_row(conn.execute(self._q(_WALK), (q, k)).fetchall(), len(q))
                short = [i for i, rows in enumerate(found) if len(rows) < k]
                if short:
                    count = self._count(conn)
                    short = [i for i in short if len(found[i]) < count]
                if short:
                    exact = self._exact(conn, [q[i] for i in short], k, None)
                    for i, rows in zip(short, exact, strict=True):
                        found[i] = rows
        # <#> is the negated inner product.
        return [(np.fromiter((-r[1] for r in rows), dtype=np.float32, count=len(rows)),
                 np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
                for rows in found]

    def _exact(self, conn: object, q: list[np.ndarray], k: int,
               allowed: list[int] | None) -> Rows:
        where = sql.SQL("" if allowed is None else "WHERE id = ANY(%s)")
        params: list[object] = [] if allowed is None else [allowed]
        statement = sql.SQL(_EXACT).format(s=self._s, where=where)
        return _by_row(conn.execute(statement, [*params, q, k]).fetchall(),  # type: ignore[attr-defined]
                       len(q))

    def _count(self, conn: object) -> int:
        return int(conn.execute(  # type: ignore[attr-defined]
            self._q("SELECT count(*) FROM {s}.vectors")).fetchone()[0])

    def save(self, path: Path) -> None:
        """Nothing to save: the database holds the vectors durably."""


def _by_row(rows: list[tuple[int, int, float]], n: int) -> Rows:
    """(ord, id, distance) rows, ords from 1, grouped into `n` lists in arrival order."""
    out: Rows = [[] for _ in range(n)]
    for ord_, id_, distance in rows:
        out[ord_ - 1].append((id_, distance))
    return out
