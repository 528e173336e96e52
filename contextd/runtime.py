"""Choosing the embedding runtime from what the CPU offers.

A runtime is allowed only if its dense nDCG@10 on BEIR SciFact was measured within
`TOLERANCE` of fp32 (`MEASURED_NDCG_LOSS`, from benchmarks/RESULTS.md, "Embedding runtime
chosen by the CPU"). Among the allowed ones, the first in `PREFERENCE` (fastest per query
first, as measured) whose instructions the CPU has is used: int8 needs VNNI (int8 dot
products), bf16 needs AVX-512 BF16 or AMX; ONNX fp32 runs everywhere. Every runtime computes the
same model, so their vectors share a namespace.

As measured, int8 with its feed-forward down-projections kept fp32 scored 0.0033 above fp32
(an all-int8 model lost 0.0059, over the tolerance), so where VNNI is present it is timed
against fp32 at start and the faster serves; bf16
lost 0.0001 but runs on PyTorch, whose per-query cost is far above ONNX Runtime fp32's: it ranks
after fp32, so it serves only when set (`CONTEXTD_EMBEDDER=torch-bf16`).

    >>> choose_runtime({"avx2", "avx512_vnni", "avx512_bf16"})
    'onnx-int8'
    >>> choose_runtime({"avx2", "avx512_bf16"})
    'onnx-fp32'

Documents are another workload: whole chunks of up to 256 word pieces, in batches, where the
matrix products are nearly all the work and PyTorch's per-call cost does not count. Their
runtime is chosen apart (`document_runtimes`), on the measured quality of the pair: at
the operating point (`contextd eval beir --mode dense`, top 10 documents of SciFact), int8
queries cost nothing against fp32 (0.0002) but int8 documents do (0.0072, over the
tolerance: rounding adds up over long chunks), so documents are never int8. Where the CPU has
AMX tiles for bf16 (`amx_bf16`), oneDNN runs the products several times faster in bf16 than
in fp32 or int8 (an Intel Xeon with AMX, 2026-12-04: 117 documents/s against 32-35) at a cost
of 0.0019, so documents are bf16 there. With AVX-512 BF16 alone (dot products, no tiles) bf16
may win or not, depending on the vector unit, so bf16 and ONNX fp32 are timed side by side when
the first document is embedded (`document_runtimes`); elsewhere documents are ONNX fp32.

    >>> document_runtimes({"avx512_vnni", "amx_bf16"}, "onnx-int8")
    ('torch-bf16',)
    >>> document_runtimes({"avx512_vnni", "avx512_bf16"}, "onnx-int8")
    ('torch-bf16', 'onnx-fp32')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Runtime = Literal["onnx-fp32", "onnx-int8", "torch-fp32", "torch-bf16"]
RUNTIMES: tuple[Runtime, ...] = ("onnx-fp32", "onnx-int8", "torch-fp32", "torch-bf16")

# Largest loss of dense nDCG@10 against fp32 a faster runtime may have.
TOLERANCE = 0.005
# Dense nDCG@10 on SciFact, fp32 minus the runtime's (all-MiniLM-L6-v2, whole corpus): the
# evidence behind the gate, measured with benchmarks/bench_embedding.py.
# Intel Xeon (AVX-512 VNNI, AVX-512 BF16, AMX), 2026-12-02: fp32 0.6492, bf16 0.6491 (and an
# all-int8 model 0.6433). AMD EPYC (AVX2), 2026-12-03: int8 with fp32 down-projections 0.6525;
# its integer products are exact on AVX2 and VNNI alike, so the figure holds for both.
MEASURED_NDCG_LOSS: Mapping[str, float] = {
    "onnx-fp32": 0.0,
    "onnx-int8": -0.0033,
    "torch-bf16": 0.0001,
}
# CPU flags (as /proc/cpuinfo names them) any one of which a runtime needs.
NEEDS: Mapping[str, frozenset[str]] = {
    "onnx-int8": frozenset({"avx512_vnni", "avx_vnni", "amx_int8"}),
    "torch-bf16": frozenset({"avx512_bf16", "amx_bf16"}),
    "onnx-fp32": frozenset(),
}
# Fastest per query first, as measured on a CPU that has them all (p50 of one query: all-int8
# 7.9 ms, ONNX fp32 18.0 ms, PyTorch bf16 773 ms on a contended machine). Where int8 comes
# first, the embedder still times int8 and fp32 side by side at start and serves the faster
# (`SentenceTransformerEmbedder._faster_of`): their ratio differs from one CPU generation to
# the next.
PREFERENCE: tuple[Runtime, ...] = ("onnx-int8", "onnx-fp32", "torch-bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags; empty where /proc/cpuinfo is absent (then fp32 is chosen).

        >>> "sse2" in cpu_flags() or cpu_flags() == frozenset()
        True
    """
    try:
        with cpuinfo.open() as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def allowed(runtime: str, tolerance: float = TOLERANCE) -> bool:
    """Whether `runtime`'s measured loss is within `tolerance` (unmeasured: not allowed).

        >>> allowed("onnx-int8"), allowed("onnx-int8", tolerance=-0.01), allowed("torch-fp16")
        (True, False, False)
    """
    loss = MEASURED_NDCG_LOSS.get(runtime)
    return loss is not None and loss <= tolerance


def choose_runtime(flags: Iterable[str] | None = None, tolerance: float = TOLERANCE) -> Runtime:
    """The first runtime of `PREFERENCE` that is `allowed` and that the CPU (`flags`, default
    this machine's) can run fast.

        >>> choose_runtime({"avx2"})
        'onnx-fp32'
    """
    have = frozenset(cpu_flags() if flags is None else flags)
    for runtime in PREFERENCE:
        needs = NEEDS[runtime]
        if allowed(runtime, tolerance) and (not needs or needs & have):
            return runtime
    return "onnx-fp32"


# Dense nDCG@10 at the operating point (eval beir --mode dense: top 10 documents, chunks) on
# SciFact with fp32 queries and documents (0.6548), minus that of (query runtime, document
# runtime). Intel Xeon (AMX), 2026-12-04, benchmarks/RESULTS.md.
PAIR_NDCG_LOSS: Mapping[tuple[str, str], float] = {
    ("onnx-int8", "onnx-int8"): 0.0072,
    ("onnx-int8", "onnx-fp32"): 0.0002,
    ("onnx-int8", "torch-bf16"): 0.0019,
}
# CPU flags any one of which makes a runtime faster on documents than fp32.
DOCUMENT_NEEDS: Mapping[str, frozenset[str]] = {"torch-bf16": frozenset({"amx_bf16"})}
# CPU flags with which a runtime may be faster on documents, or may not: bf16 dot products
# without the tiles (AVX-512 BF16) double the multiplies an instruction does, but what that
# is worth depends on the vector unit behind them (an AMD EPYC Zen 5, 2026-12-06: PyTorch bf16
# 1.35x ONNX fp32 on whole abstracts). There the two are timed side by side on document-length
# text when the first document is embedded, and the faster embeds.
DOCUMENT_TIMED: Mapping[str, frozenset[str]] = {"torch-bf16": frozenset({"avx512_bf16"})}


def pair_allowed(queries: str, documents: str, tolerance: float = TOLERANCE) -> bool:
    """Whether documents embedded by `documents` may be searched with queries by `queries`:
    the pair's measured loss is within `tolerance`; unmeasured, fp32 documents always are and
    others as `allowed` says of them.

        >>> pair_allowed("onnx-int8", "onnx-int8"), pair_allowed("onnx-int8", "onnx-fp32")
        (False, True)
    """
    loss = PAIR_NDCG_LOSS.get((queries, documents))
    if loss is not None:
        return loss <= tolerance
    return documents in ("onnx-fp32", "torch-fp32") or allowed(documents, tolerance)


def document_runtimes(flags: Iterable[str] | None, query_runtime: str,
                      tolerance: float = TOLERANCE) -> tuple[str, ...]:
    """The runtimes documents may be embedded with, for queries on `query_runtime` (each
    `pair_allowed` with it): one, or a faster-maybe one first and the fallback second, to be
    timed against each other (`DOCUMENT_TIMED`). bf16 where the CPU (`flags`, default this
    machine's) has AMX; bf16 or the fallback, timed, where it has AVX-512 BF16 alone; else
    the query runtime, else ONNX fp32.

        >>> document_runtimes({"avx2"}, "onnx-fp32")
        ('onnx-fp32',)
        >>> document_runtimes({"avx512_vnni", "avx512_bf16"}, "onnx-int8")
        ('torch-bf16', 'onnx-fp32')
    """
    have = frozenset(cpu_flags() if flags is None else flags)
    fallback = query_runtime if pair_allowed(query_runtime, query_runtime, tolerance) else (
        "onnx-fp32")
    for runtime, needs in DOCUMENT_NEEDS.items():
        if needs & have and pair_allowed(query_runtime, runtime, tolerance):
            return (runtime,)
    for runtime, needs in DOCUMENT_TIMED.items():
        if needs & have and runtime != fallback and pair_allowed(query_runtime, runtime,
                                                                 tolerance):
            return (runtime, fallback)
    return (fallback,)


def runtime_of(embedder: object) -> str | None:
    """The runtime an embedder serves with, without loading it; None if it does not say.

        >>> from contextd.embedding import HashEmbedder
        >>> runtime_of(HashEmbedder())
        'hash'
    """
    runtime = getattr(embedder, "runtime", None)
    return runtime if isinstance(runtime, str) else None


def explain(runtime: str, flags: Iterable[str] | None = None) -> str:
    """One line saying why `runtime` serves, for the log.

        >>> explain("onnx-fp32", {"avx512_vnni"})
        'onnx-fp32: runs on any CPU; dense nDCG@10 loss 0.0000 (tolerance 0.005)'
    """
    have = frozenset(cpu_flags() if flags is None else flags)
    found = sorted(NEEDS.get(runtime, frozenset()) & have)
    loss = MEASURED_NDCG_LOSS.get(runtime)
    why = f"CPU has {', '.join(found)}" if found else "runs on any CPU"
    measured = (f"dense nDCG@10 loss {loss:.4f} (tolerance {TOLERANCE})" if loss is not None
                else "unmeasured")
    return f"{runtime}: {why}; {measured}"
