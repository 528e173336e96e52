"""Fusion by document and the redundancy-aware MMR ranker."""

from __future__ import annotations

import numpy as np
import pytest

from contextd.retrieval.fusion import fuse_rrf, fuse_scores
from contextd.retrieval.ranker import MMRRanker
from contextd.retrieval.retriever import Candidate, fuse_by_document
from contextd.store.sqlite_store import ChunkRow


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_a_document_with_many_chunks_does_not_push_others_down(fusion) -> None:
    document_of = {1: "a", 2: "a", 3: "a", 4: "b", 5: "c"}
    # Dense ranks three chunks of "a" first; lexical ranks "b" first. By chunk, "b" would sit
    # at rank 4 in the dense list; by document it is second there, and wins overall.
    dense = [(1, 0.9), (2, 0.85), (3, 0.8), (4, 0.75), (5, 0.3)]
    lexical = [(4, 12.0), (1, 9.0), (5, 2.0)]
    fused = fuse_by_document([dense, lexical], [1.0, 1.0], document_of, fusion)
    order = list(dict.fromkeys(document_of[c] for c, _ in fused))
    assert order[:2] in (["a", "b"], ["b", "a"])
    assert order[2] == "c"
    # Chunks of one document stay together, best chunk first.
    assert [c for c, _ in fused if document_of[c] == "a"] == [1, 2, 3]
    if fusion == "convex":
        assert all(0.0 <= score <= 1.0 for _, score in fused)
        # The best chunk of a document first in both lists scores exactly 1, not above.
        assert fuse_by_document([[(7, 0.9)], [(7, 5.0)]], [1.0, 1.0], {7: "z"})[0][1] == 1.0


def test_score_fusion_by_hand() -> None:
    dense = {"a": 4.0, "b": 2.0, "c": 1.0}
    lexical = {"b": 10.0, "d": 5.0}
    # Scaled by each list's best: a 1, b .5, c .25 | b 1, d .5; then the mean over both lists.
    assert fuse_scores([dense, lexical]) == [("b", 0.75), ("a", 0.5), ("d", 0.25),
                                             ("c", 0.125)]
    # Weights are shares: 3 to 1 gives a .75, b .375 + .25.
    assert fuse_scores([dense, lexical], [3.0, 1.0])[:2] == [("a", 0.75), ("b", 0.625)]
    # A score below 0 counts as 0, and a list with no positive score adds nothing.
    assert fuse_scores([{"x": -0.2, "y": 0.5}, {"x": -1.0}]) == [("y", 0.5), ("x", 0.0)]
    with pytest.raises(ValueError, match="one weight per"):
        fuse_scores([dense], [1.0, 1.0])


def test_score_fusion_keeps_what_ranks_lose() -> None:
    # x is far better than y in the dense list and slightly worse in the lexical list. Ranks
    # alone make them tie; scores show x as the better hit.
    dense, lexical = {"x": 0.9, "y": 0.2}, {"y": 10.0, "x": 9.5}
    rrf = dict(fuse_rrf([list(dense), list(lexical)]))
    assert rrf["x"] == rrf["y"]
    convex = fuse_scores([dense, lexical])
    assert convex[0][0] == "x" and convex[0][1] == pytest.approx(0.975)
    assert convex[1][1] == pytest.approx((0.2 / 0.9 + 1.0) / 2)


def test_unknown_fusion_is_an_error() -> None:
    with pytest.raises(ValueError, match="convex' or 'rrf"):
        fuse_by_document([[(1, 1.0)]], [1.0], {1: "a"}, "max")  # type: ignore[arg-type]


def _candidate(cid: int, vector: list[float], score: float) -> Candidate:
    v = np.asarray(vector, dtype=np.float32)
    row = ChunkRow(cid, f"d{cid}", 0, None, f"text {cid}", 5, {}, v / np.linalg.norm(v))
    return Candidate(row, score)


def test_mmr_sets_aside_near_duplicates_but_keeps_related_chunks() -> None:
    candidates = [
        _candidate(1, [1.0, 0.0, 0.0], 0.9),
        _candidate(2, [1.0, 0.001, 0.0], 0.8),  # a near-duplicate of 1
        _candidate(3, [0.8, 0.6, 0.0], 0.7),  # related (cosine 0.8), not redundant
        _candidate(4, [0.0, 0.0, 1.0], 0.1),
    ]
    ranked, duplicates = MMRRanker(lambda_=0.85).rank(candidates, top_k=3)
    assert [c.chunk.id for c in ranked] == [1, 3, 4]
    assert [c.chunk.id for c in duplicates] == [2]


def test_mmr_diversifies_redundant_chunks_below_the_duplicate_threshold() -> None:
    candidates = [
        _candidate(1, [1.0, 0.0, 0.0], 0.9),
        _candidate(2, [0.95, 0.312, 0.0], 0.85),  # cosine 0.95 to 1: redundant
        _candidate(3, [0.0, 1.0, 0.0], 0.8),
    ]
    ranked, _ = MMRRanker(lambda_=0.5).rank(candidates, top_k=3)
    assert [c.chunk.id for c in ranked] == [1, 3, 2]


def test_common_terms_are_left_out_of_large_lexical_searches(make_engine) -> None:
    from dataclasses import replace

    engine = make_engine()
    docs = [{"id": f"d{i}", "text": f"Common study report number {i}."} for i in range(30)]
    docs.append({"id": "rare", "text": "A study of the axolotl regeneration."})
    engine.upsert_documents(docs)
    ns = engine.registry.get("default")
    retriever = replace(engine.retriever, common_term_share=0.2, common_term_min_chunks=10)
    # "study" is in every chunk: dropped; "axolotl" is rare: kept.
    assert retriever._distinctive_terms(ns, "study axolotl") == ["axolotl"]
    # When every term is common, all are kept rather than none.
    assert retriever._distinctive_terms(ns, "common study") == ["common", "study"]
    # Below the size threshold nothing is dropped.
    small = replace(retriever, common_term_min_chunks=1000)
    assert small._distinctive_terms(ns, "study axolotl") == ["study", "axolotl"]
    hits = engine.search("study axolotl", mode="lexical").hits
    assert hits[0].id == "rare"
