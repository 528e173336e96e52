"""Conversation-memory evaluation data in the LoCoMo layout, and the pure scores on it.

A LoCoMo file is a list of samples, each with a `conversation` (two speakers, numbered
sessions of turns with a date) and `qa` (questions whose `evidence` names the turns that
answer them). This module loads such files, turns a conversation into chat turns to replay
into a session, and scores what an assembled prompt kept:

    >>> convs = load_locomo("tests/data/conversation_small.json")
    >>> q = convs[0].questions[0]
    >>> answer_contained(q.answer, "... " + q.answer.upper() + "!")
    True

Nothing here depends on the engine, so the scores can be unit-tested on their own.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from contextd.errors import InvalidRequest
from contextd.models import ID_PATTERN

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_TIME = r"(?:(?P<h>\d{1,2})(?::(?P<mi>\d{2}))?\s*(?P<ap>[ap])\.?\s*m\.?\s*(?:on\s+)?)?"
# "1:56 pm on 8 May, 2023" is the LoCoMo form; the others appear in hand-edited files.
_DAY_FIRST = re.compile(
    _TIME + r"(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?P<mon>[a-z]+)\.?,?\s+(?P<y>\d{4})$", re.I
)
_MONTH_FIRST = re.compile(
    _TIME + r"(?P<mon>[a-z]+)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})$", re.I
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NOT_WORD = re.compile(r"[^\w\s]|_")
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_-]+")
_ID_BAD = re.compile(r"[^A-Za-z0-9_.:@/+=-]+")
_ID_OK = re.compile(ID_PATTERN)


@dataclass(frozen=True, slots=True)
class LocomoTurn:
    """One utterance; `image_caption` holds LoCoMo's `blip_caption` when a photo was shared.

    `role` is set for user/assistant chats (LongMemEval): the turn is replayed with that role
    and no speaker name.
    """

    dia_id: str
    speaker: str
    text: str
    image_caption: str | None = None
    role: Literal["user", "assistant"] | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A numbered session; `date_time` is None when `date_text` could not be parsed."""

    index: int
    date_time: datetime | None
    date_text: str
    turns: list[LocomoTurn]


@dataclass(frozen=True, slots=True)
class Question:
    """A question, its short answer and the dia_ids of the turns that support it.

    `now` is when the question is asked (LongMemEval's question date), the reference for
    relative dates such as "last week"; None when the data set does not say.
    """

    question: str
    answer: str
    evidence: list[str]
    category: int | str | None
    kind: str | None = None
    now: datetime | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A sample: two speakers, sessions in order, and the questions that have evidence.

    `skipped_questions` counts the questions left out for having no evidence or no answer.
    """

    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: list[Session]
    questions: list[Question]
    skipped_questions: int = 0
    turns: list[LocomoTurn] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", [t for s in self.sessions for t in s.turns])


def parse_session_date(text: str) -> datetime | None:
    """The datetime of a session date string (naive unless ISO with an offset), or None.

    >>> parse_session_date("1:56 pm on 8 May, 2023")
    datetime.datetime(2023, 5, 8, 13, 56)
    """
    text = " ".join(str(text).split())
    match = _DAY_FIRST.match(text) or _MONTH_FIRST.match(text)
    if match is None:
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            return None
    month = _MONTHS.get(match["mon"][:3].lower())
    hour, minute = int(match["h"] or 0), int(match["mi"] or 0)
    if match["ap"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ap"].lower() == "p" else 0)
    if month is None:
        return None
    try:
        return datetime(int(match["y"]), month, int(match["d"]), hour, minute)
    except ValueError:
        return None


def load_locomo(path: str | Path) -> list[Conversation]:
    """Read a LoCoMo-layout JSON file; raise `InvalidRequest` saying where it is malformed.

    >>> [c.sample_id for c in load_locomo("tests/data/conversation_small.json")]
    ['small-1']
    """
    return locomo_conversations(read_json_list(path), path)


def read_json_list(path: str | Path) -> list[Any]:
    """The JSON list in `path`; raise `InvalidRequest` when unreadable or not a list."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise InvalidRequest(f"{path}: expected a JSON list of samples, got {type(raw).__name__}")
    return raw


def locomo_conversations(raw: list[Any], path: str | Path) -> list[Conversation]:
    """Conversations from the parsed samples of a LoCoMo-layout file read from `path`."""
    return [_sample(sample, f"{path}: sample {i}") for i, sample in enumerate(raw)]


def _need(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        nouns: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
        noun = nouns.get(kind, kind.__name__)
        raise InvalidRequest(f"{where}: {what} is missing or not {noun}")
    return value


def _sample(sample: Any, where: str) -> Conversation:
    _need(sample, dict, where, "the sample")
    sample_id = str(sample.get("sample_id", where.rsplit(" ", 1)[-1]))
    where = f"{where} ({sample_id})"
    conv = _need(sample.get("conversation"), dict, where, "'conversation'")
    speaker_a = _need(conv.get("speaker_a"), str, where, "'conversation.speaker_a'")
    speaker_b = _need(conv.get("speaker_b"), str, where, "'conversation.speaker_b'")
    numbers = sorted(int(m[1]) for key in conv if (m := _SESSION_KEY.match(key)))
    if not numbers:
        raise InvalidRequest(f"{where}: 'conversation' has no session_<n> lists of turns")
    sessions = []
    for n in numbers:
        turns = _need(conv[f"session_{n}"], list, where, f"'session_{n}'")
        date_text = conv.get(f"session_{n}_date_time") or ""
        date_text = _need(date_text, str, where, f"'session_{n}_date_time'")
        parsed = [_turn(t, f"{where}: session_{n} turn {j}") for j, t in enumerate(turns)]
        sessions.append(Session(n, parse_session_date(date_text), date_text, parsed))
    qa = _need(sample.get("qa", []), list, where, "'qa'")
    questions = [_question(q, f"{where}: qa {k}") for k, q in enumerate(qa)]
    kept = [q for q in questions if q is not None]
    return Conversation(
        sample_id, speaker_a, speaker_b, sessions, kept, skipped_questions=len(qa) - len(kept)
    )


def _turn(turn: Any, where: str) -> LocomoTurn:
    _need(turn, dict, where, "the turn")
    caption = turn.get("blip_caption")
    return LocomoTurn(
        dia_id=_need(turn.get("dia_id"), str, where, "'dia_id'").strip(),
        speaker=_need(turn.get("speaker"), str, where, "'speaker'"),
        text=_need(turn.get("text"), str, where, "'text'"),
        image_caption=caption if isinstance(caption, str) and caption.strip() else None,
    )


def _question(qa: Any, where: str) -> Question | None:
    _need(qa, dict, where, "the question")
    question = _need(qa.get("question"), str, where, "'question'")
    evidence_raw = _need(qa.get("evidence", []), list, where, "'evidence'")
    # Some LoCoMo entries pack several ids into one string: "D8:6; D9:17".
    evidence = [
        part
        for item in evidence_raw
        for part in re.split(r"[;,\s]+", str(_need(item, str, where, "an evidence id")))
        if part
    ]
    answer = qa.get("answer")
    if not evidence or answer is None or isinstance(answer, (dict, list)):
        return None  # no evidence (or adversarial, answer-less): nothing to score against
    kind = qa.get("kind")
    return Question(
        question=question,
        answer=str(answer),
        evidence=evidence,
        category=qa.get("category"),
        kind=kind if isinstance(kind, str) else None,
    )


def normalise_answer(text: str) -> str:
    """SQuAD-style normal form: lower-case, no punctuation, no articles, single spaces.

    >>> normalise_answer("The  Golden-Retriever, 'Max'!")
    'goldenretriever max'
    """
    text = str(text).lower()
    # Any non-word character, not only ASCII punctuation: real chats use curly quotes.
    text = _NOT_WORD.sub("", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_contained(answer: str, assembled_text: str) -> bool:
    """True when the normalised answer occurs as whole words in the normalised text.

    >>> answer_contained("Porto", "We moved again, to porto.")
    True
    >>> answer_contained("cat", "what category?")
    False
    """
    needle = normalise_answer(answer)
    if not needle:
        return False
    return f" {needle} " in f" {normalise_answer(assembled_text)} "


def evidence_recall(evidence_ids: list[str], included_ids: list[str]) -> float:
    """Share of distinct evidence turns found among the included turn ids (0.0 to 1.0).

    Both sides go through `turn_id`, so raw dia_ids compare equal to replayed turn ids.

        >>> evidence_recall(["D1:3", "D4:2"], ["D4:2", "D7:1"])
        0.5
    """
    wanted = {turn_id(e) for e in evidence_ids}
    if not wanted:
        raise ValueError("evidence_ids is empty: a question without evidence cannot be scored")
    return len(wanted & {turn_id(i) for i in included_ids}) / len(wanted)


def turn_id(dia_id: str) -> str:
    """A dia_id made valid for contextd's ID_PATTERN; valid ids come back unchanged.

    >>> turn_id("D1:3"), turn_id("D 1#3")
    ('D1:3', 'D_1_3')
    """
    if _ID_OK.match(dia_id):
        return dia_id
    cleaned = _ID_BAD.sub("_", dia_id.strip())[:255]
    cleaned = cleaned if cleaned[:1].isalnum() and cleaned[:1].isascii() else "t" + cleaned
    return cleaned[:256]


def speaker_name(speaker: str) -> str:
    """A speaker made valid for OpenAI's message `name` (^[a-zA-Z0-9_-]{1,64}$).

    >>> speaker_name("Inês Sá")
    'Ines_Sa'
    """
    ascii_text = unicodedata.normalize("NFKD", speaker).encode("ascii", "ignore").decode()
    cleaned = _NAME_BAD.sub("_", ascii_text).strip("_")[:64]
    return cleaned or "speaker"


def replay_turns(
    conversation: Conversation,
    *,
    speaker_b_role: Literal["user", "assistant"] = "user",
    seconds_per_turn: int = 10,
) -> list[dict[str, Any]]:
    """The conversation as `ChatMessage` dicts, oldest first, to append to a session.

    Both speakers are people, so both default to role "user" and are told apart by `name`,
    as a group-chat app would send them; making one of them "assistant" would tell the model
    it wrote that person's words. Set `speaker_b_role="assistant"` to replay it as a
    user/assistant chat instead. Each turn is stamped with its session's date plus
    `seconds_per_turn` per position, so order survives sorting by time; sessions without a
    readable date get no timestamp. Timestamps are UTC, the dates carrying no zone.

        >>> msgs = replay_turns(load_locomo("tests/data/conversation_small.json")[0])
        >>> sorted(msgs[0])
        ['content', 'id', 'name', 'role', 'timestamp']
    """
    messages: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for session in conversation.sessions:
        start = session.date_time
        if start is not None:  # LoCoMo dates carry no zone; an ISO date with one keeps it
            start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        for position, turn in enumerate(session.turns):
            content = turn.text
            if turn.image_caption:
                content = f"{content} [shares a photo: {turn.image_caption}]".strip()
            ident = turn_id(turn.dia_id)
            seen[ident] = seen.get(ident, 0) + 1
            if seen[ident] > 1:  # LoCoMo has a few repeated dia_ids; session ids must be unique
                ident = f"{ident[:250]}-{seen[ident]}"
            role = speaker_b_role if turn.speaker == conversation.speaker_b else "user"
            message: dict[str, Any] = {
                "role": turn.role or role,
                "name": speaker_name(turn.speaker),
                "content": content,
                "id": ident,
                "timestamp": start + timedelta(seconds=seconds_per_turn * position)
                if start
                else None,
            }
            if turn.role:  # a user/assistant chat: the role tells the two apart, no names
                del message["name"]
            messages.append(message)
    return messages
