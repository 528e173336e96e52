"""The JSON body path rejects what the in-process path rejects, with the same message:
numbers JSON cannot hold, out-of-range timestamps, coerced types."""

from __future__ import annotations

import pytest

from contextd import AsyncClient

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


async def post(client: AsyncClient, path: str, body: str, value: str = "") -> tuple[int, str]:
    """POST `body` as written, with `@` replaced by `value` (JSON no encoder would write)."""
    response = await client.http.post(path, content=body.replace("@", value).encode(),
                                      headers=JSON)
    return response.status_code, response.json().get("detail", "")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_http_metadata_nan_is_rejected(client: AsyncClient, number: str) -> None:
    body = '{"documents": [{"id": "a", "text": "x", "metadata": {"n": @}}]}'
    status, detail = await post(client, "/v1/namespaces/default/documents", body, number)
    assert status == 422
    assert "not a finite number" in detail
    # Nothing was stored: a filtered search still works.
    status, _ = await post(client, "/v1/namespaces/default/search",
                           '{"query": "x", "filters": {"n": {"$gt": 0}}}')
    assert status == 200


async def test_http_metadata_int_beyond_64_bits_is_rejected(client: AsyncClient) -> None:
    body = '{"documents": [{"id": "a", "text": "x", "metadata": {"n": @}}]}'
    status, detail = await post(client, "/v1/namespaces/default/documents", body, str(2**64))
    assert (status, "64-bit" in detail) == (422, True)


@pytest.mark.parametrize("value", [str(2**64), "NaN", "1e400"])
async def test_http_filter_value_beyond_64_bits_is_rejected(client: AsyncClient,
                                                            value: str) -> None:
    status, detail = await post(client, "/v1/namespaces/default/search",
                                '{"query": "x", "filters": {"n": @}}', value)
    assert status == 422 and "filters" in detail
    status, detail = await post(client, "/v1/assemble",
                                '{"query": "x", "max_tokens": 100, "filters": {"n": @}}', value)
    assert status == 422 and "filters" in detail


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00", "9999-12-31T23:00:00-05:00"])
async def test_http_turn_timestamp_out_of_range_is_rejected(client: AsyncClient,
                                                            when: str) -> None:
    body = '{"messages": [{"role": "user", "content": "hi", "timestamp": "@"}]}'
    status, detail = await post(client, "/v1/sessions/s1/messages", body, when)
    assert status == 422 and "1900-01-01 to 9999-12-30 in UTC" in detail
    response = await client.http.get("/v1/sessions/s1")
    assert response.status_code == 404


async def test_http_turn_timestamp_iso_string_is_parsed(client: AsyncClient) -> None:
    body = '{"messages": [{"role": "user", "content": "hi", "timestamp": "2024-05-01T10:00"}]}'
    status, _ = await post(client, "/v1/sessions/s1/messages", body)
    assert status == 200
    session = (await client.http.get("/v1/sessions/s1")).json()
    assert session["turns"][0]["timestamp"].startswith("2024-05-01T10:00:00")


@pytest.mark.parametrize("value", ['"100"', "100.0", "true"])
async def test_http_assemble_max_tokens_is_not_coerced(client: AsyncClient, value: str) -> None:
    status, detail = await post(client, "/v1/assemble", '{"query": "x", "max_tokens": @}', value)
    assert status == 422 and "max_tokens" in detail
