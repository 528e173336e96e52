"""The in-memory bm25 index ranks as FTS5 does, and stays current like the vector index: after
writes of its own process, of another engine on the same data directory, and across a
restart. Two `Engine`s on one directory stand in for two processes."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from contextd import Engine
from contextd.retrieval.lexical import fts_query, query_terms
from contextd.store.lexical_index import Bm25Index
from contextd.store.schema import FTS5_TOKENIZE

WORDS = ("olive barley lavender walnut saffron running runner ran bones bone vitamin naïve "  # noqa: SIM905
         "Café résumé x² foo_bar trials trial studies studied cohort cohorts the of and in "
         "e.g. 25OH-D3 COVID-19 mice mouse").split()


def random_chunks(rng: random.Random, n: int, start: int = 1) -> list[tuple[int, str | None,
                                                                              str]]:
    rows = []
    for cid in range(start, start + n):
        title = " ".join(rng.choices(WORDS, k=rng.randint(0, 4))) or None
        text = " ".join(rng.choices(WORDS, k=rng.randint(1, 40))) + "."
        rows.append((cid, title, text))
    return rows


def fts5_ranking(rows: list[tuple[int, str | None, str]], query: str, k: int,
                 title_weight: float) -> list[tuple[int, float]]:
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE VIRTUAL TABLE f USING fts5(title, text, tokenize='{FTS5_TOKENIZE}')")
    conn.executemany("INSERT INTO f(rowid, title, text) VALUES (?, ?, ?)", rows)
    found = conn.execute("SELECT rowid, bm25(f, ?, 1.0) FROM f WHERE f MATCH ?",
                         (title_weight, fts_query(query))).fetchall()
    # Best first, ties by chunk id: the index's order (FTS5 leaves ties unordered).
    return sorted(((cid, -score) for cid, score in found), key=lambda r: (-r[1], r[0]))[:k]


@pytest.mark.parametrize("title_weight", [1.0, 2.5, 0.0])
def test_scores_and_order_are_fts5s_after_adds_and_removes(title_weight: float) -> None:
    rng = random.Random(7)
    rows = random_chunks(rng, 300)
    index = Bm25Index()
    for start in range(0, 300, 37):  # several segments, merged as they come
        index.add_chunks(rows[start:start + 37], seq=start + 1)
    removed = set(rng.sample(range(1, 301), 60))
    index.remove_chunks(sorted(removed), seq=400)
    rows = [r for r in rows if r[0] not in removed]
    for query in ["olive runs", "the bone of mice", "Café résumé trials", "cohort studied",
                  "25OH D3 covid 19", "saffron saffron walnut", "nothing matches"]:
        terms = index.query_terms(query_terms(query))
        assert terms is not None
        got = index.search(terms, 50, title_weight=title_weight)
        want = fts5_ranking(rows, query, 50, title_weight)
        assert [cid for cid, _ in got] == [cid for cid, _ in want], query
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-12, atol=0)


def test_a_filter_keeps_fts5s_scores_and_only_allowed_chunks() -> None:
    rows = random_chunks(random.Random(3), 120)
    index = Bm25Index()
    index.add_chunks(rows, seq=1)
    allowed = np.arange(1, 121, 3)
    got = index.search(index.query_terms(["olive", "bones"]) or [], 200, allowed=allowed)
    want = [r for r in fts5_ranking(rows, "olive bones", 200, 1.0) if r[0] in set(allowed)]
    assert [cid for cid, _ in got] == [cid for cid, _ in want]


def test_a_word_fts5_reads_as_a_phrase_is_left_to_fts5() -> None:
    index = Bm25Index()
    assert index.query_terms(["foo_bar"]) is None
    assert index.query_terms(["running", "_"]) == ["run"]


def test_above_its_posting_limit_the_index_gives_way_to_fts5() -> None:
    index = Bm25Index(max_postings=50)
    index.add_chunks(random_chunks(random.Random(1), 40), seq=1)
    assert not index.usable and len(index) == 0


def lexical_ids(engine: Engine, query: str) -> list[str]:
    return [h.id for h in engine.search(query, mode="lexical", top_k=10).hits]


DOCS = [{"id": f"d{i}", "text": f"Topic {i}: the {word} grows in the valley."}
        for i, word in enumerate(["olive", "barley", "lavender", "walnut", "saffron"])]


def test_engine_answers_from_the_index_as_from_fts5(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    fast = make_engine(tmp_path / "d")
    slow = make_engine(tmp_path / "d", lexical_index=False)
    fast.upsert_documents(DOCS + [{"id": "x", "title": "Olive oil",
                                   "text": "Olives and walnuts in the valley."}])
    for query in ["olive valley", "walnut", "grows in the valley", "topic 3"]:
        hits = fast.search(query, mode="lexical", top_k=10).hits
        assert [h.id for h in hits] == lexical_ids(slow, query)
    ns = fast.registry.get("default")
    assert ns.lexical is not None and len(ns.lexical) == 6  # the index did answer
    assert slow.registry.get("default").lexical is None


def test_writes_of_another_engine_are_seen_before_answering(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    server, cli = make_engine(tmp_path / "d"), make_engine(tmp_path / "d")
    server.upsert_documents(DOCS)
    assert lexical_ids(server, "saffron") == ["d4"]  # builds the server's index
    cli.upsert_documents([{"id": "new", "text": "Quinoa terraces in the Andes."},
                          {"id": "d4", "text": "Now about quinoa, not that spice."}])
    cli.delete_document("d1")
    assert lexical_ids(server, "saffron") == []
    assert sorted(lexical_ids(server, "quinoa")) == ["d4", "new"]
    assert lexical_ids(server, "barley") == []
    assert len(server.registry.get("default").lexical or []) == 5


def test_a_compacted_change_log_is_caught_up_by_comparing_ids(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    server = make_engine(tmp_path / "d")
    cli = make_engine(tmp_path / "d", snapshot_every=1)  # saves and compacts on every write
    server.upsert_documents(DOCS)
    assert lexical_ids(server, "olive") == ["d0"]
    cli.delete_document("d0")
    cli.upsert_documents([{"id": "o", "text": "An olive grove."}])
    assert server.registry.get("default").store.changes_since(
        server.registry.get("default").lexical.seq) is None  # the log no longer reaches back
    assert lexical_ids(server, "olive") == ["o"]


def test_the_index_is_rebuilt_after_a_restart(
        make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    first = make_engine(tmp_path / "d")
    first.upsert_documents(DOCS)
    assert lexical_ids(first, "lavender") == ["d2"]
    first.delete_document("d2")
    first.close()
    again = make_engine(tmp_path / "d")
    assert lexical_ids(again, "lavender") == []
    assert lexical_ids(again, "walnut") == ["d3"]
