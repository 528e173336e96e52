"""Once history overflows, turns compete for the budget by relevance: one priority order per
query, the longest prefix that fits, so more budget never loses a turn."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextd import Engine
from contextd.memory.priority import longest_prefix, priority_seqs, relevance_order
from contextd.tokens import REPLY_PRIMING, count_messages, get_counter, message_tokens

BASE = datetime(2024, 1, 1, tzinfo=UTC)
FILLER = ["How was your day?", "Pretty good, thanks for asking.", "I watched a film.",
          "Was it any good?", "It was fine, a bit long.", "I should sleep earlier."]


def turn(i: int, content: str, turn_id: str | None = None) -> dict:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": content,
            "id": turn_id or f"t{i}", "timestamp": (BASE + timedelta(hours=i)).isoformat()}


def filler(n: int, start: int = 0) -> list[dict]:
    return [turn(i, f"{FILLER[i % len(FILLER)]} (turn {i})") for i in range(start, start + n)]


def history_budget(engine: Engine, query: str, budget: int, **kwargs: object):
    """Assemble with exactly `budget` tokens for history."""
    cost = message_tokens({"role": "user", "content": query}, get_counter())
    return engine.assemble(query=query, max_tokens=budget + cost + REPLY_PRIMING, top_k=0,
                           history_share=1.0, **kwargs)


def test_a_question_about_an_early_fact_spends_the_budget_on_recall(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    fact = turn(0, "My sister Beatriz adopted a greyhound named Pimenta.", "fact")
    engine.append_messages("s", [fact, *filler(400, start=1)])
    r = history_budget(engine, "What is the name of Beatriz's greyhound?", 300, session_id="s")
    assert "fact" in r.recalled_turn_ids and "fact" not in r.history_turn_ids
    # The last exchange stays, as chat messages; the old fact comes first, dated.
    assert r.history_turn_ids[-2:] == ["t399", "t400"]
    recalled = next(m.content for m in r.messages if m.content and "Pimenta" in m.content)
    assert "[1 January 2024] user: My sister Beatriz" in recalled
    order = [m.content for m in r.messages]
    assert order.index(recalled) < order.index(r.messages[-3].content)
    assert r.usage.total <= r.usage.budget


def test_a_follow_up_about_the_last_turns_spends_the_budget_on_them(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    recent = [turn(i, f"The hotel Miradouro in Lisbon has {n} rooms with a river view.",
                   f"hotel{n}") for n, i in enumerate(range(300, 308))]
    engine.append_messages("s", [*filler(300), *recent])
    r = history_budget(engine, "Which hotel in Lisbon had the river view rooms?", 300,
                       session_id="s")
    # Every recent turn about the hotel is kept, as one unbroken run of chat messages.
    assert r.history_turn_ids[-len(recent):] == [t["id"] for t in recent]
    assert r.usage.history > r.usage.recalled


def test_the_turn_after_a_hit_comes_with_it(make_engine: Callable[..., Engine]) -> None:
    # The memory is switched in place between two calls on one state: no cached answer.
    engine = make_engine(cache_enabled=False)
    question = turn(0, "What did the vet tell you about Pimenta's paw?", "q")
    answer = turn(1, "She said it is only a small sprain, nothing broken.", "a")
    engine.append_messages("s", [question, answer, *filler(400, start=2)])
    query = "What did the vet say about Pimenta's paw?"
    engine.memory.neighbours = True
    with_neighbours = history_budget(engine, query, 300, session_id="s")
    assert {"q", "a"} <= set(with_neighbours.recalled_turn_ids)
    engine.memory.neighbours = False
    alone = history_budget(engine, query, 300, session_id="s")
    assert "q" in alone.recalled_turn_ids and "a" not in alone.recalled_turn_ids


def test_the_summary_leaves_out_what_the_chosen_turns_already_say(
        make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    fact = turn(0, "We decided to move to Porto on 3 May 2024.", "fact")
    engine.append_messages("s", [fact, *filler(200, start=1)])
    info = engine.get_session("s")
    assert info.summary and "Porto" in info.summary
    r = history_budget(engine, "When do we move to Porto?", 2000, session_id="s")
    assert "fact" in r.recalled_turn_ids
    summary = [m.content for m in r.messages if m.content and m.content.startswith("Summary")]
    assert all("Porto" not in s for s in summary)


def test_priority_order_and_prefix() -> None:
    # Both searches agree on 9: it leads; recency lifts 7 above the older 3 on a tie.
    assert relevance_order([3, 7, 9], [9], last_seq=10)[:1] == [9]
    assert relevance_order([3, 7], [7, 3], last_seq=10) == [7, 3]
    # A question brings the turn after it; nothing repeats, passes the last turn or the floor.
    asks = {4, 5, 9}.__contains__
    assert list(priority_seqs([4, 5, 9], last_seq=10, exclude={10}, asks=asks)) == [4, 5, 6, 9]
    assert list(priority_seqs([4, 5, 9], last_seq=10)) == [4, 5, 9]
    assert longest_prefix([3, 3, 3], 8) == 2
    assert longest_prefix([3, 100, 1], 50) == 1  # a big item is not skipped over


WORDS = ["Ana", "Lisbon", "Porto", "greyhound", "Pimenta", "train", "tuna", "report", "kitchen",
         "green", "film", "sister", "moved", "decided", "May", "2024", "the", "a", "of", "and",
         "was", "is", "hotel", "river"]
sentences = st.lists(st.sampled_from(WORDS), min_size=1, max_size=25).map(" ".join)
_sessions = itertools.count()


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory):
    from contextd import Settings
    from contextd.embedding import HashEmbedder

    engine = Engine(tmp_path_factory.mktemp("mono"),
                    Settings(embedder="hash", batch_wait_ms=0, session_window_tokens=150),
                    embedder=HashEmbedder())
    yield engine
    engine.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(sentences, min_size=2, max_size=60), query=sentences,
       budgets=st.lists(st.integers(1, 1500), min_size=2, max_size=4, unique=True))
def test_a_larger_budget_keeps_every_turn_a_smaller_one_kept(shared_engine, history, query,
                                                             budgets) -> None:
    engine = shared_engine
    session = f"s{next(_sessions)}"
    engine.append_messages(session, [turn(i, text) for i, text in enumerate(history)])
    kept: list[set[str]] = []
    for budget in sorted(budgets):
        r = history_budget(engine, query, budget, session_id=session)
        plain = [m.model_dump(exclude_none=True) for m in r.messages]
        assert count_messages(plain, get_counter()) == r.usage.total <= r.usage.budget
        kept.append(set(r.history_turn_ids) | set(r.recalled_turn_ids))
    for smaller, larger in itertools.pairwise(kept):
        assert smaller <= larger


def test_a_later_change_of_mind_comes_with_the_fact_it_updates(
        make_engine: Callable[..., Engine]) -> None:
    # The memory is switched in place between two calls on one state: no cached answer.
    engine = make_engine(cache_enabled=False)
    fact = turn(0, "I signed up for a pottery class at the community centre on Tuesdays.",
                "fact")
    update = turn(200, "Update on pottery at the community centre on Tuesdays: I quit, "
                       "and I go to salsa now.", "update")
    other = turn(202, "Pottery at the community centre on Tuesdays: the teacher is great.",
                 "other")
    engine.append_messages("s", [fact, *filler(199, start=1), update, *filler(1, start=201),
                                 {**other, "role": "assistant"}, *filler(200, start=203)])
    query = "Which class did I sign up for?"
    engine.memory.supersede = False
    alone = history_budget(engine, query, 300, session_id="s")
    assert "fact" in alone.recalled_turn_ids and "update" not in alone.recalled_turn_ids
    engine.memory.supersede = True
    with_update = history_budget(engine, query, 300, session_id="s")
    assert {"fact", "update"} <= set(with_update.recalled_turn_ids)
    # Said by the other speaker, it is not a change of the user's mind.
    assert "other" not in with_update.recalled_turn_ids


def test_a_long_last_reply_competes_instead_of_taking_a_small_budget(
        make_engine: Callable[..., Engine]) -> None:
    fact = turn(0, "My sister Beatriz adopted a greyhound named Pimenta.", "fact")
    question = turn(400, "Tell me about the history of the harbour.", "ask")
    reply = turn(401, "The harbour was dredged and widened many times. " * 40, "reply")
    history = [fact, *filler(399, start=1), question, reply]
    query = "What is the name of Beatriz's greyhound?"
    small = make_engine()
    small.append_messages("s", history)
    r = history_budget(small, query, 300, session_id="s")
    # The ~400-token reply is past the 256-token floor (which keeps an unbroken run of the
    # newest turns, so nothing of this exchange): the old fact gets the budget.
    assert reply["id"] not in r.history_turn_ids and "fact" in r.recalled_turn_ids
    assert r.usage.total <= r.usage.budget
    # With a floor that holds the whole exchange, it stays whatever the query.
    wide = make_engine(small.settings.data_dir.parent / "wide",
                       history_floor_tokens=1_000)
    wide.append_messages("s", history)
    r = history_budget(wide, query, 500, session_id="s")
    assert r.history_turn_ids[-2:] == ["ask", "reply"]
