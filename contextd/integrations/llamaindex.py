"""LlamaIndex adapters (`pip install 'contextd[llamaindex]'`): a retriever over `search` and a
chat memory over sessions. Each takes an `Engine` or a `Client`.

    >>> from contextd.integrations.llamaindex import (  # doctest: +SKIP
    ...     ContextdChatMemory, ContextdRetriever)
    >>> retriever = ContextdRetriever(engine, namespace="docs", top_k=3)  # doctest: +SKIP
    >>> nodes = retriever.retrieve("What is RRF?")  # doctest: +SKIP
    >>> memory = ContextdChatMemory.from_defaults(  # doctest: +SKIP
    ...     engine, session_id="s1", token_limit=3000)
    >>> agent.run("Hi", memory=memory)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from contextd.integrations.source import (
    HIT_KEYS,
    StoredSession,
    check_source,
    hit_metadata,
    require,
)

require("llama_index.core", "llamaindex")

from llama_index.core.base.llms.types import (  # noqa: E402
    CachePoint,
    ChatMessage,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.memory import BaseMemory  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

# Ranking details stay out of the text an LLM or an embedder sees; title, id and the
# document's own metadata stay in.
_HIDDEN_KEYS = [key for key in HIT_KEYS if key not in ("id", "title")]

# Other frameworks' names for the assistant.
_ROLES = {"chatbot": "assistant", "model": "assistant"}

# Blocks with nothing for the prompt's text: reasoning traces and cache markers.
_SKIPPED_BLOCKS = (ThinkingBlock, CachePoint)


class ContextdRetriever(BaseRetriever):
    """LlamaIndex retriever over contextd's `search` (hybrid by default, ranked, diverse).

    Each hit becomes a `NodeWithScore`: a `TextNode` with id "doc_id#chunk", the document as
    its source (`node.ref_doc_id`), and the document's metadata plus `id`, `chunk`, `title`,
    `score`, `dense_rank`, `lexical_rank`; the score is the hit's fused score.

        >>> retriever = ContextdRetriever(client, namespace="docs", top_k=4)  # doctest: +SKIP
        >>> [n.node.ref_doc_id for n in retriever.retrieve("vitamin d")]  # doctest: +SKIP
    """

    def __init__(self, source: Any, *, namespace: str = "default", top_k: int = 10,
                 filters: dict[str, Any] | None = None,
                 mode: Literal["hybrid", "dense", "lexical"] = "hybrid",
                 **base: Any) -> None:
        super().__init__(**base)
        self.source = check_source(source)
        self.namespace = namespace
        self.top_k = top_k
        self.filters = filters
        self.mode = mode

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        response = self.source.search(query_bundle.query_str, namespace=self.namespace,
                                      top_k=self.top_k, filters=self.filters, mode=self.mode)
        return [
            NodeWithScore(
                node=TextNode(
                    id_=f"{hit.id}#{hit.chunk}", text=hit.text, metadata=hit_metadata(hit),
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.id)},
                    excluded_llm_metadata_keys=list(_HIDDEN_KEYS),
                    excluded_embed_metadata_keys=list(_HIDDEN_KEYS)),
                score=hit.score)
            for hit in response.hits
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The search blocks (an in-process engine, or a sync HTTP call): not on the loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)


def to_llamaindex_message(message: dict[str, Any]) -> ChatMessage:
    """An OpenAI-format message dict as a LlamaIndex `ChatMessage`: tool calls become
    `ToolCallBlock`s, a tool result's `tool_call_id` (and a `name`) go in `additional_kwargs`,
    as LlamaIndex's agents write them.

        >>> to_llamaindex_message({"role": "user", "content": "Hi"}).content  # doctest: +SKIP
        'Hi'
    """
    blocks: list[Any] = []
    if message.get("content"):
        blocks.append(TextBlock(text=message["content"]))
    for call in message.get("tool_calls") or []:
        arguments = call["function"].get("arguments", "")
        try:
            kwargs: Any = json.loads(arguments) if arguments else {}
        except ValueError:
            kwargs = arguments  # not JSON: kept as the model wrote it
        blocks.append(ToolCallBlock(tool_call_id=call["id"], tool_name=call["function"]["name"],
                                    tool_kwargs=kwargs))
    extra = {key: message[key] for key in ("tool_call_id", "name") if message.get(key)}
    return ChatMessage(role=MessageRole(message["role"]), blocks=blocks, additional_kwargs=extra)


def from_llamaindex_message(message: ChatMessage) -> dict[str, Any]:
    """A LlamaIndex `ChatMessage` as an OpenAI-format message dict; tool calls are read from
    `ToolCallBlock`s, or from `additional_kwargs["tool_calls"]` as older integrations wrote them.
    Only text is stored: an image, audio or document block is a ValueError.

        >>> from_llamaindex_message(ChatMessage(role="user", content="Hi"))  # doctest: +SKIP
        {'role': 'user', 'content': 'Hi'}
    """
    role = message.role.value
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolCallBlock):
            arguments = block.tool_kwargs
            calls.append({"id": block.tool_call_id or f"call_{len(calls)}", "type": "function",
                          "function": {"name": block.tool_name,
                                       "arguments": arguments if isinstance(arguments, str)
                                       else json.dumps(arguments)}})
        elif not isinstance(block, _SKIPPED_BLOCKS):
            raise ValueError(f"contextd stores text only: a {block.block_type!r} block in a "
                             f"{role!r} message cannot be stored; send its text instead")
    for call in message.additional_kwargs.get("tool_calls") or []:
        call = call if isinstance(call, dict) else call.model_dump()
        calls.append({"id": call["id"], "type": "function",
                      "function": {"name": call["function"]["name"],
                                   "arguments": call["function"].get("arguments") or ""}})
    out: dict[str, Any] = {"role": _ROLES.get(role, role),
                           "content": "\n".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    for key in ("tool_call_id", "name"):
        if isinstance(message.additional_kwargs.get(key), str):
            out[key] = message.additional_kwargs[key]
    return out


class ContextdChatMemory(BaseMemory):
    """LlamaIndex chat memory stored as a contextd session.

    `put`/`put_messages` append turns, `set` replaces them, `reset` deletes the session,
    `get_all` reads every turn. `get` returns the history to send: with a budget
    (`token_limit`, or a `model` whose context window less 1024 reply tokens is the budget)
    it is what `assemble` fits into it (the running summary, the recent turns, earlier turns
    relevant to `input` or to the last user message); with neither, every turn.

        >>> memory = ContextdChatMemory.from_defaults(engine, session_id="s1",  # doctest: +SKIP
        ...                                           token_limit=3000)
        >>> memory.put(ChatMessage(role="user", content="Hi")); memory.get()  # doctest: +SKIP
    """

    session_id: str = Field(description="The contextd session holding the turns.")
    namespace: str = Field(default="default", description="The session's namespace.")
    token_limit: int | None = Field(default=None, description="Token budget of `get()`.")
    model: str | None = Field(default=None, description="Model whose window budgets `get()`.")
    recall: bool = Field(default=True, description="Let `get()` bring back relevant turns "
                         "that no longer fit the recent window.")
    user_id: str | None = Field(default=None, description="The session's user, set by the "
                                "first append (a different one is a 409).")
    recall_scope: Literal["session", "user"] = Field(
        default="session", description="With a user_id, 'user' lets `get()` recall from the "
        "user's other sessions of the namespace too.")
    _session: StoredSession = PrivateAttr()

    def __init__(self, source: Any = None, /, **fields: Any) -> None:
        if source is None:
            raise TypeError("ContextdChatMemory needs a contextd Engine or Client first")
        super().__init__(**fields)
        self._session = StoredSession(source, self.session_id, self.namespace, self.user_id,
                                      self.recall_scope)

    @classmethod
    def class_name(cls) -> str:
        return "ContextdChatMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
            cls, source: Any = None, **fields: Any) -> ContextdChatMemory:
        """The memory of session `session_id` in `source` (an Engine or a Client)."""
        return cls(source, **fields)

    def get(self, input: str | ChatMessage | None = None,
            **kwargs: Any) -> list[ChatMessage]:
        query = input.content if isinstance(input, ChatMessage) else input
        if self.token_limit is None and self.model is None:
            return self.get_all()
        messages = self._session.history(query, max_tokens=self.token_limit, model=self.model,
                                         recall=self.recall)
        return [to_llamaindex_message(m) for m in messages]

    def get_all(self) -> list[ChatMessage]:
        return [to_llamaindex_message(m) for m in self._session.read()]

    def put(self, message: ChatMessage) -> None:
        self.put_messages([message])

    def put_messages(self, messages: list[ChatMessage]) -> None:
        self._session.append([from_llamaindex_message(m) for m in messages])

    def set(self, messages: list[ChatMessage]) -> None:
        self._session.replace([from_llamaindex_message(m) for m in messages])

    def reset(self) -> None:
        self._session.delete()


__all__ = ["ContextdChatMemory", "ContextdRetriever", "from_llamaindex_message",
           "to_llamaindex_message"]
