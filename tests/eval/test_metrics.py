"""Ranking metrics against hand-computed values (trec_eval definitions, linear gain)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextd.eval.metrics import (
    METRIC_NAMES,
    distinct_ranking,
    evaluable_queries,
    evaluate,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    percentile,
    precision_at_k,
    recall_at_k,
    score_query,
)

LOG2_3 = math.log2(3)  # discount at rank 2: log2(2 + 1)


def ranking_with_hits_at(ranks: dict[int, str], length: int) -> list[str]:
    """A ranked list of `length` ids with the given ids at the given 1-based ranks."""
    return [ranks.get(rank, f"miss{rank}") for rank in range(1, length + 1)]


# Three relevant documents (grade 1) found at ranks 1, 3 and 12.
THREE_HITS = ranking_with_hits_at({1: "r1", 3: "r2", 12: "r3"}, length=20)
THREE_RELEVANT = {"r1": 1, "r2": 1, "r3": 1, "judged-out": 0}


def test_ndcg_at_10_with_hits_at_ranks_1_3_and_12():
    # DCG@10  = 1/log2(2) + 1/log2(4)            = 1 + 0.5                = 1.5
    # IDCG@10 = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.63093 + 0.5      = 2.13093
    # nDCG@10 = 1.5 / 2.13093                                              = 0.70392
    expected = 1.5 / (1 + 1 / LOG2_3 + 0.5)
    assert ndcg_at_k(THREE_HITS, THREE_RELEVANT, 10) == pytest.approx(expected)
    assert ndcg_at_k(THREE_HITS, THREE_RELEVANT, 10) == pytest.approx(0.703918, abs=1e-6)


def test_ndcg_at_100_counts_the_hit_at_rank_12():
    # DCG@100 = 1.5 + 1/log2(13) = 1.5 + 0.27024 = 1.77024; / 2.13093 = 0.83074
    expected = (1.5 + 1 / math.log2(13)) / (1 + 1 / LOG2_3 + 0.5)
    assert ndcg_at_k(THREE_HITS, THREE_RELEVANT, 100) == pytest.approx(expected)
    assert expected == pytest.approx(0.830735, abs=1e-6)


def test_recall_precision_and_mrr_for_hits_at_ranks_1_3_and_12():
    assert recall_at_k(THREE_HITS, THREE_RELEVANT, 10) == pytest.approx(2 / 3)
    assert recall_at_k(THREE_HITS, THREE_RELEVANT, 100) == 1.0
    assert precision_at_k(THREE_HITS, THREE_RELEVANT, 10) == pytest.approx(0.2)  # 2 / 10
    # 3 relevant in a list of 20, still divided by k = 100
    assert precision_at_k(THREE_HITS, THREE_RELEVANT, 100) == pytest.approx(0.03)
    assert mrr_at_k(THREE_HITS, THREE_RELEVANT, 10) == 1.0


def test_ndcg_uses_the_grade_as_gain_not_two_to_the_grade():
    qrels = {"a": 2, "b": 1, "c": 1}
    ranked = ["b", "x", "a"]
    # DCG  = 1/log2(2) + 0 + 2/log2(4)             = 1 + 1                   = 2
    # IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4)     = 2 + 0.63093 + 0.5       = 3.13093
    # nDCG = 2 / 3.13093 = 0.63879  (2^rel - 1 gains would give 2.5 / 4.13093 = 0.60519)
    assert ndcg_at_k(ranked, qrels, 10) == pytest.approx(2 / (2 + 1 / LOG2_3 + 0.5))
    assert ndcg_at_k(ranked, qrels, 10) == pytest.approx(0.638787, abs=1e-6)


def test_ideal_ranking_is_cut_at_k():
    # k = 1: DCG = 1 (grade-1 doc first), IDCG = 2 (the grade-2 doc alone) -> 0.5
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 2}, 1) == 0.5
    # k = 2 with five relevant documents: both retrieved are relevant -> perfect
    five = {f"r{i}": 1 for i in range(5)}
    assert ndcg_at_k(["r3", "r1"], five, 2) == pytest.approx(1.0)


def test_a_perfect_graded_ranking_scores_one():
    assert ndcg_at_k(["a", "b", "c"], {"c": 1, "a": 3, "b": 2}, 10) == pytest.approx(1.0)


def test_nothing_relevant_retrieved_scores_zero_everywhere():
    scores = score_query(["x", "y", "z"], {"a": 1, "b": 2, "z": 0}, ks=(1, 10))
    assert set(scores) == {f"{name}@{k}" for name in METRIC_NAMES for k in (1, 10)}
    assert all(value == 0.0 for value in scores.values())


def test_empty_ranking_scores_zero():
    assert ndcg_at_k([], {"a": 1}, 10) == 0.0
    assert mrr_at_k([], {"a": 1}, 10) == 0.0


def test_negative_grades_count_as_not_relevant():
    # trec_eval only adds gains above 0; "a" (grade -1) earns nothing, "b" is found at rank 2.
    assert ndcg_at_k(["a", "b"], {"a": -1, "b": 1}, 10) == pytest.approx(1 / LOG2_3)
    assert recall_at_k(["a"], {"a": -1, "b": 1}, 10) == 0.0


def test_repeated_ids_keep_their_first_rank_and_close_the_gap():
    # ["x", "x", "a"] is ranked as ["x", "a"]: "a" sits at rank 2, not 3.
    ranked = ["x", "x", "a"]
    assert distinct_ranking(ranked) == ["x", "a"]
    assert mrr_at_k(ranked, {"a": 1}, 10) == 0.5
    assert ndcg_at_k(ranked, {"a": 1}, 10) == pytest.approx(1 / LOG2_3)  # 0.63093
    assert recall_at_k(ranked, {"a": 1}, 2) == 1.0  # would be 0 if the repeat took rank 2
    # a relevant document repeated earns its gain once: DCG = 1 = IDCG
    assert ndcg_at_k(["a", "a", "a"], {"a": 1}, 10) == 1.0
    assert precision_at_k(["a", "a"], {"a": 1}, 2) == 0.5


def test_mrr_is_zero_when_the_first_hit_is_past_k():
    ranked = ranking_with_hits_at({4: "a"}, length=6)
    assert mrr_at_k(ranked, {"a": 1}, 3) == 0.0
    assert mrr_at_k(ranked, {"a": 1}, 10) == 0.25
    # the first relevant document decides, whatever its grade
    assert mrr_at_k(["x", "low", "high"], {"high": 2, "low": 1}, 10) == 0.5


def test_recall_is_binary_over_graded_documents():
    # grades 2 and 1 are both simply relevant: 1 of 2 found
    assert recall_at_k(["a"], {"a": 2, "b": 1}, 10) == 0.5


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_cutoff_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ndcg_at_k(["a"], {"a": 1}, k)


def test_evaluate_averages_over_queries():
    run = {"q1": ["a", "x"], "q2": ["x", "y", "b"]}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    scores = evaluate(run, qrels, ks=(1, 10))
    assert scores["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)  # 0.66667
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 2)  # (1 + 0.5) / 2
    assert scores["recall@1"] == 0.5  # q1 found at rank 1, q2 not
    assert scores["precision@10"] == pytest.approx(0.1)  # 1/10 for both


def test_evaluate_skips_queries_without_relevant_documents():
    # q2 is judged but has only grade-0 documents: no ideal ranking, so it is left out
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
    assert evaluable_queries(qrels) == ["q1"]
    assert evaluate({"q1": ["a"], "q2": []}, qrels, ks=(10,))["ndcg@10"] == 1.0


def test_a_query_missing_from_the_run_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    scores = per_query({"q1": ["a"]}, qrels, ks=(10,))
    assert scores["q2"]["ndcg@10"] == 0.0
    assert evaluate({"q1": ["a"]}, qrels, ks=(10,))["ndcg@10"] == 0.5


def test_run_queries_outside_the_qrels_are_ignored():
    scores = evaluate({"q1": ["a"], "stray": ["z"]}, {"q1": {"a": 1}}, ks=(10,))
    assert scores["mrr@10"] == 1.0


def test_ignore_identical_ids_drops_the_query_itself_from_its_ranking():
    run = {"q1": ["q1", "a"]}
    qrels = {"q1": {"a": 1}}
    assert evaluate(run, qrels, ks=(1,))["mrr@1"] == 0.0
    assert evaluate(run, qrels, ks=(1,), ignore_identical_ids=True)["mrr@1"] == 1.0


def test_evaluate_reports_every_metric_at_every_cutoff():
    scores = evaluate({"q1": ["a"]}, {"q1": {"a": 1}}, ks=(100, 10, 10))
    assert sorted(scores) == sorted(f"{n}@{k}" for n in METRIC_NAMES for k in (10, 100))


def test_evaluate_needs_a_query_with_a_relevant_document():
    with pytest.raises(ValueError, match="no query in qrels has a relevant document"):
        evaluate({"q1": ["a"]}, {"q1": {"a": 0}})
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluate({"q1": ["a"]}, {"q1": {"a": 1}}, ks=(0,))


def test_percentile_interpolates_linearly():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # sorted: 1..5
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)  # position 4 * 0.95 = 3.8 -> 4 + 0.8
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile([7.5], 95) == 7.5


def test_percentile_rejects_empty_input_and_bad_p():
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 100),
)
def test_percentile_matches_numpy(values, p):
    assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)), abs=1e-6)
