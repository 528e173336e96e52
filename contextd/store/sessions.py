"""Sessions, their turns (with embeddings for recall) and running summaries, in SQLite.

    >>> sessions = SqliteSessionStore(store)  # doctest: +SKIP
    >>> sessions.append("s1", [TurnWrite(...)])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from contextd.errors import Conflict
from contextd.store.idempotency import IdempotencyKey, check_unused, store_response
from contextd.store.records import SessionRow, TurnRow, TurnVectors, TurnWrite
from contextd.store.sqlite_store import SqliteStore, blob_vector, vector_blob

__all__ = ["SessionRow", "SqliteSessionStore", "TurnRow", "TurnWrite", "check_user"]


_TURN_COLUMNS = "seq, id, role, content, name, tool_calls, tool_call_id, ts, tokens"
_TURN_COLUMNS_T = ", ".join(f"t.{c}" for c in _TURN_COLUMNS.split(", "))
_SESSION_COLUMNS = (
    "s.id, s.summary, s.summary_through, s.summary_tokens, "
    "(SELECT count(*) FROM turns t WHERE t.session_id = s.id), "
    "(SELECT coalesce(sum(tokens), 0) FROM turns t WHERE t.session_id = s.id), "
    "s.created_at, s.user_id")


def _turn(row: Sequence[Any]) -> TurnRow:
    return TurnRow(row[0], row[1], row[2], row[3], row[4],
                   json.loads(row[5]) if row[5] else None, row[6], row[7], row[8])


def check_user(session_id: str, wanted: str, stored: str | None) -> None:
    """Refuse to move a session to another user (inside the append, which then stores
    nothing): a session's user is set once."""
    if stored != wanted:
        raise Conflict(
            f"session {session_id!r} belongs to user_id {stored!r}, not {wanted!r}: a "
            "session's user_id is set once and never changes; send that user_id (or none), "
            "or start a new session for this user")


class SqliteSessionStore:
    """`contextd.store.protocols.SessionStore` on a namespace's SQLite store."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def session(self, session_id: str) -> SessionRow | None:
        row = self.store.reader().execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.id = ?", (session_id,),
        ).fetchone()
        return SessionRow(*row) if row else None

    def listing(self) -> list[dict[str, Any]]:
        """Every session: id, turn count, last update (epoch seconds) and user, newest first."""
        rows = self.store.reader().execute(
            "SELECT s.id, (SELECT count(*) FROM turns t WHERE t.session_id = s.id), "
            "s.updated_at, s.user_id FROM sessions s ORDER BY s.updated_at DESC, s.id"
        ).fetchall()
        return [{"session_id": r[0], "turns": r[1], "updated_at": r[2], "user_id": r[3]}
                for r in rows]

    def user_sessions(self, user_id: str, limit: int) -> list[SessionRow]:
        """The user's `limit` most recently updated sessions, newest first."""
        return [SessionRow(*r) for r in self.store.reader().execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.user_id = ? "
            "ORDER BY s.updated_at DESC, s.id LIMIT ?", (user_id, limit))]

    def user_lexical_turns(self, user_id: str, match: str, k: int,
                           exclude: str) -> list[tuple[str, int, float]]:
        """(session id, seq, bm25 score; higher is better) of the turns of the user's sessions
        other than `exclude`; the user is checked in the query itself."""
        if not match:
            return []
        rows = self.store.reader().execute(
            "SELECT t.session_id, t.seq, bm25(turns_fts) AS score FROM turns_fts f "
            "JOIN turns t ON t.rid = f.rowid JOIN sessions s ON s.id = t.session_id "
            "WHERE turns_fts MATCH ? AND s.user_id = ? AND t.session_id != ? "
            "ORDER BY score LIMIT ?", (match, user_id, exclude, k)).fetchall()
        return [(str(r[0]), int(r[1]), -float(r[2])) for r in rows]

    def user_turns(self, user_id: str,
                   keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], TurnRow]:
        """The turns named (session id, seq), of sessions of `user_id` only."""
        out: dict[tuple[str, int], TurnRow] = {}
        conn = self.store.reader()
        for start in range(0, len(keys), 250):
            part = keys[start:start + 250]
            pairs = ",".join(["(?, ?)"] * len(part))
            for r in conn.execute(
                    f"SELECT t.session_id, {_TURN_COLUMNS_T} FROM turns t JOIN sessions s "
                    f"ON s.id = t.session_id WHERE s.user_id = ? AND (t.session_id, t.seq) IN "
                    f"(VALUES {pairs})",
                    (user_id, *[v for key in part for v in key])):
                out[(r[0], r[1])] = _turn(r[1:])
        return out


    def append(self, session_id: str, turns: Sequence[TurnWrite],
               idempotency: IdempotencyKey | None = None,
               user_id: str | None = None) -> list[TurnRow]:
        """Append turns in order, creating the session; all of them or none. With an
        idempotency key, `{"turn_ids", "turns"}` is stored in the same transaction (and
        `Replayed` raised, writing nothing, if the key already has a response). A `user_id`
        is stored on a session that has none; another one than it holds is a `Conflict`."""
        now = time.time()
        rows: list[TurnRow] = []
        with self.store.transaction() as tx:
            check_unused(tx, idempotency)
            tx.execute(
                "INSERT INTO sessions(id, created_at, updated_at, user_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, "
                "user_id = coalesce(sessions.user_id, excluded.user_id)",
                (session_id, now, now, user_id),
            )
            if user_id is not None:
                check_user(session_id, user_id, tx.execute(
                    "SELECT user_id FROM sessions WHERE id = ?", (session_id,)).fetchone()[0])
            seq = tx.execute(
                "SELECT coalesce(max(seq), 0) FROM turns WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            for turn in turns:
                seq += 1
                turn_id = turn.id or self._free_id(tx, session_id, f"turn-{seq}")
                if tx.execute("SELECT 1 FROM turns WHERE session_id = ? AND id = ?",
                              (session_id, turn_id)).fetchone():
                    raise Conflict(
                        f"session {session_id!r} already has a turn with id {turn_id!r}: "
                        "give each turn a new id, or leave id out to have one assigned"
                    )
                tx.execute(
                    "INSERT INTO turns(session_id, seq, id, role, name, content, tool_calls, "
                    "tool_call_id, ts, tokens, embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (session_id, seq, turn_id, turn.role, turn.name, turn.content,
                     json.dumps(turn.tool_calls) if turn.tool_calls else None,
                     turn.tool_call_id, turn.ts, turn.tokens,
                     vector_blob(turn.embedding) if turn.embedding is not None else None),
                )
                rows.append(TurnRow(seq, turn_id, turn.role, turn.content, turn.name,
                                    turn.tool_calls, turn.tool_call_id, turn.ts, turn.tokens))
            if idempotency is not None:
                # Turns are only ever removed with their session, so the last seq is the count.
                store_response(tx, idempotency, {"turn_ids": [r.id for r in rows],
                                                 "turns": seq})
        return rows

    @staticmethod
    def _free_id(tx: Any, session_id: str, wanted: str) -> str:
        """`wanted`, or `wanted-2`, `wanted-3`... when a caller already chose that id."""
        candidate, n = wanted, 1
        while tx.execute("SELECT 1 FROM turns WHERE session_id = ? AND id = ?",
                         (session_id, candidate)).fetchone():
            n += 1
            candidate = f"{wanted}-{n}"
        return candidate

    def turns(self, session_id: str, after_seq: int = 0) -> list[TurnRow]:
        return [_turn(r) for r in self.store.reader().execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session_id = ? AND seq > ? ORDER BY seq",
            (session_id, after_seq),
        )]

    def turns_by_seq(self, session_id: str, seqs: Sequence[int]) -> dict[int, TurnRow]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        return {r[0]: _turn(r) for r in self.store.reader().execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE session_id = ? AND seq IN ({marks})",
            (session_id, *seqs),
        )}

    def turn_vectors(self, session_id: str, after_seq: int = 0) -> TurnVectors:
        """The session's turns that have embeddings, after `after_seq`, oldest first."""
        rows = self.store.reader().execute(
            "SELECT seq, embedding, tokens, role, name FROM turns WHERE session_id = ? "
            "AND seq > ? AND embedding IS NOT NULL ORDER BY seq",
            (session_id, after_seq),
        ).fetchall()
        return TurnVectors.of([(r[0], blob_vector(r[1]), r[2], r[3], r[4]) for r in rows])

    def lexical_turns(
        self, session_id: str, match: str, k: int, max_seq: int
    ) -> list[tuple[int, float]]:
        """(seq, bm25 score; higher is better) of the session's turns up to `max_seq`."""
        if not match or max_seq <= 0:
            return []
        rows = self.store.reader().execute(
            "SELECT t.seq, bm25(turns_fts) AS s FROM turns_fts f JOIN turns t ON t.rid = f.rowid "
            "WHERE turns_fts MATCH ? AND t.session_id = ? AND t.seq <= ? ORDER BY s LIMIT ?",
            (match, session_id, max_seq, k),
        ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def update_summary(
        self, session_id: str, summary: str, through: int, tokens: int, expected_through: int
    ) -> bool:
        """Store a summary covering turns up to `through`, unless another writer moved first."""
        with self.store.transaction() as tx:
            cur = tx.execute(
                "UPDATE sessions SET summary = ?, summary_through = ?, summary_tokens = ?, "
                "updated_at = ? WHERE id = ? AND summary_through = ?",
                (summary, through, tokens, time.time(), session_id, expected_through),
            )
            return cur.rowcount == 1

    def delete(self, session_id: str) -> bool:
        with self.store.transaction() as tx:
            tx.execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
            cur = tx.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            return cur.rowcount == 1
