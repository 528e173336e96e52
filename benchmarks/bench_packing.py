"""The packing stage of `Engine.assemble` on an ingested SciFact namespace: ms per request.

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD python benchmarks/bench_packing.py \\
        --data ../shared/data/beir-scifact --data-dir /tmp/bench-batch

Reads a data directory that bench_batch.py (or bench_assemble_cache.py) has indexed, warms
up, then assembles `--queries` SciFact claims one at a time (cache off) and prints the mean
and p50 of the response's `packing` and `total` timings. Run it from two checkouts in turn,
on the same directory, to compare them side by side.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench_assemble_cache import NAMESPACE

from contextd import Engine, Settings
from contextd.eval.beir import load_beir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/beir-scifact")
    parser.add_argument("--data-dir", default="/tmp/bench-batch")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=4000)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    claims = list(load_beir(args.data).queries.values())
    request = {"max_tokens": args.max_tokens, "top_k": args.top_k, "cache": False}
    with Engine(args.data_dir, Settings(data_dir=Path(args.data_dir))) as engine:
        engine.warm_up()
        for query in claims[:10]:
            engine.assemble(namespace=NAMESPACE, query=query, **request)
        packing, total = [], []
        for query in claims[:args.queries]:
            timings = engine.assemble(namespace=NAMESPACE, query=query, **request).timings_ms
            packing.append(timings["packing"])
            total.append(timings["total"])
    print(f"{args.label} {len(packing)} requests: packing mean {statistics.mean(packing):.2f} "
          f"p50 {statistics.median(packing):.2f} ms; total mean {statistics.mean(total):.2f} "
          f"p50 {statistics.median(total):.2f} ms")


if __name__ == "__main__":
    main()
