"""Input the contract rejects in-process, with a message that says what to change; and input it
accepts keeps working on later reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contextd import Engine
from contextd.errors import InvalidNamespace, InvalidRequest
from contextd.models import (
    MAX_METADATA_BYTES,
    MAX_METADATA_LIST_ITEMS,
    MAX_METADATA_STRING_CHARS,
    AssembleRequest,
    Document,
    SearchRequest,
)
from contextd.namespaces import check_namespace
from contextd.sessions import check_session_id
from contextd.store.filters import compile_sqlite
from contextd.validation import parse

INT64_MAX = 2**63 - 1


def doc(**metadata: object) -> dict[str, object]:
    return {"id": "d1", "text": "Lisbon is the capital of Portugal.", "metadata": metadata}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), float("1e400")])
def test_metadata_nan_is_rejected(engine: Engine, value: float) -> None:
    with pytest.raises(InvalidRequest, match="not a finite number"):
        engine.upsert_documents([doc(score=value)])
    with pytest.raises(InvalidRequest, match="not a finite number"):
        engine.upsert_documents([doc(scores=[1.0, value])])
    # Nothing was stored, so filtered reads keep working.
    assert engine.search("Lisbon", filters={"score": {"$gt": 0}}).hits == []


@pytest.mark.parametrize("value", [INT64_MAX + 1, -(2**63) - 1, 10**30,
                                   pytest.param(10**5000, id="5000-digits")])
def test_metadata_int_beyond_64_bits_is_rejected(engine: Engine, value: int) -> None:
    with pytest.raises(InvalidRequest, match="outside the 64-bit integer range"):
        engine.upsert_documents([doc(n=value)])


def test_metadata_at_64_bit_edges_works_in_filtered_search(engine: Engine) -> None:
    engine.upsert_documents([doc(big=INT64_MAX, small=-(2**63), ratio=1.5e308)])
    hits = engine.search("Lisbon", filters={"big": INT64_MAX, "small": {"$lt": 0},
                                            "ratio": {"$gt": 1e308}}).hits
    assert [h.id for h in hits] == ["d1"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), INT64_MAX + 1])
def test_filter_value_beyond_json_or_64_bits_is_rejected(engine: Engine, value: float) -> None:
    engine.upsert_documents([doc(n=1)])
    for filters in ({"n": value}, {"n": {"$gte": value}}, {"n": {"$in": [1, value]}}):
        with pytest.raises(InvalidRequest, match="finite|64-bit"):
            engine.search("Lisbon", filters=filters)
        with pytest.raises(InvalidRequest, match="filters"):
            engine.assemble({"query": "Lisbon", "max_tokens": 500, "filters": filters})


def test_metadata_string_too_long_is_rejected() -> None:
    parse(Document, doc(note="x" * MAX_METADATA_STRING_CHARS))
    with pytest.raises(InvalidRequest, match=f"at most {MAX_METADATA_STRING_CHARS}"):
        parse(Document, doc(note="x" * (MAX_METADATA_STRING_CHARS + 1)))
    with pytest.raises(InvalidRequest, match=f"at most {MAX_METADATA_STRING_CHARS}"):
        parse(Document, doc(tags=["x" * (MAX_METADATA_STRING_CHARS + 1)]))


def test_metadata_list_too_long_is_rejected() -> None:
    parse(Document, doc(tags=list(range(MAX_METADATA_LIST_ITEMS))))
    with pytest.raises(InvalidRequest, match=f"at most {MAX_METADATA_LIST_ITEMS}"):
        parse(Document, doc(tags=list(range(MAX_METADATA_LIST_ITEMS + 1))))


def test_metadata_too_many_bytes_is_rejected() -> None:
    per_key = MAX_METADATA_STRING_CHARS - 10
    fits = {f"k{i}": "x" * per_key for i in range(MAX_METADATA_BYTES // (per_key + 10))}
    parse(Document, doc(**fits))
    too_big = {f"k{i}": "é" * per_key for i in range(len(fits))}  # two bytes a character
    with pytest.raises(InvalidRequest, match=f"at most {MAX_METADATA_BYTES}"):
        parse(Document, doc(**too_big))


def test_metadata_limits_are_in_the_schema() -> None:
    schema = Document.model_json_schema()
    text = str(schema)
    assert f"'maxLength': {MAX_METADATA_STRING_CHARS}" in text
    assert f"'maxItems': {MAX_METADATA_LIST_ITEMS}" in text
    assert f"'maximum': {INT64_MAX}" in text
    assert str(MAX_METADATA_BYTES) in schema["properties"]["metadata"]["description"]


def test_metadata_nested_object_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="not dict"):
        parse(Document, doc(nested={"a": 1}))


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00", "1899-12-31T23:59:59+00:00",
                                  "9999-12-31T00:00:00", "9999-12-31T23:00:00-05:00",
                                  "0001-01-01T00:30:00+01:00"])
def test_turn_timestamp_out_of_range_is_rejected(engine: Engine, when: str) -> None:
    message = {"role": "user", "content": "hello", "timestamp": when}
    with pytest.raises(InvalidRequest, match="1900-01-01 to 9999-12-30 in UTC"):
        engine.append_messages("s1", [message])
    with pytest.raises(InvalidRequest, match="1900-01-01 to 9999-12-30 in UTC"):
        engine.assemble({"messages": [message], "max_tokens": 500})


def test_turn_timestamp_naive_is_utc_and_reads_back(engine: Engine) -> None:
    engine.append_messages("s1", [
        {"role": "user", "content": "a", "timestamp": "2024-05-01T10:00:00"},
        {"role": "user", "content": "b", "timestamp": "2024-05-01T10:00:00+02:00"},
        {"role": "user", "content": "c", "timestamp": datetime(1900, 1, 1)},
        {"role": "user", "content": "d",
         "timestamp": datetime(9999, 12, 30, 23, tzinfo=timezone(timedelta(hours=5)))},
    ])
    stamps = [t.timestamp for t in engine.get_session("s1").turns]
    assert stamps == [datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 8, tzinfo=UTC),
                      datetime(1900, 1, 1, tzinfo=UTC), datetime(9999, 12, 30, 18, tzinfo=UTC)]


@pytest.mark.parametrize("value", ["100", 100.0, True])
def test_assemble_max_tokens_is_not_coerced(engine: Engine, value: object) -> None:
    with pytest.raises(InvalidRequest, match="max_tokens"):
        engine.assemble({"query": "x", "max_tokens": value})


@pytest.mark.parametrize(("field", "value"), [
    ("top_k", "3"), ("top_k", 3.0), ("top_k", False), ("reserve_output_tokens", "10"),
    ("history_share", "0.5"), ("history_share", True), ("recall", 1), ("recall", "true"),
])
def test_assemble_numbers_and_booleans_are_strict(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=field):
        parse(AssembleRequest, {"query": "x", "max_tokens": 100, field: value})


def test_strict_fields_still_take_their_own_types() -> None:
    req = parse(AssembleRequest, {"query": "x", "max_tokens": 100, "top_k": 3,
                                  "history_share": 1, "recall": False})
    assert (req.max_tokens, req.top_k, req.history_share, req.recall) == (100, 3, 1.0, False)
    with pytest.raises(InvalidRequest, match="top_k"):
        parse(SearchRequest, {"query": "x", "top_k": "5"})


def test_namespace_with_trailing_newline_is_rejected() -> None:
    assert check_namespace("abc") == "abc"
    with pytest.raises(InvalidNamespace):
        check_namespace("abc\n")


def test_session_id_with_trailing_newline_is_rejected(engine: Engine) -> None:
    assert check_session_id("abc") == "abc"
    with pytest.raises(InvalidRequest):
        check_session_id("abc\n")
    with pytest.raises(InvalidRequest):
        engine.append_messages("abc\n", [{"role": "user", "content": "hi"}])


def test_filter_key_with_trailing_newline_is_rejected() -> None:
    assert compile_sqlite({"abc": 1})[1] == [1]
    with pytest.raises(InvalidRequest, match="not a valid metadata key"):
        compile_sqlite({"abc\n": 1})


def test_metadata_key_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="metadata key"):
        parse(Document, {"id": "d", "text": "t", "metadata": {"abc\n": 1}})
