"""/docs and /redoc work offline (bundled assets only); OpenAPI documents the bearer key."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from contextd import Engine
from contextd.server import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(server_engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(server_engine), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://contextd") as c:
        yield c


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(http: httpx.AsyncClient, page: str) -> None:
    response = await http.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    urls = _asset_urls(html)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts, html
    for url in urls:
        assert url.startswith("/"), url
        asset = await http.get(url)
        assert asset.status_code == 200, url
    for url in scripts:
        asset = await http.get(url)
        assert "javascript" in asset.headers["content-type"]
        assert len(asset.content) > 100_000  # the real bundle, not a stub


async def test_openapi_has_no_security_without_a_key(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    assert "securitySchemes" not in schema.get("components", {})
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert "security" not in operation


async def test_openapi_declares_bearer_auth_with_a_key(server_engine: Engine) -> None:
    transport = httpx.ASGITransport(app=create_app(server_engine, api_key="s3cret"))
    # With keys configured the schema itself needs an admin key (docs_open is off).
    async with httpx.AsyncClient(transport=transport, base_url="http://contextd",
                                 headers={"Authorization": "Bearer s3cret"}) as http:
        schema = (await http.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes.values()) == [schemes["apiKey"]]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    v1 = [(path, op) for path, ops in schema["paths"].items() for op in ops.values()
          if path.startswith("/v1/")]
    assert v1
    for path, operation in v1:
        assert operation["security"] == [{"apiKey": []}], path
    assert "security" not in schema["paths"]["/healthz"]["get"]


async def test_openapi_with_a_key_keeps_problem_media_types(server_engine: Engine) -> None:
    transport = httpx.ASGITransport(app=create_app(server_engine, api_key="s3cret"))
    # With keys configured the schema itself needs an admin key (docs_open is off).
    async with httpx.AsyncClient(transport=transport, base_url="http://contextd",
                                 headers={"Authorization": "Bearer s3cret"}) as http:
        schema = (await http.get("/openapi.json")).json()
    unauthorized = schema["paths"]["/v1/namespaces"]["get"]["responses"]["401"]
    assert list(unauthorized["content"]) == ["application/problem+json"]
