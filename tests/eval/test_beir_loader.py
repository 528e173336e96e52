"""Loading BEIR folders: the tiny fixture, id mapping to contextd documents, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contextd.errors import InvalidRequest
from contextd.eval.beir import (
    ENCODED_ID_PREFIX,
    BeirDataset,
    beir_document_batches,
    beir_documents,
    beir_id,
    document_id,
    load_beir,
)
from contextd.eval.metrics import evaluable_queries, evaluate
from contextd.models import ID_PATTERN, Document

TINY_BEIR = Path(__file__).parent.parent / "data" / "tiny-beir"


@pytest.fixture(scope="module")
def tiny() -> BeirDataset:
    return load_beir(TINY_BEIR)


def write_dataset(
    root: Path,
    corpus: list[str] | None = None,
    queries: list[str] | None = None,
    qrels: list[str] | None = None,
) -> Path:
    """A BEIR folder under `root` with one good document, query and judgement unless overridden."""
    (root / "qrels").mkdir(parents=True)
    good_doc = json.dumps({"_id": "d1", "title": "T", "text": "some text"})
    good_query = json.dumps({"_id": "q1", "text": "a question"})
    files = {
        "corpus.jsonl": corpus if corpus is not None else [good_doc],
        "queries.jsonl": queries if queries is not None else [good_query],
        "qrels/test.tsv": ["query-id\tcorpus-id\tscore"] + (qrels or ["q1\td1\t1"]),
    }
    for name, lines in files.items():
        (root / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root


# --------------------------------------------------------------------------- the fixture


def test_tiny_beir_loads_every_document_and_only_judged_queries(tiny):
    assert len(tiny.corpus) == 17
    assert tiny.corpus["bee:waggle"] == {
        "title": "The waggle dance",
        "text": tiny.corpus["bee:waggle"]["text"],
    }
    assert tiny.corpus["bee:waggle"]["text"].startswith("Forager honeybees")
    # q8 is in queries.jsonl but not judged in the test split
    assert sorted(tiny.queries) == [f"q{i}" for i in range(1, 8)]
    assert tiny.unjudged_queries == 1
    assert tiny.queries["q4"] == "How do I fix a flat tire?"
    assert tiny.split == "test"


def test_tiny_beir_qrels_are_graded(tiny):
    assert tiny.qrels["q1"] == {"bee:waggle": 2, "bee:swarm": 0}
    assert tiny.qrels["q3"] == {"bread-starter": 2, "bread-proofing": 1, "bread-crust": 1}
    assert set(evaluable_queries(tiny.qrels)) == set(tiny.queries)
    assert tiny.missing_judged_documents == ()


def test_tiny_beir_summary_counts(tiny):
    assert tiny.summary() == {
        "path": str(TINY_BEIR),
        "split": "test",
        "documents": 17,
        "indexable_documents": 16,
        "empty_documents": 1,
        "queries": 7,
        "unjudged_queries": 1,
        "judgements": 10,
        "missing_judged_documents": 0,
    }


def test_beir_documents_skips_empty_text_and_counts_it(tiny):
    documents = list(beir_documents(tiny))
    assert tiny.empty_documents == ("light/characteristics",)
    assert len(documents) == len(tiny.corpus) - 1
    assert "light/characteristics" not in {beir_id(doc.id) for doc in documents}


def test_beir_documents_are_valid_and_map_back_to_corpus_ids(tiny):
    documents = list(beir_documents(tiny))
    assert all(isinstance(doc, Document) for doc in documents)
    assert all(re.match(ID_PATTERN, doc.id) for doc in documents)
    assert len({doc.id for doc in documents}) == len(documents)
    by_beir_id = {beir_id(doc.id): doc for doc in documents}
    # ids outside contextd's pattern (space, '#', leading '_') are encoded; valid ones kept
    assert by_beir_id["volcano 1"].id.startswith(ENCODED_ID_PREFIX)
    assert by_beir_id["volcano#2"].id.startswith(ENCODED_ID_PREFIX)
    assert by_beir_id["_bike-puncture"].id.startswith(ENCODED_ID_PREFIX)
    assert by_beir_id["light/fresnel"].id == "light/fresnel"
    assert by_beir_id["bee:waggle"].title == "The waggle dance"
    assert by_beir_id["bee:waggle"].text == tiny.corpus["bee:waggle"]["text"]


def test_batches_cover_the_indexable_corpus_in_order(tiny):
    batches = list(beir_document_batches(tiny, size=5))
    assert [len(batch) for batch in batches] == [5, 5, 5, 1]
    assert [doc.id for batch in batches for doc in batch] == [
        doc.id for doc in beir_documents(tiny)
    ]
    with pytest.raises(ValueError):
        next(beir_document_batches(tiny, size=0))


def test_a_run_of_contextd_ids_scores_against_the_qrels(tiny):
    # The perfect run, expressed in contextd ids and mapped back, scores 1 everywhere.
    run = {
        qid: [document_id(cid) for cid, _ in sorted(judged.items(), key=lambda kv: -kv[1])]
        for qid, judged in tiny.qrels.items()
    }
    mapped = {qid: [beir_id(doc_id) for doc_id in ranked] for qid, ranked in run.items()}
    assert evaluate(mapped, tiny.qrels, ks=(10,))["ndcg@10"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- id mapping


@pytest.mark.parametrize(
    "original",
    ["31715818", "MED-10", "doc #7", "_private", "ünïcode id", "beir64:abc", "a\tb", "x" * 150],
)
def test_document_id_is_valid_and_reversible(original):
    mapped = document_id(original)
    assert re.match(ID_PATTERN, mapped)
    assert beir_id(mapped) == original


def test_valid_ids_pass_through_unchanged():
    assert document_id("31715818") == "31715818"
    assert document_id("MED-10") == "MED-10"


def test_an_id_too_long_to_encode_is_refused():
    with pytest.raises(InvalidRequest, match="too long"):
        document_id("#" * 300)


def test_beir_id_rejects_a_corrupt_encoded_id():
    with pytest.raises(InvalidRequest):
        beir_id(ENCODED_ID_PREFIX + "\u00e9")


# --------------------------------------------------------------------------- bad input


def test_missing_folder(tmp_path):
    with pytest.raises(InvalidRequest, match="does not exist"):
        load_beir(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(tmp_path, name):
    root = write_dataset(tmp_path / "ds")
    (root / name).unlink()
    with pytest.raises(InvalidRequest, match=re.escape(name) + " is missing") as caught:
        load_beir(root)
    assert caught.value.extra["file"].endswith(name)


def test_unknown_split_is_a_missing_file(tmp_path):
    root = write_dataset(tmp_path / "ds")
    with pytest.raises(InvalidRequest, match=re.escape("dev.tsv")):
        load_beir(root, split="dev")


@pytest.mark.parametrize(
    ("corpus_line", "message"),
    [
        ('{"_id": "d2", "text": ', "not valid JSON"),
        ('["d2", "text"]', "expected a JSON object"),
        ('{"title": "no id", "text": "x"}', "'_id' must be a non-empty string"),
        ('{"_id": "d2", "title": "no text"}', "'text' must be a string"),
        ('{"_id": "d2", "title": 3, "text": "x"}', "'title' must be a string"),
    ],
)
def test_malformed_corpus_line_names_file_and_line(tmp_path, corpus_line, message):
    good = json.dumps({"_id": "d1", "text": "fine"})
    root = write_dataset(tmp_path / "ds", corpus=[good, "", corpus_line])
    with pytest.raises(InvalidRequest) as caught:
        load_beir(root)
    # blank line 2 is skipped but still counted, so the bad record is line 3
    assert "corpus.jsonl, line 3: " + message in caught.value.detail
    assert caught.value.extra["line"] == 3
    assert caught.value.problem()["status"] == 422


def test_invalid_utf8_names_the_line(tmp_path):
    root = write_dataset(tmp_path / "ds")
    with (root / "corpus.jsonl").open("ab") as stream:
        stream.write(b'{"_id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(InvalidRequest, match=r"corpus\.jsonl, line 2: not valid UTF-8"):
        load_beir(root)


def test_blank_query_text_is_refused(tmp_path):
    root = write_dataset(tmp_path / "ds", queries=[json.dumps({"_id": "q1", "text": "  "})])
    with pytest.raises(InvalidRequest, match=r"queries\.jsonl, line 1: .*non-blank 'text'"):
        load_beir(root)


@pytest.mark.parametrize(
    ("qrels_line", "message"),
    [
        ("q1\td1", "expected 3 tab-separated fields"),
        ("q1 d1 1", "expected 3 tab-separated fields"),
        ("q1\td1\thigh", "score 'high' is not an integer grade"),
    ],
)
def test_malformed_qrels_line_names_file_and_line(tmp_path, qrels_line, message):
    root = write_dataset(tmp_path / "ds", qrels=["q1\td1\t1", qrels_line])
    with pytest.raises(InvalidRequest, match=r"test\.tsv, line 3: " + re.escape(message)):
        load_beir(root)


def test_qrels_without_a_header_are_read(tmp_path):
    root = write_dataset(tmp_path / "ds")
    (root / "qrels" / "test.tsv").write_text("q1\td1\t2\n", encoding="utf-8")
    assert load_beir(root).qrels == {"q1": {"d1": 2}}


def test_qrels_judging_an_unknown_query_is_refused(tmp_path):
    root = write_dataset(tmp_path / "ds", qrels=["q1\td1\t1", "q9\td1\t1"])
    with pytest.raises(InvalidRequest, match=r"lacks, e\.g\. \['q9'\]"):
        load_beir(root)


def test_judged_documents_absent_from_the_corpus_are_reported(tmp_path):
    root = write_dataset(tmp_path / "ds", qrels=["q1\td1\t1", "q1\tgone\t1"])
    dataset = load_beir(root)
    assert dataset.missing_judged_documents == ("gone",)
    assert dataset.summary()["missing_judged_documents"] == 1


def test_numeric_ids_are_read_as_strings(tmp_path):
    root = write_dataset(
        tmp_path / "ds",
        corpus=[json.dumps({"_id": 42, "text": "answer"})],
        queries=[json.dumps({"_id": 1, "text": "question"})],
        qrels=["1\t42\t1"],
    )
    dataset = load_beir(root)
    assert dataset.corpus == {"42": {"title": "", "text": "answer"}}
    assert dataset.queries == {"1": "question"}


def test_an_over_long_title_is_cut_to_fit_a_document(tmp_path):
    doc = json.dumps({"_id": "d1", "title": "t" * 1500, "text": "body"})
    root = write_dataset(tmp_path / "ds", corpus=[doc])
    (document,) = beir_documents(load_beir(root))
    assert document.title == "t" * 1000
    assert document.text == "body"
