"""Ranker: fused relevance with MMR diversity, so near-duplicates do not crowd the budget.

Maximal marginal relevance (Carbonell and Goldstein, 1998) picks, at each step, the candidate
maximising lambda * relevance - (1 - lambda) * max similarity to those already picked.
Candidates nearly identical to a picked one (cosine >= `duplicate_threshold`) are set aside as
near-duplicates. Candidates are documents, compared by their best chunks.

MMR looks at the first `pool` candidates whatever `top_k` is, and candidates after the pool
follow in their fused order: so the first results do not depend on how many were asked for.

    >>> ranker = MMRRanker(lambda_=0.7)
    >>> ranked, duplicates = ranker.rank(candidates, top_k=8)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from contextd.retrieval.retriever import Candidate


class Ranker(Protocol):
    def pool_size(self, top_k: int) -> int: ...

    def rank(
        self, candidates: list[Candidate], top_k: int
    ) -> tuple[list[Candidate], list[Candidate]]:
        """(ranked top_k, set-aside near-duplicates)."""
        ...


@dataclass
class MMRRanker:
    lambda_: float = 0.85
    duplicate_threshold: float = 0.97
    redundancy_floor: float = 0.8
    pool: int = 50

    def pool_size(self, top_k: int) -> int:
        """How many fused candidates the ranker needs for `top_k` results: its pool, and as
        many after it for when near-duplicates leave the pool short.

            >>> MMRRanker(pool=50).pool_size(10)
            60
        """
        return self.pool + top_k

    def rank(
        self, candidates: list[Candidate], top_k: int
    ) -> tuple[list[Candidate], list[Candidate]]:
        if top_k <= 0 or not candidates:
            return [], []
        # A fixed pool, not one sized by top_k: the relevance scaling below depends on it.
        pool = candidates[: self.pool]
        vectors = np.vstack([c.chunk.embedding for c in pool])
        cosine = vectors @ vectors.T
        # Only redundancy costs: relevant chunks on one topic are alike, and that is no reason
        # to push them down. Similarity counts from `redundancy_floor` up, rescaled to [0, 1].
        similarity = np.clip((cosine - self.redundancy_floor) / (1 - self.redundancy_floor),
                             0.0, 1.0)
        scores = np.array([c.score for c in pool], dtype=np.float64)
        # Rescale fused scores to [0, 1] so lambda trades off like with like.
        span = scores.max() - scores.min()
        relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)

        picked: list[int] = []
        duplicates: list[int] = []
        open_ = np.ones(len(pool), dtype=bool)
        max_sim = np.zeros(len(pool))
        max_cos = np.full(len(pool), -1.0)
        while open_.any() and len(picked) < top_k:
            if picked:
                mmr = self.lambda_ * relevance - (1 - self.lambda_) * max_sim
                choice = int(np.argmax(np.where(open_, mmr, -np.inf)))
            else:
                choice = 0  # candidates arrive best first
            open_[choice] = False
            if picked and max_cos[choice] >= self.duplicate_threshold:
                duplicates.append(choice)
                continue
            picked.append(choice)
            np.maximum(max_sim, similarity[choice], out=max_sim)
            np.maximum(max_cos, cosine[choice], out=max_cos)
        ranked = [pool[i] for i in picked]
        if len(ranked) < top_k:  # the pool is spent: the rest in fused order
            ranked += candidates[len(pool): len(pool) + top_k - len(ranked)]
        return ranked, [pool[i] for i in duplicates]
