"""What both framework adapters need from a contextd source (an `Engine` or a `Client`): a
session's turns read, appended, replaced and deleted, its budgeted history, and search hits
as flat metadata. Everything is plain OpenAI-format message dicts, which both frameworks
convert from and to.

    >>> session = StoredSession(engine, "s1")  # doctest: +SKIP
    >>> session.append([{"role": "user", "content": "Hi"}]); session.read()  # doctest: +SKIP
    [{'role': 'user', 'content': 'Hi', 'id': 't_…'}]
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from contextd import ChatMessage, InvalidRequest, NamespaceNotFound, SearchHit, SessionNotFound
from contextd.models import MAX_MESSAGES
from contextd.validation import parse

OPENAI_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")

# Keys of a hit's own metadata that the adapters set; they win over a document's metadata
# keys of the same name.
HIT_KEYS = ("id", "chunk", "title", "score", "dense_rank", "lexical_rank")


def require(module: str, extra: str) -> ModuleType:
    """Import a framework module, or an ImportError that names the extra to install.

        >>> require("langchain_core.retrievers", "langchain")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise  # the framework is there but something it needs is broken: show that
        raise ImportError(
            f"contextd.integrations.{extra} needs {top.replace('_', '-')}: install it with "
            f"pip install 'contextd[{extra}]'") from exc


def check_source(source: Any) -> Any:
    """`source` if it is a synchronous contextd source; TypeError for an AsyncClient."""
    search = getattr(source, "search", None)
    if search is None or not hasattr(source, "append_messages"):
        raise TypeError(f"expected a contextd Engine or Client, got {type(source).__name__}")
    if inspect.iscoroutinefunction(search):
        raise TypeError("the adapters call contextd synchronously: pass a contextd.Client, "
                        "not an AsyncClient (their async methods run it in a worker thread)")
    return source


def openai_message(message: Any) -> dict[str, Any]:
    """A contextd message (`Turn`, `OutputMessage` or dict) as an OpenAI message dict with no
    null keys; a turn keeps its `id`.

        >>> openai_message(OutputMessage(role="user", content="Hi"))  # doctest: +SKIP
        {'role': 'user', 'content': 'Hi'}
    """
    data = message if isinstance(message, dict) else message.model_dump(mode="json")
    out = {key: data[key] for key in OPENAI_KEYS if data.get(key) is not None}
    if data.get("id") is not None and "seq" in data:  # a stored turn
        out["id"] = data["id"]
    return out


def hit_metadata(hit: SearchHit) -> dict[str, Any]:
    """A search hit's document metadata plus where it came from and how it ranked."""
    return {**hit.metadata, "id": hit.id, "chunk": hit.chunk, "title": hit.title,
            "score": hit.score, "dense_rank": hit.dense_rank, "lexical_rank": hit.lexical_rank}


class StoredSession:
    """One contextd session seen as a list of OpenAI message dicts."""

    def __init__(self, source: Any, session_id: str, namespace: str = "default",
                 user_id: str | None = None, recall_scope: str = "session") -> None:
        self.source = check_source(source)
        self.session_id = session_id
        self.namespace = namespace
        self.user_id = user_id  # set on the session by the first append
        self.recall_scope = recall_scope  # "user": recall from the user's other sessions too

    def read(self) -> list[dict[str, Any]]:
        """Every turn, oldest first (those folded into the summary too); [] if none."""
        try:
            info = self.source.get_session(self.session_id, namespace=self.namespace)
        except (SessionNotFound, NamespaceNotFound):
            return []
        return [openai_message(turn) for turn in info.turns]

    def append(self, messages: Sequence[dict[str, Any]]) -> None:
        """Append turns. All are checked before any is sent, so a bad message writes none."""
        checked = [parse(ChatMessage, m) for m in messages]
        for start in range(0, len(checked), MAX_MESSAGES):
            self.source.append_messages(self.session_id, checked[start:start + MAX_MESSAGES],
                                        namespace=self.namespace, user_id=self.user_id)

    def delete(self) -> None:
        """Delete the session; nothing to do if there is none."""
        with contextlib.suppress(SessionNotFound, NamespaceNotFound):
            self.source.delete_session(self.session_id, namespace=self.namespace)

    def replace(self, messages: Sequence[dict[str, Any]]) -> None:
        """Make `messages` the whole session."""
        for m in messages:
            parse(ChatMessage, m)  # before the delete: a bad message must not cost the history
        self.delete()
        if messages:
            self.append(messages)

    def history(self, query: str | None, *, max_tokens: int | None, model: str | None,
                recall: bool = True) -> list[dict[str, Any]]:
        """The session's history as `assemble` fits it into the budget: running summary, the
        recent turns that fit, and earlier turns relevant to `query` (or to the last user
        message); no documents. Ends with the last stored user message when it is the last
        turn. [] for a missing session."""
        request: dict[str, Any] = {"session_id": self.session_id, "namespace": self.namespace,
                                   "max_tokens": max_tokens, "model": model, "top_k": 0,
                                   "recall": recall}
        if self.user_id is not None:
            request |= {"user_id": self.user_id, "recall_scope": self.recall_scope}
        try:
            if not query:
                try:
                    # The usual case: the user's message is stored already and is the query.
                    return self._messages(request | {"query": ""}, drop_query=False)
                except InvalidRequest as exc:
                    if type(exc) is not InvalidRequest:  # a budget or model problem: show it
                        raise
                    # The session does not end with a user message: recall by the last one.
                    users = [m for m in self.read() if m["role"] == "user" and m.get("content")]
                    if not users:
                        return self.read()
                    query = users[-1]["content"]
            return self._messages(request | {"query": query}, drop_query=True)
        except (SessionNotFound, NamespaceNotFound):
            return []

    def _messages(self, request: dict[str, Any], *, drop_query: bool) -> list[dict[str, Any]]:
        messages = [openai_message(m) for m in self.source.assemble(request).messages]
        # The query is the request's own last message, not part of the stored history.
        return messages[:-1] if drop_query else messages
