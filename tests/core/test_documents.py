"""Search and assemble answer with documents: each document once, its parts in order."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextd import Engine, Settings
from contextd.embedding import HashEmbedder
from contextd.retrieval.documents import collapse, join_parts
from contextd.store.records import ChunkRow

TOPICS = ("glacier ice melt", "coral reef bleaching", "volcanic ash cloud", "desert dune wind",
          "river delta silt", "forest canopy light", "tundra permafrost thaw", "ocean tide pull")


def _long_document(topic: str, sentences: int) -> str:
    # Sentences of ~14 tokens: at chunk_tokens 64, a document of 20 runs to several chunks.
    return " ".join(f"Finding {n} on {topic} shows the {topic} changes in season {n}."
                    for n in range(sentences))


@pytest.fixture
def chunky(make_engine) -> Engine:
    engine = make_engine(chunk_tokens=64, chunk_overlap_tokens=16)
    docs = [{"id": f"doc-{i}", "title": topic.title(), "text": _long_document(topic, 6 + 3 * i)}
            for i, topic in enumerate(TOPICS)]
    docs += [{"id": f"short-{i}", "text": f"A note about {topic} in brief."}
             for i, topic in enumerate(TOPICS)]
    engine.upsert_documents(docs)
    assert engine.get_document("doc-7").chunks >= 4
    return engine


def test_search_returns_each_document_once_and_top_k_counts_documents(chunky) -> None:
    response = chunky.search("glacier ice melt in season", top_k=5)
    ids = [h.id for h in response.hits]
    assert len(ids) == 5 == len(set(ids))
    assert ids[0] in ("doc-0", "short-0")
    for hit in response.hits:
        assert hit.chunk in hit.chunks
        assert hit.chunks == sorted(hit.chunks)
        # Shown parts are contiguous with the best chunk (no gaps).
        assert hit.chunks == list(range(hit.chunks[0], hit.chunks[-1] + 1))


def test_a_hit_shows_relevant_neighbours_in_document_order_once(chunky) -> None:
    hits = chunky.search("ocean tide pull finding season", top_k=3).hits
    hit = next(h for h in hits if h.id == "doc-7")
    ns = chunky.registry.get("default")
    rows = {r.ord: r for r in ns.store.chunks(list(range(1, 200))).values()
            if r.doc_id == "doc-7"}
    assert len(hit.chunks) > 1
    # Sentences shared by consecutive chunks appear once; every part's text is there.
    for ord_ in hit.chunks:
        assert rows[ord_].text in hit.text or rows[ord_].text.split(". ")[-1] in hit.text
    sentences = [s for s in hit.text.split(". ") if s]
    assert len(sentences) == len(set(sentences))
    assert hit.text.startswith(rows[hit.chunks[0]].text)


def test_neighbours_join_only_when_they_score_well_and_are_contiguous() -> None:
    ranked = [("a", 4, 0.9, 1.0), ("a", 5, 0.9, 0.7), ("a", 3, 0.9, 0.2), ("a", 7, 0.9, 0.9),
              ("b", 0, 0.8, 1.0)]
    # 5 is relevant and adjacent; 3 scores too low; 7 is not contiguous with 4.
    assert collapse(ranked, neighbours=1) == [("a", 4, [4, 5]), ("b", 0, [0])]
    assert collapse(ranked, neighbours=0) == [("a", 4, [4]), ("b", 0, [0])]


def test_join_parts_drops_the_overlap_and_marks_gaps() -> None:
    def row(ord_: int, text: str) -> ChunkRow:
        return ChunkRow(ord_, "d", ord_, None, text, 1, {}, None)

    assert join_parts([row(1, "Two. Three."), row(0, "One. Two.")]) == "One. Two. Three."
    assert join_parts([row(0, "One."), row(2, "Five.")]) == "One. … Five."


def test_assemble_shows_each_document_once_with_its_chunk_ids(chunky) -> None:
    r = chunky.assemble(query="tundra permafrost thaw season", max_tokens=3000, top_k=6)
    ids = [d.id for d in r.documents]
    assert len(ids) == len(set(ids)) == 6
    block = next(m.content for m in r.messages if m.content and m.content.startswith("Context"))
    for n, used in enumerate(r.documents, start=1):
        assert used.chunk in used.chunks
        label = (f"chunk {used.chunks[0]}" if len(used.chunks) == 1
                 else "chunks " + ", ".join(map(str, used.chunks)))
        assert f"[{n}] {used.id} ({label})" in block
        assert block.count(f"] {used.id} (") == 1


def test_a_document_too_long_with_its_neighbours_falls_back_to_its_best_chunk(chunky) -> None:
    hits = chunky.search("ocean tide pull finding season", top_k=1).hits
    assert len(hits[0].chunks) >= 2  # the case under test: neighbours to give up
    full = chunky.assemble(query="ocean tide pull finding season", max_tokens=3000, top_k=1)
    whole = full.documents[0]
    assert whole.chunks == hits[0].chunks and not whole.truncated
    # Room for the best chunk but not for it with its neighbours.
    tight = whole.tokens - 10
    fixed = full.usage.total - full.usage.documents
    r = chunky.assemble(query="ocean tide pull finding season", max_tokens=fixed + tight, top_k=1)
    used = r.documents[0]
    assert used.chunks == [used.chunk] and not used.truncated
    assert r.usage.total <= r.usage.budget


@pytest.fixture(scope="module")
def many_documents(tmp_path_factory):
    engine = Engine(tmp_path_factory.mktemp("docs"),
                    Settings(embedder="hash", batch_wait_ms=0, chunk_tokens=48,
                             chunk_overlap_tokens=12),
                    embedder=HashEmbedder())
    words = [w for topic in TOPICS for w in topic.split()]
    docs = []
    for i in range(120):
        chosen = [words[(i * 7 + j * 3) % len(words)] for j in range(40)]
        text = " ".join(f"{' '.join(chosen[j:j + 5]).capitalize()}." for j in range(0, 40, 5))
        docs.append({"id": f"d{i}", "text": text})
    engine.upsert_documents(docs)
    yield engine
    engine.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(st.sampled_from([w for t in TOPICS for w in t.split()]), min_size=1,
                      max_size=6).map(" ".join),
       mode=st.sampled_from(["hybrid", "dense", "lexical"]),
       small=st.integers(1, 20))
def test_the_first_results_do_not_depend_on_how_many_were_asked_for(many_documents, query, mode,
                                                                      small) -> None:
    few = many_documents.search(query, top_k=small, mode=mode).hits
    many = many_documents.search(query, top_k=100, mode=mode).hits
    assert [(h.id, h.chunks, h.score) for h in few] == \
        [(h.id, h.chunks, h.score) for h in many[:small]]
    assert len({h.id for h in many}) == len(many)


def test_collapse_with_a_limit_keeps_the_first_documents_whole() -> None:
    ranked = [("a", 1, 0.9, 1.0), ("a", 2, 0.9, 0.9), ("b", 0, 0.8, 1.0), ("c", 0, 0.7, 1.0)]
    assert collapse(ranked, limit=2) == collapse(ranked)[:2] == [("a", 1, [1, 2]),
                                                                 ("b", 0, [0])]
