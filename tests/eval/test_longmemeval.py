"""LongMemEval-layout loading, layout detection and the stratified sample."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contextd.errors import InvalidRequest
from contextd.eval.conversations import load_conversations
from contextd.eval.locomo import Conversation, Question, replay_turns
from contextd.eval.longmemeval import (
    load_longmemeval,
    parse_longmemeval_date,
    stratified_sample,
)
from contextd.models import ChatMessage

SMALL = Path(__file__).parents[1] / "data" / "longmemeval_small.json"


def test_questions_become_conversations_with_evidence_ids_and_question_date() -> None:
    pet, move, absent = load_longmemeval(SMALL)
    assert [c.sample_id for c in (pet, move, absent)] == ["lme-pet", "lme-move", "lme-abs_abs"]
    (q,) = pet.questions
    assert q.evidence == ["s-pets:2"]  # has_answer: false (s-garden:1) is not evidence
    assert q.category == "single-session-user" and q.answer == "greyhound"
    assert q.now == datetime(2023, 5, 20, 2, 21)
    # An abstention question has no evidence to recall: skipped, counted.
    assert absent.questions == [] and absent.skipped_questions == 1
    assert pet.skipped_questions == 0


def test_sessions_replay_in_date_order_with_unique_turn_ids_roles_and_dates() -> None:
    pet, move, _ = load_longmemeval(SMALL)
    assert [s.date_text for s in pet.sessions] == ["2023/04/02 (Sun) 10:15",
                                                   "2023/04/10 (Mon) 18:30"]
    messages = replay_turns(move)
    # The repeated session id "s-lisbon" gets a suffix, so turn ids stay unique.
    assert [m["id"] for m in messages] == ["s-lisbon:0", "s-lisbon:1", "s-lisbon-2:0",
                                           "s-lisbon-2:1", "s-porto:0", "s-porto:1"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert all("name" not in m for m in messages)
    assert messages[4]["timestamp"] == datetime(2023, 6, 20, 20, 5, tzinfo=UTC)
    assert move.questions[0].evidence == ["s-porto:0"]
    for m in messages:
        ChatMessage.model_validate(m)


@pytest.mark.parametrize(("text", "expected"), [
    ("2023/05/20 (Sat) 02:21", datetime(2023, 5, 20, 2, 21)),
    ("2023/5/2 08:40", datetime(2023, 5, 2, 8, 40)),
    ("2023/02/30 (Thu) 10:00", None),
    ("20 May 2023", None),
])
def test_dates_parse_or_give_none(text: str, expected: datetime | None) -> None:
    assert parse_longmemeval_date(text) == expected


def test_layout_is_detected_from_the_fields_or_forced() -> None:
    convs, layout = load_conversations(SMALL)
    assert layout == "longmemeval" and len(convs) == 3
    _, layout = load_conversations(SMALL.parent / "conversation_small.json")
    assert layout == "locomo"
    with pytest.raises(InvalidRequest, match="'conversation' is missing"):
        load_conversations(SMALL, "locomo")


@pytest.mark.parametrize(("change", "message"), [
    (lambda q: q.pop("haystack_dates"), "'haystack_dates' is missing"),
    (lambda q: q["haystack_dates"].pop(), "one entry per session"),
    (lambda q: q["haystack_sessions"][0][0].update(role="system"), "'role' must be"),
    (lambda q: q["haystack_sessions"][0][1].pop("content"), "turn 1: 'content' is missing"),
])
def test_malformed_questions_raise_invalid_request_saying_where(tmp_path, change, message):
    data = json.loads(SMALL.read_text(encoding="utf-8"))
    change(data[0])
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidRequest, match=message) as info:
        load_longmemeval(path)
    assert "question 0 (lme-pet)" in str(info.value)


def _one_question(n: int, kind: str) -> Conversation:
    return Conversation(f"q{n}", "user", "assistant", [],
                        [Question("?", "a", ["s:0"], category=kind)])


def test_stratified_sample_is_proportional_spread_and_deterministic() -> None:
    convs = [_one_question(i, kind) for i, kind in enumerate("AAAAAABBBC")]
    sample = stratified_sample(convs, 5)
    # Shares 3.0 / 1.5 / 0.5: A gets 3, the one slot left goes to the first of the tied
    # remainders (B before C).
    assert [c.questions[0].category for c in sample] == ["A", "A", "A", "B", "B"]
    # Evenly spaced within a stratum: A's members are q0-q5, 3 picks at (j + 1/2) * 6 / 3.
    assert [c.sample_id for c in sample[:3]] == ["q1", "q3", "q5"]
    assert stratified_sample(convs, 5) == sample
    assert stratified_sample(convs, 10) == convs
    assert len(stratified_sample(convs, 3)) == 3
