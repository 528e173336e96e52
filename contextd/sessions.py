"""Session operations: append turns (embedding them for later recall), read, delete.

Turn embeddings are computed here, when turns arrive, so that recalling old turns at
assemble time costs no model call.

    >>> service.append("default", "s1", [{"role": "user", "content": "Hi"}])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contextd.errors import Conflict, InvalidRequest, SessionNotFound
from contextd.memory.conversation import ConversationMemory, HistoryState
from contextd.memory.recall import UserScope
from contextd.models import (
    MAX_MESSAGES,
    SESSION_PATTERN,
    USER_PATTERN,
    AppendResult,
    ChatMessage,
    SessionInfo,
    ToolCall,
    Turn,
)
from contextd.namespaces import NamespaceRegistry, check_namespace
from contextd.protocols import Embedder
from contextd.settings import Settings
from contextd.store.idempotency import IdempotencyKey, Replayed
from contextd.store.records import TurnRow, TurnWrite
from contextd.tokens import TOKENS_PER_MESSAGE, get_counter, message_tokens
from contextd.validation import parse


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not re.fullmatch(SESSION_PATTERN, session_id):
        raise InvalidRequest(
            f"invalid session id {session_id!r}: use 1-128 characters of letters, digits, "
            "'_', '.', ':', '@' and '-', starting with a letter or digit")
    return session_id


def check_user_id(user_id: str | None) -> str | None:
    if user_id is not None and (not isinstance(user_id, str)
                                or not re.fullmatch(USER_PATTERN, user_id)):
        raise InvalidRequest(
            f"invalid user_id {user_id!r}: use 1-128 characters of letters, digits, "
            "'_', '.', ':', '@' and '-', starting with a letter or digit")
    return user_id


def parse_messages(messages: Sequence[ChatMessage | dict[str, Any]]) -> list[ChatMessage]:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise InvalidRequest("messages must be a list of chat messages {role, content}")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"{len(messages)} messages: send at most {MAX_MESSAGES} at once")
    parsed: list[ChatMessage] = []
    seen: set[str] = set()
    for i, raw in enumerate(messages):
        try:
            message = parse(ChatMessage, raw)
        except InvalidRequest as exc:
            raise InvalidRequest(f"messages[{i}]: {exc.detail}") from None
        if message.id is not None:
            if message.id in seen:
                raise InvalidRequest(f"turn id {message.id!r} appears twice: give each turn "
                                     "its own id")
            seen.add(message.id)
        parsed.append(message)
    return parsed


def content_tokens(message_tokens_sum: int, messages: int) -> int:
    """The content part of `messages` chat messages costing `message_tokens_sum` in all: their
    framing (per-message tokens and the one-token role) taken out, as usage sections count.

        >>> content_tokens(30, 2)
        22
    """
    return max(0, message_tokens_sum - messages * (TOKENS_PER_MESSAGE + 1))


def turn_embedding_text(message: ChatMessage) -> str:
    """What recall embeds for a turn: the speaker's name with the words, so that a question
    about a person finds that person's first-person turns."""
    return f"{message.name}: {message.content}" if message.name else str(message.content)


def turn_model(row: TurnRow) -> Turn:
    return Turn(
        id=row.id, seq=row.seq, role=row.role, content=row.content, name=row.name,
        tool_calls=[ToolCall.model_validate(c) for c in row.tool_calls] if row.tool_calls
        else None,
        tool_call_id=row.tool_call_id,
        timestamp=datetime.fromtimestamp(row.ts, tz=UTC) if row.ts is not None else None,
        tokens=row.tokens)


class SessionService:
    def __init__(self, settings: Settings, embedder: Embedder, registry: NamespaceRegistry,
                 memory: ConversationMemory) -> None:
        self.settings = settings
        self.embedder = embedder
        self.registry = registry
        self.memory = memory
        self.counter = get_counter(settings.encoding)

    def append(self, namespace: str, session_id: str,
               messages: Sequence[ChatMessage | dict[str, Any]],
               idempotency: IdempotencyKey | None = None,
               user_id: str | None = None) -> AppendResult:
        """Append turns; with an idempotency key (bound here unless the caller, such as an
        assemble, bound it to its whole request), a repeat stores nothing and answers as the
        first attempt did. A `user_id` is stored on a session without one; a session of
        another user is a `Conflict` and stores nothing."""
        check_namespace(namespace)
        check_session_id(session_id)
        check_user_id(user_id)
        parsed = parse_messages(messages)
        if not parsed:
            raise InvalidRequest("messages is empty: send at least one message")
        if idempotency is not None:
            if not idempotency.fingerprint:
                request: dict[str, Any] = {"session_id": session_id, "messages": [
                    m.model_dump(mode="json") for m in parsed]}
                if user_id is not None:  # absent, not null: older keys keep their fingerprint
                    request["user_id"] = user_id
                idempotency.bind("append", request)
            if self.registry.exists(namespace) and (
                    stored := self.registry.get(namespace).store.stored_response(
                        idempotency)) is not None:
                return self._appended(namespace, session_id, stored)
        writes = self.turn_writes(parsed, namespace)
        ns = self.registry.get_or_create(namespace)
        try:
            rows = ns.sessions.append(session_id, writes, idempotency, user_id=user_id)
        except Replayed as replay:
            return self._appended(namespace, session_id, replay.response)
        state = self.state(namespace, session_id)
        self.memory.recaller.cache.appended((namespace, session_id, state.generation), rows,
                                            [w.embedding for w in writes])
        self.compact(state)
        return self._appended(namespace, session_id, {"turn_ids": [r.id for r in rows],
                                                      "turns": rows[-1].seq})

    @staticmethod
    def _appended(namespace: str, session_id: str, stored: dict[str, Any]) -> AppendResult:
        return AppendResult(namespace=namespace, session_id=session_id,
                            appended=len(stored["turn_ids"]), turn_ids=stored["turn_ids"],
                            turns=stored["turns"])

    def compact(self, state: HistoryState) -> int:
        """Fold the session's oldest turns into its summary once they outgrow the session's
        window target; runs at the end of every append, never on the assemble path."""
        return self.memory.compact(state, self.settings.session_window_tokens,
                                   self.settings.summary_max_tokens, self.counter)

    def turn_writes(self, messages: Sequence[ChatMessage], namespace: str) -> list[TurnWrite]:
        texts = [turn_embedding_text(m) for m in messages if m.content]
        vectors, _, _ = self.registry.cache.embed(
            self.embedder, texts, namespace=namespace) if texts else (None, 0, 0)
        writes = []
        row = 0
        for m in messages:
            vector = None
            if m.content and vectors is not None:
                vector = vectors[row]
                row += 1
            plain = m.openai()
            writes.append(TurnWrite(
                id=m.id, role=m.role, content=m.content, name=m.name,
                tool_calls=plain.get("tool_calls"), tool_call_id=m.tool_call_id,
                ts=m.timestamp.timestamp() if m.timestamp else None,
                tokens=message_tokens(plain, self.counter), embedding=vector))
        return writes

    def state(self, namespace: str, session_id: str, whole_within: int | None = None,
              scope: str = "session", user_id: str | None = None) -> HistoryState:
        """The session's unsummarised turns and summary, read only.

        With `whole_within`, a session whose every turn fits that many tokens comes whole and
        without its summary: compaction never hides turns from a budget that can hold them.
        With `scope` "user", the user's other sessions are listed for recall. A `user_id`
        must be the session's.
        """
        ns = self.registry.get(namespace)
        row = ns.sessions.session(session_id)
        if row is None:
            raise SessionNotFound(
                f"session {session_id!r} does not exist in namespace {namespace!r}: send "
                "messages with the request, or append them first, to start it")
        if user_id is not None and row.user_id != user_id:
            if row.user_id is None:
                raise InvalidRequest(
                    f"session {session_id!r} has no user_id, and an assemble without messages "
                    "stores nothing: send user_id with messages (here or in an append) to set "
                    "it, or leave user_id out")
            raise Conflict(f"session {session_id!r} belongs to user_id {row.user_id!r}, not "
                           f"{user_id!r}: send that user_id, or none")
        others = None
        if scope == "user":
            if row.user_id is None:
                raise InvalidRequest(
                    f"recall_scope 'user' needs the session's user_id, and session "
                    f"{session_id!r} has none: set user_id when appending its messages (or "
                    "send user_id with this request's messages), or use recall_scope "
                    "'session'")
            others = UserScope.read(ns.sessions, row.user_id, session_id)
        whole = whole_within is not None and row.tokens <= whole_within
        through = 0 if whole else row.summary_through
        return HistoryState(
            turns=ns.sessions.turns(session_id, after_seq=through),
            summary=None if whole else row.summary, summary_through=through,
            namespace=namespace, sessions=ns.sessions, session_id=session_id,
            generation=row.created_at, encoding=self.counter.encoding_name,
            stored_tokens=content_tokens(row.tokens, row.turns), others=others)

    def get(self, namespace: str, session_id: str) -> SessionInfo:
        check_session_id(session_id)
        ns = self.registry.get(namespace)
        row = ns.sessions.session(session_id)
        if row is None:
            raise SessionNotFound(f"session {session_id!r} does not exist in namespace "
                                  f"{namespace!r}")
        turns = [turn_model(t) for t in ns.sessions.turns(session_id)]
        return SessionInfo(namespace=namespace, session_id=session_id, turns=turns,
                           summary=row.summary, summary_through=row.summary_through,
                           summary_tokens=row.summary_tokens,
                           turn_tokens=sum(t.tokens for t in turns), user_id=row.user_id)

    def delete(self, namespace: str, session_id: str) -> bool:
        check_session_id(session_id)
        ns = self.registry.get(namespace)
        if not ns.sessions.delete(session_id):
            raise SessionNotFound(f"session {session_id!r} does not exist in namespace "
                                  f"{namespace!r}")
        self.memory.recaller.cache.forget(namespace, session_id)
        return True
