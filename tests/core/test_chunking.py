from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contextd.chunking import SentenceChunker, split_sentences
from contextd.tokens import get_counter


def test_sentences_split_on_terminal_punctuation_not_abbreviations() -> None:
    text = "Dr. Smith arrived. He said e.g. apples are red! Did he? Yes."
    sentences = [text[a:b] for a, b in split_sentences(text)]
    assert sentences == ["Dr.", "Smith arrived.", "He said e.g. apples are red!", "Did he?",
                         "Yes."] or "Smith arrived." in sentences[0] + sentences[1]
    assert "He said e.g. apples are red!" in sentences


def test_chunks_respect_size_and_keep_whole_sentences() -> None:
    counter = get_counter()
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    chunks = SentenceChunker(counter, chunk_tokens=40, overlap_tokens=10).split(text)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.tokens <= 40
        assert chunk.tokens == counter.count(chunk.text)
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith(".")
        assert text[chunk.start:chunk.end] == chunk.text


def test_overlap_repeats_trailing_sentences() -> None:
    counter = get_counter()
    text = " ".join(f"Fact {i} is here." for i in range(20))
    chunks = SentenceChunker(counter, chunk_tokens=30, overlap_tokens=8).split(text)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # the next chunk starts inside the previous one
        assert b.end > a.end  # and still makes progress


def test_overlong_sentence_is_cut_by_tokens() -> None:
    counter = get_counter()
    text = "word " * 500
    chunks = SentenceChunker(counter, chunk_tokens=64, overlap_tokens=0).split(text)
    assert len(chunks) >= 7
    assert all(c.tokens <= 64 for c in chunks)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=2000), st.integers(16, 200))
def test_chunks_cover_text_within_budget(text: str, size: int) -> None:
    counter = get_counter()
    chunks = SentenceChunker(counter, chunk_tokens=size, overlap_tokens=size // 4).split(text)
    for chunk in chunks:
        assert chunk.tokens <= size
        assert text[chunk.start:chunk.end] == chunk.text
    if text.strip():
        assert chunks
