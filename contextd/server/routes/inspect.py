"""GET /inspect: one self-contained HTML page that shows what an assemble request packs.

The page (package data, inline JS and CSS) calls the same /v1 API as any client, with the
API key the user enters; the page itself holds no data, so it needs no key.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["operations"])

# The page may talk to this server only: no CDN, no third-party script, even if edited.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; "
                           "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; "
                           "base-uri 'none'; form-action 'none'")


@cache
def inspect_page() -> str:
    """The inspector's HTML, read once from the package."""
    return (files("contextd.server") / "static" / "inspect.html").read_text(encoding="utf-8")


@router.get("/inspect", response_class=HTMLResponse, include_in_schema=False)
async def inspect() -> HTMLResponse:
    """A page to pick a namespace and session, assemble a query and see every token's place."""
    return HTMLResponse(inspect_page(),
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
