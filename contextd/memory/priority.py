"""One priority order over a session's turns for a query, the same at every budget.

Once history overflows its budget, every turn competes for it: the newest turns of the last
exchange that fit `history_floor_tokens` first (a small floor, for continuity), then the turns
relevant to the query by relevance per token (`by_value_per_token`: rank x tokens, ascending),
with neighbours on, a question followed by the turn after it (which is likely to answer it),
then the running summary (only the lines that the turns before it do not already hold), then
every other turn, newest first. A budget takes the longest prefix of this order that fits;
because the order does not depend on the budget, a larger budget's prefix holds everything a
smaller one's did.

Relevance is reciprocal rank fusion (k = 60) of the dense ranking, the bm25 ranking, the
later statements about the subject of the best hits (`later_statements`: a change of mind or an
update often shares little with the question but much with the old fact), and a recency ranking
(newest first) at half weight: recency breaks near-ties towards what was said lately without
outranking a turn both searches agree on.

    >>> relevance_order(dense=[3, 9], lexical=[9], last_seq=10)
    [9, 3]
    >>> list(priority_seqs([9, 3], last_seq=10, exclude={10}, asks=lambda seq: seq == 3))
    [9, 3, 4]
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

import numpy as np

RRF_K = 60.0
RECENCY_WEIGHT = 0.5


def relevance_order(dense: Sequence[int], lexical: Sequence[int], last_seq: int,
                    k: float = RRF_K, recency_weight: float = RECENCY_WEIGHT,
                    later: Sequence[int] = ()) -> list[int]:
    """Turn seqs found by either search, best fused score first (ties: older first).

    `later` is a third ranking at the same weight: turns that may supersede the best hits
    (`later_statements`), so an update to a relevant fact competes with the fact itself.

    The recency ranking counts from `last_seq` (rank 1) backwards; it only reorders turns
    that a search found, it adds none.

        >>> relevance_order([1, 2], [], last_seq=2)  # rank 1 beats a newer rank 2
        [1, 2]
    """
    scores = fused_scores((dense, lexical, later), k)
    for seq in scores:
        scores[seq] += recency_weight / (k + last_seq - seq + 1)
    return sorted(scores, key=lambda seq: (-scores[seq], seq))


def fused_scores(rankings: Iterable[Sequence[int]], k: float = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: each seq's sum of 1 / (k + rank) over the rankings it is in
    (its first place in each).

        >>> fused_scores([[3, 9], [9]], k=1)
        {3: 0.5, 9: 0.8333333333333333}
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        seen: set[int] = set()
        for rank, seq in enumerate(ranking, start=1):
            if seq in seen:
                continue
            seen.add(seq)
            scores[seq] = scores.get(seq, 0.0) + 1.0 / (k + rank)
    return scores


def best_seqs(scores: dict[int, float], n: int, allowed: Callable[[int], bool]) -> list[int]:
    """The `n` allowed seqs of highest score, best first (ties: older first), without
    sorting them all.

        >>> best_seqs({3: 0.5, 9: 0.8, 4: 0.5}, 2, lambda seq: seq != 9)
        [3, 4]
    """
    return heapq.nsmallest(n, (seq for seq in scores if allowed(seq)),
                           key=lambda seq: (-scores[seq], seq))


def later_statements(seeds: Sequence[int], candidates: Mapping[int, Sequence[int]],
                     same_speaker: Callable[[int, int], bool], per_seed: int = 2) -> list[int]:
    """The supersession ranking: for each seed (the best hits, best first), its first
    `per_seed` candidates (later turns about the same subject, most similar first) said by
    the seed's speaker; a change of mind is the same person speaking again. Nothing twice.

        >>> later_statements([4, 9], {4: [20, 12, 30], 9: [12]}, lambda a, b: b != 30)
        [20, 12]
    """
    order: list[int] = []
    for seed in seeds:
        taken = 0
        for seq in candidates.get(seed, ()):
            if taken == per_seed:
                break
            if same_speaker(seed, seq):
                taken += 1
                if seq not in order:
                    order.append(seq)
    return order


def by_value_per_token(ranked: Sequence[int], cost: Callable[[int], int | None]) -> list[int]:
    """`ranked` reordered by relevance per token: a turn at rank r (1 = best) is worth 1/r,
    the usual reciprocal-rank weight, and costs its tokens, so turns go in ascending r x cost
    (ties: the better rank first), the greedy order of a knapsack. A long turn that only
    ranks second no longer takes the room of several short ones that rank close behind it;
    a turn whose cost is unknown (None) goes last. Budget-independent, so the longest prefix
    that fits still only grows with the budget.

        >>> by_value_per_token([7, 8, 9], {7: 400, 8: 60, 9: 70}.get)  # 400, 120, 210
        [8, 9, 7]
    """
    unique = list(dict.fromkeys(ranked))
    position = np.arange(1, len(unique) + 1, dtype=np.float64)
    costs = np.array([np.inf if (c := cost(seq)) is None else max(c, 1) for seq in unique],
                     dtype=np.float64)
    order = np.lexsort((position, position * costs))  # by r x cost, then by r
    return [unique[i] for i in order.tolist()]


def priority_seqs(hits: Iterable[int], last_seq: int, exclude: Collection[int] = (),
                  asks: Callable[[int], bool] | None = None) -> Iterator[int]:
    """The relevant part of the order: each hit, then, when `asks(hit)` (the hit asks a
    question), the turn after it, which is likely to answer it; nothing twice, nothing past
    `last_seq`, nothing in `exclude` (the floor). Lazy, so `asks` may look rows up as it goes.

        >>> list(priority_seqs([5, 6, 2], last_seq=6, asks=lambda seq: seq == 2))
        [5, 6, 2, 3]
    """
    placed: set[int] = set(exclude)
    for seq in hits:
        follow = asks is not None and asks(seq)
        for candidate in (seq, seq + 1) if follow else (seq,):
            if candidate <= last_seq and candidate not in placed:
                placed.add(candidate)
                yield candidate


def longest_prefix(costs: Sequence[int], budget: int) -> int:
    """How many leading items of `costs` fit `budget` together: the packing rule that makes
    a larger budget's selection a superset of a smaller one's.

        >>> longest_prefix([5, 50, 1], 40)
        1
    """
    used = 0
    for n, cost in enumerate(costs):
        used += cost
        if used > budget:
            return n
    return len(costs)
