"""The storage interfaces: what retrieval, memory and the pipeline may ask of a backend.

`DocumentStore` (documents, chunks, lexical search, change log), `SessionStore` (sessions,
turns, summaries) and `VectorIndex` (dense search by chunk id) are what the stages import;
`NamespaceHandle` bundles one namespace's three. Today's implementations are SQLite
(`contextd.store.sqlite_store.SqliteStore`, `contextd.store.sessions.SqliteSessionStore`) and
FAISS (`contextd.store.vector_index.FaissVectorIndex`); another backend implements the same
methods, and the contract tests in tests/store/test_contract.py run on every backend.

    >>> from contextd.store.vector_index import FaissVectorIndex
    >>> isinstance(FaissVectorIndex(dim=4), VectorIndex)
    True
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from contextd.store.filters import Filter
from contextd.store.idempotency import IdempotencyKey
from contextd.store.records import (
    ChunkRow,
    DocumentWrite,
    SessionRow,
    TurnRow,
    TurnVectors,
    TurnWrite,
    WriteResult,
)


@runtime_checkable
class DocumentStore(Protocol):
    """Documents and their chunks (with embeddings), lexical search, and the change log whose
    sequence numbers every derived index and cache is keyed by."""

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]: ...

    def write_documents(self, docs: Sequence[DocumentWrite],
                        idempotency: IdempotencyKey | None = None,
                        response: dict[str, Any] | None = None) -> WriteResult:
        """Replace the given documents and their chunks, all or nothing; with a key, store
        `response` under it in the same transaction (`Replayed` if it holds one already)."""
        ...

    def stored_response(self, idempotency: IdempotencyKey) -> dict[str, Any] | None:
        """The response already stored under a key, read outside any write (the write
        checks again); `IdempotencyKeyReused` if it was stored for another request."""
        ...

    def remember(self, idempotency: IdempotencyKey, response: dict[str, Any]) -> None:
        """Store the response of a keyed request that wrote nothing."""
        ...

    def delete_document(self, doc_id: str) -> WriteResult | None: ...

    def get_document(self, doc_id: str) -> dict[str, Any] | None: ...

    def counts(self) -> dict[str, int]: ...

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]: ...

    def chunk_documents(self, ids: set[int] | Sequence[int]) -> dict[int, str]: ...

    def chunk_places(self, ids: set[int] | Sequence[int]) -> dict[int, tuple[str, int]]:
        """(document id, chunk number) of each chunk id that still exists."""
        ...

    def filtered_chunk_ids(self, filters: Filter | dict[str, Any]) -> np.ndarray:
        """Ids of the chunks whose document matches `filters`."""
        ...

    def lexical_search(self, match: str, k: int, filters: Filter | dict[str, Any] | None = None,
                       title_weight: float = 1.0) -> list[tuple[int, float]]: ...

    def term_documents(self, term: str) -> int: ...

    def chunk_count(self) -> int: ...

    def last_seq(self) -> int:
        """The change log's latest sequence number, as committed by any process."""
        ...

    def generation(self) -> str:
        """An id fixed when the namespace is created, never the same for two creations: a
        namespace deleted and made again restarts `last_seq`, so what is keyed by sequence
        numbers (the assemble cache) is keyed by this too."""
        ...

    def changes_since(self, seq: int) -> tuple[set[int], int] | None: ...

    def existing_chunk_vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def all_vectors(self, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def compact_changes(self, upto: int) -> None: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def add_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class SessionStore(Protocol):
    """Sessions, their turns (with embeddings for recall) and running summaries."""

    def session(self, session_id: str) -> SessionRow | None: ...

    def append(self, session_id: str, turns: Sequence[TurnWrite],
               idempotency: IdempotencyKey | None = None,
               user_id: str | None = None) -> list[TurnRow]:
        """Append turns in order, creating the session; all of them or none; with a key,
        store what was appended under it in the same transaction. `user_id` is stored on a
        session without one; a session holding another is a `Conflict` (nothing stored)."""
        ...

    def user_sessions(self, user_id: str, limit: int) -> list[SessionRow]:
        """The user's `limit` most recently updated sessions, newest first."""
        ...

    def user_lexical_turns(self, user_id: str, match: str, k: int,
                           exclude: str) -> list[tuple[str, int, float]]:
        """(session id, seq, lexical score; higher is better) of turns of the user's sessions
        other than `exclude`, best first."""
        ...

    def user_turns(self, user_id: str,
                   keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], TurnRow]:
        """The turns named (session id, seq) that belong to sessions of `user_id`."""
        ...

    def turns(self, session_id: str, after_seq: int = 0) -> list[TurnRow]: ...

    def turns_by_seq(self, session_id: str, seqs: Sequence[int]) -> dict[int, TurnRow]: ...

    def turn_vectors(self, session_id: str, after_seq: int = 0) -> TurnVectors:
        """The session's embedded turns after `after_seq`, with their costs and speakers."""
        ...

    def lexical_turns(self, session_id: str, match: str, k: int,
                      max_seq: int) -> list[tuple[int, float]]: ...

    def update_summary(self, session_id: str, summary: str, through: int, tokens: int,
                       expected_through: int) -> bool:
        """Store a summary up to `through` unless another writer moved it first."""
        ...

    def delete(self, session_id: str) -> bool: ...


@runtime_checkable
class VectorIndex(Protocol):
    """Inner-product search over int64 chunk ids, stamped with the last change it holds."""

    @property
    def kind(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def seq(self) -> int:
        """Sequence number of the last change the index holds."""
        ...

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None: ...

    def remove(self, ids: np.ndarray, seq: int) -> None: ...

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), best first, never padded; `allowed` restricts the ids."""
        ...

    def save(self, path: Path) -> None: ...


@runtime_checkable
class LexicalIndex(Protocol):
    """An in-memory bm25 index derived from a `DocumentStore`, ranking as its
    `lexical_search` does."""

    def __len__(self) -> int: ...

    def query_terms(self, words: Sequence[str]) -> list[str] | None:
        """The index's terms for query words; None when only the store can match them."""
        ...

    def term_documents(self, word: str) -> int | None: ...

    def search(self, terms: Sequence[str], k: int, allowed: np.ndarray | None = None,
               title_weight: float = 1.0) -> list[tuple[int, float]]: ...


@runtime_checkable
class NamespaceHandle(Protocol):
    """One namespace's stores, as the retriever, memory and pipeline see it."""

    name: str
    store: DocumentStore
    sessions: SessionStore
    index: VectorIndex

    def ensure_current(self) -> None:
        """Catch derived state (the vector index) up to every committed write."""
        ...

    def chunk_places(self, ids: Collection[int]) -> dict[int, tuple[str, int]]:
        """(document id, chunk number) of each of `ids` that exists; it may also answer for a
        chunk deleted since it was first read (places never change and ids are never reused),
        so a chunk's row is read before it is shown."""
        ...

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """The row of each of `ids` that exists now."""
        ...

    def lexical_index(self) -> LexicalIndex | None:
        """The in-memory bm25 index, caught up to every committed write; None when the
        store's `lexical_search` answers."""
        ...
