"""The `contextd` command: a thin shell over `Engine`.

    $ contextd ingest docs/ --namespace default
    $ contextd search "how are tokens counted?"
    $ contextd assemble "how are tokens counted?" --max-tokens 1500 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from contextd.errors import ContextdError, InvalidRequest
from contextd.models import MAX_BATCH_DOCUMENTS

INGEST_BATCH = 256


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    """Documents from a JSONL file (contextd `{id, text, title?, metadata?}` or BEIR
    `{_id, title, text}`) or from the .txt and .md files under a folder."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md")):
            text = file.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                rel = file.relative_to(path).as_posix()
                yield {"id": _safe_id(rel), "text": text, "title": file.stem,
                       "metadata": {"path": rel}}
        return
    if not path.exists():
        raise InvalidRequest(f"{path} does not exist: give a .jsonl file or a folder")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"{path}, line {number}: not JSON ({exc.msg})") from None
            if "_id" in row:
                doc = {"id": _safe_id(str(row["_id"])), "text": row.get("text", ""),
                       "title": row.get("title") or None,
                       "metadata": row.get("metadata") or {}}
            else:
                doc = row
            if doc.get("text"):
                yield doc


def _safe_id(raw: str) -> str:
    from contextd.eval.beir import document_id

    return document_id(raw)


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
