"""Micro-batching of query embeddings: requests that arrive together share one forward pass.

A transformer forward pass over 8 short queries costs little more than over one, so when
several threads each need a query vector at about the same time, one worker thread collects
them (up to `max_batch`, waiting at most `wait_ms` after the first) and embeds them in a
single call. Callers block on a future and get their own row back.

With `announced=True` a batch waits only for callers known to be on their way: a request
announces itself on arrival (`expecting()`), before it has a text to submit, and the worker
waits (still at most `wait_ms`) only while an announced caller has not submitted yet. A lone
request is embedded at once, and texts that queue while a forward pass runs share the next
one, so batching costs latency only when there is another query to share the pass with.

    >>> import numpy as np
    >>> batcher = MicroBatcher(lambda texts: np.ones((len(texts), 4), np.float32), wait_ms=1)
    >>> batcher.submit("what is rrf?").shape
    (4,)
    >>> batcher.close()
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

import numpy as np

from contextd.errors import Unavailable

EmbedBatch = Callable[[Sequence[str]], np.ndarray]

# Marks the end of the queue; the worker drains what came before it, then exits.
_STOP = object()
# Wakes a waiting worker: an announced caller left without submitting.
_WAKE = object()


class MicroBatcher:
    """Collects texts from many threads and embeds them in batches on one worker thread.

    `embed` takes a list of texts and returns one row per text. The worker starts on the
    first `submit`; `close()` lets queued texts finish, then stops it. Submitting after
    `close()` raises `Unavailable`. With `announced`, a batch waits only while a caller
    announced by `expecting()` has yet to submit (see the module's doc); without, it always
    waits up to `wait_ms` for more.

        >>> batcher = MicroBatcher(HashEmbedder().embed, wait_ms=2, max_batch=32)  # doctest: +SKIP
        >>> vector = batcher.submit("vitamin d deficiency")  # doctest: +SKIP
    """

    def __init__(self, embed: EmbedBatch, wait_ms: float = 2.0, max_batch: int = 32,
                 announced: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if wait_ms < 0:
            raise ValueError(f"wait_ms must not be negative, got {wait_ms}")
        self._embed = embed
        self._wait_s = wait_ms / 1000.0
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._announced = announced
        self._coming = 0  # callers in `expecting()` that have not submitted yet
        self._local = threading.local()  # this thread's caller is in `expecting()`, unsubmitted
        self.batches = 0  # forward passes so far; read by tests and metrics
        self.texts = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, text: str) -> np.ndarray:
        """The embedding of `text` (one row), computed in a batch with concurrent callers."""
        return self.submit_async(text).result()

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce that this thread's request may submit a text soon (its first `submit`
        inside the block); a batch being collected waits for it, at most `wait_ms`."""
        if getattr(self._local, "coming", False):  # already announced (a nested call)
            yield
            return
        with self._lock:
            self._coming += 1
        self._local.coming = True
        try:
            yield
        finally:
            with self._lock:
                if self._arrived() and self._worker is not None and not self._closed:
                    self._queue.put(_WAKE)  # left without a text: a waiting worker may go

    def _arrived(self) -> bool:
        """Count this thread's announced caller as arrived (caller holds the lock); False if
        it was not announced or has submitted already."""
        if not getattr(self._local, "coming", False):
            return False
        self._local.coming = False
        self._coming -= 1
        return True

    def submit_async(self, text: str) -> Future[np.ndarray]:
        """A future for the embedding of `text`; lets one thread queue several texts."""
        future: Future[np.ndarray] = Future()
        with self._lock:
            self._arrived()
            # Checked under the lock so no text can slip in behind the stop marker.
            if self._closed:
                raise Unavailable("the query embedder is shut down; retry on a running server")
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="contextd-microbatch",
                                                daemon=True)
                self._worker.start()
            self._queue.put((text, future))
        return future

    def close(self, timeout: float | None = 10.0) -> None:
        """Embed what is queued, then stop the worker. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
            self._queue.put(_STOP)
        if worker is not None:
            worker.join(timeout)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            if first is _WAKE:
                continue
            batch = [first]
            stopping = self._collect(batch)
            self._process(batch)  # type: ignore[arg-type]

    def _collect(self, batch: list[object]) -> bool:
        """Fill `batch` until it is full or the wait bound passes (with `announced`: or no
        announced caller is still to submit); True if told to stop."""
        deadline = time.monotonic() + self._wait_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            waiting = remaining > 0 and not (self._announced and self._coming <= 0)
            try:
                # Texts already queued join at once, even when there is no wait.
                item = self._queue.get(timeout=remaining) if waiting else \
                    self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            if item is not _WAKE:
                batch.append(item)
        return False

    def _process(self, batch: list[tuple[str, Future[np.ndarray]]]) -> None:
        live = [(text, fut) for text, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            vectors = self._embed([text for text, _ in live])
            if len(vectors) != len(live):
                raise RuntimeError(f"embedder returned {len(vectors)} rows for {len(live)} texts")
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch must hear of it
            for _, fut in live:
                fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.texts += len(live)
        for row, (_, fut) in enumerate(live):
            fut.set_result(vectors[row])
