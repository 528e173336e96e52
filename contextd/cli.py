"""The `contextd` command: a thin shell over `Engine`.

    $ contextd ingest docs/ --namespace default
    $ contextd search "how are tokens counted?"
    $ contextd assemble "how are tokens counted?" --max-tokens 1500 --json
    $ contextd serve --host 127.0.0.1 --port 8000 --data-dir indexes --sample
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from contextd.auth.cli import add_keys_commands
from contextd.errors import ContextdError, InvalidRequest
from contextd.loaders import read_documents
from contextd.models import MAX_BATCH_DOCUMENTS

INGEST_BATCH = 256


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _engine(args: argparse.Namespace) -> Any:
    from contextd.engine import Engine
    from contextd.settings import Settings

    return Engine(settings=Settings.from_env(data_dir=args.data_dir))


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    docs = list(read_documents(Path(args.path)))
    totals = {"upserted": 0, "unchanged": 0, "chunks": 0, "embedded": 0, "cached": 0}
    with _engine(args) as engine, tqdm(total=len(docs), unit="doc", disable=args.quiet) as bar:
        for batch in _batches(iter(docs), min(INGEST_BATCH, MAX_BATCH_DOCUMENTS)):
            result = engine.upsert_documents(batch, namespace=args.namespace)
            for key in totals:
                totals[key] += getattr(result, key)
            bar.update(len(batch))
    print(json.dumps({"namespace": args.namespace, **totals}))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        response = engine.search(args.query, namespace=args.namespace, top_k=args.top_k,
                                 mode=args.mode)
    if args.json:
        print(response.model_dump_json(indent=2))
        return 0
    for n, hit in enumerate(response.hits, start=1):
        snippet = " ".join(hit.text.split())[:160]
        print(f"{n:>2}. {hit.score:.4f}  {hit.id} (chunk {hit.chunk})  {snippet}")
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {
        "namespace": args.namespace, "query": args.query, "session_id": args.session,
        "system": args.system, "top_k": args.top_k,
    }
    if args.model:
        request["model"] = args.model
    if args.max_tokens or not args.model:
        request["max_tokens"] = args.max_tokens or 4000
    with _engine(args) as engine:
        response = engine.assemble(request)
    if args.json:
        print(response.model_dump_json(indent=2))
        return 0
    for message in response.messages:
        print(f"--- {message.role}")
        print(message.content)
    u = response.usage
    print(f"--- {u.total}/{u.budget} tokens: system {u.system}, summary {u.summary}, "
          f"history {u.history}, recalled {u.recalled}, documents {u.documents}, "
          f"query {u.query}, overhead {u.overhead}; dropped {len(response.dropped)}")
    return 0


def cmd_eval_beir(args: argparse.Namespace) -> int:
    from contextd.eval.beir_runner import run_beir

    with _engine(args) as engine:
        report = run_beir(engine, args.dataset, mode=args.mode, namespace=args.eval_namespace,
                          progress=not args.quiet)
    _write_report(report, args.out)
    m, q, i = report["metrics"], report["query_ms"], report["ingest"]
    print(f"{report['mode']}: nDCG@10 {m['ndcg@10']:.4f}  recall@10 {m['recall@10']:.4f}  "
          f"recall@100 {m['recall@100']:.4f}  MRR@10 {m['mrr@10']:.4f}  "
          f"query p50 {q['p50']} ms p95 {q['p95']} ms  ingest {i['documents_per_s']} docs/s "
          f"({i['embedded']} embedded, {i['cached']} cached)")
    return 0


def cmd_eval_conversations(args: argparse.Namespace) -> int:
    from contextd.eval.conversations import run_conversations

    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    if not budgets or min(budgets) <= 0:
        raise InvalidRequest("--budgets needs positive token counts, e.g. 1000,2000,4000")
    with _engine(args) as engine:
        report = run_conversations(engine, args.file, budgets, progress=not args.quiet)
    _write_report(report, args.out)
    print("| budget | evidence recall | last-turns baseline | answer contained | baseline "
          "contained | tokens | p50 ms | p95 ms | memory p50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in [*report["budgets"].items(), ("overall", report["overall"])]:
        b = r["last_turns_baseline"]
        print(f"| {name} | {r['evidence_recall']:.3f} | {b['evidence_recall']:.3f} | "
              f"{r['answer_contained']:.3f} | {b['answer_contained']:.3f} | "
              f"{r['tokens_mean']} | {r['latency_ms']['p50']} | {r['latency_ms']['p95']} | "
              f"{r['memory_ms']['p50']} |")
    full = report["full_history_tokens"]
    print(f"full history: {full['mean']} tokens on average (max {full['max']}), answer "
          f"contained {report['overall']['full_history']['answer_contained']:.3f}")
    return 0


def _write_report(report: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def cmd_serve(args: argparse.Namespace) -> int:
    from contextd.server.serve import serve

    serve(args.host, args.port, args.data_dir, args.sample, log_level=args.log_level,
          insecure=args.insecure)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contextd", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default="indexes", help="data directory (default: indexes)")
        p.add_argument("--namespace", default="default", help="namespace (default: default)")

    p = sub.add_parser("ingest", help="ingest a JSONL file or a folder of .txt/.md files")
    p.add_argument("path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="retrieve and rank chunks for a query")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    p.add_argument("--json", action="store_true")
    common(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("assemble", help="assemble prompt messages for a query")
    p.add_argument("query")
    p.add_argument("--session", default=None, help="session id")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--max-tokens", type=int, default=None, help="prompt budget (default 4000)")
    p.add_argument("--model", default=None, help="model whose window sets the budget")
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    common(p)
    p.set_defaults(func=cmd_assemble)

    evaluate = sub.add_parser("eval", help="measure retrieval or memory quality")
    kinds = evaluate.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser("beir", help="retrieval quality on a BEIR-layout dataset folder")
    p.add_argument("dataset", help="folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--eval-namespace", default=None,
                   help="namespace to ingest into (default: beir-<folder name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--data-dir", default="indexes", help="data directory (default: indexes)")
    p.set_defaults(func=cmd_eval_beir)
    p = kinds.add_parser("conversations", help="memory quality on LoCoMo-layout conversations")
    p.add_argument("file", help="JSON file in the LoCoMo layout")
    p.add_argument("--budgets", default="1000,2000,4000", help="history budgets, in tokens")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--data-dir", default="indexes", help="data directory (default: indexes)")
    p.set_defaults(func=cmd_eval_conversations)

    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--data-dir", default="indexes", help="data directory (default: indexes)")
    p.add_argument("--sample", action="store_true",
                   help="ingest the sample corpus into an empty 'default' namespace")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--insecure", action="store_true",
                   help="listen on a non-loopback address even though no API key exists")
    p.set_defaults(func=cmd_serve)
    add_keys_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ContextdError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
