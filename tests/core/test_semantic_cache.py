"""The semantic cache: exact and guarded near-duplicate hits, keys that cannot go stale, bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contextd.cache import CacheKey, SemanticCache, normalise, request_digest, same_meaning
from contextd.embedding import HashEmbedder
from contextd.models import AssembleRequest
from contextd.settings import Settings


class Stamp(BaseModel):
    query: str
    documents_seq: int = 0
    session_seq: int | None = None
    text: str = ""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(documents_seq: int = 1, session_seq: int | None = None, **changes: object) -> CacheKey:
    fields: dict = {"namespace": "ns", "documents_seq": documents_seq,
                    "session_id": None if session_seq is None else "s1",
                    "session_seq": session_seq, "budget": 2000, "encoding": "cl100k_base",
                    "profile": "default", "digest": "d", "generation": "g1",
                    "profile_digest": "p1"}
    fields.update(changes)
    return CacheKey(**fields)


def unit(seed: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit vector at exactly `cosine` from unit vector `v`."""
    other = unit(seed, v.shape[0])
    other -= (other @ v) * v
    other /= np.linalg.norm(other)
    return cosine * v + np.sqrt(1 - cosine**2) * other


# --------------------------------------------------------------------------- hits and misses


def test_exact_hit_folds_case_spacing_and_punctuation() -> None:
    cache = SemanticCache()
    assert cache.store(key(), "How do I reset my password?", None, Stamp(query="q1"), "a1")
    hit = cache.lookup(key(), "  how do i RESET my password ", None)
    assert hit is not None and hit.exact and hit.similarity == 1.0
    assert hit.response == Stamp(query="q1") and hit.assembly_id == "a1"
    assert cache.counts()["exact"] == 1


def test_a_hit_is_a_copy_the_caller_may_change() -> None:
    cache = SemanticCache()
    cache.store(key(), "q", None, Stamp(query="kept"), "a1")
    first = cache.lookup(key(), "q", None)
    assert first is not None
    first.response.query = "changed"  # type: ignore[attr-defined]
    second = cache.lookup(key(), "q", None)
    assert second is not None and second.response.query == "kept"  # type: ignore[attr-defined]


def test_paraphrase_with_close_vectors_is_a_semantic_hit() -> None:
    cache = SemanticCache(similarity=0.9)
    v = unit(1)
    cache.store(key(), "How do I reset my password?", v, Stamp(query="q1"), "a1")
    hit = cache.lookup(key(), "how can I reset the password", near(v, 0.95))
    assert hit is not None and not hit.exact
    assert hit.similarity == pytest.approx(0.95, abs=1e-5)
    assert cache.counts()["similar"] == 1


def test_near_duplicate_below_the_threshold_is_below_threshold() -> None:
    cache = SemanticCache(similarity=0.9)
    v = unit(1)
    cache.store(key(), "How do I reset my password?", v, Stamp(query="q1"), "a1")
    assert cache.lookup(key(), "how can I reset the password", near(v, 0.85)) is None
    assert cache.counts()["below_threshold"] == 1


@pytest.mark.parametrize(("cached", "asked", "reason"), [
    ("Is it safe to take ibuprofen with food?", "Is it safe to take ibuprofen without food?",
     "negation"),
    ("I can log in to my account", "I can't log in to my account", "negation"),
    ("Can I return an item after 30 days?", "Can I return an item after 60 days?", "number"),
    ("plan a three-day trip", "plan a five-day trip", "number"),
    ("flights to Rome in June", "flights to Rome in July", "date"),
    ("Is support open on Monday?", "Is support open on Sunday?", "date"),
    ("Do you accept PayPal?", "Do you accept Klarna?", "entity"),
    ("what does KeyError mean", "what does TypeError mean", "entity"),
    ("search the logs for 'timeout'", "search the logs for 'refused'", "entity"),
    ("How do I increase the dose?", "How do I decrease the dose?", "content"),
    ("turn on dark mode", "turn off dark mode", "content"),
    ("convert USD to EUR", "convert EUR to USD", "order"),
    ("is a dog bigger than a cat", "is a cat bigger than a dog", "order"),
    ("Is customer support open on Sunday?", "When is customer support open on Sunday?",
     "question"),
])
def test_guard_refuses_a_near_duplicate_that_asks_something_else(cached, asked, reason) -> None:
    verdict = same_meaning(cached, asked)
    assert not verdict.same and verdict.reason == reason
    cache = SemanticCache(similarity=0.5)
    v = unit(3)
    cache.store(key(), cached, v, Stamp(query=cached), "a1")
    assert cache.lookup(key(), asked, v) is None  # even at cosine 1.0
    assert cache.counts()["guard"] == 1


@pytest.mark.parametrize(("a", "b"), [
    ("How do I reset my password?", "how can i reset my password"),
    ("What are the symptoms of type 2 diabetes?", "Symptoms of type 2 diabetes?"),
    ("Side effects of ibuprofen", "ibuprofen side effects"),
    ("I can't log in", "I cannot log in"),
    ("running shoes for flat feet", "shoes for running, flat foot"),
    ("Why did my build fail?", "why does my build fail"),
])
def test_guard_accepts_rewordings_that_keep_every_content_word(a, b) -> None:
    assert same_meaning(a, b).same


def test_a_query_of_stop_words_only_is_never_a_near_duplicate() -> None:
    assert same_meaning("is it", "was it").reason == "empty"


def test_normalise_keeps_symbols_that_change_the_meaning() -> None:
    assert normalise("C++ sort?") != normalise("C sort")
    assert normalise("rate 3.5%") != normalise("rate 35")
    assert normalise("-2 degrees") != normalise("2 degrees")


def test_most_similar_accepted_candidate_wins() -> None:
    cache = SemanticCache(similarity=0.8)
    v = unit(4)
    cache.store(key(), "reset my password", near(v, 0.85, seed=1), Stamp(query="far"), "a1")
    cache.store(key(), "reset the password", near(v, 0.95, seed=2), Stamp(query="close"), "a2")
    cache.store(key(), "reset no password", v, Stamp(query="refused"), "a3")
    hit = cache.lookup(key(), "how to reset my password", v)
    assert hit is not None and hit.response.query == "close"  # type: ignore[attr-defined]


def test_real_vectors_from_the_hash_embedder_hit_only_through_the_guard() -> None:
    emb = HashEmbedder()
    cache = SemanticCache(similarity=0.5)
    a, b, c = emb.embed(["how do I reset my password", "how can I reset my password please",
                         "how do I not reset my password"])
    cache.store(key(), "how do I reset my password", a, Stamp(query="q"), "a1")
    assert cache.lookup(key(), "how can I reset my password please", b) is not None
    assert cache.lookup(key(), "how do I not reset my password", c) is None


# --------------------------------------------------------------------------- keys


def test_any_key_field_change_is_a_miss() -> None:
    cache = SemanticCache()
    cache.store(key(), "q", None, Stamp(query="q"), "a1")
    for other in (key(documents_seq=2), key(session_seq=1), key(budget=1999),
                  key(encoding="o200k_base"), key(profile="canary"), key(digest="e"),
                  key(namespace="other"), key(generation="g2"), key(profile_digest="p2")):
        assert cache.lookup(other, "q", None) is None
    assert cache.lookup(key(), "q", None) is not None


def test_request_digest_covers_fields_that_change_the_output() -> None:
    base = AssembleRequest(query="a", max_tokens=1000)
    same = [base.model_copy(update={"query": "b"}),
            base.model_copy(update={"query_type": "faq"}),
            base.model_copy(update={"session_id": "s9"})]
    assert all(request_digest(r) == request_digest(base) for r in same)
    for update in ({"top_k": 3}, {"system": "be brief"}, {"filters": {"lang": "en"}},
                   {"history_share": 0.2}, {"recall": False}, {"max_tokens": 999},
                   {"model": "gpt-4o"}):
        assert request_digest(base.model_copy(update=update)) != request_digest(base), update


def test_key_for_a_request_without_session_has_no_session_sequence() -> None:
    req = AssembleRequest(query="a", max_tokens=1000)
    with pytest.raises(ValueError, match="session_seq"):
        CacheKey.for_request(req, documents_seq=1, session_seq=3, budget=1000,
                             encoding="cl100k_base", profile="default", profile_digest="p1",
                             generation="g1")


OPS = st.lists(st.one_of(
    st.tuples(st.just("upsert"), st.just(0)),
    st.tuples(st.just("append"), st.just(0)),
    st.tuples(st.just("store"), st.integers(0, 3)),
    st.tuples(st.just("lookup"), st.integers(0, 3)),
    st.tuples(st.just("answer"), st.integers(0, 3)),
), max_size=40)
QUERIES = ["reset my password", "how can I reset my password", "reset the password please",
           "reset my passwords"]


@settings(max_examples=150, deadline=None)
@given(ops=OPS, with_session=st.booleans())
def test_a_hit_never_outlives_a_change_of_documents_or_session(ops, with_session) -> None:
    cache = SemanticCache(similarity=0.5, max_entries=5)
    emb = HashEmbedder(dim=64)
    vectors = dict(zip(QUERIES, emb.embed(QUERIES), strict=True))
    docs, turns = 1, (0 if with_session else None)
    stored: list[str] = []
    for n, (op, q) in enumerate(ops):
        current = key(docs, turns)
        if op == "upsert":
            docs += 1
        elif op == "append" and with_session:
            turns += 1  # type: ignore[operator]
        elif op == "store":
            stamp = Stamp(query=QUERIES[q], documents_seq=docs, session_seq=turns)
            cache.store(current, QUERIES[q], vectors[QUERIES[q]], stamp, f"a{n}")
            stored.append(f"a{n}")
        elif op == "answer" and stored:
            cache.put_answer("ns", stored[q % len(stored)], f"answer at {docs}/{turns}")
        elif op == "lookup":
            hit = cache.lookup(current, QUERIES[q], vectors[QUERIES[q]])
            if hit is not None:
                assert hit.response.documents_seq == docs  # type: ignore[attr-defined]
                assert hit.response.session_seq == turns  # type: ignore[attr-defined]
                assert hit.answer in (None, f"answer at {docs}/{turns}")


# --------------------------------------------------------------------------- bounds


def test_entries_are_bounded_least_recently_used_out_first() -> None:
    cache = SemanticCache(max_entries=3)
    for i in range(3):
        cache.store(key(), f"query {i}", None, Stamp(query=str(i)), f"a{i}")
    assert cache.lookup(key(), "query 0", None) is not None  # now the most recently used
    cache.store(key(), "query 3", None, Stamp(query="3"), "a3")
    assert cache.usage("ns")[0] == 3 and cache.evicted == 1
    assert cache.lookup(key(), "query 1", None) is None
    assert all(cache.lookup(key(), f"query {i}", None) for i in (0, 2, 3))


def test_bytes_are_bounded_and_an_oversized_response_is_not_stored() -> None:
    one = SemanticCache().store(key(), "q", None, Stamp(query="q", text="x" * 1000), "probe")
    assert one
    size = SemanticCache()
    size.store(key(), "q", None, Stamp(query="q", text="x" * 1000), "probe")
    per_entry = size.usage("ns")[1]
    cache = SemanticCache(max_bytes=int(per_entry * 2.5))
    for i in range(5):
        assert cache.store(key(), f"q{i}", None, Stamp(query="q", text="x" * 1000), f"a{i}")
        assert cache.usage("ns")[1] <= cache.max_bytes
    assert cache.usage("ns")[0] == 2
    assert not cache.store(key(), "big", None, Stamp(query="q", text="x" * 10 * per_entry), "b")
    assert cache.lookup(key(), "big", None) is None


def test_bounds_are_per_namespace() -> None:
    cache = SemanticCache(max_entries=2)
    for ns in ("a", "b"):
        for i in range(3):
            cache.store(key(namespace=ns), f"q{i}", None, Stamp(query="q"), f"{ns}{i}")
    assert cache.usage("a")[0] == 2 and cache.usage("b")[0] == 2


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = SemanticCache(ttl_s=60, clock=clock)
    v = unit(5)
    cache.store(key(), "reset my password", v, Stamp(query="q"), "a1")
    clock.now += 30
    hit = cache.lookup(key(), "reset my password", v)
    assert hit is not None and hit.age_s == pytest.approx(30)
    clock.now += 31
    assert cache.lookup(key(), "reset my password", v) is None
    assert cache.counts()["expired"] == 1 and cache.usage("ns") == (0, 0)
    cache.store(key(), "reset my password", v, Stamp(query="q"), "a2")
    clock.now += 61
    assert cache.lookup(key(), "how can I reset my password", v) is None
    assert cache.counts()["expired"] == 2


def test_same_query_replaces_the_older_response() -> None:
    cache = SemanticCache()
    cache.store(key(), "q", None, Stamp(query="old"), "a1")
    cache.store(key(), "Q?", None, Stamp(query="new"), "a2")
    hit = cache.lookup(key(), "q", None)
    assert hit is not None and hit.response.query == "new"  # type: ignore[attr-defined]
    assert cache.usage("ns")[0] == 1 and not cache.put_answer("ns", "a1", "x")


def test_turned_off_the_cache_stores_nothing_and_counts_disabled() -> None:
    for cache in (SemanticCache(enabled=False), SemanticCache(max_entries=0)):
        assert not cache.store(key(), "q", None, Stamp(query="q"), "a1")
        assert cache.lookup(key(), "q", None) is None
        assert cache.counts()["disabled"] == 1


def test_settings_configure_the_cache() -> None:
    cache = SemanticCache.from_settings(Settings(cache_similarity=0.97, cache_ttl_s=5,
                                                 cache_enabled=False))
    assert (cache.similarity, cache.ttl_s, cache.enabled) == (0.97, 5, False)


# --------------------------------------------------------------------------- answers


def test_stored_answer_is_returned_with_exact_and_guarded_hits_only() -> None:
    cache = SemanticCache(similarity=0.9)
    v = unit(6)
    cache.store(key(), "Is ibuprofen safe with alcohol?", v, Stamp(query="q"), "a1")
    assert cache.lookup(key(), "is ibuprofen safe with alcohol", v).answer is None
    assert cache.put_answer("ns", "a1", "Better not.")
    assert cache.lookup(key(), "Is ibuprofen safe with alcohol", v).answer == "Better not."
    assert cache.lookup(key(), "ibuprofen safe with alcohol?", near(v, 0.95)).answer == \
        "Better not."
    assert cache.lookup(key(), "Is ibuprofen not safe with alcohol?", v) is None


def test_an_answer_is_never_reused_across_a_change_of_state() -> None:
    cache = SemanticCache()
    cache.store(key(documents_seq=1, session_seq=4), "q", None, Stamp(query="q"), "a1")
    assert cache.put_answer("ns", "a1", "42")
    assert cache.lookup(key(documents_seq=2, session_seq=4), "q", None) is None
    assert cache.lookup(key(documents_seq=1, session_seq=5), "q", None) is None
    assert cache.lookup(key(documents_seq=1, session_seq=4), "q", None).answer == "42"


def test_put_answer_fails_for_an_unknown_evicted_or_expired_entry() -> None:
    clock = Clock()
    cache = SemanticCache(max_entries=1, ttl_s=10, clock=clock)
    assert not cache.put_answer("ns", "nope", "x")
    assert not cache.put_answer("other", "nope", "x")
    cache.store(key(), "q1", None, Stamp(query="q"), "a1")
    cache.store(key(), "q2", None, Stamp(query="q"), "a2")
    assert not cache.put_answer("ns", "a1", "x")
    clock.now += 11
    assert not cache.put_answer("ns", "a2", "x")


def test_an_answer_counts_towards_the_byte_bound() -> None:
    cache = SemanticCache()
    cache.store(key(), "q", None, Stamp(query="q"), "a1")
    before = cache.usage("ns")[1]
    assert cache.put_answer("ns", "a1", "y" * 1000)
    assert cache.usage("ns")[1] == before + 1000
    small = SemanticCache(max_bytes=before + 100)
    small.store(key(), "q", None, Stamp(query="q"), "a1")
    assert not small.put_answer("ns", "a1", "y" * 1000)
    assert small.lookup(key(), "q", None).answer is None


def test_dropping_a_session_or_namespace_forgets_its_entries() -> None:
    cache = SemanticCache()
    cache.store(key(session_seq=1), "q", None, Stamp(query="q"), "a1")
    cache.store(key(), "q", None, Stamp(query="q"), "a2")
    cache.drop_session("ns", "s1")
    assert cache.lookup(key(session_seq=1), "q", None) is None
    assert cache.lookup(key(), "q", None) is not None
    cache.drop_namespace("ns")
    assert cache.usage("ns") == (0, 0)
