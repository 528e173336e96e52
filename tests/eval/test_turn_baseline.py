"""The plain hybrid turn-retrieval baseline: rankings, budget filling, and its figures on the
small hand-written conversation, checked by hand."""

from __future__ import annotations

from pathlib import Path

from contextd.eval.conversations import monotonicity_losses, run_conversations
from contextd.eval.locomo import load_locomo, replay_turns
from contextd.eval.turn_baseline import TurnIndex
from contextd.tokens import REPLY_PRIMING, count_messages, get_counter

DATA = Path(__file__).parents[1] / "data"
SMALL = DATA / "conversation_small.json"


def _index(engine) -> tuple[TurnIndex, list[dict]]:
    messages = replay_turns(load_locomo(SMALL)[0])
    return TurnIndex.build(engine, messages), messages


def _ids(index: TurnIndex, positions: list[int]) -> list[str]:
    return [index.messages[i]["id"] for i in positions]


def test_bm25_ranks_only_turns_that_share_a_query_term(engine) -> None:
    index, _ = _index(engine)
    # "pottery" is in D1:7, D1:8 and D4:5; "potter" (D1:10) stems differently.
    assert sorted(_ids(index, index.lexical_ranking("pottery"))) == ["D1:7", "D1:8", "D4:5"]
    # Only D2:6 holds "half" and "marathon": it leads bm25, and, sharing the most words with
    # the question, the dense ranking too, so it is first after fusion.
    question = "When did Tom run the half marathon?"
    assert _ids(index, index.lexical_ranking(question))[0] == "D2:6"
    assert _ids(index, index.dense_ranking(question))[0] == "D2:6"
    ranking = index.rank(question)
    assert _ids(index, ranking)[0] == "D2:6"
    assert sorted(ranking) == list(range(len(index.messages)))  # every turn is ranked
    # A budget of exactly D2:6's cost holds D2:6 and nothing else.
    cost = index.costs[ranking[0]]
    assert [m["id"] for m in index.fill(ranking, cost)] == ["D2:6"]
    index.close()


def test_fill_skips_a_turn_that_does_not_fit_and_keeps_conversation_order(engine) -> None:
    messages = [
        {"role": "user", "content": "word " * 60, "id": "long"},
        {"role": "user", "content": "short one", "id": "a"},
        {"role": "assistant", "content": "short two", "id": "b"},
    ]
    index = TurnIndex.build(engine, messages)
    long_cost, a, b = index.costs
    assert long_cost > a + b
    kept = index.fill([2, 0, 1], a + b)  # "long" ranks second but does not fit: skipped
    assert [m["id"] for m in kept] == ["a", "b"]
    assert index.tokens(kept) == a + b
    assert index.fill([0, 1, 2], a + b - 1) == [messages[1]]  # b no longer fits after a
    assert index.fill([0, 1, 2], 0) == []
    index.close()


def test_baseline_figures_on_the_small_conversation(engine) -> None:
    messages = replay_turns(load_locomo(SMALL)[0])
    history = count_messages([{k: v for k, v in m.items() if k != "id" and k != "timestamp"}
                              for m in messages], get_counter()) - REPLY_PRIMING
    report = run_conversations(engine, SMALL, [1, history])
    # Every turn costs more than one token: nothing fits.
    none = report["budgets"]["1"]["turn_baseline"]
    assert none == {"evidence_recall": 0.0, "answer_contained": 0.0, "tokens_mean": 0.0}
    # The whole history fits: all evidence, and every answer spelled out in a turn (Biscuit,
    # pottery, 3, Porto, Clara; not "20 May 2023", which the turns say as "yesterday").
    full = report["budgets"][str(history)]["turn_baseline"]
    assert full["evidence_recall"] == 1.0
    assert full["answer_contained"] == round(5 / 6, 4)
    assert full["tokens_mean"] == history


def test_monotonicity_losses_name_the_lost_turns_per_pair() -> None:
    rows = [
        {"conversation": "c", "question": 0, "budget": 1000, "evidence_included": ["a", "b"]},
        {"conversation": "c", "question": 0, "budget": 2000, "evidence_included": ["a"]},
        {"conversation": "c", "question": 0, "budget": 4000, "evidence_included": ["a", "b"]},
        {"conversation": "c", "question": 1, "budget": 1000, "evidence_included": []},
        {"conversation": "c", "question": 1, "budget": 2000, "evidence_included": ["x"]},
        {"conversation": "c", "question": 1, "budget": 4000, "evidence_included": ["x"]},
    ]
    assert monotonicity_losses(rows, [1000, 2000, 4000]) == [
        {"conversation": "c", "question": 0, "smaller": 1000, "larger": 2000, "lost": ["b"]},
    ]


def test_report_counts_losses_per_pair_and_overall(engine) -> None:
    report = run_conversations(engine, DATA / "longmemeval_small.json", [20, 1000])
    assert report["layout"] == "longmemeval"
    assert report["questions"] == 2 and report["skipped_questions"] == 1
    assert set(report["monotonicity_losses"]) == {"20<1000", "overall"}
    # At 1,000 tokens each tiny history fits whole: nothing a smaller budget had can be lost.
    assert report["monotonicity_losses"]["overall"] == 0 == len(report["monotonicity_lost_turns"])
    r = report["budgets"]["1000"]
    assert r["evidence_recall"] == r["turn_baseline"]["evidence_recall"] == 1.0
    assert set(r["by_category"]) == {"single-session-user", "knowledge-update"}
