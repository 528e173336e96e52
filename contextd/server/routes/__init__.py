"""The routes, one module per resource. Every tenant-scoped route lives under
`/v1/namespaces/{namespace}/...`; the older spellings stay as deprecated aliases."""

from contextd.server.routes import (
    answers,
    assemble,
    documents,
    namespaces,
    ops,
    search,
    sessions,
)

__all__ = ["answers", "assemble", "documents", "namespaces", "ops", "search", "sessions"]
