"""API-key access control as a pure ASGI layer, in front of the body limit and the routes.

It decides from the method, the path and the query string alone, so a request with no key or
a wrong one gets 401 before a byte of its body is read. A key sees only its namespaces: any
other namespace is a 404, as if it did not exist; a role too low for the action on one of
its own namespaces is a 403. The key a request carries is left in `scope["state"]["api_key"]`
for the routes that must look further (the namespace list, the deprecated /v1/assemble whose
namespace is in the body).

    >>> app = ApiKeyAccess(BodyLimit(inner, 8 << 20), ring)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from contextd.auth.keys import ApiKey, KeyRing
from contextd.errors import ContextdError, Forbidden, NamespaceNotFound, problem_body
from contextd.server.middleware import note_problem, send_problem

# /inspect is a static page holding no data: it asks for a key and sends it with each call.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/inspect"})
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")


def request_key(request: Request) -> ApiKey | None:
    """The key the request authenticated with (None when the server has no keys)."""
    return request.scope.get("state", {}).get("api_key")  # type: ignore[no-any-return]


def check_namespace(request: Request, namespace: str, role: str = "read") -> None:
    """404 unless the request's key may use `namespace`, 403 unless its role reaches `role`.

        >>> check_namespace(request, body.namespace)  # doctest: +SKIP
    """
    key = request_key(request)
    if key is None:
        return
    if not key.allows_namespace(namespace):
        raise NamespaceNotFound(f"namespace {namespace!r} does not exist")
    if not key.has_role(role):
        raise Forbidden(f"this API key has role {key.role!r}; this needs {role!r}")


def required_access(method: str, path: str, query: bytes) -> tuple[str, str | None]:
    """(role, namespace) a /v1 request needs; namespace None when the path names none.

        >>> required_access("DELETE", "/v1/namespaces/acme/documents/a", b"")
        ('write', 'acme')
        >>> required_access("GET", "/v1/sessions/s1", b"namespace=acme")
        ('read', 'acme')
        >>> required_access("DELETE", "/v1/namespaces/acme", b"")
        ('admin', 'acme')
        >>> required_access("PUT", "/v1/namespaces/acme/answers/a1b2", b"")
        ('write', 'acme')
    """
    parts = path.strip("/").split("/")
    reading = method in ("GET", "HEAD")
    role = "read" if reading else "write"
    if len(parts) >= 3 and parts[1] == "namespaces":
        namespace: str | None = parts[2]
        if len(parts) == 3:
            role = "read" if reading else "admin"
        elif parts[3:] in (["search"], ["assemble"], ["assemble", "batch"]):
            role = "read"  # an assemble that stores turns is checked by its route
        return role, namespace
    if len(parts) >= 3 and parts[1] == "sessions":
        values = parse_qs(query.decode("latin-1")).get("namespace")
        return role, values[0] if values else "default"
    if parts[1:] in (["assemble"], ["namespaces"]):
        return "read", None  # the route checks the namespace (body) or filters the list
    return role, None


class ApiKeyAccess:
    """Refuses requests whose API key is missing (401), wrong (401), outside the namespace
    (404) or of a role too low (403), before the body is read; passes everything when the
    server has no keys at all."""

    def __init__(self, app: ASGIApp, keys: KeyRing, *, metrics_open: bool = False,
                 docs_open: bool = False,
                 namespace_count: Callable[[ApiKey, str], int | None] | None = None) -> None:
        self.app = app
        self.keys = keys
        self.metrics_open = metrics_open
        self.docs_open = docs_open
        # How many namespaces the key already has, or None when `namespace` exists already.
        self.namespace_count = namespace_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or not self.keys.configured():
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if (path == "/metrics" and self.metrics_open) or (
                path.startswith(DOCS_PATHS) and self.docs_open):
            await self.app(scope, receive, send)
            return
        key = self.keys.authenticate(_bearer(scope))
        if key is None:
            await self._refuse(scope, send, 401, "unauthorized", "Unauthorized",
                               "send a valid API key as 'Authorization: Bearer <key>'",
                               [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})["api_key"] = key
        if path == "/metrics" or path.startswith(DOCS_PATHS):
            if not key.has_role("admin"):
                await self._refuse(scope, send, 403, "forbidden", "Forbidden",
                                   f"{path} needs an admin key (role {key.role!r} given)")
                return
        elif path.startswith("/v1/"):
            role, namespace = required_access(scope["method"], path, scope.get("query_string",
                                                                               b""))
            if namespace is not None and not key.allows_namespace(namespace):
                await self._refuse(scope, send, 404, "namespace-not-found", "Not found",
                                   f"namespace {namespace!r} does not exist")
                return
            if not key.has_role(role):
                await self._refuse(scope, send, 403, "forbidden", "Forbidden",
                                   f"this API key has role {key.role!r}; "
                                   f"{scope['method']} {path} needs {role!r}")
                return
            if (namespace is not None and role == "write" and key.max_namespaces is not None
                    and self.namespace_count is not None):
                count = self.namespace_count(key, namespace)
                if count is not None and count >= key.max_namespaces:
                    await self._refuse(scope, send, 403, "forbidden", "Forbidden",
                                       f"this API key may hold {key.max_namespaces} "
                                       "namespaces and has them all: delete one first")
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, slug: str, title: str,
                      detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        note_problem(scope, slug)
        await send_problem(send, problem_body(status, slug, title, detail), headers)


def _bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def engine_namespace_count(engine: Any) -> Callable[[ApiKey, str], int | None]:
    """For `ApiKeyAccess`: the key's existing namespaces, or None if `namespace` exists."""

    def count(key: ApiKey, namespace: str) -> int | None:
        registry = engine.registry
        try:
            if registry.exists(namespace):
                return None
        except ContextdError:
            return None  # a malformed name: the route answers 422

        return sum(1 for name in registry.names() if key.allows_namespace(name))

    return count
