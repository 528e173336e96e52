"""The LLM summariser against a fake OpenAI-compatible server on loopback: normal, slow,
error and malformed answers; the extractive summary stays whenever the endpoint fails."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contextd.memory import llm_summariser
from contextd.memory.llm_summariser import LLMSummariser, SummaryFailed, completions_url
from contextd.tokens import get_counter


class FakeOpenAI:
    """A chat-completions endpoint whose behaviour the test sets with `mode`."""

    def __init__(self) -> None:
        self.mode = "normal"
        self.calls = 0
        self.paths: list[str] = []
        self.status = 500  # the answer in mode "status"
        self.headers: dict[str, str] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                fake.calls += 1
                fake.paths.append(self.path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert body["messages"]
                if fake.mode == "slow":
                    time.sleep(1.0)
                if fake.mode in ("error", "status"):
                    self.send_response(500 if fake.mode == "error" else fake.status)
                    for name, value in fake.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    return
                content = {"normal": "- Ana moved to Porto on 3 May 2024.\n- Ana has a dog.",
                           "slow": "- late", "malformed": "Sure! Here is a summary."}[fake.mode]
                payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                               "content": content}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


def test_normal_answer_is_used(fake) -> None:
    summariser = LLMSummariser(fake.url, "m", timeout_s=2, retries=0)
    summary = summariser.summarise(None, ["Ana: we moved to Porto"], 100, get_counter())
    assert summary.startswith("- Ana moved to Porto")
    assert fake.paths == ["/v1/chat/completions"]


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
def test_base_url_ending_in_v1_is_joined_as_the_sdk_does(fake, suffix) -> None:
    summariser = LLMSummariser(fake.url + suffix, "m", timeout_s=2, retries=0)
    summariser.summarise(None, ["Ana: hi"], 100, get_counter())
    assert fake.paths == ["/v1/chat/completions"]


@pytest.mark.parametrize(("base", "url"), [
    ("https://api.example/v1", "https://api.example/v1/chat/completions"),
    ("https://api.example/openai/v1/", "https://api.example/openai/v1/chat/completions"),
    ("https://api.example", "https://api.example/v1/chat/completions")])
def test_completions_url(base, url) -> None:
    assert completions_url(base) == url


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(llm_summariser.time, "sleep", waited.append)
    return waited


@pytest.mark.parametrize(("status", "calls"), [(400, 1), (401, 1), (404, 1), (422, 1),
                                               (500, 3), (502, 3), (503, 3)])
def test_only_5xx_statuses_are_retried(fake, sleeps, status, calls) -> None:
    fake.mode, fake.status = "status", status
    summariser = LLMSummariser(fake.url, "m", timeout_s=2, retries=2, backoff_s=0.01)
    with pytest.raises(SummaryFailed) as info:
        summariser.summarise(None, ["Ana: hi"], 100, get_counter())
    assert info.value.kind == "http_error" and f"status {status}" in str(info.value)
    assert fake.calls == calls and len(sleeps) == calls - 1


def test_429_waits_for_retry_after(fake, sleeps) -> None:
    fake.mode, fake.status, fake.headers = "status", 429, {"Retry-After": "2"}
    summariser = LLMSummariser(fake.url, "m", timeout_s=2, retries=2, backoff_s=0.01)
    with pytest.raises(SummaryFailed) as info:
        summariser.summarise(None, ["Ana: hi"], 100, get_counter())
    assert info.value.kind == "rate_limited" and info.value.retry_after == 2.0
    assert fake.calls == 3 and sleeps == [2.0, 2.0]


def test_429_with_a_long_retry_after_gives_up_at_once(fake, sleeps) -> None:
    fake.mode, fake.status = "status", 429
    fake.headers = {"Retry-After": str(int(llm_summariser.MAX_RETRY_AFTER_S) + 60)}
    summariser = LLMSummariser(fake.url, "m", timeout_s=2, retries=2, backoff_s=0.01)
    with pytest.raises(SummaryFailed) as info:
        summariser.summarise(None, ["Ana: hi"], 100, get_counter())
    assert info.value.kind == "rate_limited"
    assert fake.calls == 1 and sleeps == []


def test_429_without_retry_after_backs_off(fake, sleeps) -> None:
    fake.mode, fake.status = "status", 429
    summariser = LLMSummariser(fake.url, "m", timeout_s=2, retries=1, backoff_s=0.25)
    with pytest.raises(SummaryFailed):
        summariser.summarise(None, ["Ana: hi"], 100, get_counter())
    assert fake.calls == 2 and sleeps == [0.25]


@pytest.mark.parametrize(("mode", "kind", "calls"),
                         [("slow", "timeout", 2), ("error", "http_error", 2),
                          ("malformed", "malformed", 1)])
def test_failures_are_typed_and_retried_only_when_useful(fake, mode, kind, calls) -> None:
    fake.mode = mode
    summariser = LLMSummariser(fake.url, "m", timeout_s=0.3, retries=1, backoff_s=0.01)
    with pytest.raises(SummaryFailed) as info:
        summariser.summarise(None, ["Ana: hi"], 100, get_counter())
    assert info.value.kind == kind
    assert fake.calls == calls


def _chat(n: int) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"Turn {i}: Ana talked about Porto and her dog Rex on day {i}."}
            for i in range(n)]


@pytest.mark.parametrize("mode", ["normal", "slow", "error", "malformed"])
def test_engine_refines_in_background_and_falls_back(make_engine, fake, mode, caplog) -> None:
    fake.mode = mode
    engine = make_engine(summariser_url=fake.url, summariser_timeout_s=0.3,
                         summariser_retries=0)
    engine.append_messages("s", _chat(120))
    started = time.perf_counter()
    engine.assemble(query="where does Ana live?", session_id="s", max_tokens=600, top_k=0)
    # The request never waits on the summariser, even when it is slow.
    assert time.perf_counter() - started < 0.9
    extractive = engine.get_session("s").summary
    with caplog.at_level(logging.WARNING, logger="contextd.summariser"):
        assert engine.refiner.drain(timeout_s=5)
    after = engine.get_session("s").summary
    if mode == "normal":
        assert after == "- Ana moved to Porto on 3 May 2024.\n- Ana has a dog."
        assert engine.refiner.refined == 1
    else:
        assert after == extractive and "Turn" in after
        assert engine.refiner.refined == 0
        assert "for session s" in caplog.text
        assert sum(engine.refiner.failures.values()) == 1
