"""Write the semantic cache benchmark data from the hand-written intents.

    python benchmarks/gen_paraphrase_pairs.py

benchmarks/data/paraphrase_pairs.jsonl: labelled query pairs, ``paraphrase`` (two wordings of
one intent with the same slot value) or ``not_paraphrase`` with a ``kind``: ``number``, ``date``
or ``entity`` (the same intent with another slot value, in the same or another wording), or the
intent's hand-written ``negation``, ``antonym`` and ``topic_shift`` contrasts.

benchmarks/data/query_log.jsonl: a replayed log of queries drawn from the intents with a
Zipf-like popularity, each asked in a random wording, so popular questions recur reworded;
``meaning`` names what a query asks (intent and slot value), so a hit can be checked.
Deterministic (seeded).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from paraphrase_templates import INTENTS

OUT = Path(__file__).resolve().parent / "data"
PARAPHRASES_PER_INTENT = 5
SWAPS_PER_SLOT_INTENT = 3
LOG_QUERIES = 400


def fill(form: str, value: str | None) -> str:
    return form if value is None else form.replace("{x}", value)


def pairs(rng: random.Random) -> list[dict]:
    out: list[dict] = []
    for n, intent in enumerate(INTENTS):
        slot = intent["slot"]
        values = [None] if slot is None else slot[1]
        forms = intent["forms"]
        combos = list(itertools.combinations(range(len(forms)), 2))
        rng.shuffle(combos)
        for i, j in combos[:PARAPHRASES_PER_INTENT]:
            value = rng.choice(values)
            out.append(pair(fill(forms[i], value), fill(forms[j], value), "paraphrase",
                            "paraphrase", intent, n))
        if slot is not None:
            for k in range(SWAPS_PER_SLOT_INTENT):
                v1, v2 = rng.sample(values, 2)
                i = rng.randrange(len(forms))
                j = i if k < 2 else rng.choice([x for x in range(len(forms)) if x != i])
                out.append(pair(fill(forms[i], v1), fill(forms[j], v2), "not_paraphrase",
                                slot[0], intent, n))
        for kind, a, b in intent["contrasts"]:
            out.append(pair(a, b, "not_paraphrase", kind, intent, n))
    for k, row in enumerate(out):
        row["id"] = k
    return out


def pair(a: str, b: str, label: str, kind: str, intent: dict, n: int) -> dict:
    return {"a": a, "b": b, "label": label, "kind": kind, "domain": intent["domain"],
            "intent": n}


def query_log(rng: random.Random) -> list[dict]:
    meanings: list[tuple[str, list[str]]] = []
    for n, intent in enumerate(INTENTS):
        slot = intent["slot"]
        for value in [None] if slot is None else slot[1]:
            meanings.append((f"{n}:{value}", [fill(f, value) for f in intent["forms"]]))
        for kind, a, b in intent["contrasts"]:
            for text in (a, b):
                meanings.append((f"{n}:{kind}:{text.lower()}", [text]))
    # Several worded forms can be one meaning; a contrast text that is also a form joins it.
    by_text = {t.lower(): m for m, forms in meanings for t in forms if len(forms) > 1}
    rng.shuffle(meanings)
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(meanings))]
    log = []
    for _ in range(LOG_QUERIES):
        meaning, forms = rng.choices(meanings, weights=weights)[0]
        text = rng.choice(forms)
        log.append({"query": text, "meaning": by_text.get(text.lower(), meaning)})
    return log


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = pairs(random.Random(12))
    with (OUT / "paraphrase_pairs.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    log = query_log(random.Random(13))
    with (OUT / "query_log.jsonl").open("w", encoding="utf-8") as f:
        for row in log:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    print(f"{len(rows)} pairs {kinds}; {len(log)} log queries, "
          f"{len({r['meaning'] for r in log})} meanings")


if __name__ == "__main__":
    main()
