"""Conversation-memory evaluation data in the LongMemEval layout.

A LongMemEval file is a list of questions, each with its own user/assistant chat history
("haystack"): `haystack_sessions` (lists of `{role, content}` turns, evidence turns flagged
`has_answer: true`), `haystack_session_ids` and `haystack_dates` ("2023/05/20 (Sat) 02:21"),
and the `question_date`. Each question becomes a `Conversation` holding that one question, so
the LoCoMo scoring and replay apply unchanged:

    >>> convs = load_longmemeval("tests/data/longmemeval_small.json")
    >>> convs[0].questions[0].evidence
    ['s-pets:2']

Turn ids are `<session id>:<index in session>`, counting from 0. Sessions are replayed in date
order. Abstention questions (id ending in `_abs`: the history does not hold the answer) and
questions without evidence turns are skipped and counted in `skipped_questions`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from contextd.errors import InvalidRequest
from contextd.eval.locomo import Conversation, LocomoTurn, Question, Session, read_json_list

_DATE = re.compile(r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})\s*(?:\([A-Za-z]+\))?\s*(\d{1,2}):(\d{2})\s*$")
_ROLES = ("user", "assistant")


def parse_longmemeval_date(text: str) -> datetime | None:
    """The naive datetime of a LongMemEval date, or None when it does not parse.

    >>> parse_longmemeval_date("2023/05/20 (Sat) 02:21")
    datetime.datetime(2023, 5, 20, 2, 21)
    """
    match = _DATE.match(str(text))
    if match is None:
        return None
    year, month, day, hour, minute = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute)
    except ValueError:
        return None


def is_longmemeval(raw: list[Any]) -> bool:
    """True when the parsed file looks like LongMemEval (its items have `haystack_sessions`)."""
    return bool(raw) and isinstance(raw[0], dict) and "haystack_sessions" in raw[0]


def load_longmemeval(path: str | Path) -> list[Conversation]:
    """Read a LongMemEval-layout JSON file; raise `InvalidRequest` saying where it is malformed.

    >>> [c.sample_id for c in load_longmemeval("tests/data/longmemeval_small.json")]
    ['lme-pet', 'lme-move', 'lme-abs_abs']
    """
    return longmemeval_conversations(read_json_list(path), path)


def longmemeval_conversations(raw: list[Any], path: str | Path) -> list[Conversation]:
    """Conversations from the parsed questions of a LongMemEval-layout file."""
    return [_item(item, f"{path}: question {i}") for i, item in enumerate(raw)]


def _need(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        nouns: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
        noun = nouns.get(kind, kind.__name__)
        raise InvalidRequest(f"{where}: {what} is missing or not {noun}")
    return value


def _item(item: Any, where: str) -> Conversation:
    _need(item, dict, where, "the question")
    qid = _need(item.get("question_id"), str, where, "'question_id'")
    where = f"{where} ({qid})"
    sessions_raw = _need(item.get("haystack_sessions"), list, where, "'haystack_sessions'")
    ids = _need(item.get("haystack_session_ids"), list, where, "'haystack_session_ids'")
    dates = _need(item.get("haystack_dates"), list, where, "'haystack_dates'")
    if not len(sessions_raw) == len(ids) == len(dates):
        raise InvalidRequest(f"{where}: 'haystack_sessions', 'haystack_session_ids' and "
                             "'haystack_dates' must have one entry per session")
    seen: dict[str, int] = {}
    evidence: list[str] = []
    sessions = []
    for n, (turns_raw, sid_raw, date_raw) in enumerate(zip(sessions_raw, ids, dates, strict=True)):
        at = f"{where}: session {n}"
        sid = _need(sid_raw, str, at, "the session id")
        seen[sid] = seen.get(sid, 0) + 1
        if seen[sid] > 1:  # a repeated session id would repeat turn ids
            sid = f"{sid}-{seen[sid]}"
        date_text = _need(date_raw, str, at, "the session date")
        turns = []
        for j, turn in enumerate(_need(turns_raw, list, at, "the session")):
            _need(turn, dict, f"{at} turn {j}", "the turn")
            role = turn.get("role")
            if role not in _ROLES:
                raise InvalidRequest(f"{at} turn {j}: 'role' must be 'user' or 'assistant'")
            text = _need(turn.get("content"), str, f"{at} turn {j}", "'content'")
            dia_id = f"{sid}:{j}"
            if turn.get("has_answer") is True:
                evidence.append(dia_id)
            turns.append(LocomoTurn(dia_id=dia_id, speaker=role, text=text, role=role))
        sessions.append(Session(n, parse_longmemeval_date(date_text), date_text, turns))
    # Histories are not always in date order; a stable sort keeps same-day sessions in place.
    sessions.sort(key=lambda s: (s.date_time is None, s.date_time or datetime.min))
    question = _need(item.get("question"), str, where, "'question'")
    answer = item.get("answer")
    kept = []
    if not qid.endswith("_abs") and evidence and isinstance(answer, (str, int, float)):
        question_type = item.get("question_type")
        kept.append(Question(
            question=question,
            answer=str(answer),
            evidence=evidence,
            category=question_type if isinstance(question_type, str) else None,
            now=parse_longmemeval_date(str(item.get("question_date", ""))),
        ))
    return Conversation(qid, "user", "assistant", sessions, kept,
                        skipped_questions=1 - len(kept))


def stratified_sample(conversations: Sequence[Conversation], n: int) -> list[Conversation]:
    """`n` of the conversations, spread over the kinds of question in proportion, the same
    ones every time; all of them when `n` is not smaller.

    The stratum of a conversation is the category of its only question (LongMemEval); one
    with no or several questions (LoCoMo) is a stratum of its own kind. Each stratum's share
    is rounded by largest remainder, and its picks are evenly spaced in file order.

        >>> len(stratified_sample(load_longmemeval("tests/data/longmemeval_small.json"), 1))
        1
    """
    if n >= len(conversations):
        return list(conversations)
    strata: dict[str, list[int]] = defaultdict(list)
    for i, conv in enumerate(conversations):
        key = str(conv.questions[0].category) if len(conv.questions) == 1 else "(not one question)"
        strata[key].append(i)
    total = len(conversations)
    exact = {key: n * len(members) / total for key, members in strata.items()}
    quota = {key: int(share) for key, share in exact.items()}
    by_remainder = sorted(strata, key=lambda key: (-(exact[key] - quota[key]), key))
    for key in by_remainder[: n - sum(quota.values())]:
        quota[key] += 1
    picked: list[int] = []
    for key, members in strata.items():
        k = quota[key]
        picked.extend(members[int((j + 0.5) * len(members) / k)] for j in range(k))
    return [conversations[i] for i in sorted(picked)]
