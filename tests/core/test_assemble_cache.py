"""Assemble through the semantic cache: hits that are never stale, misses that are never wrong."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextd import AnswerNotFound, DocumentNotFound, Engine, Settings
from contextd.embedding import HashEmbedder
from contextd.tokens import get_counter

DOCS = [
    {"id": "refunds", "text": "Refunds are issued within 14 days of a return to the store."},
    {"id": "shipping", "text": "Shipping takes 3 to 5 working days; express takes one day."},
    {"id": "password", "text": "Reset your password from the login page with the emailed link."},
]
# The hash embedder puts these paraphrases at a cosine of ~0.59, and the near misses below
# between 0.79 and 0.89; at 0.55 every pair clears the threshold, so the guard decides.
LOW_THRESHOLD = 0.55


def content(response) -> dict:
    """What a response says, without what names this one call."""
    return response.model_dump(exclude={"assembly_id", "cache", "timings_ms"})


def context(response) -> dict:
    """What a response says apart from its query message and the query's tokens."""
    said = content(response)
    said["messages"] = said["messages"][:-1]
    said["usage"] = {k: v for k, v in said["usage"].items() if k not in ("query", "total")}
    return said


def ends_with_its_query(response, query: str) -> bool:
    """The query is never dropped, a cached response included: the last message is this one's."""
    last = response.messages[-1]
    tokens = response.usage
    return (last.role == "user" and last.content == query.strip()
            and tokens.total == tokens.system + tokens.summary + tokens.history
            + tokens.recalled + tokens.documents + tokens.query + tokens.overhead
            and tokens.total <= tokens.budget)


@pytest.fixture
def cached(make_engine: Callable[..., Engine]) -> Engine:
    engine = make_engine(cache_similarity=LOW_THRESHOLD)
    engine.upsert_documents(DOCS)
    return engine


def test_every_response_carries_an_assembly_id_and_a_cache_block(cached: Engine) -> None:
    first = cached.assemble(query="How do I reset my password?", max_tokens=600)
    assert len(first.assembly_id) == 32
    assert first.cache.model_dump() == {"hit": False, "similarity": None, "age_s": None,
                                        "answer": None}


def test_the_same_query_is_an_exact_hit_with_the_same_content(cached: Engine) -> None:
    first = cached.assemble(query="How do I reset my password?", max_tokens=600)
    again = cached.assemble(query="  how do I RESET my password ", max_tokens=600)
    assert again.cache.hit and again.cache.similarity == 1.0 and again.cache.age_s >= 0
    assert again.assembly_id == first.assembly_id
    assert context(again) == context(first)
    assert ends_with_its_query(again, "  how do I RESET my password ")
    assert "retrieval" not in again.timings_ms and "total" in again.timings_ms
    assert cached.cache.core.counts()["exact"] == 1


def test_a_paraphrase_is_a_similar_hit(cached: Engine) -> None:
    first = cached.assemble(query="How do I reset my password?", max_tokens=600)
    hit = cached.assemble(query="how can I reset the password please", max_tokens=600)
    assert hit.cache.hit and LOW_THRESHOLD <= hit.cache.similarity < 1.0
    assert context(hit) == context(first)
    assert ends_with_its_query(hit, "how can I reset the password please")
    # Its own wording is what is counted.
    assert hit.usage.query == get_counter(cached.settings.encoding).count(
        "how can I reset the password please")
    assert cached.cache.core.counts()["similar"] == 1


@pytest.mark.parametrize(("cached_query", "asked"), [
    ("Is it safe to take ibuprofen with food?", "Is it safe to take ibuprofen without food?"),
    ("Can I return an item after 30 days?", "Can I return an item after 60 days?"),
    ("Do you accept PayPal payments?", "Do you accept Klarna payments?"),
    ("How do I increase the dose?", "How do I decrease the dose?"),
])
def test_negation_number_entity_and_antonym_are_misses(cached: Engine, cached_query: str,
                                                       asked: str) -> None:
    cached.assemble(query=cached_query, max_tokens=600)
    response = cached.assemble(query=asked, max_tokens=600)
    assert not response.cache.hit
    assert response.messages[-1].content == asked
    assert cached.cache.core.counts()["guard"] == 1


def test_a_different_budget_or_field_is_a_miss(cached: Engine) -> None:
    cached.assemble(query="shipping time", max_tokens=600)
    for fields in ({"max_tokens": 601}, {"top_k": 2}, {"system": "Be brief."},
                   {"filters": {"lang": "en"}}, {"documents_role": "user"}):
        assert not cached.assemble(query="shipping time", **{"max_tokens": 600, **fields}
                                   ).cache.hit, fields
    assert cached.assemble(query="shipping time", max_tokens=600, query_type="faq").cache.hit


def test_the_request_or_the_settings_can_turn_the_cache_off(
        cached: Engine, make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    cached.assemble(query="shipping time", max_tokens=600)
    off = cached.assemble(query="shipping time", max_tokens=600, cache=False)
    assert not off.cache.hit
    assert cached.assemble(query="shipping time", max_tokens=600).cache.hit
    assert cached.cache.core.counts()["disabled"] == 1

    disabled = make_engine(tmp_path / "off", cache_enabled=False)
    disabled.upsert_documents(DOCS)
    for _ in range(2):
        assert not disabled.assemble(query="shipping time", max_tokens=600).cache.hit
    assert disabled.cache.core.counts()["disabled"] == 2
    assert disabled.cache.core.totals() == (0, 0)


def test_an_upsert_or_a_delete_makes_the_old_entry_unreachable(cached: Engine) -> None:
    cached.assemble(query="refund policy", max_tokens=600)
    cached.upsert_documents([{"id": "refunds", "text": "Refunds now take 30 days."}])
    after_upsert = cached.assemble(query="refund policy", max_tokens=600)
    assert not after_upsert.cache.hit
    assert "30 days" in after_upsert.messages[-2].content
    cached.delete_document("refunds")
    after_delete = cached.assemble(query="refund policy", max_tokens=600)
    assert not after_delete.cache.hit
    assert "refunds" not in [d.id for d in after_delete.documents]


def test_a_write_is_answered_from_the_state_it_made(cached: Engine) -> None:
    cached.append_messages("s1", [{"role": "user", "content": "I returned my shoes."}])
    before = cached.assemble(query="refund?", session_id="s1", max_tokens=600)
    # The same query with new turns: the append moves the session on, so no pre-write hit.
    write = cached.assemble(query="refund?", session_id="s1", max_tokens=600,
                            messages=[{"role": "user", "content": "It was on Monday."}])
    assert not write.cache.hit and not before.cache.hit
    assert "It was on Monday." in [m.content for m in write.messages]
    # A read of the state that write made is served from it.
    read = cached.assemble(query="refund?", session_id="s1", max_tokens=600)
    assert read.cache.hit and read.assembly_id == write.assembly_id


def test_a_query_from_the_history_is_not_the_same_request_as_that_query(cached: Engine) -> None:
    cached.append_messages("s1", [{"role": "user", "content": "refund policy"}])
    from_history = cached.assemble(session_id="s1", max_tokens=600)
    explicit = cached.assemble(query="refund policy", session_id="s1", max_tokens=600)
    assert not explicit.cache.hit
    assert content(explicit) != content(from_history)


def test_a_recreated_session_or_namespace_starts_afresh(cached: Engine) -> None:
    cached.append_messages("s1", [{"role": "user", "content": "My order is late."}])
    cached.assemble(query="shipping", session_id="s1", max_tokens=600)
    cached.delete_session("s1")
    cached.append_messages("s1", [{"role": "user", "content": "My parcel is lost."}])
    again = cached.assemble(query="shipping", session_id="s1", max_tokens=600)
    assert not again.cache.hit and "My parcel is lost." in [m.content for m in again.messages]

    cached.upsert_documents(DOCS, namespace="other")
    cached.assemble(namespace="other", query="shipping", max_tokens=600)
    assert cached.cache.core.usage("other")[0] == 1
    cached.delete_namespace("other")
    assert cached.cache.core.usage("other") == (0, 0)
    cached.upsert_documents(DOCS, namespace="other")
    assert not cached.assemble(namespace="other", query="shipping", max_tokens=600).cache.hit


def test_a_namespace_made_again_by_another_process_never_gets_an_old_entry(
        make_engine: Callable[..., Engine]) -> None:
    # Two engines on one data directory are two processes: the serving one's cache never
    # hears of the other's delete, and the new namespace's sequences start where the old did.
    serving, other = make_engine(max_open_namespaces=1), make_engine()
    other.upsert_documents([{"id": "old", "text": "Refunds are issued within 14 days."}],
                           namespace="shop")
    first = serving.assemble(namespace="shop", query="refund", max_tokens=400)
    assert serving.assemble(namespace="shop", query="refund", max_tokens=400).cache.hit
    seq = other.registry.get("shop").store.last_seq()
    other.delete_namespace("shop")
    other.upsert_documents([{"id": "new", "text": "Refunds are issued within 30 days."}],
                           namespace="shop")
    assert other.registry.get("shop").store.last_seq() == seq  # the same sequence again
    serving.assemble(query="refund", max_tokens=400)  # opening another closes idle 'shop'
    again = serving.assemble(namespace="shop", query="refund", max_tokens=400)
    assert [d.id for d in first.documents] == ["old"]
    assert not again.cache.hit and [d.id for d in again.documents] == ["new"]


def test_a_refined_summary_is_a_new_state(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(session_window_tokens=60)
    engine.upsert_documents(DOCS)
    engine.append_messages("s1", [{"role": "user" if i % 2 == 0 else "assistant",
                                   "content": f"Turn {i} about the order and the refund."}
                                  for i in range(12)])
    row = engine.registry.get("default").sessions.session("s1")
    assert row.summary_through > 0
    engine.assemble(query="refund", session_id="s1", max_tokens=300)
    # What a background summariser does: same turns, same `through`, better text.
    engine.registry.get("default").sessions.update_summary(
        "s1", "The customer wants a refund.", row.summary_through, 7,
        expected_through=row.summary_through)
    again = engine.assemble(query="refund", session_id="s1", max_tokens=300)
    assert not again.cache.hit
    # What it returns is assembled from the refined state, as an uncached call would be.
    fresh = engine.assemble(query="refund", session_id="s1", max_tokens=300, cache=False)
    assert again.messages == fresh.messages


def test_memory_is_bounded_by_entries_and_bytes(make_engine: Callable[..., Engine],
                                                tmp_path: Path) -> None:
    few = make_engine(tmp_path / "few", cache_max_entries=3)
    few.upsert_documents(DOCS)
    for i in range(6):
        few.assemble(query=f"question number {i} about shipping", max_tokens=600)
    assert few.cache.core.usage("default")[0] == 3
    assert few.cache.core.evicted == 3
    # The newest stay: the last three are hits, the first is gone.
    assert few.assemble(query="question number 5 about shipping", max_tokens=600).cache.hit
    assert not few.assemble(query="question number 0 about shipping", max_tokens=600).cache.hit

    small = make_engine(tmp_path / "small", cache_max_bytes=12_000)
    small.upsert_documents(DOCS)
    for i in range(8):
        small.assemble(query=f"question number {i} about shipping", max_tokens=600)
    entries, nbytes = small.cache.core.usage("default")
    assert 0 < nbytes <= 12_000 and entries < 8


def test_an_answer_is_returned_by_a_later_hit_only(cached: Engine) -> None:
    first = cached.assemble(query="How do I reset my password?", max_tokens=600)
    stored = cached.put_answer(first.assembly_id, "Use the emailed link.")
    assert stored.stored and stored.assembly_id == first.assembly_id
    hit = cached.assemble(query="how can I reset the password please", max_tokens=600)
    assert hit.cache.answer == "Use the emailed link."
    # Another state: the answer is not reused.
    cached.upsert_documents([{"id": "password", "text": "Passwords are reset by support."}])
    assert cached.assemble(query="How do I reset my password?", max_tokens=600).cache.answer \
        is None


def test_an_unknown_or_expired_assembly_is_answer_not_found(
        cached: Engine, make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    with pytest.raises(AnswerNotFound, match="assemble again"):
        cached.put_answer("0" * 32, "42")
    off = cached.assemble(query="shipping", max_tokens=600, cache=False)
    with pytest.raises(AnswerNotFound):
        cached.put_answer(off.assembly_id, "42")
    short = make_engine(tmp_path / "short", cache_ttl_s=1e-6)
    short.upsert_documents(DOCS)
    gone = short.assemble(query="shipping", max_tokens=600)
    with pytest.raises(AnswerNotFound):
        short.put_answer(gone.assembly_id, "42")


# --------------------------------------------------------------------------- never stale

OPS = st.lists(st.one_of(
    st.tuples(st.just("assemble"), st.sampled_from(["refund", "shipping days"]),
              st.booleans()),
    st.tuples(st.just("upsert"), st.sampled_from(["refunds", "shipping", "new"]),
              st.integers(0, 3)),
    st.tuples(st.just("delete"), st.sampled_from(["refunds", "shipping", "new"]), st.just(0)),
    st.tuples(st.just("append"), st.sampled_from(["s1", "s1", "s2"]), st.integers(0, 3)),
), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS)
def test_a_hit_never_outlives_an_upsert_delete_or_append(ops: list[tuple]) -> None:
    """Whatever the writes in between, a response served from the cache is the one a fresh
    assembly would give now."""
    with tempfile.TemporaryDirectory() as tmp, Engine(
            tmp, Settings(embedder="hash", batch_wait_ms=0, cache_similarity=LOW_THRESHOLD,
                          session_window_tokens=80), embedder=HashEmbedder()) as engine:
        engine.upsert_documents(DOCS)
        engine.append_messages("s1", [{"role": "user", "content": "hello"}])
        engine.append_messages("s2", [{"role": "user", "content": "hi there"}])
        hits = 0
        for op, target, n in ops:
            if op == "upsert":
                engine.upsert_documents([{"id": target, "text": f"{target} version {n}: "
                                          "refunds, shipping and password resets."}])
            elif op == "delete":
                with contextlib.suppress(DocumentNotFound):  # deleting it twice
                    engine.delete_document(target)
            elif op == "append":
                engine.append_messages(target, [{"role": "user", "content":
                                                 f"message {n} about the refund"}])
            else:
                session = "s1" if n else None
                for query in (target, f"{target}?"):
                    served = engine.assemble(query=query, session_id=session, max_tokens=400)
                    fresh = engine.assemble(query=query, session_id=session, max_tokens=400,
                                            cache=False)
                    hits += served.cache.hit
                    assert ends_with_its_query(served, query)
                    if served.cache.hit:
                        assert context(served) == context(fresh)
                    else:
                        assert content(served) == content(fresh)
        assert hits >= sum(1 for op in ops if op[0] == "assemble")  # the second query hits


# --------------------------------------------------------------------------- the real model


@pytest.mark.model
def test_real_model_paraphrase_hits_and_near_misses_do_not(tmp_path: Path) -> None:
    with Engine(tmp_path / "d", Settings(batch_wait_ms=0)) as engine:
        engine.upsert_documents(DOCS)
        engine.assemble(query="How do I reset my password?", max_tokens=600)
        hit = engine.assemble(query="how can I reset my password", max_tokens=600)
        assert hit.cache.hit and 0.9 <= hit.cache.similarity < 1.0
        for cached_query, asked in [
                ("Is it safe to take ibuprofen with food?",
                 "Is it safe to take ibuprofen without food?"),
                ("Can I return an item after 30 days?", "Can I return an item after 60 days?"),
                ("flights to Rome in June", "flights to Rome in July"),
                ("Do you ship to Germany?", "Do you ship to Austria?")]:
            engine.assemble(query=cached_query, max_tokens=600)
            assert not engine.assemble(query=asked, max_tokens=600).cache.hit, asked
        counts = engine.cache.core.counts()
        # Refused by the guard above the threshold, or below it: never a hit.
        assert counts["similar"] == 1 and counts["guard"] >= 2
