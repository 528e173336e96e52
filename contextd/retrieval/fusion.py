"""Reciprocal rank fusion.

RRF (Cormack et al., 2009) fuses ranked lists by rank alone, so scores on different scales
(cosine, bm25) need no calibration. k = 60 is the constant of the original paper; it damps the
head of each list so that agreement between lists outweighs one list's top rank.

    >>> fuse_rrf([[1, 2, 3], [3, 1]], k=60)[0][0]
    1
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
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


def _order_key(item: Hashable) -> tuple[str, str]:
    return (type(item).__name__, repr(item))
