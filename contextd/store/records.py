"""The records the storage interfaces exchange: plain, frozen data, the same for every backend.

    >>> TurnRow(1, "t1", "user", "hi", None, None, None, None, 4).message()
    {'role': 'user', 'content': 'hi'}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contextd.errors import InvalidRequest


@dataclass(frozen=True)
class ChunkRow:
    id: int
    doc_id: str
    ord: int
    title: str | None
    text: str
    tokens: int
    metadata: dict[str, Any]
    embedding: np.ndarray


@dataclass(frozen=True)
class NewChunk:
    ord: int
    title: str | None
    text: str
    tokens: int
    embedding: np.ndarray


@dataclass(frozen=True)
class DocumentWrite:
    id: str
    title: str | None
    text: str
    metadata: dict[str, Any]
    content_hash: str
    tokens: int
    chunks: list[NewChunk]


@dataclass(frozen=True)
class WriteResult:
    removed_chunk_ids: list[int]
    added_chunk_ids: list[int]
    added_vectors: np.ndarray
    seq: int
    seq_before: int  # the log's sequence when this write began (under the write lock)


@dataclass(frozen=True)
class TurnWrite:
    id: str | None
    role: str
    content: str | None
    name: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    ts: float | None
    tokens: int
    embedding: np.ndarray | None


@dataclass(frozen=True)
class TurnOrigin:
    """Where a turn recalled from another session of the same user was said: that session,
    its position there, and when the session began (shown when the turn has no time)."""

    session_id: str
    seq: int
    session_created_at: float


@dataclass(frozen=True)
class TurnRow:
    seq: int
    id: str
    role: str
    content: str | None
    name: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    ts: float | None
    tokens: int
    # Set only on a turn recalled from another session of the user; `seq` is then a stand-in
    # key of the recall (contextd.memory.recall.OtherSessionHits), never a seq of this session.
    origin: TurnOrigin | None = None

    def message(self) -> dict[str, Any]:
        """The turn as an OpenAI chat message."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True)
class TurnVectors:
    """The embedded turns of a session after some seq, oldest first: what recall keeps in
    memory per session (turns never change once appended), so a query ranks and prices them
    without reading their rows. `speakers` are "role\\x00name" (name empty when unset)."""

    seqs: np.ndarray  # int64
    vectors: np.ndarray  # (n, dim) float32; (0, 0) when n = 0
    tokens: np.ndarray  # int64: each turn's stored message cost
    speakers: tuple[str, ...]

    @classmethod
    def of(cls, rows: Sequence[tuple[int, np.ndarray, int, str, str | None]]) -> TurnVectors:
        """From (seq, vector, tokens, role, name) rows, oldest first."""
        n = len(rows)
        return cls(np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
                   np.vstack([r[1] for r in rows]) if rows else np.zeros((0, 0), np.float32),
                   np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
                   tuple(speaker(r[3], r[4]) for r in rows))


def speaker(role: str, name: str | None) -> str:
    """Who said a turn, as `TurnVectors.speakers` spells it.

        >>> speaker("user", "Ana"), speaker("assistant", None)
        ('user\\x00Ana', 'assistant\\x00')
    """
    return f"{role}\x00{name or ''}"


@dataclass(frozen=True)
class SessionRow:
    id: str
    summary: str | None
    summary_through: int
    summary_tokens: int
    turns: int
    tokens: int = 0  # of every turn as a chat message, in the default encoding
    created_at: float = 0.0  # tells a recreated session with the same id from the old one
    user_id: str | None = None  # whose session it is; set once, never changed


TOKEN_ENCODING_KEY = "token_encoding"


def keep_token_encoding(store: Any, name: str, encoding: str | None) -> None:
    """Record the tokenizer encoding that counts a namespace's stored tokens (its chunks' and
    turns' counts, which packing adds up as they are), or refuse another one: those counts
    would be wrong in it. A namespace made before encodings were recorded takes the first
    one it is opened with. `encoding` None (copying, tools) neither records nor checks."""
    if encoding is None:
        return
    store.add_meta(TOKEN_ENCODING_KEY, encoding)
    stored = store.get_meta(TOKEN_ENCODING_KEY)
    if stored != encoding:
        raise InvalidRequest(
            f"namespace {name!r} counts its stored tokens with encoding {stored!r}, not "
            f"{encoding!r}: set CONTEXTD_ENCODING={stored} to serve it, or re-ingest into a "
            "new namespace")
