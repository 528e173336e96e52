"""An undocumented 400 for undecodable bodies (defect): a body that is not UTF-8 is the
documented 422 problem saying to send UTF-8 JSON, on every route with a body."""

from __future__ import annotations

import pytest

from contextd import AsyncClient

pytestmark = pytest.mark.anyio


async def test_undecodable_body_is_a_documented_422(client: AsyncClient) -> None:
    for path in ("/v1/namespaces/default/search", "/v1/namespaces/default/assemble",
                 "/v1/namespaces/default/documents",
                 "/v1/namespaces/default/sessions/s1/messages"):
        response = await client.http.post(path, content=b"\xff\xfe{\x00\x81",
                                          headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        body = response.json()
        assert body["type"].endswith("/invalid-request") and "UTF-8" in body["detail"]
    assert await client.list_sessions("default") == []
