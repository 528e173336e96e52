"""Invariants under random documents, histories and budgets."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextd import BudgetTooSmall
from contextd.retrieval.fusion import fuse_rrf, fuse_scores
from contextd.tokens import count_messages, get_counter

WORDS = ("alpha beta gamma delta <|endoftext|> vector search token budget 2024 Lisbon Ana "
         "ünïcode 🙂 the of and . ! ?")
words = st.sampled_from([*WORDS.split(), "\n"])
texts = st.lists(words, min_size=1, max_size=120).map(" ".join)
roles = st.sampled_from(["user", "assistant"])


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory):
    from contextd import Engine, Settings
    from contextd.embedding import HashEmbedder

    engine = Engine(tmp_path_factory.mktemp("prop"), Settings(embedder="hash", batch_wait_ms=0),
                    embedder=HashEmbedder())
    yield engine
    engine.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    docs=st.lists(texts.filter(str.strip), min_size=0, max_size=8),
    history=st.lists(st.tuples(roles, texts.filter(str.strip)), max_size=30),
    query=texts.filter(str.strip),
    system=st.none() | texts,
    budget=st.integers(1, 3000),
    share=st.floats(0, 1),
)
def test_budget_never_exceeded_and_usage_adds_up(shared_engine, docs, history, query, system,
                                                 budget, share):
    engine = shared_engine
    if docs:
        engine.upsert_documents([{"id": f"d{i}", "text": t} for i, t in enumerate(docs)],
                                namespace="prop")
    messages = [{"role": r, "content": c} for r, c in history]
    try:
        r = engine.assemble(namespace="prop" if docs else "default", query=query,
                            system=system or None, messages=messages or None,
                            max_tokens=budget, history_share=share)
    except BudgetTooSmall as exc:
        counter = get_counter()
        fixed = [{"role": "user", "content": query.strip()}]
        if system:
            fixed.insert(0, {"role": "system", "content": system})
        assert count_messages(fixed, counter) > budget
        assert exc.extra["minimum_budget"] == count_messages(fixed, counter)
        return
    plain = [m.model_dump(exclude_none=True) for m in r.messages]
    total = count_messages(plain, get_counter())
    u = r.usage
    assert total == u.total <= budget == u.budget
    assert u.system + u.summary + u.history + u.recalled + u.documents + u.query + u.overhead \
        == u.total
    assert r.messages[-1].role == "user" and r.messages[-1].content == query.strip()
    if system:
        assert r.messages[0].content == system


@given(st.lists(st.lists(st.integers(0, 30), max_size=20, unique=True), min_size=1, max_size=4),
       st.randoms())
def test_fusion_is_order_independent(rankings, rnd):
    shuffled = rankings[:]
    rnd.shuffle(shuffled)
    assert fuse_rrf(rankings) == fuse_rrf(shuffled)


@given(st.lists(st.dictionaries(st.integers(0, 30), st.floats(-5, 50), max_size=20),
                min_size=1, max_size=4),
       st.randoms())
def test_score_fusion_is_order_independent_and_bounded(scored, rnd):
    shuffled = scored[:]
    rnd.shuffle(shuffled)
    fused = fuse_scores(scored)
    assert [item for item, _ in fused] == [item for item, _ in fuse_scores(shuffled)]
    assert {item for item, _ in fused} == {item for s in scored for item in s}
    assert all(0.0 <= score <= 1.0 for _, score in fused)
