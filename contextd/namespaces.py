"""The namespaces of a data directory: one folder each, opened on demand, fully isolated.

Every engine operation holds a lease on its namespace (a shared hold of the namespace's
lifetime lock) while it uses it; deleting a namespace takes that lock exclusively, so it
waits for the operations in flight and the files go only when nothing uses them, and later
operations find it gone (404) instead of using a closed database. At most
`max_open_namespaces` stay open: the least recently used idle one is closed when another opens.

    >>> registry = NamespaceRegistry(settings, embedder)  # doctest: +SKIP
    >>> ns = registry.get("default")  # NamespaceNotFound unless it exists  # doctest: +SKIP
    >>> ns = registry.get_or_create("tenant-a")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from contextd.errors import InvalidNamespace, NamespaceNotFound, NotFound
from contextd.models import NAMESPACE_PATTERN
from contextd.protocols import Embedder
from contextd.settings import Settings
from contextd.store.embedding_cache import EmbeddingCache
from contextd.store.files import private_dir
from contextd.store.namespace import (
    DB_FILE,
    IndexSettings,
    NamespaceData,
    remove_folder,
    remove_leftovers,
)
from contextd.store.rwlock import ReadWriteLock

if TYPE_CHECKING:  # psycopg is an optional extra
    from contextd.store.postgres.namespace import PostgresCatalog, PostgresNamespace

    OpenNamespace = NamespaceData | PostgresNamespace

log = logging.getLogger("contextd.store")

NAMESPACES_DIR = "namespaces"
DEFAULT_NAMESPACE = "default"
CACHE_FILE = "embedding_cache.sqlite3"


def check_namespace(name: str) -> str:
    """`name` if it is a valid namespace name, else InvalidNamespace saying why."""
    if not isinstance(name, str) or not re.fullmatch(NAMESPACE_PATTERN, name):
        raise InvalidNamespace(
            f"invalid namespace {name!r}: use 1-63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def model_family(model_id: str) -> str:
    """The part of an embedder's model id that decides vector compatibility.

    Backends of one model (PyTorch, ONNX int8) give interchangeable vectors for search, so a
    namespace accepts any of them; the embedding cache still keys by the full id.
    """
    return model_id.split("/", 1)[0]


def check_interchangeable(queries: Embedder, documents: Embedder) -> None:
    """Raise ValueError unless `documents`' vectors can be searched with `queries`': one model
    (`model_family`), one dimension."""
    if documents is queries:
        return
    if (documents.dim != queries.dim
            or model_family(documents.model_id) != model_family(queries.model_id)):
        raise ValueError(f"documents embedded by {documents.model_id} ({documents.dim} "
                         f"dimensions) cannot be searched with queries embedded by "
                         f"{queries.model_id} ({queries.dim}): use one model for both")


def require_existing(data_dir: Path, namespace: str | None = None) -> None:
    """NotFound unless `data_dir` exists (and holds `namespace`, when given); creates nothing,
    so a read-only command on a mistyped path fails instead of leaving an empty index there.

        >>> require_existing(Path("/typo"))  # doctest: +SKIP
        Traceback (most recent call last):
        contextd.errors.NotFound: data directory /typo does not exist: ...
    """
    if not data_dir.is_dir():
        raise NotFound(f"data directory {data_dir} does not exist: pass --data-dir (or set "
                       "CONTEXTD_DATA_DIR, or data_dir in the config file) to an existing "
                       "one, or create it by ingesting documents (contextd ingest PATH)")
    if namespace is not None and not (data_dir / NAMESPACES_DIR / check_namespace(namespace)
                                      / DB_FILE).exists():
        raise NamespaceNotFound(
            f"namespace {namespace!r} does not exist in {data_dir}: ingest documents into it "
            f"(contextd ingest PATH --namespace {namespace}) or list the namespaces "
            "(contextd namespaces list)")


class NamespaceRegistry:
    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self.root = Path(settings.data_dir) / NAMESPACES_DIR
        private_dir(self.root)
        remove_leftovers(self.root)
        self._open: OrderedDict[str, OpenNamespace] = OrderedDict()
        self._lifetimes: dict[str, ReadWriteLock] = {}
        self._lock = threading.RLock()
        self._cache: EmbeddingCache | None = None
        # With a PostgreSQL store the namespaces live in the database; data_dir keeps the
        # embedding cache only.
        self.catalog: PostgresCatalog | None = None
        if settings.store:
            from contextd.store.postgres.database import Database
            from contextd.store.postgres.hnsw import HnswParams
            from contextd.store.postgres.namespace import PostgresCatalog

            self.catalog = PostgresCatalog(Database(settings.store,
                                                    max_size=settings.store_pool_size),
                                           HnswParams.from_settings(settings))

    def _lifetime(self, name: str) -> ReadWriteLock:
        with self._lock:
            lock = self._lifetimes.get(name)
            if lock is None:
                lock = self._lifetimes[name] = ReadWriteLock()
            return lock

    @contextmanager
    def lease(self, name: str) -> Iterator[None]:
        """Hold namespace `name` in use: it is neither deleted nor closed meanwhile.

            >>> with registry.lease("default"):  # doctest: +SKIP
            ...     registry.get("default").info()
        """
        check_namespace(name)
        with self._lifetime(name).shared():
            yield

    @property
    def cache(self) -> EmbeddingCache:
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(Path(self.settings.data_dir) / CACHE_FILE)
            return self._cache

    def names(self) -> list[str]:
        if self.catalog is not None:
            return self.catalog.names()
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and (p / DB_FILE).exists())

    def exists(self, name: str) -> bool:
        check_namespace(name)
        if self.catalog is not None:  # another replica may have created or deleted it
            return self.catalog.exists(name)
        return name in self._open or (self.root / name / DB_FILE).exists()

    def get(self, name: str) -> OpenNamespace:
        """An existing namespace (the default one always exists); NamespaceNotFound otherwise."""
        if name == DEFAULT_NAMESPACE:
            return self._get(name)
        if not self.exists(name):
            raise NamespaceNotFound(
                f"namespace {name!r} does not exist: upsert documents or append messages to "
                "create it, or list namespaces with GET /v1/namespaces"
            )
        return self._get(name)

    def get_or_create(self, name: str) -> OpenNamespace:
        check_namespace(name)
        return self._get(name)

    def _get(self, name: str) -> OpenNamespace:
        with self._lock:
            ns = self._open.get(name)
            if ns is None and self.catalog is not None:
                ns = self.catalog.open(name, self.embedder.dim,
                                       model_family(self.embedder.model_id),
                                       token_encoding=self.settings.encoding)
                assert ns is not None  # created when missing
                self._open[name] = ns
            if ns is None:
                ns = NamespaceData.open(
                    name, self.root / name, self.embedder.dim,
                    model_family(self.embedder.model_id),
                    IndexSettings(self.settings.approximate_above, self.settings.snapshot_every,
                                  self.settings.approximate_recall, self.settings.lexical_index,
                                  self.settings.lexical_max_postings),
                    token_encoding=self.settings.encoding)
                self._open[name] = ns
                self._close_idle(keep=name)
            self._open.move_to_end(name)
            return ns

    def _close_idle(self, keep: str) -> None:
        """Close least recently used namespaces nobody holds, down to the limit."""
        for name in list(self._open):
            if len(self._open) <= self.settings.max_open_namespaces:
                return
            lifetime = self._lifetime(name)
            if name == keep or not lifetime.try_exclusive():
                continue  # in use: it stays open until a later open finds it idle
            try:
                self._open.pop(name).close()
            finally:
                lifetime.release_exclusive()

    def delete(self, name: str) -> bool:
        """Delete a namespace once the operations using it have finished.

        A namespace that cannot be opened (say, indexed with another model) is deleted too."""
        check_namespace(name)
        with self._lifetime(name).exclusive():
            with self._lock:
                ns = self._open.pop(name, None)
            if ns is not None:
                ns.destroy()
            elif self.catalog is not None:
                self.catalog.delete(name)
            else:
                remove_folder(self.root / name)
            return True

    def close(self) -> None:
        with self._lock:
            for ns in self._open.values():
                ns.close()
            self._open.clear()
            if self._cache is not None:
                self._cache.close()
                self._cache = None
            if self.catalog is not None:
                self.catalog.close()
