"""The LlamaIndex adapters against an Engine and a Client, with the real llama-index-core."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock, ToolCallBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode

from contextd import SessionNotFound
from contextd.integrations.llamaindex import ContextdChatMemory, ContextdRetriever

TOOL_EXCHANGE = [
    ChatMessage(role="system", content="You answer about the weather."),
    ChatMessage(role="user", content="Will it rain in Oslo?"),
    ChatMessage(role="assistant", blocks=[ToolCallBlock(
        tool_call_id="call_1", tool_name="forecast", tool_kwargs={"city": "Oslo", "days": 1})]),
    ChatMessage(role="tool", content="rain, 12 mm", additional_kwargs={"tool_call_id": "call_1"}),
    ChatMessage(role="assistant", content="Yes: 12 mm of rain are forecast."),
]


def test_retriever_returns_the_search_hits_in_order(source) -> None:
    hits = source.search("rank fusion of lexical lists", top_k=3).hits
    nodes = ContextdRetriever(source, top_k=3).retrieve("rank fusion of lexical lists")
    assert [n.node.node_id for n in nodes] == [f"{h.id}#{h.chunk}" for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    assert [n.node.ref_doc_id for n in nodes] == [h.id for h in hits]
    assert [n.node.get_content() for n in nodes] == [h.text for h in hits]
    first = nodes[0].node
    assert first.metadata["topic"] == "ranking"
    assert first.metadata["dense_rank"] == hits[0].dense_rank
    shown = first.get_content(metadata_mode=MetadataMode.LLM)
    assert "title: Fusion" in shown and "topic: ranking" in shown and "score" not in shown


@pytest.mark.anyio
async def test_retriever_filters_and_async_path(source) -> None:
    retriever = ContextdRetriever(source, filters={"topic": "dense"})
    nodes = await retriever.aretrieve("inner product search")
    assert [n.node.ref_doc_id for n in nodes] == ["faiss"]


def test_memory_round_trip_keeps_roles_content_and_tool_calls(source) -> None:
    memory = ContextdChatMemory.from_defaults(source, session_id="weather")
    memory.put_messages(TOOL_EXCHANGE)
    read = memory.get_all()
    assert [m.role for m in read] == [m.role for m in TOOL_EXCHANGE]
    assert [m.content for m in read] == [m.content for m in TOOL_EXCHANGE]
    call = read[2].blocks[0]
    assert isinstance(call, ToolCallBlock)
    assert (call.tool_call_id, call.tool_name, call.tool_kwargs) == \
        ("call_1", "forecast", {"city": "Oslo", "days": 1})
    assert read[3].additional_kwargs == {"tool_call_id": "call_1"}
    turns = source.get_session("weather").turns
    assert turns[2].tool_calls[0].function.arguments == '{"city": "Oslo", "days": 1}'
    assert memory.get() == read  # no budget: every turn


def test_set_replaces_and_reset_deletes(source) -> None:
    memory = ContextdChatMemory(source, session_id="s1")
    memory.put(ChatMessage(role="user", content="old"))
    memory.set(TOOL_EXCHANGE[:2])
    assert [m.content for m in memory.get_all()] == [m.content for m in TOOL_EXCHANGE[:2]]
    memory.reset()
    with pytest.raises(SessionNotFound):
        source.get_session("s1")
    assert memory.get_all() == [] and memory.get() == []


def test_set_with_a_message_it_cannot_store_keeps_the_history(source) -> None:
    memory = ContextdChatMemory(source, session_id="s1")
    memory.put(ChatMessage(role="user", content="kept"))
    image = ChatMessage(role="user", blocks=[ImageBlock(url="https://example.org/a.png")])
    with pytest.raises(ValueError, match="contextd stores text only"):
        memory.set([ChatMessage(role="user", content="new"), image])
    assert [m.content for m in memory.get_all()] == ["kept"]


def _long_session(memory: ContextdChatMemory) -> None:
    for n in range(12):
        memory.put(ChatMessage(role="user", content=f"Question {n}: " + "words " * 40))
        memory.put(ChatMessage(role="assistant", content=f"Answer {n}: " + "reply " * 40))
    memory.put(ChatMessage(role="user", content="What did you answer first?"))


def test_get_with_a_budget_is_the_assembled_history(source) -> None:
    memory = ContextdChatMemory(source, session_id="long", token_limit=600)
    _long_session(memory)
    got = memory.get()
    expected = source.assemble(session_id="long", query="", max_tokens=600, top_k=0).messages
    assert [(m.role.value, m.content) for m in got] == [(m.role, m.content) for m in expected]
    assert len(got) < len(memory.get_all())
    assert got[-1].content == "What did you answer first?"


def test_get_with_input_leaves_out_the_query_echo(source) -> None:
    memory = ContextdChatMemory(source, session_id="long", token_limit=600)
    _long_session(memory)
    memory.put(ChatMessage(role="assistant", content="Answer 0."))
    got = memory.get(input="first answer")
    expected = source.assemble(session_id="long", query="first answer", max_tokens=600,
                               top_k=0).messages
    assert expected[-1].content == "first answer"
    assert [(m.role.value, m.content) for m in got] == \
        [(m.role, m.content) for m in expected[:-1]]
    assert "Answer 0." in [m.content for m in got]
    assert len(got) < len(memory.get_all())
    # No input and no trailing user turn: recalled by the last user turn, nothing dropped.
    assert "Answer 0." in [m.content for m in memory.get()]


def test_chat_engine_keeps_its_conversation_in_the_session(source) -> None:
    memory = ContextdChatMemory(source, session_id="chat", token_limit=2000)
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(), memory=memory)
    engine.chat("Hello there")
    engine.chat("Again")
    turns = source.get_session("chat").turns
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert [turns[0].content, turns[2].content] == ["Hello there", "Again"]


def test_text_and_tool_calls_in_one_assistant_message(source) -> None:
    memory = ContextdChatMemory(source, session_id="mixed")
    memory.put(ChatMessage(role="assistant", blocks=[
        TextBlock(text="Let me check."),
        ToolCallBlock(tool_call_id="c9", tool_name="lookup", tool_kwargs="not json")]))
    read = memory.get_all()[0]
    assert read.content == "Let me check."
    assert read.blocks[1].tool_kwargs == "not json"


def test_a_users_memory_recalls_from_the_users_other_session(source) -> None:
    first = ContextdChatMemory(source, session_id="trip-1", user_id="ana")
    first.put_messages([ChatMessage(role="user", content="My passport number ends in 4471."),
                        ChatMessage(role="assistant", content="Noted.")])
    ContextdChatMemory(source, session_id="other", user_id="bo").put(
        ChatMessage(role="user", content="My passport number ends in 9090."))
    second = ContextdChatMemory(source, session_id="trip-2", user_id="ana",
                                recall_scope="user", token_limit=600)
    second.put(ChatMessage(role="user", content="Hello again."))
    text = " ".join(str(m.content) for m in second.get("What does my passport number end in?"))
    assert "4471" in text and "9090" not in text
    # Without the user scope, only this session's own turns come back.
    alone = ContextdChatMemory(source, session_id="trip-2", user_id="ana", token_limit=600)
    assert "4471" not in " ".join(str(m.content) for m in alone.get("passport number?"))
    assert source.get_session("trip-1").user_id == "ana"
