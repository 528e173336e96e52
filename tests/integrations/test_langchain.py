"""The LangChain adapters against an Engine and a Client, with the real langchain-core."""

from __future__ import annotations

import subprocess
import sys

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from contextd import AsyncClient, Conflict, InvalidRequest, SessionNotFound
from contextd.integrations.langchain import (
    ContextdChatMessageHistory,
    ContextdRetriever,
    to_langchain_messages,
)

TOOL_EXCHANGE = [
    SystemMessage("You answer about the weather."),
    HumanMessage("Will it rain in Oslo?"),
    AIMessage("", tool_calls=[{"name": "forecast", "args": {"city": "Oslo", "days": 1},
                               "id": "call_1", "type": "tool_call"}]),
    ToolMessage("rain, 12 mm", tool_call_id="call_1", name="forecast"),
    AIMessage("Yes: 12 mm of rain are forecast."),
]


def test_retriever_returns_the_search_hits_in_order(source) -> None:
    hits = source.search("rank fusion of lexical lists", top_k=3).hits
    documents = ContextdRetriever(source, top_k=3).invoke("rank fusion of lexical lists")
    assert [(d.metadata["id"], d.metadata["chunk"]) for d in documents] == \
        [(h.id, h.chunk) for h in hits]
    assert [d.page_content for d in documents] == [h.text for h in hits]
    for document, hit in zip(documents, hits, strict=True):
        assert document.id == f"{hit.id}#{hit.chunk}"
        assert document.metadata == {**hit.metadata, "id": hit.id, "chunk": hit.chunk,
                                     "title": hit.title, "score": hit.score,
                                     "dense_rank": hit.dense_rank,
                                     "lexical_rank": hit.lexical_rank}
    assert documents[0].metadata["id"] == "rrf"
    assert documents[0].metadata["topic"] == "ranking"


def test_retriever_passes_filters_and_mode(source) -> None:
    retriever = ContextdRetriever(source=source, filters={"topic": "lexical"}, mode="lexical")
    documents = retriever.invoke("query terms")
    assert [d.metadata["id"] for d in documents] == ["bm25"]
    assert documents[0].metadata["dense_rank"] is None


@pytest.mark.anyio
async def test_retriever_async_path(source) -> None:
    documents = await ContextdRetriever(source, top_k=1).ainvoke("dense vectors inner product")
    assert [d.metadata["id"] for d in documents] == ["faiss"]


def test_history_round_trip_keeps_roles_content_and_tool_calls(source) -> None:
    history = ContextdChatMessageHistory(source, "weather")
    history.add_messages(TOOL_EXCHANGE)
    read = history.messages
    assert [type(m) for m in read] == [type(m) for m in TOOL_EXCHANGE]
    assert [m.content for m in read] == [m.content for m in TOOL_EXCHANGE]
    assert read[2].tool_calls == TOOL_EXCHANGE[2].tool_calls
    assert (read[3].tool_call_id, read[3].name) == ("call_1", "forecast")
    turns = source.get_session("weather").turns
    assert [m.id for m in read] == [t.id for t in turns]
    assert turns[2].tool_calls[0].function.arguments == '{"city": "Oslo", "days": 1}'


def test_add_message_appends_and_missing_session_reads_empty(source) -> None:
    history = ContextdChatMessageHistory(source, "fresh")
    assert history.messages == []
    history.add_user_message("Hi")
    history.add_ai_message("Hello!")
    assert [(type(m), m.content) for m in history.messages] == \
        [(HumanMessage, "Hi"), (AIMessage, "Hello!")]
    assert len(source.get_session("fresh").turns) == 2


def test_clear_deletes_the_session(source) -> None:
    history = ContextdChatMessageHistory(source, "gone")
    history.add_messages(TOOL_EXCHANGE[:2])
    history.clear()
    with pytest.raises(SessionNotFound):
        source.get_session("gone")
    assert history.messages == []
    history.clear()  # nothing left to delete: not an error


def test_a_message_contextd_cannot_store_writes_none(source) -> None:
    history = ContextdChatMessageHistory(source, "bad")
    image = HumanMessage([{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}])
    with pytest.raises(InvalidRequest, match="only text content parts"):
        history.add_messages([HumanMessage("first"), image])
    with pytest.raises(SessionNotFound):
        source.get_session("bad")


def test_assembled_tool_call_exchange_as_langchain_messages(source) -> None:
    ContextdChatMessageHistory(source, "weather").add_messages(TOOL_EXCHANGE)
    response = source.assemble(session_id="weather", query="And tomorrow?", max_tokens=2000)
    messages = to_langchain_messages(response)
    assert len(messages) == len(response.messages)
    assert [m.content for m in messages if not isinstance(m, AIMessage) or m.content] == \
        [m.content for m in response.messages if m.content]
    kinds = [type(m) for m in messages]
    assert kinds[:5] == [type(m) for m in TOOL_EXCHANGE]
    assert kinds[-1] is HumanMessage and messages[-1].content == "And tomorrow?"
    assert isinstance(messages[-2], SystemMessage) and "[1] rrf" in messages[-2].content
    call = messages[2].tool_calls[0]
    assert (call["name"], call["args"], call["id"]) == ("forecast", {"city": "Oslo", "days": 1},
                                                       "call_1")
    assert messages[3].tool_call_id == "call_1"
    assert to_langchain_messages(response.messages) == messages


# Deprecated in favour of LangGraph, yet the way most LangChain apps still keep history.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_runnable_with_message_history_stores_each_exchange(source) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [MessagesPlaceholder("history"), ("human", "{question}")])
    chain = prompt | FakeListChatModel(responses=["First answer.", "Second answer."])
    chat = RunnableWithMessageHistory(
        chain, lambda session_id: ContextdChatMessageHistory(source, session_id),
        input_messages_key="question", history_messages_key="history")
    config = {"configurable": {"session_id": "chat"}}
    assert chat.invoke({"question": "One?"}, config=config).content == "First answer."
    assert chat.invoke({"question": "Two?"}, config=config).content == "Second answer."
    turns = source.get_session("chat").turns
    assert [(t.role, t.content) for t in turns] == [
        ("user", "One?"), ("assistant", "First answer."),
        ("user", "Two?"), ("assistant", "Second answer.")]


def test_an_async_client_is_refused_with_what_to_pass() -> None:
    with pytest.raises(TypeError, match="contextd.Client, not an AsyncClient"):
        ContextdChatMessageHistory(AsyncClient("http://127.0.0.1:1"), "s1")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_import_contextd_imports_no_framework() -> None:
    run = _python("import sys, contextd, contextd.integrations\n"
                  "print(sorted(m for m in ('langchain_core', 'llama_index') if m in sys.modules))")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(("module", "framework", "extra"), [
    ("langchain", "langchain_core", "langchain"),
    ("llamaindex", "llama_index", "llamaindex"),
])
def test_a_missing_framework_names_the_extra(module: str, framework: str, extra: str) -> None:
    run = _python(f"import sys; sys.modules[{framework!r}] = None\n"
                  f"import contextd.integrations.{module}")
    assert run.returncode != 0
    assert f"pip install 'contextd[{extra}]'" in run.stderr


def test_history_with_a_user_id_sets_the_sessions_user(source) -> None:
    history = ContextdChatMessageHistory(source, "trip-1", user_id="ana")
    history.add_messages([HumanMessage(content="My passport number ends in 4471.")])
    assert source.get_session("trip-1").user_id == "ana"
    # Another session of the same user recalls it.
    r = source.assemble(session_id="trip-2", user_id="ana", recall_scope="user",
                        query="What does my passport number end in?", max_tokens=600, top_k=0,
                        messages=[{"role": "user", "content": "Hello again."}])
    assert any("4471" in (m.content or "") for m in r.messages)
    with pytest.raises(Conflict, match="ana"):  # a session's user is set once
        ContextdChatMessageHistory(source, "trip-1", user_id="bo").add_messages(
            [HumanMessage(content="hi")])
