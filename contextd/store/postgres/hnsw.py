"""The HNSW index of a namespace's `vectors` table: the parameters it is built and searched
with, reading what an index was built with, and rebuilding it with other parameters.

A namespace's index is built with the `hnsw_m` and `hnsw_ef_construction` settings when the
namespace is created, and keeps them: changing the settings changes new namespaces only.
`rebuild` gives an existing namespace new ones without stopping searches or writes (see its
docstring). Searches set `hnsw.ef_search` to twice their k, never less than the
`hnsw_ef_search` setting. This module imports nothing heavy, so `contextd.settings` checks
values with it.

    >>> HnswParams(m=32, ef_construction=128).with_clause()
    'WITH (m = 32, ef_construction = 128)'
    >>> HnswParams(ef_search=40).ef_search_for(10), HnswParams().ef_search_for(200)
    (40, 400)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# pgvector's limits (0.6-0.8): m 2..100, ef_construction 4..1000 and at least 2 x m,
# hnsw.ef_search 1..1000.
M_RANGE = (2, 100)
EF_CONSTRUCTION_RANGE = (4, 1000)
EF_SEARCH_RANGE = (1, 1000)
DEFAULT_M, DEFAULT_EF_CONSTRUCTION, DEFAULT_EF_SEARCH = 16, 64, 40

# Session-level advisory lock of one namespace's rebuild (+ namespace id); not the
# migrations' key, so replicas opening the namespace meanwhile do not wait for the build.
REBUILD_LOCK_BASE = 0x68770000_00000000  # "hw" << 48


RANGES = {"hnsw_m": M_RANGE, "hnsw_ef_construction": EF_CONSTRUCTION_RANGE,
          "hnsw_ef_search": EF_SEARCH_RANGE}


def check_range(name: str, value: int) -> int:
    """`value` of setting `name` if pgvector accepts it, else a ValueError saying the range.

        >>> check_range("hnsw_m", 200)
        Traceback (most recent call last):
        ...
        ValueError: hnsw_m 200 is out of range: pgvector accepts 2 to 100
    """
    low, high = RANGES[name]
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is out of range: pgvector accepts {low} to {high}")
    return value


def check_params(m: int, ef_construction: int, ef_search: int) -> None:
    """ValueError naming the value to change unless pgvector accepts these.

        >>> check_params(32, 40, 40)
        Traceback (most recent call last):
        ...
        ValueError: hnsw_ef_construction 40 is less than 2 x hnsw_m (64): ...
    """
    for name, value in (("hnsw_m", m), ("hnsw_ef_construction", ef_construction),
                        ("hnsw_ef_search", ef_search)):
        check_range(name, value)
    if ef_construction < 2 * m:
        raise ValueError(f"hnsw_ef_construction {ef_construction} is less than 2 x hnsw_m "
                         f"({2 * m}): pgvector builds an HNSW index only with "
                         "ef_construction >= 2 x m; raise hnsw_ef_construction or lower hnsw_m")


@dataclass(frozen=True)
class HnswParams:
    """Build parameters (`m`, `ef_construction`) and the least search-time `ef_search`."""

    m: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    ef_search: int = DEFAULT_EF_SEARCH

    def __post_init__(self) -> None:
        check_params(self.m, self.ef_construction, self.ef_search)

    @classmethod
    def from_settings(cls, settings: Any) -> HnswParams:
        return cls(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)

    def with_clause(self) -> str:
        return f"WITH (m = {int(self.m)}, ef_construction = {int(self.ef_construction)})"

    def index_name(self) -> str:
        """The name `rebuild` gives an index built with these parameters.

            >>> HnswParams(m=32, ef_construction=128).index_name()
            'vectors_hnsw_m32_efc128'
        """
        return f"vectors_hnsw_m{int(self.m)}_efc{int(self.ef_construction)}"

    def ef_search_for(self, k: int) -> int:
        """`hnsw.ef_search` of a search for the top `k`: 2k, at least `ef_search`, at most
        pgvector's 1000 (a larger k is searched exactly)."""
        return min(EF_SEARCH_RANGE[1], max(self.ef_search, 2 * k))


@dataclass(frozen=True)
class BuiltIndex:
    """An HNSW index on a `vectors` table, as the catalog describes it."""

    name: str
    m: int
    ef_construction: int
    valid: bool  # false for what a failed concurrent build left behind


def hnsw_indexes(conn: Any, schema: str) -> list[BuiltIndex]:
    """The HNSW indexes of `schema.vectors`, oldest first; options left unset are pgvector's
    defaults."""
    rows = conn.execute(
        "SELECT c.relname, c.reloptions, i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %s AND t.relname = 'vectors' AND a.amname = 'hnsw' "
        "ORDER BY c.oid", (schema,)).fetchall()
    found = []
    for name, options, valid in rows:
        opts = dict(o.split("=", 1) for o in options or ())
        found.append(BuiltIndex(name, int(opts.get("m", DEFAULT_M)),
                                int(opts.get("ef_construction", DEFAULT_EF_CONSTRUCTION)),
                                bool(valid)))
    return found


def create_index_sql(schema: str, params: HnswParams, *, concurrently: bool) -> Any:
    """`CREATE INDEX [CONCURRENTLY] <params.index_name()>` on `schema.vectors`."""
    from psycopg import sql

    return sql.SQL("CREATE INDEX {c} {name} ON {s}.vectors USING hnsw (embedding "
                   "vector_ip_ops) {w}").format(
        c=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(params.index_name()), s=sql.Identifier(schema),
        w=sql.SQL(params.with_clause()))


def build_new_namespace_index(conn: Any, schema: str, params: HnswParams) -> None:
    """Replace the empty HNSW index a new namespace's migrations made with one built with
    `params` (inside the creating transaction, so no other replica sees the first one)."""
    from psycopg import sql

    built = hnsw_indexes(conn, schema)
    if [(b.m, b.ef_construction) for b in built] == [(params.m, params.ef_construction)]:
        return
    for b in built:
        conn.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(schema),
                                                          sql.Identifier(b.name)))
    conn.execute(create_index_sql(schema, params, concurrently=False))


def rebuild(url: str, namespace: str, params: HnswParams, *, force: bool = False,
            maintenance_work_mem: str | None = None) -> dict[str, Any]:
    """Give namespace `namespace`'s vectors an HNSW index built with `params`, while
    searches and writes go on; a report of what was done.

    Idempotent: nothing is built when the one valid index already has `params` (unless
    `force`, which rebuilds it in place with `REINDEX INDEX CONCURRENTLY`, e.g. after many
    deletes). Otherwise `CREATE INDEX CONCURRENTLY` builds the new index beside the old one
    (both serve and both take writes meanwhile), then `DROP INDEX CONCURRENTLY` removes the
    old one, so searches use one valid index at every moment. A namespace's rebuilds take
    a session-level advisory lock of their own, so of several replicas or operators starting
    one at once, one builds and the others fail fast with Conflict; an invalid index that an
    interrupted build left behind is dropped first. Runs on its own autocommit connection
    (concurrent index builds cannot run in a transaction).

        >>> rebuild("postgresql://db/contextd", "default",
        ...         HnswParams(m=32, ef_construction=128))  # doctest: +SKIP
        {'namespace': 'default', ..., 'built': True, 'index': 'vectors_hnsw_m32_efc128', ...}
    """
    import time

    import psycopg
    from psycopg import sql

    from contextd.errors import Conflict, NamespaceNotFound
    from contextd.store.postgres.migrations import schema_name

    conn: Any
    with psycopg.connect(url, autocommit=True) as conn:
        row = None
        if conn.execute("SELECT to_regclass('contextd.namespaces')").fetchone()[0]:
            row = conn.execute("SELECT id FROM contextd.namespaces WHERE name = %s "
                               "AND schema_version > 0", (namespace,)).fetchone()
        if row is None:
            raise NamespaceNotFound(f"namespace {namespace!r} does not exist")
        schema = schema_name(row[0])
        lock = REBUILD_LOCK_BASE + int(row[0])
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()[0]:
            raise Conflict(f"a rebuild of namespace {namespace!r}'s vector index is already "
                           "running: wait for it to finish, then run this again")
        try:
            if maintenance_work_mem:
                conn.execute("SELECT set_config('maintenance_work_mem', %s, false)",
                             (maintenance_work_mem,))

            def drop(name: str) -> None:
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)))

            before = hnsw_indexes(conn, schema)
            for b in before:
                if not b.valid:
                    drop(b.name)
            valid = [b for b in before if b.valid]
            same = [b for b in valid if (b.m, b.ef_construction) == (params.m,
                                                                      params.ef_construction)]
            started = time.perf_counter()
            report: dict[str, Any] = {"namespace": namespace, "schema": schema,
                                      "before": [f"{b.name} (m {b.m}, ef_construction "
                                                 f"{b.ef_construction})" for b in valid],
                                      "dropped_invalid": [b.name for b in before
                                                          if not b.valid]}
            if same and len(valid) == 1 and not force:
                return {**report, "built": False, "index": same[0].name, "dropped": [],
                        "seconds": 0.0}
            built = True
            if same:  # the wanted index exists (an earlier run stopped before dropping)
                keep = same[0]
                built = force
                if force:
                    # A failed REINDEX CONCURRENTLY leaves an invalid <name>_ccnew, which
                    # the next run drops.
                    conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(keep.name)))
            else:
                conn.execute(create_index_sql(schema, params, concurrently=True))
                keep = next(b for b in hnsw_indexes(conn, schema)
                            if b.name == params.index_name())
            dropped = [b.name for b in valid if b.name != keep.name]
            for name in dropped:
                drop(name)
            return {**report, "built": built, "index": keep.name, "dropped": dropped,
                    "seconds": round(time.perf_counter() - started, 3)}
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
