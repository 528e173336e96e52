"""Request and response models: the API contract.

Defined once and shared by the `Engine`, the HTTP server, the client and the OpenAPI schema.
Limits live on the fields themselves, so every caller gets the same 4xx for the same input.

    >>> req = AssembleRequest(query="What is FAISS?", max_tokens=2000)
    >>> req.namespace
    'default'
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

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
MAX_METADATA_KEYS = 64
MAX_METADATA_STRING_CHARS = 2_000
MAX_METADATA_LIST_ITEMS = 100
MAX_METADATA_BYTES = 16_384
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Timestamps must survive a round trip through epoch seconds and back in UTC; the upper end
# leaves a day so that no time zone can push a stored value past year 9999.
EARLIEST_TIMESTAMP = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

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
# The same rules as a session id (an email address or an opaque id both fit).
USER_PATTERN = SESSION_PATTERN
UserId = Annotated[str, Field(pattern=USER_PATTERN, description="User id.")]


def check_json_scalar(value: Any, what: str) -> Any:
    """`value` if SQLite's JSON functions can store and compare it, else ValueError saying why.

    JSON has no NaN or Infinity, and SQLite integers are 64-bit: such values would be stored
    as text SQLite cannot parse, breaking every later filtered read.

        >>> check_json_scalar(3, "x")
        3
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            # Python refuses to print integers of more than 4,300 digits.
            shown = value if value.bit_length() < 256 else f"of {value.bit_length()} bits"
            raise ValueError(f"{what} {shown} is outside the 64-bit integer range "
                             f"[{INT64_MIN}, {INT64_MAX}]; send it as a string")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} {value} is not a finite number (JSON has no NaN or Infinity, "
                         "and values like 1e400 overflow); send a finite number or a string")
    return value


def _check_metadata_value(value: Any) -> Any:
    # One readable message per bad value, instead of one error per member of the union.
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > MAX_METADATA_LIST_ITEMS:
        raise ValueError(f"a metadata list has {len(value)} items; at most "
                         f"{MAX_METADATA_LIST_ITEMS} are allowed")
    for item in items:
        if isinstance(value, list) and item is None:
            raise ValueError("metadata lists hold strings, numbers or booleans, not null")
        if not isinstance(item, str | int | float | bool | None):
            raise ValueError(f"a metadata value must be a string, number, boolean, null or a "
                             f"list of those, not {type(item).__name__}")
        if isinstance(item, str) and len(item) > MAX_METADATA_STRING_CHARS:
            raise ValueError(f"a metadata string has {len(item)} characters; at most "
                             f"{MAX_METADATA_STRING_CHARS} are allowed")
        check_json_scalar(item, "metadata value")
    return value


MetadataString = Annotated[StrictStr, Field(max_length=MAX_METADATA_STRING_CHARS)]
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
MetadataScalar = MetadataString | Int64 | FiniteFloat | StrictBool
MetadataList = Annotated[list[MetadataScalar], Field(max_length=MAX_METADATA_LIST_ITEMS)]
MetadataValue = Annotated[
    MetadataScalar | None | MetadataList,
    BeforeValidator(_check_metadata_value),
]


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
        default=None,
        description="When the turn happened; shown with recalled turns. ISO 8601; without a "
        "UTC offset it is taken as UTC; from 1900-01-01 to 9999-12-30 in UTC.",
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

    @field_validator("timestamp", mode="after")
    @classmethod
    def _check_timestamp(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            when = None
        if when is None or not EARLIEST_TIMESTAMP <= when <= LATEST_TIMESTAMP:
            raise ValueError(f"timestamp {value.isoformat()} is out of range: use a time from "
                             "1900-01-01 to 9999-12-30 in UTC")
        return when

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


def _absent_when_unset(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # the key is left out, never sent as null


def _is_none(value: Any) -> bool:
    return value is None


class OutputMessage(BaseModel):
    """A message of the assembled prompt, ready for an OpenAI-compatible chat API.

    `name`, `tool_calls` and `tool_call_id` are left out when unset (never null), so the message
    is what the OpenAI SDK's `ChatCompletionMessageParam` accepts as it is.

        >>> OutputMessage(role="user", content="hi").openai()
        {'role': 'user', 'content': 'hi'}
    """

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = Field(default=None, description="Null only for an assistant message "
                                "that carries tool_calls.")
    name: str | SkipJsonSchema[None] = Field(
        default=None, exclude_if=_is_none, json_schema_extra=_absent_when_unset)
    tool_calls: list[ToolCall] | SkipJsonSchema[None] = Field(
        default=None, exclude_if=_is_none, json_schema_extra=_absent_when_unset)
    tool_call_id: str | SkipJsonSchema[None] = Field(
        default=None, exclude_if=_is_none, json_schema_extra=_absent_when_unset)

    def openai(self) -> dict[str, Any]:
        """The message as a plain dict for `client.chat.completions.create(messages=[...])`."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- documents


class Document(_Model):
    """A document to index. Upserting an existing id replaces its chunks."""

    id: DocumentId
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    title: str | None = Field(default=None, max_length=1_000)
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA_KEYS,
        description=f"Up to {MAX_METADATA_KEYS} keys (1-64 chars of letters, digits, '_', '.', "
        "'-', starting with a letter or '_'), each a string, a 64-bit integer, a finite "
        "number, a boolean, null or a list of those; at most "
        f"{MAX_METADATA_BYTES} bytes as JSON in all.",
    )

    @field_validator("metadata")
    @classmethod
    def _check_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not re.fullmatch(METADATA_KEY_PATTERN, key):
                raise ValueError(
                    f"metadata key {key!r} is invalid: use 1-64 chars of letters, digits, "
                    "'_', '.', '-', starting with a letter or '_'"
                )
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} "
                             "are allowed: shorten or drop some values")
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
    index_params: dict[str, int] | None = Field(None, description="Parameters of a "
                                                "PostgreSQL store's HNSW index: m and "
                                                "ef_construction it was built with, and the "
                                                "least ef_search of its searches; null for "
                                                "the embedded index.")
    embedder_runtime: str | None = Field(None, description="Runtime embedding queries and "
                                         "turns in this process (e.g. onnx-int8, "
                                         "onnx-fp32): chosen from the CPU unless set.")
    document_runtime: str | None = Field(None, description="Runtime embedding documents in "
                                         "this process: the query runtime, or torch-bf16 "
                                         "where the CPU has AMX; chosen unless set.")


# --------------------------------------------------------------------------- search


def check_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """`filters` if they compile, else ValueError with the reason, so a bad filter is a 422
    when the request is parsed, before anything runs.

        >>> check_filters({"year": {"$gte": 2020}})
        {'year': {'$gte': 2020}}
    """
    from contextd.errors import InvalidRequest
    from contextd.store.filters import parse_filter  # imports this module

    try:
        parse_filter(filters)
    except InvalidRequest as exc:
        raise ValueError(exc.detail) from None
    return filters

SearchMode = Literal["hybrid", "dense", "lexical"]


class SearchRequest(_Model):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: StrictInt = Field(default=10, ge=1, le=1_000, description="Documents to return (a "
                             "document's chunks count once).")
    filters: dict[str, Any] | None = Field(
        default=None,
        description="Metadata filter: {key: value} for equality, or {key: {op: value}} with "
        "op in $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists.",
    )
    mode: SearchMode = "hybrid"

    @field_validator("filters")
    @classmethod
    def _check_filters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_filters(value)


class SearchHit(BaseModel):
    """One document found: its best chunk, with the neighbouring chunks that match too."""

    id: str = Field(description="Document id.")
    chunk: int = Field(description="Number of the document's best-matching chunk, from 0.")
    chunks: list[int] = Field(default_factory=list, description="Numbers of the chunks in "
                              "`text`, in document order: the best chunk and its relevant "
                              "neighbours.")
    text: str = Field(description="Text of `chunks`, in document order (sentences that "
                      "consecutive chunks share appear once).")
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
    user_id: UserId | None = Field(
        default=None, description="The user the session belongs to: stored on a session that "
        "has none, and then never changed (another one is a 409). Lets recall_scope 'user' "
        "recall this session's turns in the user's other sessions.")


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


class SessionSummary(BaseModel):
    session_id: str
    turns: int = Field(description="Turns in the session.")
    updated_at: datetime = Field(description="When the session last changed.")
    user_id: str | None = Field(default=None, description="The user the session belongs to, "
                                "if one was set.")


class SessionInfo(BaseModel):
    namespace: str
    session_id: str
    turns: list[Turn]
    summary: str | None = Field(description="Running summary of the turns evicted so far.")
    summary_through: int = Field(description="Last turn seq folded into the summary; 0 if none.")
    summary_tokens: int
    turn_tokens: int = Field(description="Tokens of all turns as chat messages.")
    user_id: str | None = Field(default=None, description="The user the session belongs to, "
                                "if one was set.")


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
    max_tokens: StrictInt | None = Field(
        default=None, ge=1, le=MAX_BUDGET_TOKENS, description="Prompt token budget."
    )
    model: str | None = Field(
        default=None,
        max_length=128,
        description="Model name: its context window minus reserve_output_tokens is the budget, "
        "and its tokenizer counts the tokens.",
    )
    reserve_output_tokens: StrictInt = Field(
        default=1024,
        ge=0,
        le=MAX_BUDGET_TOKENS,
        description="Tokens kept free for the reply when the budget comes from `model`.",
    )
    top_k: StrictInt = Field(default=8, ge=0, le=100,
                             description="Documents to consider (a document's chunks count "
                             "once); 0 for none.")
    filters: dict[str, Any] | None = Field(default=None, description="Metadata filter.")
    history_share: StrictFloat | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Largest share of the budget left after system and query that history "
        "(summary, recent turns, recalled turns) may take; documents get the rest.",
    )
    recall: StrictBool = Field(
        default=True, description="Bring back evicted turns relevant to the query."
    )
    recall_scope: Literal["session", "user"] = Field(
        default="session", description="Where recall searches: 'session', this session's "
        "turns; 'user', also the turns of every other session of the session's user_id in the "
        "namespace (its most recently updated 100), shown with their conversation and day. "
        "'user' needs a session with a user_id.")
    user_id: UserId | None = Field(
        default=None, description="The user the session belongs to, stored with the "
        "request's messages as an append stores it (set once, never changed); without "
        "messages it must be the session's.")
    previous_prefix_digest: str | None = Field(
        default=None, max_length=64, description="The prefix_digest of this session's "
        "previous response, to learn whether the stable prefix changed (prefix_unchanged).")
    query_type: str | None = Field(
        default=None, pattern=r"^[a-z0-9_]{1,32}$", description="Kind of query, for "
        "telemetry: kept as is in the usage log, and a /metrics label when it is one of the "
        "query_types setting (otherwise counted as 'other')."
    )
    profile: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Profile (named "
        "configuration) to assemble with; unset: the weighted split assigns one by "
        "session_id, else routing_key, else the query.")
    routing_key: str | None = Field(
        default=None, max_length=256, description="Key that keeps requests without a "
        "session on one profile of the split (e.g. a user id).")
    documents_role: Literal["system", "user"] = Field(
        default="system",
        description="Role of the context documents message: 'system' (after the history), or "
        "'user' (a user message right before the query), for providers and chat templates that "
        "accept a single leading system message only.",
    )
    cache: StrictBool = Field(
        default=True, description="Serve the response from the semantic cache when the same "
        "query, or a near-duplicate the guard accepts, was assembled against the same documents "
        "and session state; false always assembles afresh (and stores nothing).")

    @field_validator("filters")
    @classmethod
    def _check_filters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_filters(value)

    @model_validator(mode="after")
    def _check_budget(self) -> AssembleRequest:
        if self.max_tokens is None and self.model is None:
            raise ValueError("give a budget: set max_tokens, model, or both")
        if self.session_id is None and self.recall_scope == "user":
            raise ValueError("recall_scope 'user' recalls from the other sessions of a "
                             "session's user: set session_id (of a session with a user_id)")
        if self.session_id is None and self.user_id is not None:
            raise ValueError("user_id is stored on a session: set session_id, or leave "
                             "user_id out")
        return self


class Usage(BaseModel):
    """Prompt tokens by section. The sections plus `overhead` add up to `total`; the two
    `*_available` counts are what the prompt would have cost without selection."""

    system: int = Field(0, description="Tokens of the system prompt's content.")
    summary: int = Field(0, description="Tokens of the running summary's content.")
    history: int = Field(0, description="Tokens of the recent turns included verbatim.")
    recalled: int = Field(0, description="Tokens of the recalled earlier turns.")
    documents: int = Field(0, description="Tokens of the context documents block.")
    query: int = Field(0, description="Tokens of the query.")
    overhead: int = Field(0, description="Per-message framing and reply priming tokens.")
    total: int = Field(0, description="Prompt tokens an OpenAI chat model bills for `messages`.")
    budget: int = Field(0, description="The prompt budget the request resolved to.")
    history_available: int = Field(0, description="Tokens of the content of every turn the "
                                   "session holds (none summarised, none left out), or of the "
                                   "request's own messages without a session: what sending "
                                   "the whole history would cost against summary, history "
                                   "and recalled. Not part of total.")
    documents_available: int = Field(0, description="Tokens of the text of every candidate "
                                     "chunk retrieval handed to ranking: what sending every "
                                     "retrieved chunk would cost against documents; 0 when "
                                     "no retrieval ran. Not part of total.")


class UsedDocument(BaseModel):
    id: str = Field(description="Document id.")
    chunk: int = Field(description="Number of the document's best-matching chunk, from 0.")
    chunks: list[int] = Field(default_factory=list, description="Numbers of the chunks in the "
                              "document's entry, in document order: the best chunk and the "
                              "relevant neighbours that fit.")
    rank: int = Field(description="Position in the context block, from 1.")
    score: float = Field(description="Fused relevance score, as in search hits; in [0, 1] "
                         "with convex fusion.")
    tokens: int = Field(description="Tokens the document's entry adds to the context block "
                        "(with the separator before the next entry).")
    truncated: bool = Field(description="True when only a leading part of the entry fit.")
    title: str | None = Field(default=None, description="Document title.")
    dense_rank: int | None = Field(default=None, description="Rank in the dense (vector) "
                                   "retrieval, from 1; null if dense retrieval did not find it.")
    lexical_rank: int | None = Field(default=None, description="Rank in the lexical (BM25) "
                                     "retrieval, from 1; null if lexical retrieval did not "
                                     "find it.")


DropReason = Literal[
    "over_budget",
    "history_share",
    "near_duplicate",
    "orphan_tool_result",
]


class Dropped(BaseModel):
    kind: Literal["document", "turn", "summary"] = Field(
        description="What was dropped.")
    id: str = Field(description="Document id#chunk, turn id, or 'summary'.")
    reason: DropReason = Field(
        description="over_budget: did not fit the budget left; history_share: did not fit "
        "history's share (a tool call and its results are dropped together); near_duplicate: "
        "too similar to a chosen chunk; orphan_tool_result: a tool result answering no earlier "
        "tool call, which chat APIs reject.")
    tokens: int = Field(description="Tokens the item would have needed.")


class CacheInfo(BaseModel):
    """How the semantic cache answered an assemble request.

        >>> CacheInfo().hit
        False
    """

    hit: bool = Field(False, description="True when the response was served from the cache.")
    similarity: float | None = Field(
        None, description="Cosine of the query embeddings, 1.0 for the same query after "
        "normalisation; null on a miss.")
    age_s: float | None = Field(None, description="Seconds since the served response was "
                                "assembled; null on a miss.")
    answer: str | None = Field(
        None, description="The answer stored for the served response (PUT .../answers/"
        "{assembly_id}), so the model call can be skipped; null if none or on a miss.")


class OtherTurn(BaseModel):
    session_id: str = Field(description="The user's other session the turn was said in.")
    turn_id: str = Field(description="The turn's id in that session.")


class AssembleResponse(BaseModel):
    namespace: str = Field(description="Namespace the documents came from.")
    session_id: str | None = Field(description="Session the history came from, if any.")
    profile: str = Field(default="default", description="Profile that assembled the "
                         "response: the request's, or the one the split assigned.")
    model: str | None = Field(description="Model named in the request, if any.")
    encoding: str = Field(description="Tokenizer encoding that counted the tokens.")
    messages: list[OutputMessage] = Field(
        description="Chat messages the OpenAI SDK accepts as they are (an unset name, tool_calls "
        "or tool_call_id is left out, never null): system prompt, summary, recent turns, "
        "recalled turns, context documents (role as documents_role), then the query.")
    usage: Usage = Field(description="Tokens by section; they add up to the total.")
    documents: list[UsedDocument] = Field(description="Documents in the context block.")
    history_turn_ids: list[str] = Field(description="Turns included verbatim, oldest first.")
    recalled_turn_ids: list[str] = Field(description="Evicted turns brought back for this query.")
    recalled_other_turns: list[OtherTurn] = Field(
        default_factory=list, description="Turns of the user's other sessions brought back "
        "for this query (recall_scope 'user'), oldest first.")
    summary_through: int = Field(description="Last turn seq covered by the included summary.")
    dropped: list[Dropped] = Field(description="What was left out, and why.")
    prefix_digest: str | None = Field(
        default=None,
        description="Digest of the stable prefix (system prompt, summary, earlier and recent "
        "turns): the same on every replica for the same prefix; send it back as "
        "previous_prefix_digest. Null without a session.")
    prefix_unchanged: bool | None = Field(
        default=None,
        description="True when the stable prefix is the one named by the request's "
        "previous_prefix_digest (a provider's prompt cache will hit); null when the request "
        "sent none or has no session.",
    )
    warnings: list[str] = Field(
        default_factory=list, description="Caveats, e.g. tokens counted with the default "
        "encoding for a model that is not an OpenAI model, or a budget taken from max_tokens "
        "alone for a model contextd does not know.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage: budget, lexical (bm25; with micro-batching it runs "
        "while the query embeds), embed (the query vector, or with micro-batching the wait for "
        "it after bm25), memory, retrieval, ranking, packing, cache (the lookups), total. A "
        "cache hit has only the stages it ran.")
    assembly_id: str = Field(
        default="", description="Names this assembled prompt: PUT the model's answer to "
        "/v1/namespaces/{ns}/answers/{assembly_id} and a later cache hit returns it. A cache "
        "hit carries the id of the response it served.")
    cache: CacheInfo = Field(
        default_factory=lambda: CacheInfo(),
        description="Whether the response came from the semantic cache: hit, similarity of the "
        "two queries (1.0 exact), age_s of the cached response, and the answer stored for it.")

    def openai_messages(self) -> list[dict[str, Any]]:
        """`messages` as plain dicts, to pass to the OpenAI SDK as they are.

            >>> completion = openai_client.chat.completions.create(  # doctest: +SKIP
            ...     model="gpt-4o", messages=response.openai_messages())
        """
        return [message.openai() for message in self.messages]


# --------------------------------------------------------------------------- answers, batches

MAX_ANSWER_CHARS = MAX_MESSAGE_CHARS


class AnswerRequest(_Model):
    """The model's answer to an assembled prompt, kept with it in the cache."""

    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS,
                        description="The answer; returned as cache.answer by a later hit.")


class AnswerResult(BaseModel):
    namespace: str
    assembly_id: str
    stored: bool = Field(description="Always true: an unknown or expired id is a 404.")


class BatchAssembleRequest(_Model):
    """Several assemble requests answered in one call, each on its own (`batch_limit` at most).

    Items are validated one by one, so one invalid item is an error in its place, not a 422 for
    the whole batch.
    """

    requests: list[dict[str, Any]] = Field(
        min_length=1, description="AssembleRequest bodies; their namespace is the path's.")


class BatchAssembleResponse(BaseModel):
    results: list[AssembleResponse | dict[str, Any]] = Field(
        description="One item per request, in order: its AssembleResponse, or a "
        "problem-details object (type, title, status, detail) for a request that failed.")
