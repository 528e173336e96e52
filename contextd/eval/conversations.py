"""`contextd eval conversations`: how well memory keeps what later questions need.

Reads the LoCoMo layout (conversations with many questions) or the LongMemEval layout (one
question per chat history), detected from the fields. Each conversation is replayed into a
session, one session per budget; then every question is assembled as the query with only
history in the budget (no documents). The report gives, per budget, overall and by kind of
question: evidence recall (share of evidence turns included verbatim, in the recent window or
recalled), answer containment (the normalised gold answer appears in the assembled history),
tokens used, assemble and memory latency; the same for three baselines computed here: plain
hybrid turn retrieval (`TurnIndex`, same embedder and budget accounting), the last turns that
fit the budget, and the full history; and, per question, whether a larger budget lost an
evidence turn that a smaller one had (`monotonicity_losses`).

    >>> report = run_conversations(engine, "tests/data/conversation_small.json", [500])
    ... # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from statistics import fmean
from typing import Any, Literal

from contextd.engine import Engine
from contextd.errors import InvalidRequest
from contextd.eval.locomo import (
    Conversation,
    answer_contained,
    evidence_recall,
    locomo_conversations,
    read_json_list,
    replay_turns,
    turn_id,
)
from contextd.eval.longmemeval import (
    is_longmemeval,
    longmemeval_conversations,
    stratified_sample,
)
from contextd.eval.metrics import percentile
from contextd.eval.turn_baseline import TurnIndex
from contextd.memory.window import tool_groups
from contextd.models import ChatMessage
from contextd.tokens import REPLY_PRIMING, get_counter, message_tokens

NAMESPACE = "eval-conversations"
APPEND_BATCH = 500
Layout = Literal["locomo", "longmemeval"]


def last_turns_baseline(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The newest turns whose chat messages fit `budget` tokens: a plain sliding window."""
    counter = get_counter()
    kept: list[dict[str, Any]] = []
    used = 0
    for message in reversed(messages):
        cost = message_tokens(_plain(message), counter)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    return kept[::-1]


def load_conversations(path: str | Path, layout: Layout | None = None
                       ) -> tuple[list[Conversation], Layout]:
    """The conversations in `path` and their layout (`layout`, or detected from the fields).

        >>> convs, layout = load_conversations("tests/data/longmemeval_small.json")
        >>> layout
        'longmemeval'
    """
    raw = read_json_list(path)
    found: Layout = "longmemeval" if is_longmemeval(raw) else "locomo"
    layout = layout or found
    if layout == "longmemeval":
        return longmemeval_conversations(raw, path), layout
    if layout == "locomo":
        return locomo_conversations(raw, path), layout
    raise InvalidRequest(f"unknown layout {layout!r}: use 'locomo' or 'longmemeval'")


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    return ChatMessage.model_validate(message).openai()


def _history_text(messages: Sequence[Any]) -> str:
    return "\n".join((m.content or "") for m in messages)


def _session(conv: Conversation, budget: int) -> str:
    return f"{conv.sample_id}-b{budget}"[:128]


def run_conversations(
    engine: Engine, path: str | Path, budgets: Sequence[int], progress: bool = False,
    layout: Layout | None = None, limit: int | None = None,
) -> dict[str, Any]:
    """Replay, assemble and score every conversation of `path` at every budget (see above).

    `limit` keeps that many conversations, spread over the kinds of question
    (`stratified_sample`); a LongMemEval history is one conversation.
    """
    conversations, layout = load_conversations(path, layout)
    available = len(conversations)
    if limit is not None:
        conversations = stratified_sample(conversations, limit)
    budgets = sorted(set(budgets))
    if engine.registry.exists(NAMESPACE):
        engine.delete_namespace(NAMESPACE)
    counter = get_counter()
    rows: list[dict[str, Any]] = []
    full_tokens: list[int] = []
    for conv in conversations:
        began = time.perf_counter()
        messages = replay_turns(conv)
        plain = [_plain(m) for m in messages]
        assert len(tool_groups(plain)) == len(plain)  # plain chat: no tool groups
        full_tokens.append(REPLY_PRIMING + sum(message_tokens(m, counter) for m in plain))
        # Built first: it embeds every turn into the engine's cache, where the sessions'
        # appends then find them.
        index = TurnIndex.build(engine, messages, NAMESPACE)
        try:
            rankings = [index.rank(q.question) for q in conv.questions]
            for budget in budgets:
                rows.extend(_evaluate(engine, conv, messages, budget, index, rankings))
                engine.delete_session(_session(conv, budget), namespace=NAMESPACE)
        finally:
            index.close()
        if progress:
            print(f"{conv.sample_id}: {len(messages)} turns, {len(conv.questions)} questions, "
                  f"{time.perf_counter() - began:.1f} s", flush=True)
    losses = monotonicity_losses(rows, budgets, "evidence_included")
    report: dict[str, Any] = {
        "file": str(path),
        "layout": layout,
        "conversations": len(conversations),
        "conversations_available": available,
        "questions": len(rows) // max(len(budgets), 1),
        "skipped_questions": sum(c.skipped_questions for c in conversations),
        "full_history_tokens": {"mean": round(fmean(full_tokens), 1) if full_tokens else 0,
                                "max": max(full_tokens, default=0)},
        "budgets": {},
    }
    for budget in budgets:
        report["budgets"][str(budget)] = _summarise([r for r in rows if r["budget"] == budget])
    report["overall"] = _summarise(rows)
    report["monotonicity_losses"] = _loss_counts(losses, budgets)
    report["turn_baseline_monotonicity_losses"] = _loss_counts(
        monotonicity_losses(rows, budgets, "turn_baseline_evidence_included"), budgets)
    report["monotonicity_lost_turns"] = losses
    return report


def _evaluate(engine: Engine, conv: Conversation, messages: list[dict[str, Any]],
              budget: int, index: TurnIndex, rankings: list[list[int]]) -> list[dict[str, Any]]:
    session = _session(conv, budget)
    for start in range(0, len(messages), APPEND_BATCH):
        engine.append_messages(session, messages[start:start + APPEND_BATCH],
                               namespace=NAMESPACE)
    counter = get_counter()
    last_turns = last_turns_baseline(messages, budget)
    last_text = "\n".join(m["content"] for m in last_turns)
    full_text = "\n".join(m["content"] for m in messages)
    rows = []
    for number, (q, ranking) in enumerate(zip(conv.questions, rankings, strict=True)):
        # q.now (LongMemEval's question date) has no request field to go to yet; relative
        # dates in the question are resolved by whatever the assembled turns carry.
        query_cost = message_tokens({"role": "user", "content": q.question}, counter)
        began = time.perf_counter()
        response = engine.assemble(namespace=NAMESPACE, session_id=session, query=q.question,
                                   max_tokens=budget + query_cost + REPLY_PRIMING,
                                   history_share=1.0, top_k=0)
        elapsed = (time.perf_counter() - began) * 1000
        included = response.history_turn_ids + response.recalled_turn_ids
        baseline = index.fill(ranking, budget)
        u = response.usage
        rows.append({
            "conversation": conv.sample_id,
            "question": number,
            "budget": budget,
            "category": str(q.category),
            "evidence_recall": evidence_recall(q.evidence, included),
            "evidence_included": _evidence_in(q.evidence, included),
            "answer_contained": answer_contained(q.answer, _history_text(response.messages[:-1])),
            # Chat-message tokens of the history, framing included: what the baselines count.
            "tokens": u.total - query_cost - REPLY_PRIMING,
            "latency_ms": elapsed,
            "memory_ms": response.timings_ms.get("memory", 0.0),
            "turn_baseline_evidence_recall": evidence_recall(
                q.evidence, [m["id"] for m in baseline]),
            "turn_baseline_evidence_included": _evidence_in(
                q.evidence, [m["id"] for m in baseline]),
            "turn_baseline_answer_contained": answer_contained(
                q.answer, "\n".join(m["content"] for m in baseline)),
            "turn_baseline_tokens": index.tokens(baseline),
            "last_turns_evidence_recall": evidence_recall(
                q.evidence, [m["id"] for m in last_turns]),
            "last_turns_answer_contained": answer_contained(q.answer, last_text),
            "full_answer_contained": answer_contained(q.answer, full_text),
        })
    return rows


def _evidence_in(evidence: list[str], included: list[str]) -> list[str]:
    have = {turn_id(i) for i in included}
    return sorted({turn_id(e) for e in evidence} & have)


def monotonicity_losses(rows: Sequence[dict[str, Any]], budgets: Sequence[int],
                        key: str = "evidence_included") -> list[dict[str, Any]]:
    """Per question and budget pair, the evidence turns a smaller budget included and a larger
    one did not (only pairs that lost some). `rows` carry conversation, question, budget and
    `key` (the evidence ids included at that budget).

        >>> rows = [{"conversation": "c", "question": 0, "budget": 1, "evidence_included": ["a"]},
        ...         {"conversation": "c", "question": 0, "budget": 2, "evidence_included": []}]
        >>> monotonicity_losses(rows, [1, 2])
        [{'conversation': 'c', 'question': 0, 'smaller': 1, 'larger': 2, 'lost': ['a']}]
    """
    by_question: dict[tuple[str, int], dict[int, set[str]]] = defaultdict(dict)
    for r in rows:
        by_question[(r["conversation"], r["question"])][r["budget"]] = set(r[key])
    losses = []
    for (conversation, question), kept in by_question.items():
        for smaller, larger in combinations(sorted(budgets), 2):
            if smaller in kept and larger in kept and (lost := kept[smaller] - kept[larger]):
                losses.append({"conversation": conversation, "question": question,
                               "smaller": smaller, "larger": larger, "lost": sorted(lost)})
    return losses


def _loss_counts(losses: list[dict[str, Any]], budgets: Sequence[int]) -> dict[str, int]:
    """Questions that lost evidence, per budget pair ("1000<2000") and overall (any pair)."""
    counts = {f"{a}<{b}": 0 for a, b in combinations(sorted(budgets), 2)}
    for loss in losses:
        counts[f"{loss['smaller']}<{loss['larger']}"] += 1
    counts["overall"] = len({(loss["conversation"], loss["question"]) for loss in losses})
    return counts


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}

    def mean(key: str, subset: list[dict[str, Any]] = rows) -> float:
        return round(fmean(float(r[key]) for r in subset), 4)

    def p(key: str, q: float, subset: list[dict[str, Any]] = rows) -> float:
        return round(percentile([r[key] for r in subset], q), 2)

    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_category[r["category"]].append(r)
    return {
        "questions": len(rows),
        "evidence_recall": mean("evidence_recall"),
        "answer_contained": mean("answer_contained"),
        "tokens_mean": round(fmean(r["tokens"] for r in rows), 1),
        "latency_ms": {"p50": p("latency_ms", 50), "p95": p("latency_ms", 95)},
        "memory_ms": {"p50": p("memory_ms", 50), "p95": p("memory_ms", 95)},
        "turn_baseline": {"evidence_recall": mean("turn_baseline_evidence_recall"),
                          "answer_contained": mean("turn_baseline_answer_contained"),
                          "tokens_mean": round(fmean(r["turn_baseline_tokens"] for r in rows), 1)},
        "last_turns_baseline": {"evidence_recall": mean("last_turns_evidence_recall"),
                                "answer_contained": mean("last_turns_answer_contained")},
        "full_history": {"evidence_recall": 1.0,
                         "answer_contained": mean("full_answer_contained")},
        "by_category": {c: {"questions": len(rs),
                            "evidence_recall": mean("evidence_recall", rs),
                            "turn_baseline_evidence_recall":
                                mean("turn_baseline_evidence_recall", rs),
                            "last_turns_evidence_recall": mean("last_turns_evidence_recall", rs),
                            "answer_contained": mean("answer_contained", rs),
                            "turn_baseline_answer_contained":
                                mean("turn_baseline_answer_contained", rs),
                            "tokens_mean": round(fmean(r["tokens"] for r in rs), 1),
                            "memory_ms_p50": p("memory_ms", 50, rs)}
                        for c, rs in sorted(by_category.items())},
    }
