"""A tool result that answers no earlier tool call never reaches the prompt: chat APIs reject
it. It is reported in `dropped` instead."""

from __future__ import annotations

from contextd import Engine
from contextd.memory.window import orphan_tool_results


def call(call_id: str) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}


def result(call_id: str, text: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def test_orphan_tool_results_are_found() -> None:
    messages = [result("c0", "early"), call("c1"), result("c1", "sunny"), result("c2", "rain"),
                {"role": "user", "content": "and c1 again?"}, result("c1", "still sunny")]
    assert orphan_tool_results(messages) == [0, 3]


def test_orphan_tool_result_is_dropped_from_ephemeral_history(engine: Engine) -> None:
    messages = [
        {"role": "user", "content": "What is the weather?", "id": "u1"},
        result("missing", "It is 20 degrees."),
        call("c1") | {"id": "a1"},
        result("c1", "Sunny in Lisbon.") | {"id": "t1"},
        result("c9", "Answer to nothing.") | {"id": "t9"},
        {"role": "user", "content": "Thanks, and tomorrow?", "id": "u2"},
    ]
    messages[1]["id"] = "t0"
    response = engine.assemble({"messages": messages, "max_tokens": 2_000})
    sent = [m for m in response.messages if m.role == "tool"]
    assert [m.tool_call_id for m in sent] == ["c1"]
    orphans = [d for d in response.dropped if d.reason == "orphan_tool_result"]
    assert [(d.kind, d.id) for d in orphans] == [("turn", "t0"), ("turn", "t9")]
    assert all(d.tokens > 0 for d in orphans)
    assert "t1" in response.history_turn_ids and "t0" not in response.history_turn_ids
    # The answered call and its result stay together and in order.
    roles = [m.role for m in response.messages]
    assert roles.index("tool") == roles.index("assistant") + 1


def test_orphan_tool_result_is_dropped_from_stored_session(engine: Engine) -> None:
    engine.append_messages("s1", [
        {"role": "user", "content": "Check the weather.", "id": "u1"},
        result("never-called", "Rain all week.") | {"id": "t0"},
        {"role": "assistant", "content": "I will check.", "id": "a1"},
    ])
    response = engine.assemble({"session_id": "s1", "query": "Weather?", "max_tokens": 1_000})
    assert all(m.role != "tool" for m in response.messages)
    assert [d.id for d in response.dropped if d.reason == "orphan_tool_result"] == ["t0"]
    assert response.history_turn_ids == ["u1", "a1"]
