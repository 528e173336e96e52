"""Token telemetry in /metrics: labelled by query_type and profile, with the query types a
caller can send folded into a bounded set."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from conftest import started_client
from fastapi import FastAPI
from openapi_check import OpenAPIBook
from prometheus_client.parser import text_string_to_metric_families

from contextd import Engine
from contextd.jsonl_log import read_records
from contextd.models import AssembleResponse
from contextd.server import create_app

pytestmark = pytest.mark.anyio

DOCS = [{"id": f"d{i}", "text": f"Solar panel fact number {i}. " * 12} for i in range(4)]


def label_values(text: str, metric: str, label: str) -> set[str]:
    values = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(metric) and label in sample.labels:
                values.add(sample.labels[label])
    return values


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


async def served(app: FastAPI, book: OpenAPIBook, work: Callable) -> str:
    async with app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        async with await started_client(app, book) as client:
            await work(client)
            return (await client.http.get("/metrics")).text


async def test_fifty_query_types_fold_into_the_configured_ones_and_other(
        make_engine: Callable[..., Engine], book: OpenAPIBook) -> None:
    engine = make_engine(query_types=["qa", "chat"], usage_log=None)

    async def work(client) -> None:
        await client.upsert_documents(DOCS)
        for n in range(50):
            await client.assemble(query=f"solar panel {n}", max_tokens=120, top_k=3,
                                  query_type=f"kind_{n}")
        await client.assemble(query="solar", max_tokens=120, query_type="qa")
        await client.assemble(query="solar", max_tokens=120)

    text = await served(create_app(engine), book, work)
    for metric in ("contextd_assemble_requests", "contextd_prompt_tokens",
                   "contextd_assemble_section_tokens", "contextd_assemble_budget_utilisation",
                   "contextd_dropped_items", "contextd_tokens_saved",
                   "contextd_stage_duration_seconds"):
        values = label_values(text, metric, "query_type")
        assert values and values <= {"qa", "chat", "other"}, (metric, values)
        assert len(values) <= 2 + 1
    assert sample(text, "contextd_assemble_requests_total", query_type="other") == 51
    assert sample(text, "contextd_assemble_requests_total", query_type="qa") == 1
    assert "kind_7" not in text


async def test_assemble_metrics_by_section_budget_stage_drop_and_profile(
        make_engine: Callable[..., Engine], book: OpenAPIBook) -> None:
    engine = make_engine(usage_log=None)
    responses: list[AssembleResponse] = []

    async def work(client) -> None:
        await client.upsert_documents(DOCS)
        responses.append(await client.assemble(query="solar panel fact", max_tokens=90,
                                               top_k=4, query_type="qa"))

    text = await served(create_app(engine), book, work)
    (response,) = responses
    labels = {"query_type": "qa", "profile": "default"}
    assert sample(text, "contextd_assemble_section_tokens_sum", section="documents",
                  **labels) == response.usage.documents
    assert sample(text, "contextd_assemble_section_tokens_sum", section="total",
                  **labels) == response.usage.total
    assert sample(text, "contextd_assemble_budget_utilisation_sum", **labels) == pytest.approx(
        response.usage.total / response.usage.budget)
    over = sum(1 for d in response.dropped if d.reason == "over_budget")
    assert over > 0  # 90 tokens cannot hold four documents
    assert sample(text, "contextd_dropped_items_total", reason="over_budget", **labels) == over
    assert sample(text, "contextd_stage_duration_seconds_count", stage="retrieval",
                  operation="assemble", **labels) == 1
    saved = response.usage.documents_available - response.usage.documents
    assert saved > 0 and sample(text, "contextd_tokens_saved_total", versus="documents",
                                **labels) == saved
    # One call, its cache outcome counted once.
    outcome = "hit" if response.cache.hit else "miss"
    assert label_values(text, "contextd_assemble_cache", "outcome") == {outcome}


async def test_cache_outcome_counted_when_the_response_carries_one(
        make_engine: Callable[..., Engine], book: OpenAPIBook,
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(usage_log=None)
    run = engine.pipeline.run
    hits = iter([False, True, True])

    def with_cache(req, *args, **kwargs):
        response = run(req, *args, **kwargs)
        return response.model_copy(update={"cache": response.cache.model_copy(
            update={"hit": next(hits)})})

    monkeypatch.setattr(engine.pipeline, "run", with_cache)

    async def work(client) -> None:
        for _ in range(3):
            await client.assemble(query="solar", max_tokens=100, query_type="chat")

    text = await served(create_app(engine), book, work)
    assert sample(text, "contextd_assemble_cache_total", outcome="hit", query_type="chat") == 2
    assert sample(text, "contextd_assemble_cache_total", outcome="miss", query_type="chat") == 1


async def test_usage_log_line_carries_the_http_request_id(
        make_engine: Callable[..., Engine], book: OpenAPIBook, tmp_path) -> None:
    engine = make_engine(tmp_path / "data")

    async def work(client) -> None:
        await client.http.post("/v1/namespaces/default/assemble", headers={"X-Request-ID":
                               "call-7"}, json={"query": "solar", "max_tokens": 100,
                                                "query_type": "qa"})

    await served(create_app(engine), book, work)
    (record,) = read_records(tmp_path / "data" / "usage.jsonl")
    assert record["request_id"] == "call-7" and record["query_type"] == "qa"


async def test_profile_in_the_response_and_the_metrics(
        make_engine: Callable[..., Engine], book: OpenAPIBook) -> None:
    engine = make_engine(usage_log=None, profiles={"canary": {"weight": 0, "mmr_lambda": 0.5}})
    seen: dict[str, object] = {}

    async def work(client) -> None:
        await client.upsert_documents(DOCS)
        seen["canary"] = await client.assemble(query="solar", max_tokens=100, profile="canary",
                                               query_type="qa")
        seen["split"] = await client.assemble(query="solar", max_tokens=100, session_id="s-1",
                                              messages=[{"role": "user", "content": "hi"}])
        seen["bad"] = await client.http.post("/v1/namespaces/default/assemble", json={
            "query": "solar", "max_tokens": 100, "profile": "nope"})

    text = await served(create_app(engine), book, work)
    assert seen["canary"].profile == "canary" and seen["split"].profile == "default"
    assert seen["bad"].status_code == 422 and "unknown profile 'nope'" in seen["bad"].json()[
        "detail"]
    assert sample(text, "contextd_assemble_requests_total", profile="canary",
                  query_type="qa") == 1
    assert sample(text, "contextd_assemble_requests_total", profile="default",
                  query_type="other") == 1
