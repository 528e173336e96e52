"""The failure log: a failed request leaves one line with its request id, status, problem
type, the settings in force and its input, with every secret redacted."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from conftest import started_client
from fastapi import FastAPI
from openapi_check import OpenAPIBook

from contextd import Engine
from contextd.jsonl_log import read_records
from contextd.server import create_app

pytestmark = pytest.mark.anyio

ADMIN_KEY = "admin-secret-key-1234"
SUMMARISER_KEY = "sk-summariser-5678"


async def post(app: FastAPI, book: OpenAPIBook, path: str, body: dict,
               headers: dict[str, str] | None = None):
    async with app.router.lifespan_context(app):
        await anyio.to_thread.run_sync(app.state.warmed.wait, 30)
        async with await started_client(app, book) as client:
            return await client.http.post(path, content=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json",
                                                   **(headers or {})})


def failures(data_dir: Path) -> list[dict]:
    return list(read_records(data_dir / "failures.jsonl"))


def crash_ranking(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def rank(*args, **kwargs):
        raise RuntimeError("ranking blew up")

    for name in engine.profiles.names():  # each profile has a ranker of its own
        monkeypatch.setattr(engine.profiles.get(name).runner.ranker, "rank", rank)


async def test_an_injected_crash_is_logged_with_its_request_id_and_secrets_redacted(
        make_engine: Callable[..., Engine], book: OpenAPIBook, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    engine = make_engine(data, api_key=ADMIN_KEY, summariser_url="http://u:pw@llm.local/v1",
                         summariser_api_key=SUMMARISER_KEY, chunk_tokens=128)
    engine.upsert_documents([{"id": "d1", "text": "Solar panels convert light."}])
    crash_ranking(engine, monkeypatch)
    body = {"query": f"solar panels, my key is {ADMIN_KEY} and {SUMMARISER_KEY}",
            "max_tokens": 200, "query_type": "qa"}
    response = await post(create_app(engine), book, "/v1/namespaces/default/assemble", body,
                          {"Authorization": f"Bearer {ADMIN_KEY}", "X-Request-ID": "req-42"})
    assert response.status_code == 500 and response.json()["request_id"] == "req-42"

    (record,) = failures(data)
    assert record["request_id"] == "req-42"
    assert record["status"] == 500 and record["type"] == "internal"
    assert record["exception"] == "RuntimeError"
    assert record["route"] == "/v1/namespaces/{namespace}/assemble"
    assert record["namespace"] == "default" and record["profile"] == "default"
    assert record["query_type"] == "qa"
    assert record["settings"]["chunk_tokens"] == 128
    assert record["settings"]["summariser_url"] == "http://[redacted]@llm.local/v1"
    assert len(record["settings_digest"]) == 16
    assert record["headers"]["authorization"] == "[redacted]"
    assert record["input"]["max_tokens"] == 200
    assert record["input"]["query"].startswith("solar panels, my key is [redacted]")
    raw = (data / "failures.jsonl").read_text()
    for secret in (ADMIN_KEY, SUMMARISER_KEY, "pw@"):
        assert secret not in raw
    assert "api_key" not in record["settings"] and "summariser_api_key" not in record["settings"]
    assert stat.S_IMODE(os.stat(data / "failures.jsonl").st_mode) == 0o600


async def test_text_is_left_out_when_configured_and_json_secret_keys_always(
        make_engine: Callable[..., Engine], book: OpenAPIBook, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    engine = make_engine(data, failure_log_text=False, failure_log_client_errors=True,
                         profiles={"canary": {"weight": 100, "mmr_lambda": 0.5}})
    crash_ranking(engine, monkeypatch)
    app = create_app(engine)
    await post(app, book, "/v1/namespaces/default/assemble",
               {"query": "a private question", "max_tokens": 200, "session_id": "s-1",
                "messages": [{"role": "user", "content": "my diagnosis is private"}]})
    # A 4xx, recorded because failure_log_client_errors is on; its unknown key holds a secret.
    await post(app, book, "/v1/namespaces/default/assemble",
               {"query": "q", "max_tokens": 200, "password": "hunter22"})
    crash, invalid = failures(data)
    assert crash["input"]["query"] == "[18 chars]"
    assert crash["input"]["messages"] == [{"role": "user", "content": "[23 chars]"}]
    assert crash["input"]["session_id"] == "s-1" and crash["message"] is None
    # Assigned by the split, not named in the request: still the profile in force.
    assert crash["profile"] == "canary" and crash["profile_settings"] == {"mmr_lambda": 0.5}
    assert invalid["status"] == 422 and invalid["type"] == "invalid-request"
    assert invalid["input"]["password"] == "[redacted]"
    raw = (data / "failures.jsonl").read_text()
    assert "private" not in raw and "hunter22" not in raw


async def test_client_errors_are_left_out_by_default_and_a_cut_body_is_marked(
        make_engine: Callable[..., Engine], book: OpenAPIBook, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    engine = make_engine(data, failure_log_input_bytes=256)
    app = create_app(engine)
    response = await post(app, book, "/v1/namespaces/default/assemble", {"query": "q"})
    assert response.status_code == 422 and failures(data) == []  # 4xx: not by default
    crash_ranking(engine, monkeypatch)
    engine.upsert_documents([{"id": "d1", "text": "Solar panels convert light."}])
    long = {"query": "solar " * 200, "max_tokens": 2000}
    await post(app, book, "/v1/namespaces/default/assemble", long)
    (record,) = failures(data)
    assert record["input_truncated"] is True
    assert record["input_bytes"] == len(json.dumps(long).encode())
    assert len(record["input"]) <= 256
