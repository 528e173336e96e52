"""Sessions, their turns (with pgvector embeddings for recall) and running summaries of one
namespace in PostgreSQL: `contextd.store.protocols.SessionStore`.

An append locks its session's row first (the upsert that creates or touches it), so appends
to one session from any number of replicas run one after another: turn numbers never repeat
and never go backwards. A summary is stored by a conditional update (`summary_through` must
still be what the compaction read), so one compaction wins when several replicas see the
same overflow.

    >>> sessions = PostgresSessionStore(db, "ns_1")  # doctest: +SKIP
    >>> sessions.append("s1", [TurnWrite(...)])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from psycopg import sql

from contextd.errors import Conflict
from contextd.store.idempotency import IdempotencyKey
from contextd.store.postgres.database import Database
from contextd.store.postgres.documents import as_vector
from contextd.store.postgres.idempotency import check_unused, store_response
from contextd.store.postgres.lexemes import LexemeCache, match_terms, tsquery_text
from contextd.store.records import SessionRow, TurnRow, TurnVectors, TurnWrite
from contextd.store.sessions import check_user

_TURN_COLUMNS = "seq, id, role, content, name, tool_calls, tool_call_id, ts, tokens"
_SESSION_COLUMNS = (
    "s.id, s.summary, s.summary_through, s.summary_tokens, "
    "(SELECT count(*) FROM {s}.turns t WHERE t.session_id = s.id), "
    "(SELECT coalesce(sum(tokens), 0) FROM {s}.turns t WHERE t.session_id = s.id), "
    "s.created_at, s.user_id")


def _turn(row: Sequence[Any]) -> TurnRow:
    return TurnRow(row[0], row[1], row[2], row[3], row[4], row[5] or None, row[6], row[7],
                   row[8])


class PostgresSessionStore:
    """`SessionStore` over schema `schema` of `db`."""

    def __init__(self, db: Database, schema: str) -> None:
        self.db = db
        self._schema = schema
        self._s = sql.Identifier(schema)
        self._lexemes = LexemeCache()

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    def session(self, session_id: str) -> SessionRow | None:
        with self.db.connection() as conn:
            row = conn.execute(self._q(
                f"SELECT {_SESSION_COLUMNS} FROM {{s}}.sessions s WHERE s.id = %s"),
                (session_id,)).fetchone()
        return SessionRow(*row) if row else None

    def listing(self) -> list[dict[str, Any]]:
        """Every session: id, turn count, last update (epoch seconds) and user, newest first."""
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                "SELECT s.id, (SELECT count(*) FROM {s}.turns t WHERE t.session_id = s.id), "
                "s.updated_at, s.user_id FROM {s}.sessions s ORDER BY s.updated_at DESC, s.id"
            )).fetchall()
        return [{"session_id": r[0], "turns": r[1], "updated_at": r[2], "user_id": r[3]}
                for r in rows]

    def user_sessions(self, user_id: str, limit: int) -> list[SessionRow]:
        """The user's `limit` most recently updated sessions, newest first."""
        with self.db.connection() as conn:
            return [SessionRow(*r) for r in conn.execute(self._q(
                f"SELECT {_SESSION_COLUMNS} FROM {{s}}.sessions s WHERE s.user_id = %s "
                "ORDER BY s.updated_at DESC, s.id LIMIT %s"), (user_id, limit))]

    def user_lexical_turns(self, user_id: str, match: str, k: int,
                           exclude: str) -> list[tuple[str, int, float]]:
        """(session id, seq, full-text rank; higher is better) of the turns of the user's
        sessions other than `exclude`; the user is checked in the query itself."""
        terms = match_terms(match)
        if not terms:
            return []
        with self.db.connection() as conn:
            lexemes = self._lexemes.distinct(conn, terms)
            if not lexemes:
                return []
            rows = conn.execute(self._q(
                "SELECT t.session_id, t.seq, ts_rank(t.tsv, q) AS score FROM {s}.turns t "
                "JOIN {s}.sessions s ON s.id = t.session_id, CAST(%s AS tsquery) AS q "
                "WHERE s.user_id = %s AND t.session_id <> %s AND t.tsv @@ q "
                "ORDER BY score DESC, t.session_id, t.seq LIMIT %s"),
                (tsquery_text(lexemes), user_id, exclude, k)).fetchall()
        return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]

    def user_turns(self, user_id: str,
                   keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], TurnRow]:
        """The turns named (session id, seq), of sessions of `user_id` only."""
        if not keys:
            return {}
        columns = ", ".join(f"t.{c}" for c in _TURN_COLUMNS.split(", "))
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                f"SELECT t.session_id, {columns} FROM {{s}}.turns t JOIN {{s}}.sessions s "
                "ON s.id = t.session_id WHERE s.user_id = %s AND (t.session_id, t.seq) IN "
                "(SELECT * FROM unnest(%s::text[], %s::int[]))"),
                (user_id, [k[0] for k in keys], [int(k[1]) for k in keys])).fetchall()
        return {(r[0], r[1]): _turn(r[1:]) for r in rows}

    def append(self, session_id: str, turns: Sequence[TurnWrite],
               idempotency: IdempotencyKey | None = None,
               user_id: str | None = None) -> list[TurnRow]:
        """Append turns in order, creating the session; all of them or none. With an
        idempotency key, `{"turn_ids", "turns"}` is stored in the same transaction (and
        `Replayed` raised, writing nothing, if the key already has a response). A `user_id`
        is stored on a session that has none; another one than it holds is a `Conflict`."""
        now = time.time()
        rows: list[TurnRow] = []
        with self.db.connection() as conn:
            check_unused(conn, self._schema, idempotency)
            # The upsert locks the session row until commit: concurrent appends queue here.
            stored_user = conn.execute(self._q(
                "INSERT INTO {s}.sessions(id, created_at, updated_at, user_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "updated_at = excluded.updated_at, "
                "user_id = coalesce({s}.sessions.user_id, excluded.user_id) RETURNING user_id"),
                (session_id, now, now, user_id)).fetchone()[0]
            if user_id is not None:
                check_user(session_id, user_id, stored_user)
            seq = conn.execute(self._q(
                "SELECT coalesce(max(seq), 0) FROM {s}.turns WHERE session_id = %s"),
                (session_id,)).fetchone()[0]
            taken = {r[0] for r in conn.execute(self._q(
                "SELECT id FROM {s}.turns WHERE session_id = %s"), (session_id,))}
            values = []
            for turn in turns:
                seq += 1
                turn_id = turn.id or _free_id(taken, f"turn-{seq}")
                if turn_id in taken:
                    raise Conflict(
                        f"session {session_id!r} already has a turn with id {turn_id!r}: "
                        "give each turn a new id, or leave id out to have one assigned")
                taken.add(turn_id)
                values.append((session_id, seq, turn_id, turn.role, turn.name, turn.content,
                               json.dumps(turn.tool_calls) if turn.tool_calls else None,
                               turn.tool_call_id, turn.ts, turn.tokens,
                               np.asarray(turn.embedding, dtype=np.float32)
                               if turn.embedding is not None else None))
                rows.append(TurnRow(seq, turn_id, turn.role, turn.content, turn.name,
                                    turn.tool_calls, turn.tool_call_id, turn.ts, turn.tokens))
            with conn.cursor() as cur:
                cur.executemany(self._q(
                    "INSERT INTO {s}.turns(session_id, seq, id, role, name, content, "
                    "tool_calls, tool_call_id, ts, tokens, embedding) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)"), values)
            if idempotency is not None:
                # Turns are only ever removed with their session, so the last seq is the count.
                store_response(conn, self._schema, idempotency,
                               {"turn_ids": [r.id for r in rows], "turns": seq})
        return rows

    def turns(self, session_id: str, after_seq: int = 0) -> list[TurnRow]:
        with self.db.connection() as conn:
            return [_turn(r) for r in conn.execute(self._q(
                f"SELECT {_TURN_COLUMNS} FROM {{s}}.turns WHERE session_id = %s AND seq > %s "
                "ORDER BY seq"), (session_id, after_seq))]

    def turns_by_seq(self, session_id: str, seqs: Sequence[int]) -> dict[int, TurnRow]:
        if not seqs:
            return {}
        with self.db.connection() as conn:
            return {r[0]: _turn(r) for r in conn.execute(self._q(
                f"SELECT {_TURN_COLUMNS} FROM {{s}}.turns WHERE session_id = %s "
                "AND seq = ANY(%s)"), (session_id, [int(s) for s in seqs]))}

    def turn_vectors(self, session_id: str, after_seq: int = 0) -> TurnVectors:
        """The session's turns that have embeddings, after `after_seq`, oldest first."""
        with self.db.connection() as conn:
            rows = conn.execute(self._q(
                "SELECT seq, embedding, tokens, role, name FROM {s}.turns WHERE session_id = %s "
                "AND seq > %s AND embedding IS NOT NULL ORDER BY seq"),
                (session_id, after_seq)).fetchall()
        return TurnVectors.of([(r[0], as_vector(r[1]), r[2], r[3], r[4]) for r in rows])

    def lexical_turns(self, session_id: str, match: str, k: int,
                      max_seq: int) -> list[tuple[int, float]]:
        """(seq, full-text rank; higher is better) of the session's turns up to `max_seq`."""
        terms = match_terms(match)
        if not terms or max_seq <= 0:
            return []
        with self.db.connection() as conn:
            lexemes = self._lexemes.distinct(conn, terms)
            if not lexemes:
                return []
            rows = conn.execute(self._q(
                "SELECT seq, ts_rank(tsv, q) AS score FROM {s}.turns, "
                "CAST(%s AS tsquery) AS q WHERE session_id = %s AND seq <= %s AND tsv @@ q "
                "ORDER BY score DESC, seq LIMIT %s"),
                (tsquery_text(lexemes), session_id, max_seq, k)).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def update_summary(self, session_id: str, summary: str, through: int, tokens: int,
                       expected_through: int) -> bool:
        """Store a summary covering turns up to `through`, unless another writer moved first."""
        with self.db.connection() as conn:
            cur = conn.execute(self._q(
                "UPDATE {s}.sessions SET summary = %s, summary_through = %s, "
                "summary_tokens = %s, updated_at = %s WHERE id = %s AND summary_through = %s"),
                (summary, through, tokens, time.time(), session_id, expected_through))
            return cur.rowcount == 1

    def delete(self, session_id: str) -> bool:
        with self.db.connection() as conn:
            cur = conn.execute(self._q("DELETE FROM {s}.sessions WHERE id = %s"), (session_id,))
            return cur.rowcount == 1


def _free_id(taken: set[str], wanted: str) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`... when a caller already chose that id."""
    candidate, n = wanted, 1
    while candidate in taken:
        n += 1
        candidate = f"{wanted}-{n}"
    return candidate
