"""LLM summaries through an OpenAI-compatible chat-completions endpoint, off the request path,
with the extractive summary as the always-available fallback.

Tiers: when turns are evicted, the extractive summary is stored at once (the request never
waits on a model); a background worker then asks the LLM to fold the same turns into the
previous summary and, if the answer is well-formed and in budget, replaces the stored summary
for that checkpoint. A slow, failing or malformed endpoint leaves the extractive summary in
place; each failure is logged with its error type and the session id. Timeouts, lost
connections, 5xx and 429 (after its `Retry-After`, capped) are retried; other 4xx are not, as
the same request would be refused again.

    >>> refiner = SummaryRefiner(LLMSummariser("http://127.0.0.1:8080", "gpt-4o-mini"))
    >>> memory.on_evict = refiner.submit  # doctest: +SKIP
"""

from __future__ import annotations

import email.utils
import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contextd.memory.conversation import HistoryState, format_turn
from contextd.protocols import TokenCounter
from contextd.store.protocols import SessionStore
from contextd.store.records import TurnRow
from contextd.tokens import get_counter

log = logging.getLogger("contextd.summariser")

PROMPT = (
    "You maintain the running summary of a conversation for an assistant with a short memory. "
    "Fold the new turns into the previous summary. Keep names, dates (absolute, resolved from "
    "the turn dates), places, numbers, preferences and decisions, and the latest value when "
    "something changed. Drop small talk. Answer with the summary only: one fact per line, each "
    "line starting with '- ', at most {max_tokens} tokens."
)


# The longest a 429's Retry-After may hold the worker; a longer wait gives up on this summary
# (the extractive one stands) rather than delay every queued session behind it.
MAX_RETRY_AFTER_S = 30.0


class SummaryFailed(Exception):
    """The endpoint did not give a usable summary; `kind` names the failure.

    `retryable` says whether the same request may succeed later; `retry_after` is the wait
    the endpoint asked for (seconds), if it asked.
    """

    def __init__(self, kind: str, detail: str, *, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


def completions_url(base_url: str) -> str:
    """The chat-completions URL of an OpenAI-compatible API, joined as the OpenAI SDK does.

    A base URL that ends in a version (`/v1`, the SDK's convention) gets `/chat/completions`;
    a bare host gets `/v1/chat/completions`.

        >>> completions_url("https://api.openai.com/v1")
        'https://api.openai.com/v1/chat/completions'
        >>> completions_url("http://127.0.0.1:8080")
        'http://127.0.0.1:8080/v1/chat/completions'
    """
    base = base_url.rstrip("/")
    if re.search(r"/v\d+$", base):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


def _retry_after(value: str | None) -> float | None:
    # Retry-After is either delay-seconds or an HTTP date (RFC 9110 section 10.2.3).
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class LLMSummariser:
    """Summarises with a chat model; raises SummaryFailed instead of returning bad output."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 20.0, retries: int = 2, backoff_s: float = 0.5) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = completions_url(base_url)
        self._client = httpx.Client(headers=headers, timeout=timeout_s)
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s

    def summarise(self, previous: str | None, turns: Sequence[str], max_tokens: int,
                  counter: TokenCounter) -> str:
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": max_tokens,
            "messages": [
                {"role": "system", "content": PROMPT.format(max_tokens=max_tokens)},
                {"role": "user", "content": f"Previous summary:\n{previous or '(none)'}\n\n"
                                            "New turns:\n" + "\n".join(turns)},
            ],
        }
        attempt = 0
        while True:
            try:
                return self._parse(self._post(body), max_tokens, counter)
            except SummaryFailed as exc:
                attempt += 1
                if not exc.retryable or attempt > self.retries:
                    raise
                if exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER_S:
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                time.sleep(max(delay, exc.retry_after or 0.0))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise SummaryFailed("timeout", str(exc) or "no answer in time",
                                retryable=True) from exc
        except httpx.HTTPError as exc:
            raise SummaryFailed("connection", str(exc), retryable=True) from exc
        status = response.status_code
        if status == 429:
            raise SummaryFailed("rate_limited", f"status 429 from {self.url}", retryable=True,
                                retry_after=_retry_after(response.headers.get("retry-after")))
        if status != 200:
            # A 4xx (a wrong URL, key or model) would be refused again: no retry.
            raise SummaryFailed("http_error", f"status {status} from {self.url}",
                                retryable=status >= 500)
        try:
            return response.json()
        except ValueError as exc:
            raise SummaryFailed("malformed", "response is not JSON") from exc

    @staticmethod
    def _parse(payload: Any, max_tokens: int, counter: TokenCounter) -> str:
        try:
            text = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise SummaryFailed("malformed", "no choices[0].message.content") from exc
        if not isinstance(text, str):
            raise SummaryFailed("malformed", "content is not a string")
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith("- ")]
        if not lines:
            raise SummaryFailed("malformed", "no summary lines starting with '- '")
        summary = "\n".join(lines)
        if counter.count(summary) > max_tokens:
            raise SummaryFailed("malformed", "summary longer than its budget")
        return summary

    def close(self) -> None:
        self._client.close()


@dataclass
class _Job:
    sessions: SessionStore
    session_id: str
    previous: str | None
    turns: list[str]
    through: int
    max_tokens: int


class SummaryRefiner:
    """A background worker that replaces extractive summaries by LLM ones when it can."""

    def __init__(self, summariser: LLMSummariser, counter: TokenCounter | None = None,
                 max_pending: int = 1_000) -> None:
        self.summariser = summariser
        self.counter = counter or get_counter()
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        self.failures: dict[str, int] = {}
        self.refined = 0
        self._worker = threading.Thread(target=self._run, name="summary-refiner", daemon=True)
        self._worker.start()

    def submit(self, state: HistoryState, evicted: list[TurnRow], extractive: str,
               previous: str | None, max_tokens: int) -> None:
        """Queue a refinement of the checkpoint `evicted[-1].seq`; never blocks a request."""
        if state.sessions is None or state.session_id is None:
            return
        job = _Job(state.sessions, state.session_id, previous,
                   [format_turn(t) for t in evicted], evicted[-1].seq, max_tokens)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._fail("queue_full", state.session_id, "refinement queue is full")

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                summary = self.summariser.summarise(job.previous, job.turns, job.max_tokens,
                                                    self.counter)
            except SummaryFailed as exc:
                self._fail(exc.kind, job.session_id, str(exc))
            except Exception as exc:  # a bug must not kill the worker; the fallback stands
                self._fail(type(exc).__name__, job.session_id, str(exc))
            else:
                stored = job.sessions.update_summary(
                    job.session_id, summary, job.through, self.counter.count(summary),
                    expected_through=job.through)
                if stored:
                    self.refined += 1
            finally:
                self._jobs.task_done()

    def _fail(self, kind: str, session_id: str, detail: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        log.warning("LLM summary failed (%s) for session %s; keeping the extractive summary: "
                    "%s", kind, session_id, detail)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until queued jobs are done; False if they were not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._jobs.unfinished_tasks

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=5)
        self.summariser.close()
