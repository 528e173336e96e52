"""The `Idempotency-Key` request header of the routes that write (append, upsert, assemble
with messages), and the `Idempotent-Replayed` answer header.

A key is scoped to its namespace (it is stored in the namespace's SQLite) and to the API key
that sent it, so two tenants' keys never meet. See `contextd.store.idempotency`.

    >>> key = idempotency_key(request, "9b2e6c1a-...")  # doctest: +SKIP
    >>> replayed_headers(response, key)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Request, Response

from contextd.server.access import request_key
from contextd.store.idempotency import HEADER, KEY_PATTERN, REPLAYED_HEADER, IdempotencyKey

IdempotencyHeader = Annotated[str | None, Header(
    alias=HEADER, pattern=f"^{KEY_PATTERN}$",
    description="Makes the write safe to retry: a repeat with the same key and the same body "
    "within 24 h writes nothing and gets the first response (with `Idempotent-Replayed: "
    "true`); the same key with another body is a 422. Use a new UUID per logical request.")]

# For a route's `responses`: the 200 answer may carry the replay header.
REPLAYED_RESPONSE: dict[str, Any] = {"headers": {REPLAYED_HEADER: {
    "description": "`true` when this is the stored response of an earlier request with the "
    "same Idempotency-Key; nothing was written again.",
    "schema": {"type": "string", "enum": ["true"]}}}}


def idempotency_key(request: Request, value: str | None) -> IdempotencyKey | None:
    """The request's key, scoped to the API key that sent it (none without keys)."""
    if value is None:
        return None
    api_key = request_key(request)
    return IdempotencyKey(value, scope=f"key:{api_key.id}" if api_key is not None else "")


def mark_replayed(response: Response, key: IdempotencyKey | None) -> Response:
    """Add `Idempotent-Replayed: true` when the engine answered from the stored response."""
    if key is not None and key.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response
