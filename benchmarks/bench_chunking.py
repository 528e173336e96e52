"""Text processing that must stay linear in its input: chunking and the extractive summary.

    python benchmarks/bench_chunking.py
    python benchmarks/bench_chunking.py --sizes 100000,300000,1000000 --repeat 3

Phases:
1. Chunking (256 tokens, overlap 32) of documents with no sentence boundary to cut at:
   lower-case prose, log lines, CJK text, minified JSON, and ordinary prose for reference, at
   each size (characters). Linear cost shows as a flat ms-per-100k-characters column.
2. The extractive summariser over 5 MB of conversation turns (all of it evicted at once).
3. `Engine.assemble` with 5 MB of ephemeral `messages` (1,000 turns of 5,000 characters, the
   request limit) on a hash-embedder engine, budget 4,000 tokens.

Prints a table and writes JSON to benchmarks/out/bench_chunking.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from contextd import Engine, Settings
from contextd.chunking import SentenceChunker
from contextd.embedding import HashEmbedder
from contextd.memory.summariser import ExtractiveSummariser
from contextd.tokens import get_counter

OUT = Path(__file__).parent / "out"

PROSE = ("On 3 May we decided to move the launch to Lisbon. Maria will book the venue. "
         "Costs came to 4,200 euros, which is over the plan! Should we switch to June? ")
TURN = ("Maria said on Monday that the Lisbon office would open in June, and we agreed to "
        "move the launch there. The budget is 12,500 euros; actually it may need to grow. "
        "ok. I prefer the smaller venue near the river, it costs less and fits 80 people. ")


def document(kind: str, size: int) -> str:
    """`size` characters of one kind of text."""
    if kind == "lower-case prose":
        unit = "the quick brown fox jumps over the lazy dog and then keeps on running "
    elif kind == "log lines":
        unit = ("2026-11-30 12:00:01 INFO worker-3 handled GET /v1/items/4711 status=200 "
                "in 12 ms user=alice\n")
    elif kind == "CJK":
        unit = "数据库在没有句号的情况下也必须被正确地切分成块并且保持线性时间"
    elif kind == "minified JSON":
        unit = '{"id":4711,"name":"item","tags":["a","b","c"],"price":12.5,"ok":true},'
    else:
        unit = PROSE
    return (unit * (size // len(unit) + 1))[:size]


def best_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def bench_chunking(sizes: list[int], repeat: int) -> list[dict]:
    chunker = SentenceChunker(get_counter(), chunk_tokens=256, overlap_tokens=32)
    rows = []
    for kind in ("lower-case prose", "log lines", "CJK", "minified JSON", "prose"):
        for size in sizes:
            text = document(kind, size)
            chunks = chunker.split(text)
            ms = best_ms(lambda text=text: chunker.split(text), repeat)
            rows.append({"kind": kind, "chars": size, "chunks": len(chunks), "ms": round(ms, 1),
                         "ms_per_100k_chars": round(ms * 100_000 / size, 1)})
    return rows


def bench_summariser(megabytes: float, repeat: int) -> dict:
    turns = []
    total = 0
    while total < megabytes * 1_000_000:
        turn = f"Speaker {len(turns) % 2}: " + TURN * 20
        turns.append(turn)
        total += len(turn.encode())
    summariser, counter = ExtractiveSummariser(), get_counter()
    ms = best_ms(lambda: summariser.summarise(None, turns, 300, counter), repeat)
    return {"turns": len(turns), "bytes": total, "ms": round(ms, 1)}


def bench_assemble(repeat: int) -> dict:
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": (TURN * 30)[:5_000]} for i in range(1_000)]
    messages[-1] = {"role": "user", "content": "Where will the launch be, and for how much?"}
    size = sum(len(m["content"].encode()) for m in messages)
    with tempfile.TemporaryDirectory() as data_dir:
        engine = Engine(data_dir, Settings(embedder="hash", batch_wait_ms=0),
                        embedder=HashEmbedder())
        try:
            engine.upsert_documents([{"id": "d1", "text": PROSE * 3}])
            request = {"messages": messages, "max_tokens": 4_000}
            response = engine.assemble(request)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                engine.assemble(request)
                times.append((time.perf_counter() - started) * 1000)
        finally:
            engine.close()
    return {"messages": len(messages), "bytes": size, "ms": round(min(times), 1),
            "median_ms": round(statistics.median(times), 1),
            "prompt_tokens": response.usage.total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000",
                        help="document sizes in characters, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--history-mb", type=float, default=5.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    chunking = bench_chunking(sizes, args.repeat)
    print(f"{'chunking':<18} {'chars':>9} {'chunks':>7} {'ms':>9} {'ms/100k chars':>14}")
    for row in chunking:
        print(f"{row['kind']:<18} {row['chars']:>9,} {row['chunks']:>7,} {row['ms']:>9,.1f} "
              f"{row['ms_per_100k_chars']:>14,.1f}")
    summary = bench_summariser(args.history_mb, args.repeat)
    print(f"\nextractive summary of {summary['bytes'] / 1e6:.1f} MB ({summary['turns']:,} turns):"
          f" {summary['ms']:,.1f} ms")
    assemble = bench_assemble(args.repeat)
    print(f"assemble with {assemble['bytes'] / 1e6:.1f} MB of ephemeral messages "
          f"({assemble['messages']:,}): {assemble['ms']:,.1f} ms best, "
          f"{assemble['median_ms']:,.1f} ms median")

    OUT.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": platform.processor() or platform.machine(),
              "chunking": chunking, "summariser": summary, "assemble": assemble}
    (OUT / "bench_chunking.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
