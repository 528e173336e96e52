"""Sliding window, incremental summary, recall of evicted turns, tool-call groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contextd.memory.summariser import ExtractiveSummariser, sentence_score
from contextd.memory.window import plan_eviction, tool_groups
from contextd.tokens import count_messages, get_counter

FILLER = [
    "How was your day?", "Pretty good, thanks for asking.", "I watched a film last night.",
    "Was it any good?", "It was fine, a bit long.", "I should sleep earlier.",
]


def chat(n: int, start: int = 0) -> list[dict]:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"{FILLER[i % len(FILLER)]} (turn {i})", "id": f"t{i}",
             "timestamp": (base + timedelta(minutes=i)).isoformat()}
            for i in range(start, start + n)]


class CountingSummariser(ExtractiveSummariser):
    def __init__(self) -> None:
        self.calls: list[int] = []

    def summarise(self, previous, turns, max_tokens, counter):
        self.calls.append(len(turns))
        return super().summarise(previous, turns, max_tokens, counter)


def test_eviction_is_in_blocks_down_to_keep_fraction() -> None:
    assert plan_eviction([10] * 10, list(range(10)), budget=100, keep_fraction=0.5) == 0
    # 110 tokens over a 100 budget: evict down to 50, i.e. six turns at once.
    assert plan_eviction([10] * 11, list(range(11)), budget=100, keep_fraction=0.5) == 6


def test_tool_calls_and_results_form_one_group() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "result"},
                {"role": "assistant", "content": "done"}]
    assert tool_groups(messages) == [0, 1, 1, 2]
    # Evicting the call without its result is impossible: both go.
    assert plan_eviction([5, 5, 50, 5], tool_groups(messages), budget=60, keep_fraction=0.2) == 3


def test_summary_is_updated_incrementally_at_checkpoints(make_engine) -> None:
    summariser = CountingSummariser()
    engine = make_engine()
    engine.memory.summariser = summariser
    engine.append_messages("s", chat(40))
    for i in range(40, 240, 2):
        engine.append_messages("s", chat(2, start=i))
        engine.assemble(query="what did I watch?", max_tokens=700, session_id="s", top_k=0)
    info = engine.get_session("s")
    assert info.summary and info.summary_through > 0
    # Each call folds only newly evicted turns: the total is the evicted count, not a rescan.
    assert sum(summariser.calls) == info.summary_through
    assert 1 < len(summariser.calls) < 100


def test_prefix_is_stable_between_checkpoints(make_engine) -> None:
    engine = make_engine()
    engine.append_messages("s", chat(30))
    stable = []
    digest = None
    for i in range(30, 130, 2):
        engine.append_messages("s", chat(2, start=i))
        r = engine.assemble(query="how was the film?", max_tokens=900, session_id="s", top_k=0,
                            previous_prefix_digest=digest)
        stable.append(r.prefix_unchanged)
        digest = r.prefix_digest
    # New turns change the window each time; only repeated identical requests keep it, and
    # a second engine (another replica) names the same prefix with the same digest.
    again = engine.assemble(query="how was the film?", max_tokens=900, session_id="s", top_k=0,
                            previous_prefix_digest=digest)
    assert again.prefix_unchanged is True
    other = make_engine(engine.settings.data_dir)
    assert other.assemble(query="how was the film?", max_tokens=900, session_id="s", top_k=0,
                          previous_prefix_digest=digest).prefix_unchanged is True
    assert stable.count(True) == 0


def test_recall_finds_an_early_fact_after_hundreds_of_turns(make_engine) -> None:
    engine = make_engine()
    fact = {"role": "user", "content": "My sister Beatriz adopted a greyhound named Pimenta.",
            "id": "fact"}
    engine.append_messages("s", [fact, *chat(400, start=1)])
    r = engine.assemble(query="What is the name of Beatriz's greyhound?", max_tokens=1200,
                        session_id="s", top_k=0)
    assert "fact" not in r.history_turn_ids
    assert "fact" in r.recalled_turn_ids
    assert "Pimenta" in "".join(m.content or "" for m in r.messages)
    assert r.usage.total <= 1200


def test_recall_can_be_switched_off(make_engine) -> None:
    engine = make_engine()
    engine.append_messages("s", [{"role": "user", "content": "Beatriz owns Pimenta."},
                                 *chat(300, start=1)])
    r = engine.assemble(query="Who owns Pimenta?", max_tokens=800, session_id="s", top_k=0,
                        recall=False)
    assert r.recalled_turn_ids == []


def test_query_defaults_to_last_user_message(engine) -> None:
    r = engine.assemble(messages=[{"role": "user", "content": "hello"},
                                  {"role": "assistant", "content": "hi!"},
                                  {"role": "user", "content": "what is bm25?"}],
                        max_tokens=300)
    assert r.messages[-1].content == "what is bm25?"
    assert r.usage.query == get_counter().count("what is bm25?")
    assert [m.content for m in r.messages[:-1]] == ["hello", "hi!"]


def test_tool_groups_survive_packing_together(engine) -> None:
    call = {"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "weather"}'}}
    messages = [*chat(6), {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny " * 30},
                {"role": "assistant", "content": "It is sunny."}]
    for budget in range(120, 400, 7):
        r = engine.assemble(query="and tomorrow?", messages=messages, max_tokens=budget,
                            top_k=0, history_share=1.0)
        roles = [m.role for m in r.messages]
        has_call = any(m.tool_calls for m in r.messages)
        assert has_call == ("tool" in roles)
        plain = [m.model_dump(exclude_none=True) for m in r.messages]
        assert r.usage.total == count_messages(plain, get_counter()) <= budget


def test_summary_keeps_informative_sentences() -> None:
    assert sentence_score("Alice: We moved to Porto on 3 May 2023.") > sentence_score(
        "Bob: ok cool")
    counter = get_counter()
    summary = ExtractiveSummariser().summarise(
        None, ["Ana: haha ok", "Ana: I decided to move to Porto in June 2024.",
               "Rui: nice"], 30, counter)
    assert "Porto" in summary and "haha" not in summary
    assert counter.count(summary) <= 30


def test_appends_keep_the_turn_vector_cache_as_the_store_would(make_engine) -> None:
    engine = make_engine()
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i} about otters.",
              **({"name": "Ana"} if i % 2 == 0 else {})} for i in range(30)]
    for start in range(0, 30, 7):
        engine.append_messages("s", turns[start:start + 7])
    engine.append_messages("s", [{"role": "user", "content": "And the last one."}])
    ns = engine.registry.get("default")
    generation = ns.sessions.session("s").created_at  # type: ignore[union-attr]
    key = ("default", "s", generation)
    cache = engine.memory.recaller.cache
    reads = []
    original = ns.sessions.turn_vectors
    ns.sessions.turn_vectors = lambda *a, **k: reads.append(a) or original(*a, **k)
    try:
        held = cache.get(key, ns.sessions, known=31)
        assert reads == []  # the appends filled it: the first assemble reads nothing
    finally:
        ns.sessions.turn_vectors = original
    stored = original("s")
    assert held.seqs.tolist() == stored.seqs.tolist() == list(range(1, 32))
    assert (held.vectors == stored.vectors).all()
    assert held.turns.tokens.tolist() == stored.tokens.tolist()
    assert held.turns.speakers == stored.speakers and stored.speakers[0] == "user\x00Ana"


def test_a_turn_appended_elsewhere_is_read_not_skipped(make_engine, tmp_path) -> None:
    one = make_engine(tmp_path / "shared")
    other = make_engine(tmp_path / "shared")  # another process on the same store
    one.append_messages("s", [{"role": "user", "content": "First."}])
    other.append_messages("s", [{"role": "user", "content": "Second, from elsewhere."}])
    one.append_messages("s", [{"role": "user", "content": "Third."}])
    ns = one.registry.get("default")
    key = ("default", "s", ns.sessions.session("s").created_at)  # type: ignore[union-attr]
    held = one.memory.recaller.cache.get(key, ns.sessions)
    assert held.seqs.tolist() == [1, 2, 3]
