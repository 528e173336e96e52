"""Request and response models: the API contract.

Defined once and shared by the `Engine`, the HTTP server, the client and the OpenAPI schema.
Limits live on the fields themselves, so every caller gets the same 4xx for the same input.

    >>> req = AssembleRequest(query="What is FAISS?", max_tokens=2000)
    >>> req.namespace
    'default'
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,255}$"
SESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
METADATA_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"

MAX_DOCUMENT_CHARS = 1_000_000
MAX_QUERY_CHARS = 20_000
MAX_MESSAGE_CHARS = 200_000
MAX_BATCH_DOCUMENTS = 1_000
MAX_MESSAGES = 1_000
MAX_BUDGET_TOKENS = 2_000_000

Namespace = Annotated[
    str,
    Field(
        pattern=NAMESPACE_PATTERN,
        description="Tenant namespace: 1-63 chars of a-z, 0-9, '_' or '-', starting with a "
        "letter or digit.",
        examples=["default"],
    ),
]
DocumentId = Annotated[str, Field(pattern=ID_PATTERN, description="Document id.")]
SessionId = Annotated[str, Field(pattern=SESSION_PATTERN, description="Session id.")]
MetadataValue = str | int | float | bool | None | list[str | int | float | bool]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- chat messages


class FunctionCall(_Model):
    name: str = Field(max_length=256)
    arguments: str = Field(default="", max_length=MAX_MESSAGE_CHARS)


class ToolCall(_Model):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Model):
    """One message in OpenAI chat format, plus optional `id` and `timestamp` for memory.

    `content` may be a string or a list of `{"type": "text", "text": ...}` parts; parts are
    joined into one string.
    """

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=256)
    id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="Turn id; assigned by the session when missing.",
    )
    timestamp: datetime | None = Field(
        default=None, description="When the turn happened; shown with recalled turns."
    )

    @field_validator("content", mode="before")
    @classmethod
    def _join_parts(cls, value: Any) -> Any:
        if isinstance(value, list):
            texts = []
            for part in value:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise ValueError("only text content parts are supported: {'type': 'text'}")
                texts.append(str(part.get("text", "")))
            return "\n".join(texts)
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs the tool_call_id it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only 'assistant' messages may carry tool_calls")
        if self.content is None and not self.tool_calls:
            raise ValueError("a message needs content (or tool_calls for an assistant)")
        return self

    def openai(self) -> dict[str, Any]:
        """The message as an OpenAI chat API expects it (no contextd-only fields)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [tc.model_dump() for tc in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class OutputMessage(BaseModel):
    """A message of the assembled prompt, ready for an OpenAI-compatible chat API."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


# --------------------------------------------------------------------------- documents


class Document(_Model):
    """A document to index. Upserting an existing id replaces its chunks."""

    id: DocumentId
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    title: str | None = Field(default=None, max_length=1_000)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=64)

    @field_validator("metadata")
    @classmethod
    def _check_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        import re

        for key in value:
            if not re.match(METADATA_KEY_PATTERN, key):
                raise ValueError(
                    f"metadata key {key!r} is invalid: use 1-64 chars of letters, digits, "
                    "'_', '.', '-', starting with a letter or '_'"
                )
        return value


class UpsertRequest(_Model):
    documents: list[Document] = Field(min_length=1, max_length=MAX_BATCH_DOCUMENTS)


class UpsertResult(BaseModel):
    namespace: str
    upserted: int = Field(description="Documents written (new or changed).")
    unchanged: int = Field(description="Documents whose text, title and metadata were identical.")
    chunks: int = Field(description="Chunks written.")
    embedded: int = Field(description="Chunk embeddings new to this namespace (computed, or "
                          "reused from another namespace without saying so).")
    cached: int = Field(description="Chunk embeddings this namespace had stored before "
                        "(or repeated within the request).")


class StoredDocument(BaseModel):
    namespace: str
    id: str
    text: str
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    chunks: int
    tokens: int
    updated_at: datetime


class DeleteResult(BaseModel):
    namespace: str
    id: str
    deleted: bool
    chunks: int = Field(description="Chunks removed.")


class NamespaceInfo(BaseModel):
    name: str
    documents: int
    chunks: int
    sessions: int
    vector_index: str = Field(description="Kind of vector index serving the namespace.")
    index_recall: float | None = Field(None, description="Recall@10 against exact search, "
                                       "measured when the approximate index was built; null "
                                       "while search is exact.")


# --------------------------------------------------------------------------- search

SearchMode = Literal["hybrid", "dense", "lexical"]


class SearchRequest(_Model):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=10, ge=1, le=1_000)
    filters: dict[str, Any] | None = Field(
        default=None,
        description="Metadata filter: {key: value} for equality, or {key: {op: value}} with "
        "op in $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists.",
    )
    mode: SearchMode = "hybrid"


class SearchHit(BaseModel):
    id: str = Field(description="Document id.")
    chunk: int = Field(description="Chunk number within the document, from 0.")
    text: str
    title: str | None = None
    score: float = Field(description="Fused relevance of the chunk's document, higher is "
                         "better: with fusion 'convex' (the default) a weighted mean of its "
                         "dense and lexical scores, each divided by the best of its list, in "
                         "[0, 1].")
    dense_rank: int | None = Field(default=None, description="Rank in dense results, from 1.")
    lexical_rank: int | None = Field(default=None, description="Rank in lexical results, from 1.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    namespace: str
    query: str
    hits: list[SearchHit]
    timings_ms: dict[str, float]


# --------------------------------------------------------------------------- sessions


class AppendRequest(_Model):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)


class Turn(BaseModel):
    id: str
    seq: int = Field(description="Position in the session, from 1.")
    role: str
    content: str | None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    timestamp: datetime | None = None
    tokens: int = Field(description="Tokens of the turn as a chat message, overhead included.")


class AppendResult(BaseModel):
    namespace: str
    session_id: str
    appended: int
    turn_ids: list[str]
    turns: int = Field(description="Turns in the session after the append.")


class SessionInfo(BaseModel):
    namespace: str
    session_id: str
    turns: list[Turn]
    summary: str | None = Field(description="Running summary of the turns evicted so far.")
    summary_through: int = Field(description="Last turn seq folded into the summary; 0 if none.")
    summary_tokens: int
    turn_tokens: int = Field(description="Tokens of all turns as chat messages.")


# --------------------------------------------------------------------------- assemble


class AssembleRequest(_Model):
    """What to assemble: a query, optional history, and a budget (`max_tokens` or `model`)."""

    namespace: Namespace = "default"
    query: str = Field(default="", max_length=MAX_QUERY_CHARS,
                       description="The current question; never dropped.")
    session_id: SessionId | None = Field(
        default=None, description="Stored conversation to draw history from.")
    messages: list[ChatMessage] | None = Field(
        default=None,
        max_length=MAX_MESSAGES,
        description="New turns: appended to the session, or used as ephemeral history when "
        "there is no session_id. When `query` is empty, the last user message is the query.",
    )
    system: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS,
                               description="System prompt; never dropped.")
    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_BUDGET_TOKENS, description="Prompt token budget."
    )
    model: str | None = Field(
        default=None,
        max_length=128,
        description="Model name: its context window minus reserve_output_tokens is the budget, "
        "and its tokenizer counts the tokens.",
    )
    reserve_output_tokens: int = Field(
        default=1024,
        ge=0,
        le=MAX_BUDGET_TOKENS,
        description="Tokens kept free for the reply when the budget comes from `model`.",
    )
    top_k: int = Field(default=8, ge=0, le=100, description="Documents to consider; 0 for none.")
    filters: dict[str, Any] | None = Field(default=None, description="Metadata filter.")
    history_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Largest share of the budget left after system and query that history "
        "(summary, recent turns, recalled turns) may take; documents get the rest.",
    )
    recall: bool = Field(
        default=True, description="Bring back evicted turns relevant to the query."
    )
    query_type: str | None = Field(
        default=None, pattern=r"^[a-z0-9_]{1,32}$", description="Label for metrics."
    )

    @model_validator(mode="after")
    def _check_budget(self) -> AssembleRequest:
        if self.max_tokens is None and self.model is None:
            raise ValueError("give a budget: set max_tokens, model, or both")
        return self


class Usage(BaseModel):
    """Prompt tokens by section. The sections plus `overhead` add up to `total`."""

    system: int = Field(0, description="Tokens of the system prompt's content.")
    summary: int = Field(0, description="Tokens of the running summary's content.")
    history: int = Field(0, description="Tokens of the recent turns included verbatim.")
    recalled: int = Field(0, description="Tokens of the recalled earlier turns.")
    documents: int = Field(0, description="Tokens of the context documents block.")
    query: int = Field(0, description="Tokens of the query.")
    overhead: int = Field(0, description="Per-message framing and reply priming tokens.")
    total: int = Field(0, description="Prompt tokens an OpenAI chat model bills for `messages`.")
    budget: int = Field(0, description="The prompt budget the request resolved to.")


class UsedDocument(BaseModel):
    id: str = Field(description="Document id.")
    chunk: int = Field(description="Chunk number within the document, from 0.")
    rank: int = Field(description="Position in the context block, from 1.")
    score: float = Field(description="Fused relevance score, as in search hits; in [0, 1] "
                         "with convex fusion.")
    tokens: int = Field(description="Tokens of the document's entry in the context block.")
    truncated: bool = Field(description="True when only a leading part of the chunk fit.")
    title: str | None = Field(default=None, description="Document title.")


DropReason = Literal[
    "over_budget",
    "history_share",
    "near_duplicate",
]


class Dropped(BaseModel):
    kind: Literal["document", "turn", "summary"] = Field(
        description="What was dropped.")
    id: str = Field(description="Document id#chunk, turn id, or 'summary'.")
    reason: DropReason = Field(
        description="over_budget: did not fit the budget left; history_share: did not fit "
        "history's share (a tool call and its results are dropped together); near_duplicate: "
        "too similar to a chosen chunk.")
    tokens: int = Field(description="Tokens the item would have needed.")


class AssembleResponse(BaseModel):
    namespace: str = Field(description="Namespace the documents came from.")
    session_id: str | None = Field(description="Session the history came from, if any.")
    model: str | None = Field(description="Model named in the request, if any.")
    encoding: str = Field(description="Tokenizer encoding that counted the tokens.")
    messages: list[OutputMessage] = Field(
        description="Chat messages ready for an OpenAI-compatible API: system prompt, summary, "
        "recent turns, recalled turns, context documents, then the query.")
    usage: Usage = Field(description="Tokens by section; they add up to the total.")
    documents: list[UsedDocument] = Field(description="Documents in the context block.")
    history_turn_ids: list[str] = Field(description="Turns included verbatim, oldest first.")
    recalled_turn_ids: list[str] = Field(description="Evicted turns brought back for this query.")
    summary_through: int = Field(description="Last turn seq covered by the included summary.")
    dropped: list[Dropped] = Field(description="What was left out, and why.")
    prefix_unchanged: bool | None = Field(
        default=None,
        description="True when the stable prefix (system, summary, recent turns) is the same "
        "as in the previous request of this session; null without a session.",
    )
    warnings: list[str] = Field(
        default_factory=list, description="Caveats, e.g. approximate counts for a model "
        "whose tokenizer is not available.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage: budget, lexical (bm25; with micro-batching it runs "
        "while the query embeds), embed (the query vector, or with micro-batching the wait for "
        "it after bm25), memory, retrieval, ranking, packing, total.")
