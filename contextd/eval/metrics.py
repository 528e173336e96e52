"""Ranking metrics as BEIR reports them, plus latency percentiles.

BEIR scores runs with pytrec_eval, which wraps trec_eval 9.x; the definitions here follow it so
our figures can sit next to published BEIR tables:

- nDCG@k (trec_eval `ndcg_cut`): gain is the relevance grade itself (linear, *not* 2^rel - 1),
  discount is log2(rank + 1) with ranks from 1, and the ideal DCG sorts all judged grades > 0
  of the query in decreasing order and cuts it at k.
- Recall@k (trec_eval `recall`): relevant documents (grade >= 1) in the top k over all relevant
  documents of the query.
- Precision@k (trec_eval `P`): relevant documents in the top k over k, even when fewer than k
  documents were retrieved.
- MRR@k (BEIR's own `mrr`): 1 / rank of the first relevant document within the top k, else 0.

A ranked list is a list of document ids, best first. trec_eval refuses a run that repeats a
document; a retriever that returns chunks naturally repeats one, so every function here keeps the
first occurrence of an id and drops later ones, closing the gap (the list is ranked by
*distinct documents*). Passing chunk-level hits' document ids straight in is therefore fine.

    >>> round(ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1}, k=10), 4)
    0.9197
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Judgements = Mapping[str, int]
"""Relevance grades of one query: document id -> grade (0 = judged not relevant)."""


def distinct_ranking(ranked_ids: Iterable[str]) -> list[str]:
    """The ranked ids with repeats removed, keeping each id at its first position.

    >>> distinct_ranking(["d1", "d2", "d1", "d3"])
    ['d1', 'd2', 'd3']
    """
    return list(dict.fromkeys(ranked_ids))


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _top_k(ranked_ids: Iterable[str], k: int) -> list[str]:
    _check_k(k)
    return distinct_ranking(ranked_ids)[:k]


def _relevant(qrels: Judgements) -> set[str]:
    return {doc_id for doc_id, grade in qrels.items() if grade > 0}


def ndcg_at_k(ranked_ids: Sequence[str], qrels: Judgements, k: int) -> float:
    """Normalised discounted cumulative gain of the top `k`, as trec_eval's `ndcg_cut.k`.

    Gain is the grade; the document at rank r (from 1) is discounted by log2(r + 1). Returns 0.0
    when the query has no document with grade > 0.

        >>> round(ndcg_at_k(["d2", "d1"], {"d1": 2, "d2": 1}, k=2), 4)  # (1+2/log2 3)/(2+1/log2 3)
        0.8597
    """
    top = _top_k(ranked_ids, k)
    dcg = sum(
        qrels.get(doc_id, 0) / math.log2(rank + 1)
        for rank, doc_id in enumerate(top, start=1)
        if qrels.get(doc_id, 0) > 0
    )
    ideal = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked_ids: Sequence[str], qrels: Judgements, k: int) -> float:
    """Share of the query's relevant documents (grade >= 1) found in the top `k`.

    >>> recall_at_k(["d1", "x", "d2"], {"d1": 1, "d2": 2, "d3": 1}, k=2)
    0.3333333333333333
    """
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return len(relevant.intersection(_top_k(ranked_ids, k))) / len(relevant)


def precision_at_k(ranked_ids: Sequence[str], qrels: Judgements, k: int) -> float:
    """Relevant documents in the top `k` divided by `k` (a short list is not rewarded).

    >>> precision_at_k(["d1"], {"d1": 1}, k=5)
    0.2
    """
    relevant = _relevant(qrels)
    return len(relevant.intersection(_top_k(ranked_ids, k))) / k


def mrr_at_k(ranked_ids: Sequence[str], qrels: Judgements, k: int) -> float:
    """Reciprocal rank of the first relevant document within the top `k`, else 0.0.

    >>> mrr_at_k(["x", "y", "d1"], {"d1": 1}, k=10)
    0.3333333333333333
    """
    relevant = _relevant(qrels)
    for rank, doc_id in enumerate(_top_k(ranked_ids, k), start=1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


_METRICS = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
}
METRIC_NAMES = tuple(_METRICS)
"""Metric names in the order `score_query` reports them."""


def score_query(
    ranked_ids: Sequence[str], qrels: Judgements, ks: Iterable[int] = (10, 100)
) -> dict[str, float]:
    """Every metric at every cutoff for one query, keyed like ``"ndcg@10"``.

    >>> score_query(["d1"], {"d1": 1}, ks=(1,))
    {'ndcg@1': 1.0, 'recall@1': 1.0, 'precision@1': 1.0, 'mrr@1': 1.0}
    """
    ranking = distinct_ranking(ranked_ids)
    scores: dict[str, float] = {}
    for k in ks:
        for name, metric in _METRICS.items():
            scores[f"{name}@{k}"] = metric(ranking, qrels, k)
    return scores


def evaluable_queries(qrels: Mapping[str, Judgements]) -> list[str]:
    """Query ids with at least one relevant document, in qrels order.

    BEIR (through trec_eval) leaves out queries whose judgements are all 0: they have no ideal
    ranking, so every metric would be undefined.

        >>> evaluable_queries({"q1": {"d1": 0}, "q2": {"d1": 1}})
        ['q2']
    """
    return [qid for qid, judged in qrels.items() if _relevant(judged)]


def per_query(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Judgements],
    ks: Iterable[int] = (10, 100),
    *,
    ignore_identical_ids: bool = False,
) -> dict[str, dict[str, float]]:
    """`score_query` for every evaluable query; a query missing from `run` scores 0 everywhere.

    `ignore_identical_ids` drops a retrieved document whose id equals the query id, as BEIR's
    `EvaluateRetrieval.evaluate` does by default (it matters for ArguAna and Quora, where queries
    are also corpus documents).

        >>> per_query({}, {"q1": {"d1": 1}}, ks=(1,))["q1"]["ndcg@1"]
        0.0
    """
    cutoffs = sorted(set(ks))
    for k in cutoffs:
        _check_k(k)
    scores = {}
    for qid in evaluable_queries(qrels):
        ranked = run.get(qid, ())
        if ignore_identical_ids:
            ranked = [doc_id for doc_id in ranked if doc_id != qid]
        scores[qid] = score_query(ranked, qrels[qid], cutoffs)
    return scores


def evaluate(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Judgements],
    ks: Iterable[int] = (10, 100),
    *,
    ignore_identical_ids: bool = False,
) -> dict[str, float]:
    """Mean of every metric over the evaluable queries of `qrels`.

    `run` maps a query id to its ranked document ids, best first. Queries of `run` that are not
    in `qrels` are ignored; evaluable queries missing from `run` count as 0 (BEIR averages over
    the queries pytrec_eval returned, which silently skips them; a missing answer is a miss).
    Raises ValueError when no query in `qrels` has a relevant document.

        >>> run = {"q1": ["d1", "d9"], "q2": ["d9", "d2"]}
        >>> qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
        >>> evaluate(run, qrels, ks=(10,))["mrr@10"]  # (1/1 + 1/2) / 2
        0.75
    """
    scores = per_query(run, qrels, ks, ignore_identical_ids=ignore_identical_ids)
    if not scores:
        raise ValueError("no query in qrels has a relevant document (grade >= 1)")
    names = next(iter(scores.values())).keys()
    return {name: math.fsum(s[name] for s in scores.values()) / len(scores) for name in names}


def percentile(values: Iterable[float], p: float) -> float:
    """The `p`-th percentile (0-100) with linear interpolation, as `numpy.percentile` computes it.

    >>> percentile([10.0, 20.0, 30.0, 40.0], 50)
    25.0
    """
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("percentile of an empty sequence is undefined")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be between 0 and 100, got {p!r}")
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
