"""`contextd eval conversations`: how well memory keeps what later questions need.

Each conversation (LoCoMo layout) is replayed into a session, one session per budget; then
every question is assembled as the query with only history in the budget (no documents). The
report gives, per budget and overall: evidence recall (share of evidence turns included
verbatim, in the recent window or recalled), answer containment (the normalised gold answer
appears in the assembled history), tokens used and assemble latency; and the same for two
baselines computed here: the last turns that fit the budget, and the full history.

    >>> report = run_conversations(engine, "tests/data/conversation_small.json", [500])
    ... # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from contextd.engine import Engine
from contextd.eval.locomo import (
    Conversation,
    answer_contained,
    evidence_recall,
    load_locomo,
    replay_turns,
)
from contextd.eval.metrics import percentile
from contextd.memory.window import tool_groups
from contextd.models import ChatMessage
from contextd.tokens import REPLY_PRIMING, get_counter, message_tokens

NAMESPACE = "eval-conversations"


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


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    return ChatMessage.model_validate(message).openai()


def _history_text(messages: Sequence[Any]) -> str:
    return "\n".join((m.content or "") for m in messages)


def run_conversations(
    engine: Engine, path: str | Path, budgets: Sequence[int], progress: bool = False,
) -> dict[str, Any]:
    conversations = load_locomo(path)
    if engine.registry.exists(NAMESPACE):
        engine.delete_namespace(NAMESPACE)
    counter = get_counter()
    rows: list[dict[str, Any]] = []
    full_tokens: list[int] = []
    for conv in conversations:
        messages = replay_turns(conv)
        plain = [_plain(m) for m in messages]
        assert len(tool_groups(plain)) == len(plain)  # plain chat: no tool groups
        full_tokens.append(REPLY_PRIMING + sum(message_tokens(m, counter) for m in plain))
        for budget in budgets:
            rows.extend(_evaluate(engine, conv, messages, budget))
        if progress:
            print(f"{conv.sample_id}: {len(messages)} turns, {len(conv.questions)} questions")
    report: dict[str, Any] = {
        "file": str(path),
        "conversations": len(conversations),
        "questions": len(rows) // max(len(budgets), 1),
        "skipped_questions": sum(c.skipped_questions for c in conversations),
        "full_history_tokens": {"mean": round(fmean(full_tokens), 1) if full_tokens else 0,
                                "max": max(full_tokens, default=0)},
        "budgets": {},
    }
    for budget in budgets:
        report["budgets"][str(budget)] = _summarise([r for r in rows if r["budget"] == budget])
    report["overall"] = _summarise(rows)
    return report


def _evaluate(engine: Engine, conv: Conversation, messages: list[dict[str, Any]],
              budget: int) -> list[dict[str, Any]]:
    session = f"{conv.sample_id}-b{budget}"[:128]
    for start in range(0, len(messages), 500):
        engine.append_messages(session, messages[start:start + 500], namespace=NAMESPACE)
    counter = get_counter()
    rows = []
    for q in conv.questions:
        query_cost = message_tokens({"role": "user", "content": q.question}, counter)
        began = time.perf_counter()
        response = engine.assemble(namespace=NAMESPACE, session_id=session, query=q.question,
                                   max_tokens=budget + query_cost + REPLY_PRIMING,
                                   history_share=1.0, top_k=0)
        elapsed = (time.perf_counter() - began) * 1000
        included = response.history_turn_ids + response.recalled_turn_ids
        history = _history_text(response.messages[:-1])
        baseline = last_turns_baseline(messages, budget)
        u = response.usage
        rows.append({
            "budget": budget,
            "category": str(q.category),
            "evidence_recall": evidence_recall(q.evidence, included),
            "answer_contained": answer_contained(q.answer, history),
            "tokens": u.summary + u.history + u.recalled,
            "latency_ms": elapsed,
            "memory_ms": response.timings_ms.get("memory", 0.0),
            "baseline_evidence_recall": evidence_recall(q.evidence, [m["id"] for m in baseline]),
            "baseline_answer_contained": answer_contained(
                q.answer, "\n".join(m["content"] for m in baseline)),
            "full_answer_contained": answer_contained(
                q.answer, "\n".join(m["content"] for m in messages)),
        })
    return rows


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}

    def mean(key: str, subset: list[dict[str, Any]] = rows) -> float:
        return round(fmean(float(r[key]) for r in subset), 4)

    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_category[r["category"]].append(r)
    return {
        "questions": len(rows),
        "evidence_recall": mean("evidence_recall"),
        "answer_contained": mean("answer_contained"),
        "tokens_mean": round(fmean(r["tokens"] for r in rows), 1),
        "latency_ms": {"p50": round(percentile([r["latency_ms"] for r in rows], 50), 2),
                       "p95": round(percentile([r["latency_ms"] for r in rows], 95), 2)},
        "memory_ms": {"p50": round(percentile([r["memory_ms"] for r in rows], 50), 2),
                      "p95": round(percentile([r["memory_ms"] for r in rows], 95), 2)},
        "last_turns_baseline": {"evidence_recall": mean("baseline_evidence_recall"),
                                "answer_contained": mean("baseline_answer_contained")},
        "full_history": {"evidence_recall": 1.0,
                         "answer_contained": mean("full_answer_contained")},
        "by_category": {c: {"questions": len(rs), "evidence_recall": mean("evidence_recall", rs),
                            "baseline_evidence_recall": mean("baseline_evidence_recall", rs)}
                        for c, rs in sorted(by_category.items())},
    }
