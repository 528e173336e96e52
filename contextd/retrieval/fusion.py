"""Fusion of ranked lists: a convex combination of scores, or reciprocal rank fusion.

`fuse_scores` (the default) keeps how far apart the scores are: each list's scores are divided
by that list's best score (a score below 0 counts as 0), so both lie in [0, 1] with the best
hit of each list at 1, and an item's fused score is the weighted mean over the lists, 0 where a
list lacks it. Bruch, Gai and Ingber (2023, "An Analysis of Fusion Functions for Hybrid
Retrieval") found such convex combinations better than RRF in and out of domain.

`fuse_rrf` (Cormack et al., 2009) fuses by rank alone; k = 60 is the constant of the original
paper. It ignores whether the second hit of a list is nearly as good as the first or far worse.

    >>> fuse_rrf([[1, 2, 3], [3, 1]], k=60)[0][0]
    1
    >>> fuse_scores([{1: 2.0, 2: 1.0}, {2: 0.5, 3: 0.4}])
    [(2, 0.75), (1, 0.5), (3, 0.4)]
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def fuse_rrf(
    rankings: Sequence[Sequence[T]], k: float = 60.0, weights: Sequence[float] | None = None
) -> list[tuple[T, float]]:
    """Items of all `rankings` with their fused score, best first.

    Ties are broken by the item's best rank, then by the item itself, so the result does not
    depend on the order in which the rankings are given.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("give one weight per ranking")
    contributions: dict[T, list[float]] = {}
    best: dict[T, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            contributions.setdefault(item, []).append(weight / (k + rank))
            best[item] = min(best.get(item, rank), rank)
    # fsum is exactly rounded, so the sum does not depend on the order of the rankings.
    scores = {item: math.fsum(parts) for item, parts in contributions.items()}
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], _order_key(kv[0])))


def fuse_scores(
    scored: Sequence[Mapping[T, float]], weights: Sequence[float] | None = None
) -> list[tuple[T, float]]:
    """Items of all `scored` lists with their fused score in [0, 1], best first.

    Each list maps item -> score (higher is better, any scale). Weights are normalised to sum
    to 1. Ties are broken by the item's best scaled score, then by the item itself, so the
    result does not depend on the order of the lists.
    """
    fused, best = convex_scores(scored, weights)
    return sorted(fused.items(), key=lambda kv: (-kv[1], -best[kv[0]], _order_key(kv[0])))


def convex_scores(
    scored: Sequence[Mapping[T, float]], weights: Sequence[float] | None = None
) -> tuple[dict[T, float], dict[T, float]]:
    """`fuse_scores` unordered: (item -> fused score, item -> best scaled score), for callers
    that put the items in an order of their own (sorting here would be wasted on them).

        >>> convex_scores([{"a": 2.0, "b": 1.0}, {"b": 4.0}])
        ({'a': 0.5, 'b': 0.75}, {'a': 1.0, 'b': 1.0})
    """
    if weights is None:
        weights = [1.0] * len(scored)
    if len(weights) != len(scored):
        raise ValueError("give one weight per score list")
    total = math.fsum(weights)
    contributions: dict[T, list[float]] = {}
    best: dict[T, float] = {}
    for scores, weight in zip(scored, weights, strict=True):
        top = max(scores.values(), default=0.0)
        share = weight / total if total > 0 else 0.0  # all weights 0: order by best score
        for item, score in scores.items():
            # max(score, 0.0) and max(previous, scaled), spelled out: the same values (signed
            # zeros and NaN included) without two calls per item, hundreds of items a query.
            scaled = (0.0 if score < 0.0 else score) / top if top > 0 else 0.0
            contributions.setdefault(item, []).append(share * scaled)
            previous = best.get(item, 0.0)
            best[item] = scaled if scaled > previous else previous
    return {item: math.fsum(parts) for item, parts in contributions.items()}, best


def _order_key(item: Hashable) -> tuple[str, str]:
    return (type(item).__name__, repr(item))
