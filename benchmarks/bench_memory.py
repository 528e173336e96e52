"""Memory latency on long histories: append speed, then the first and later assembles.

    python benchmarks/bench_memory.py \
        --longmemeval ../shared/data/longmemeval-s-dev/longmemeval_s_dev.json --histories 10 \
        --synthetic benchmarks/out/conversations.json --synthetic-turns 2000

For each LongMemEval history (stratified by question type; ~490 turns, ~105k tokens as chat
messages) and for one synthetic session of at least `--synthetic-turns` turns (synthetic
conversations one after the other): append the turns session by session, as a chat client
would (turn embeddings computed here, compaction on append), then at every budget assemble the
question once (the first assemble after the append) and `--repeats` more times (later ones).
The first budget's session embeds every turn; the others find the vectors in the embedding
cache, so two append speeds are reported. Latency is `Engine.assemble` wall time and its
`timings_ms["memory"]`.

Prints a table and writes JSON to benchmarks/out/bench_memory.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contextd import Engine, Settings
from contextd.eval.conversations import load_conversations
from contextd.eval.locomo import replay_turns
from contextd.eval.longmemeval import stratified_sample
from contextd.eval.metrics import percentile
from contextd.tokens import REPLY_PRIMING, get_counter, message_tokens

OUT = Path(__file__).parent / "out"


def sessions_of(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive turns of one chat session (turn ids `<session>:<index>`), for appending."""
    parts: list[list[dict[str, Any]]] = []
    last = None
    for m in messages:
        session = str(m["id"]).rsplit(":", 1)[0]
        if session != last:
            parts.append([])
            last = session
        parts[-1].append(m)
    return parts


def synthetic_session(path: str, turns: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Synthetic conversations one after the other until `turns` turns; their questions."""
    conversations, _ = load_conversations(path)
    messages: list[dict[str, Any]] = []
    questions: list[str] = []
    for conv in conversations:
        for m in replay_turns(conv):
            messages.append({**m, "id": f"{conv.sample_id}-{m['id']}"})
        questions.extend(q.question for q in conv.questions)
        if len(messages) >= turns:
            break
    return messages, questions


def measure(engine: Engine, name: str, messages: list[dict[str, Any]], questions: list[str],
            budgets: list[int], repeats: int, rows: list[dict[str, Any]]) -> None:
    counter = get_counter()
    tokens = sum(message_tokens({k: v for k, v in m.items() if k in ("role", "content", "name")},
                                counter) for m in messages)
    for n, budget in enumerate(budgets):
        session = f"{name}-b{budget}"[:128]
        began = time.perf_counter()
        for part in sessions_of(messages):
            for start in range(0, len(part), 100):
                engine.append_messages(session, part[start:start + 100])
        append_s = time.perf_counter() - began
        for number in range(repeats + 1):
            query = questions[number % len(questions)]
            cost = message_tokens({"role": "user", "content": query}, counter)
            began = time.perf_counter()
            r = engine.assemble(session_id=session, query=query, top_k=0, history_share=1.0,
                                max_tokens=budget + cost + REPLY_PRIMING)
            rows.append({"set": name.split(":")[0], "history": name, "budget": budget,
                         "first": number == 0, "turns": len(messages), "tokens": tokens,
                         "assemble_ms": (time.perf_counter() - began) * 1000,
                         "memory_ms": r.timings_ms.get("memory", 0.0),
                         "append_turns_per_s": len(messages) / append_s,
                         "cold_append": n == 0})
        engine.delete_session(session)


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int, bool], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["set"], r["budget"], r["first"])].append(r)
    out = []
    for (name, budget, first), rs in sorted(groups.items()):
        cold = [r["append_turns_per_s"] for r in rs if r["cold_append"] and r["first"]]
        warm = [r["append_turns_per_s"] for r in rs if not r["cold_append"] and r["first"]]
        out.append({
            "set": name, "budget": budget, "assemble": "first" if first else "later",
            "n": len(rs), "turns": round(sum(r["turns"] for r in rs) / len(rs)),
            "tokens": round(sum(r["tokens"] for r in rs) / len(rs)),
            "assemble_p50": percentile([r["assemble_ms"] for r in rs], 50),
            "assemble_p95": percentile([r["assemble_ms"] for r in rs], 95),
            "memory_p50": percentile([r["memory_ms"] for r in rs], 50),
            "memory_p95": percentile([r["memory_ms"] for r in rs], 95),
            "append_cold": round(sum(cold) / len(cold), 1) if cold else None,
            "append_cached": round(sum(warm) / len(warm), 1) if warm else None,
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--longmemeval", default=None)
    parser.add_argument("--histories", type=int, default=10)
    parser.add_argument("--synthetic", default=None)
    parser.add_argument("--synthetic-turns", type=int, default=2000)
    parser.add_argument("--budgets", default="1000,2000,4000")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--data-dir", default=None, help="default: a fresh temporary folder")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="bench-memory-"))
    rows: list[dict[str, Any]] = []
    with Engine(data_dir, Settings.from_env().model_copy(update={"batch_wait_ms": 0})) as engine:
        engine.warm_up()
        if args.longmemeval:
            conversations, _ = load_conversations(args.longmemeval)
            for conv in stratified_sample(conversations, args.histories):
                questions = [q.question for q in conv.questions] or ["What did I say?"]
                measure(engine, f"longmemeval:{conv.sample_id}", replay_turns(conv),
                        questions, budgets, args.repeats, rows)
                print(f"{conv.sample_id}: done", flush=True)
        if args.synthetic:
            messages, questions = synthetic_session(args.synthetic, args.synthetic_turns)
            measure(engine, "synthetic", messages, questions, budgets, args.repeats, rows)
    if not args.data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)
    summary = table(rows)
    print("| set | budget | assemble | n | turns | tokens | assemble p50 / p95 ms | "
          "memory p50 / p95 ms | append turns/s (cold / cached) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in summary:
        print(f"| {s['set']} | {s['budget']} | {s['assemble']} | {s['n']} | {s['turns']} | "
              f"{s['tokens']} | {s['assemble_p50']:.1f} / {s['assemble_p95']:.1f} | "
              f"{s['memory_p50']:.1f} / {s['memory_p95']:.1f} | "
              f"{s['append_cold'] or '-'} / {s['append_cached'] or '-'} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_memory.json").write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
        "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
