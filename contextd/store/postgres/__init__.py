"""PostgreSQL + pgvector backend of the storage Protocols: stateless replicas over one database.

Selected by `store = "postgresql://..."` (`CONTEXTD_STORE`, `--store`). Every namespace is its
own schema (`ns_<id>`, named in the `contextd.namespaces` catalog): its documents, chunks,
vectors (pgvector, HNSW), change log, sessions, turns and summaries. The database is the
source of truth and the index alike, so a replica keeps no state that could go stale.

    >>> from contextd.store.postgres.database import Database  # doctest: +SKIP
    >>> db = Database("postgresql://localhost/contextd")  # doctest: +SKIP
"""
