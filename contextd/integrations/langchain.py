"""LangChain adapters (`pip install 'contextd[langchain]'`): a retriever over `search`, a chat
message history over sessions, and assembled prompts as LangChain messages. Each takes an
`Engine` or a `Client`.

    >>> from contextd.integrations.langchain import (  # doctest: +SKIP
    ...     ContextdChatMessageHistory, ContextdRetriever, to_langchain_messages)
    >>> retriever = ContextdRetriever(engine, namespace="docs", top_k=3)  # doctest: +SKIP
    >>> docs = retriever.invoke("What is RRF?")  # doctest: +SKIP
    >>> history = ContextdChatMessageHistory(engine, "s1")  # doctest: +SKIP
    >>> history.add_messages([HumanMessage("Hi"), AIMessage("Hello!")])  # doctest: +SKIP
    >>> response = engine.assemble(query="And?", session_id="s1", max_tokens=2000)  # doctest: +SKIP
    >>> to_langchain_messages(response)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from contextd.integrations.source import (
    StoredSession,
    check_source,
    hit_metadata,
    openai_message,
    require,
)

require("langchain_core", "langchain")

from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.chat_history import BaseChatMessageHistory  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    BaseMessage,
    convert_to_messages,
    convert_to_openai_messages,
)
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from pydantic import field_validator  # noqa: E402


def to_langchain_messages(messages: Any) -> list[BaseMessage]:
    """An assembled prompt (an `AssembleResponse`, or its messages) as LangChain messages:
    system and developer messages become `SystemMessage` (developer keeps its role in
    `additional_kwargs["__openai_role__"]`), user `HumanMessage`, assistant `AIMessage` with
    its `tool_calls` parsed, tool `ToolMessage`.

        >>> response = engine.assemble(query="What is RRF?", max_tokens=1500)  # doctest: +SKIP
        >>> chat_model.invoke(to_langchain_messages(response))  # doctest: +SKIP
    """
    items = getattr(messages, "messages", messages)
    return _from_openai([openai_message(m) for m in items])


def _from_openai(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    # LangChain content is a string: an assistant turn that only calls tools has "".
    return convert_to_messages([m if m.get("content") is not None else {**m, "content": ""}
                                for m in messages])


class ContextdRetriever(BaseRetriever):
    """LangChain retriever over contextd's `search` (hybrid by default, ranked, diverse).

    Each hit becomes a `Document` whose `id` is "doc_id#chunk" and whose metadata is the
    document's metadata plus `id`, `chunk`, `title`, `score`, `dense_rank`, `lexical_rank`.

        >>> retriever = ContextdRetriever(engine, namespace="docs", top_k=4)  # doctest: +SKIP
        >>> [d.metadata["id"] for d in retriever.invoke("vitamin d")]  # doctest: +SKIP
    """

    source: Any
    namespace: str = "default"
    top_k: int = 10
    filters: dict[str, Any] | None = None
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"

    def __init__(self, source: Any = None, /, **fields: Any) -> None:
        if source is not None:
            fields["source"] = source
        super().__init__(**fields)

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: Any) -> Any:
        return check_source(value)

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        response = self.source.search(query, namespace=self.namespace, top_k=self.top_k,
                                      filters=self.filters, mode=self.mode)
        return [Document(page_content=hit.text, metadata=hit_metadata(hit),
                         id=f"{hit.id}#{hit.chunk}") for hit in response.hits]


class ContextdChatMessageHistory(BaseChatMessageHistory):
    """LangChain chat history stored as a contextd session, so `assemble` can draw on it
    (summary, recent window, recall of old turns).

    `messages` reads every turn (each message's `id` is its turn id); `add_messages` appends;
    `clear` deletes the session.

        >>> history = ContextdChatMessageHistory(client, "s1", namespace="docs")  # doctest: +SKIP
        >>> history.add_user_message("Hi"); history.messages  # doctest: +SKIP
        [HumanMessage(content='Hi', id='t_…')]
    """

    def __init__(self, source: Any, session_id: str, *, namespace: str = "default",
                 user_id: str | None = None) -> None:
        # user_id: the session's user, set by the first append (a different one is a 409),
        # so that assembles with recall_scope "user" recall from this conversation too.
        self.session = StoredSession(source, session_id, namespace, user_id)

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return _from_openai(self.session.read())

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append messages as turns (tool calls and tool results included), in one call."""
        self.session.append(convert_to_openai_messages(list(messages)))

    def clear(self) -> None:
        """Delete the session (nothing to do if it does not exist)."""
        self.session.delete()


__all__ = ["ContextdChatMessageHistory", "ContextdRetriever", "to_langchain_messages"]
