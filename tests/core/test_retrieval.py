"""Fusion by document and the redundancy-aware MMR ranker."""

from __future__ import annotations

import numpy as np

from contextd.retrieval.ranker import MMRRanker
from contextd.retrieval.retriever import Candidate, fuse_by_document
from contextd.store.sqlite_store import ChunkRow


def test_a_document_with_many_chunks_does_not_push_others_down() -> None:
    document_of = {1: "a", 2: "a", 3: "a", 4: "b", 5: "c"}
    # Dense ranks three chunks of "a" first; lexical ranks "b" first. By chunk, "b" would sit
    # at rank 4 in the dense list; by document it is second there, and wins overall.
    fused = fuse_by_document([[1, 2, 3, 4, 5], [4, 1, 5]], [1.0, 1.0], document_of, 60)
    order = list(dict.fromkeys(document_of[c] for c, _ in fused))
    assert order[:2] in (["a", "b"], ["b", "a"])
    assert order[2] == "c"
    # Chunks of one document stay together, best chunk first.
    assert [c for c, _ in fused if document_of[c] == "a"] == [1, 2, 3]


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
