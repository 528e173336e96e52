"""The `contextd` command: a thin shell over `Engine`.

    $ contextd ingest docs/ --namespace default
    $ contextd search "how are tokens counted?"
    $ contextd assemble "how are tokens counted?" --max-tokens 1500 --json
    $ contextd sessions show chat-1 --namespace default
    $ contextd serve --config contextd.toml --log-format json --sample
    $ contextd report --since 24h --by query_type

Settings come from flags, then CONTEXTD_* variables, then a TOML config file (--config or
CONTEXTD_CONFIG), then the defaults.
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
from contextd.namespaces import DEFAULT_NAMESPACE

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


def settings_from(args: argparse.Namespace) -> Any:
    """Settings for a command: its flags, then CONTEXTD_* variables, then the config file
    (--config, else CONTEXTD_CONFIG), then the defaults; the same for every command."""
    from contextd.settings import Settings

    flags = {name: getattr(args, name) for name in SETTING_FLAGS if hasattr(args, name)}
    return Settings.from_env(config_file=getattr(args, "config", None), **flags)


def _engine(args: argparse.Namespace, *, namespace: str | None = None,
            read_only: bool = False, profile: str | None = None) -> Any:
    """The Engine a command runs on, with `profile`'s settings when given; `read_only`
    commands fail on a missing data directory (or `namespace`) before the Engine, which
    creates folders, is built."""
    from contextd.engine import Engine
    from contextd.namespaces import require_existing

    settings = settings_from(args)
    if profile is not None:
        settings = settings.with_profile(profile)
    if read_only and not settings.store:  # a database is checked when it is opened
        require_existing(Path(settings.data_dir), namespace)
    return Engine(settings=settings)


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
    with _engine(args, namespace=args.namespace, read_only=True) as engine:
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
    with _engine(args, namespace=args.namespace, read_only=True) as engine:
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

    with _engine(args, profile=args.profile) as engine:
        report = run_beir(engine, args.dataset, mode=args.mode, namespace=args.eval_namespace,
                          progress=not args.quiet, top_k=args.top_k)
    report["profile"] = args.profile or "default"
    _write_report(report, args.out)
    m, q, i = report["metrics"], report["query_ms"], report["ingest"]
    print(f"{report['profile']} {report['mode']}, top {report['top_k']}: "
          f"nDCG@10 {m['ndcg@10']:.4f}  recall@10 {m['recall@10']:.4f}  MRR@10 {m['mrr@10']:.4f}  "
          f"recall@100 {m['recall@100']:.4f} (top 100)  "
          f"query p50 {q['p50']} ms p95 {q['p95']} ms  ingest {i['documents_per_s']} docs/s "
          f"({i['embedded']} embedded, {i['cached']} cached)")
    return 0


def cmd_eval_conversations(args: argparse.Namespace) -> int:
    from contextd.eval.conversations import run_conversations

    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    if not budgets or min(budgets) <= 0:
        raise InvalidRequest("--budgets needs positive token counts, e.g. 1000,2000,4000")
    if args.limit is not None and args.limit <= 0:
        raise InvalidRequest("--limit needs a positive number of conversations, e.g. 20")
    with _engine(args, profile=args.profile) as engine:
        report = run_conversations(engine, args.file, budgets, progress=not args.quiet,
                                   layout=args.format, limit=args.limit)
    report["profile"] = args.profile or "default"
    _write_report(report, args.out)
    print(f"{report['profile']} {report['layout']}: {report['conversations']} of "
          f"{report['conversations_available']} conversations, {report['questions']} "
          f"questions ({report['skipped_questions']} skipped)")
    losses = report["monotonicity_losses"]
    print("| budget | evidence recall | plain turn baseline | last turns | answer contained | "
          "baseline contained | last turns contained | tokens | baseline tokens | "
          "assemble p50 / p95 ms | memory p50 / p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in [*report["budgets"].items(), ("overall", report["overall"])]:
        t, b = r["turn_baseline"], r["last_turns_baseline"]
        print(f"| {name} | {r['evidence_recall']:.3f} | {t['evidence_recall']:.3f} | "
              f"{b['evidence_recall']:.3f} | {r['answer_contained']:.3f} | "
              f"{t['answer_contained']:.3f} | {b['answer_contained']:.3f} | "
              f"{r['tokens_mean']} | {t['tokens_mean']} | "
              f"{r['latency_ms']['p50']} / {r['latency_ms']['p95']} | "
              f"{r['memory_ms']['p50']} / {r['memory_ms']['p95']} |")
    print("\n| kind | budget | questions | evidence recall | plain turn baseline | last turns |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in report["budgets"].items():
        for kind, k in r["by_category"].items():
            print(f"| {kind} | {name} | {k['questions']} | {k['evidence_recall']:.3f} | "
                  f"{k['turn_baseline_evidence_recall']:.3f} | "
                  f"{k['last_turns_evidence_recall']:.3f} |")
    full = report["full_history_tokens"]
    print(f"\nfull history: {full['mean']} tokens on average (max {full['max']}), answer "
          f"contained {report['overall']['full_history']['answer_contained']:.3f}")
    pairs = ", ".join(f"{pair}: {n}" for pair, n in losses.items() if pair != "overall")
    print(f"questions where a larger budget lost an evidence turn a smaller one had: "
          f"{losses['overall']} ({pairs}); plain turn baseline: "
          f"{report['turn_baseline_monotonicity_losses']['overall']}")
    return 0


def _budgets(text: str) -> list[int]:
    try:
        budgets = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) <= 0:
        raise InvalidRequest("--budgets needs positive token counts, e.g. 1000,2000,4000")
    return budgets


def cmd_eval_compare(args: argparse.Namespace) -> int:
    """Each profile of --profiles on the same data, one column each."""
    from contextd.eval.beir_runner import run_beir
    from contextd.eval.conversations import run_conversations

    names = [n.strip() for n in args.profiles.split(",") if n.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise InvalidRequest("--profiles needs two or more different profile names, e.g. "
                             "default,canary")
    base = settings_from(args)
    for name in names:
        base.with_profile(name)  # an unknown name fails before any run
    budgets = _budgets(args.budgets) if args.kind == "conversations" else []
    rows: dict[str, dict[str, str]] = {}
    reports = {}
    for name in names:
        with _engine(args, profile=name) as engine:
            if args.kind == "beir":
                report = run_beir(engine, args.path, mode=args.mode, progress=not args.quiet)
                m, q = report["metrics"], report["query_ms"]
                values = {"nDCG@10": f"{m['ndcg@10']:.4f}", "recall@10": f"{m['recall@10']:.4f}",
                          "recall@100": f"{m['recall@100']:.4f}",
                          "MRR@10": f"{m['mrr@10']:.4f}",
                          "query p50 / p95 ms": f"{q['p50']} / {q['p95']}"}
            else:
                report = run_conversations(engine, args.path, budgets,
                                           progress=not args.quiet, limit=args.limit)
                values = {}
                for budget, r in [*report["budgets"].items(), ("overall", report["overall"])]:
                    values[f"{budget} evidence recall"] = f"{r['evidence_recall']:.3f}"
                    values[f"{budget} answer contained"] = f"{r['answer_contained']:.3f}"
                    values[f"{budget} tokens"] = str(r["tokens_mean"])
                o = report["overall"]["latency_ms"]
                values["assemble p50 / p95 ms"] = f"{o['p50']} / {o['p95']}"
        reports[name] = report
        for metric, value in values.items():
            rows.setdefault(metric, {})[name] = value
    _write_report({"kind": args.kind, "profiles": reports}, args.out)
    print("| metric | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for metric, by_profile in rows.items():
        print(f"| {metric} | " + " | ".join(by_profile.get(n, "-") for n in names) + " |")
    return 0


def _write_report(report: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _namespace(args: argparse.Namespace) -> str:
    # Group commands (`sessions`, `sessions list`) take --namespace at either level, so the
    # flag has no argparse default that one level would overwrite the other's value with.
    return str(getattr(args, "namespace", DEFAULT_NAMESPACE))


def cmd_namespaces_list(args: argparse.Namespace) -> int:
    with _engine(args, read_only=True) as engine:
        infos = engine.namespaces()
    if getattr(args, "json", False):
        print(json.dumps([info.model_dump(mode="json") for info in infos], indent=2))
        return 0
    for info in infos:
        print(f"{info.name}  {info.documents} documents, {info.chunks} chunks, "
              f"{info.sessions} sessions")
    return 0


def cmd_namespaces_delete(args: argparse.Namespace) -> int:
    with _engine(args, namespace=args.name, read_only=True) as engine:
        engine.delete_namespace(args.name)
    print(json.dumps({"deleted": args.name}))
    return 0


def cmd_namespaces_reindex(args: argparse.Namespace) -> int:
    """Rebuild a PostgreSQL namespace's HNSW index with the given (or configured)
    parameters, without stopping searches or writes."""
    from contextd.store.postgres.hnsw import HnswParams, rebuild

    settings = settings_from(args)
    if not settings.store:
        raise InvalidRequest("namespaces reindex rebuilds a PostgreSQL store's HNSW index: "
                             "give --store postgresql://... (or CONTEXTD_STORE)")
    m = settings.hnsw_m if args.m is None else args.m
    ef_construction = (settings.hnsw_ef_construction if args.ef_construction is None
                       else args.ef_construction)
    try:
        params = HnswParams(m, ef_construction, settings.hnsw_ef_search)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    report = rebuild(settings.store, args.name, params, force=args.force,
                     maintenance_work_mem=args.maintenance_work_mem)
    print(json.dumps(report, indent=2))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy a data directory's namespaces into PostgreSQL, then check every count."""
    from contextd.settings import Settings
    from contextd.store.postgres.copy import copy_data_directory
    from contextd.store.postgres.hnsw import HnswParams

    # The HNSW parameters of the namespaces it creates: CONTEXTD_HNSW_* or the config file.
    hnsw = HnswParams.from_settings(Settings.from_env())
    report = copy_data_directory(Path(args.source), args.target, args.namespaces or None,
                                 hnsw)
    print(json.dumps(report, indent=2))
    return 0


def cmd_sessions_list(args: argparse.Namespace) -> int:
    with _engine(args, namespace=_namespace(args), read_only=True) as engine:
        sessions = engine.list_sessions(namespace=_namespace(args))
    if getattr(args, "json", False):
        print(json.dumps([s.model_dump(mode="json") for s in sessions], indent=2))
        return 0
    for row in sessions:
        updated = row.updated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        user = f", user {row.user_id}" if row.user_id else ""
        print(f"{row.session_id}  {row.turns} turns, updated {updated}{user}")
    return 0


def cmd_sessions_show(args: argparse.Namespace) -> int:
    with _engine(args, namespace=_namespace(args), read_only=True) as engine:
        info = engine.get_session(args.session_id, namespace=_namespace(args))
    if getattr(args, "json", False):
        print(info.model_dump_json(indent=2))
        return 0
    if info.user_id:
        print(f"--- user {info.user_id}")
    if info.summary:
        print(f"--- summary (through turn {info.summary_through}, {info.summary_tokens} tokens)")
        print(info.summary)
    for turn in info.turns:
        print(f"--- {turn.seq} {turn.role} ({turn.tokens} tokens)")
        print(turn.content)
    return 0


def cmd_sessions_delete(args: argparse.Namespace) -> int:
    with _engine(args, namespace=_namespace(args), read_only=True) as engine:
        engine.delete_session(args.session_id, namespace=_namespace(args))
    print(json.dumps({"namespace": _namespace(args), "deleted": args.session_id}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from contextd.jsonl_log import read_records
    from contextd.report import (
        failure_rows,
        format_failures,
        format_usage,
        parse_since,
        usage_report,
    )
    from contextd.telemetry import log_path

    settings = settings_from(args)
    name = "failure_log" if args.failures else "usage_log"
    path = log_path(settings, getattr(settings, name))
    if path is None:
        raise InvalidRequest(f"the {name.replace('_', ' ')} is off ({name} is empty): set "
                             f"{name} (CONTEXTD_{name.upper()}) to a file to record it")
    since = parse_since(args.since) if args.since else None
    if args.failures:
        rows = failure_rows(read_records(path), since)
        print(json.dumps(rows, indent=2) if args.json else format_failures(rows))
        if not rows and not args.json:
            print(f"no failures in {path}" + (f" since {args.since}" if args.since else ""),
                  file=sys.stderr)
        return 0
    report = usage_report(read_records(path), since, args.by)
    report["log"] = str(path)
    print(json.dumps(report, indent=2) if args.json else format_usage(report))
    if not report["requests"] and not args.json:
        print(f"no requests in {path}" + (f" since {args.since}" if args.since else ""),
              file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from contextd.server.serve import serve

    serve(settings_from(args), sample=args.sample, insecure=args.insecure,
          config_file=getattr(args, "config", None))
    return 0


# --------------------------------------------------------------------------- the parser

# Flags that set a Settings field of the same name. Their argparse default is SUPPRESS, so
# an absent flag leaves the field to the environment, the config file, then the default.
SETTING_FLAGS = ("data_dir", "store", "host", "port", "http_workers", "log_level", "log_format")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, and keeps the examples of descriptions as written."""


def setting_option(parser: argparse.ArgumentParser, name: str) -> None:
    """Add `--<name>` for the Settings field `name`, its help and default taken from there.

        >>> setting_option(parser, "data_dir")  # doctest: +SKIP
    """
    from typing import get_args

    from contextd.settings import Settings

    field = Settings.model_fields[name]
    kwargs: dict[str, Any] = {}
    if field.annotation is int:
        kwargs["type"] = int
    choices = get_args(field.annotation)
    if choices and all(isinstance(c, str) for c in choices):
        kwargs["choices"] = choices
    parser.add_argument(
        f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
        help=f"{field.description} (default: {field.default}; or CONTEXTD_{name.upper()}, "
        f"or {name} in the config file)", **kwargs)


def config_options() -> argparse.ArgumentParser:
    """The options every command takes: the config file and the data directory."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="TOML file of settings, below flags and CONTEXTD_* variables "
                        "(default: $CONTEXTD_CONFIG, else none)")
    setting_option(parent, "data_dir")
    setting_option(parent, "store")
    return parent


def add_command(sub: Any, name: str, func: Any, help: str,
                *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A subcommand `name` running `func(args)`, with the config options and `parents`.

        >>> p = add_command(sub, "keys", cmd_keys, "manage API keys")  # doctest: +SKIP
    """
    p = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter,
                       parents=[config_options(), *parents])
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The `contextd` argument parser; a new command is one `add_command` call here."""
    from contextd.version import __version__

    parser = argparse.ArgumentParser(prog="contextd", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"contextd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    namespace = argparse.ArgumentParser(add_help=False)
    namespace.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print the response as JSON")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bars")
    modes = ["hybrid", "dense", "lexical"]
    mode_help = ("retrieval: dense and lexical fused, embeddings only, or bm25 only "
                 "(lexical needs no embedding model)")

    p = add_command(sub, "ingest", cmd_ingest, "ingest a JSONL file, one .md/.txt file, or a "
                    "folder of .md/.txt files", namespace, quiet)
    p.add_argument("path", help="a .jsonl file ({id, text, title?, metadata?} or BEIR rows), "
                   "a .md/.txt file, or a folder")

    p = add_command(sub, "search", cmd_search, "retrieve and rank chunks for a query",
                    namespace, as_json)
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=10,
                   help="documents to return (a document's chunks count once)")
    p.add_argument("--mode", choices=modes, default="hybrid", help=mode_help)

    p = add_command(sub, "assemble", cmd_assemble, "assemble prompt messages for a query",
                    namespace, as_json)
    p.add_argument("query")
    p.add_argument("--session", default=None, help="session id whose history to use")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="prompt budget (4000 when no --model is given)")
    p.add_argument("--model", default=None, help="model whose window sets the budget")
    p.add_argument("--top-k", type=int, default=8, help="most documents to include")

    # `namespaces` and `sessions` take their options before or after the action; those have
    # no argparse default, which the action's parser would apply over the group's value.
    group_namespace = argparse.ArgumentParser(add_help=False)
    group_namespace.add_argument("--namespace", default=argparse.SUPPRESS,
                                 help=f"namespace (default: {DEFAULT_NAMESPACE})")
    group_json = argparse.ArgumentParser(add_help=False)
    group_json.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print the response as JSON (default: False)")

    p = add_command(sub, "namespaces", cmd_namespaces_list, "list or delete namespaces "
                    "(default: list)", group_json)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    add_command(actions, "list", cmd_namespaces_list, "list namespaces with their counts",
                group_json)
    add_command(actions, "delete", cmd_namespaces_delete, "delete a namespace and all it "
                "holds").add_argument("name", help="the namespace to delete")
    p = add_command(actions, "reindex", cmd_namespaces_reindex, "rebuild a PostgreSQL "
                    "namespace's HNSW vector index with other parameters, while it serves "
                    "(CREATE INDEX CONCURRENTLY beside the old one, then DROP INDEX "
                    "CONCURRENTLY; nothing to do when it already has them)")
    p.add_argument("name", help="the namespace whose index to rebuild")
    p.add_argument("--m", type=int, default=None,
                   help="HNSW m (default: the hnsw_m setting)")
    p.add_argument("--ef-construction", type=int, default=None,
                   help="HNSW ef_construction (default: the hnsw_ef_construction setting)")
    p.add_argument("--force", action="store_true", help="rebuild even when the index "
                   "already has these parameters (REINDEX INDEX CONCURRENTLY)")
    p.add_argument("--maintenance-work-mem", default=None, metavar="SIZE",
                   help="maintenance_work_mem of the build, e.g. 6GB (default: the "
                   "server's); a graph that fits builds much faster")

    p = add_command(sub, "sessions", cmd_sessions_list, "list, show or delete the sessions of "
                    "a namespace (default: list)", group_namespace, group_json)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    add_command(actions, "list", cmd_sessions_list, "list sessions, newest first",
                group_namespace, group_json)
    add_command(actions, "show", cmd_sessions_show, "show a session's summary and turns",
                group_namespace, group_json).add_argument("session_id")
    add_command(actions, "delete", cmd_sessions_delete, "delete a session and its turns",
                group_namespace).add_argument("session_id")

    evaluate = sub.add_parser("eval", help="measure retrieval or memory quality",
                              formatter_class=HelpFormatter)
    kinds = evaluate.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = add_command(kinds, "beir", cmd_eval_beir, "retrieval quality on a BEIR-layout "
                    "dataset folder", quiet)
    p.add_argument("dataset", help="folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    p.add_argument("--mode", choices=modes, default="hybrid", help=mode_help)
    p.add_argument("--top-k", type=int, default=10, help="documents asked for per query, the "
                   "operating point of the headline metrics (recall@100 always asks for 100)")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--eval-namespace", default=None,
                   help="namespace to ingest into (default: beir-<folder name>)")
    p = add_command(kinds, "conversations", cmd_eval_conversations, "memory quality on "
                    "LoCoMo- or LongMemEval-layout conversations", quiet)
    p.add_argument("file", help="JSON file in the LoCoMo or the LongMemEval layout")
    p.add_argument("--budgets", default="1000,2000,4000", help="history budgets, in tokens")
    p.add_argument("--format", choices=["locomo", "longmemeval"], default=None,
                   help="layout of the file (default: detected from its fields)")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate this many conversations, spread over the kinds of question "
                   "(a LongMemEval history is one conversation)")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p = add_command(kinds, "compare", cmd_eval_compare, "two or more profiles side by side "
                    "on the same BEIR dataset or conversations file", quiet)
    p.add_argument("kind", choices=["beir", "conversations"], help="what to evaluate")
    p.add_argument("path", help="the BEIR dataset folder, or the conversations file")
    p.add_argument("--profiles", required=True, help="profiles to compare, e.g. default,canary")
    p.add_argument("--mode", choices=modes, default="hybrid", help=mode_help + " (beir)")
    p.add_argument("--budgets", default="1000,2000,4000",
                   help="history budgets, in tokens (conversations)")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate this many conversations (conversations)")
    p.add_argument("--out", default=None, help="write both reports as JSON here")
    for name in ("beir", "conversations"):
        kinds.choices[name].add_argument(
            "--profile", default=None, help="evaluate this profile of the config file "
            "(default: the base settings)")

    p = add_command(sub, "report", cmd_report, "tokens by section, budget use and tokens "
                    "saved, from the usage log (rotated files included); or the failure log",
                    as_json)
    p.add_argument("--since", default=None, help="only requests since this span back from "
                   "now (30m, 24h, 7d) or ISO date/time (default: the whole log)")
    p.add_argument("--by", choices=["query_type", "profile", "namespace"], default=None,
                   help="one row per value of this field (default: one row for all)")
    p.add_argument("--failures", action="store_true",
                   help="list failed requests from the failure log instead, newest first")

    p = sub.add_parser("migrate", help="copy a data directory into PostgreSQL (no "
                       "re-embedding) and verify the counts", formatter_class=HelpFormatter,
                       description="copy a data directory's namespaces (documents with their "
                       "vectors, sessions with their summaries) into PostgreSQL and verify "
                       "the counts")
    p.set_defaults(func=cmd_migrate)
    p.add_argument("--from", dest="source", required=True, metavar="DATA_DIR",
                   help="the data directory to copy (SQLite + FAISS)")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="postgresql:// URL of the target database")
    p.add_argument("--namespace", dest="namespaces", action="append", default=[],
                   help="copy only this namespace (repeatable; default: all)")

    p = add_command(sub, "serve", cmd_serve, "run the HTTP service")
    for name in ("host", "port", "http_workers", "log_level", "log_format"):
        setting_option(p, name)
    p.add_argument("--sample", action="store_true",
                   help="ingest the sample corpus into an empty 'default' namespace")
    p.add_argument("--insecure", action="store_true",
                   help="listen on a non-loopback address even though no API key exists")
    add_keys_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `contextd` command line; returns the exit status (2 on a request error).

        >>> main(["search", "how are tokens counted?", "--data-dir", "indexes"])  # doctest: +SKIP
        0
    """
    from pydantic import ValidationError

    from contextd.logs import configure_status_lines

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":  # serve sets up its own logging
        configure_status_lines()
    try:
        return int(args.func(args))
    except ContextdError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a bad value from a flag, CONTEXTD_* or the config file
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        print(f"error: invalid setting: {problems}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
