"""contextd: decides what goes into an LLM prompt, within an exact token budget.

    >>> import contextd
    >>> engine = contextd.Engine("indexes")  # doctest: +SKIP
"""

from contextd.client import AsyncClient, Client
from contextd.engine import Engine
from contextd.errors import (
    BudgetTooSmall,
    Conflict,
    ContextdError,
    DocumentNotFound,
    DocumentTooLarge,
    EncodingUnavailable,
    Forbidden,
    InvalidNamespace,
    InvalidRequest,
    NamespaceNotFound,
    NotFound,
    SessionNotFound,
    Unavailable,
    UnknownModel,
)
from contextd.models import (
    AppendResult,
    AssembleRequest,
    AssembleResponse,
    ChatMessage,
    DeleteResult,
    Document,
    Dropped,
    NamespaceInfo,
    OutputMessage,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SessionInfo,
    StoredDocument,
    Turn,
    UpsertResult,
    Usage,
    UsedDocument,
)
from contextd.settings import Settings
from contextd.version import __version__

__all__ = [
    "AppendResult",
    "AssembleRequest",
    "AssembleResponse",
    "AsyncClient",
    "BudgetTooSmall",
    "ChatMessage",
    "Client",
    "Conflict",
    "ContextdError",
    "DeleteResult",
    "Document",
    "DocumentNotFound",
    "DocumentTooLarge",
    "Dropped",
    "EncodingUnavailable",
    "Engine",
    "Forbidden",
    "InvalidNamespace",
    "InvalidRequest",
    "NamespaceInfo",
    "NamespaceNotFound",
    "NotFound",
    "OutputMessage",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "SessionInfo",
    "SessionNotFound",
    "Settings",
    "StoredDocument",
    "Turn",
    "Unavailable",
    "UnknownModel",
    "UpsertResult",
    "Usage",
    "UsedDocument",
    "__version__",
]
