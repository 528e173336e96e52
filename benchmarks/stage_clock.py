"""Time spent in each assemble stage, summed over every thread: for bench_batch.py --stages.

`StageClock.install()` wraps the functions that do each stage's work (at class or module
level, so objects made later use the wrappers too) with a timer that adds the call's wall
time and its thread's CPU time to the stage; an inner stage's time is taken out of the stage
around it, so the stages add up to the time inside `AssemblePipeline.run` (and the batch's
own work before the items). The query embedding's CPU time is not the caller's (ONNX Runtime
computes on its own threads), so for it only wall time means anything.

    >>> clock = StageClock().install()  # doctest: +SKIP
    >>> clock.reset(); ...; clock.per_request(32)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# (stage, module, attribute path): the first match of a call wins; missing ones are skipped,
# so the same list times code with and without the batch's shared searches.
STAGES: list[tuple[str, str, str]] = [
    ("embedding", "contextd.embedding", "SentenceTransformerEmbedder.embed"),
    ("embedding", "contextd.embedding", "SentenceTransformerEmbedder.embed_each"),
    ("bm25", "contextd.retrieval.retriever", "HybridRetriever.lexical"),
    ("dense search", "contextd.store.vector_index", "FaissVectorIndex.search"),
    ("dense search", "contextd.store.vector_index", "FaissVectorIndex.search_many"),
    ("chunk places", "contextd.store.namespace", "NamespaceData.chunk_places"),
    ("chunk reads", "contextd.store.namespace", "NamespaceData.chunk_rows"),
    ("chunk reads", "contextd.store.sqlite_store", "SqliteStore.chunks"),
    ("fusion", "contextd.retrieval.retriever", "fused_scores"),
    ("fusion", "contextd.retrieval.retriever", "ordered_chunks"),
    ("fusion", "contextd.retrieval.retriever", "collapse"),
    ("retrieval, rest", "contextd.retrieval.retriever", "HybridRetriever.retrieve"),
    ("ranking (MMR)", "contextd.retrieval.ranker", "MMRRanker.rank"),
    ("memory", "contextd.memory.conversation", "ConversationMemory.build"),
    ("packing", "contextd.pipeline", "AssemblePipeline._pack"),
    ("assemble, rest", "contextd.pipeline", "AssemblePipeline.run"),
    ("batch set-up", "contextd.batch", "BatchVectors.__init__"),
    ("batch set-up", "contextd.batch", "LexicalPrefetch.__init__"),
    ("batch set-up", "contextd.batch", "DensePrefetch.__init__"),
    ("batch set-up", "contextd.batch", "ChunkPrefetch.__init__"),
]


class StageClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def install(self) -> StageClock:
        for stage, module_name, path in STAGES:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent, None)
            if owner is None or not hasattr(owner, name):
                continue
            function = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            setattr(owner, name, self._wrap(stage, function))
        return self

    def reset(self) -> None:
        with self._lock:
            self.wall.clear()
            self.cpu.clear()
            self.calls.clear()

    def per_request(self, requests: int) -> dict[str, dict[str, float]]:
        """Stage -> wall and CPU ms per request (own time, inner stages taken out)."""
        with self._lock:
            return {stage: {"wall_ms": round(self.wall[stage] * 1000 / requests, 3),
                            "cpu_ms": round(self.cpu[stage] * 1000 / requests, 3),
                            "calls": self.calls[stage]}
                    for stage in sorted(self.wall, key=lambda s: -self.wall[s])}

    def _wrap(self, stage: str, function: Callable) -> Callable:
        clock = self

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = clock._local.__dict__.setdefault("stack", [])
            stack.append([0.0, 0.0])  # inner stages' wall and CPU, taken out of this one
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                inner_wall, inner_cpu = stack.pop()
                if stack:
                    stack[-1][0] += wall
                    stack[-1][1] += cpu
                with clock._lock:
                    clock.wall[stage] += wall - inner_wall
                    clock.cpu[stage] += cpu - inner_cpu
                    clock.calls[stage] += 1

        return timed
