from __future__ import annotations

from hypothesis import example, given, settings
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
# One sentence of 18 tokens after a space and 19 alone (found by this test).
@example("Ib0:0:0:0:0\x81\xd8\U00010000", 18)
def test_chunks_cover_text_within_budget(text: str, size: int) -> None:
    counter = get_counter()
    chunks = SentenceChunker(counter, chunk_tokens=size, overlap_tokens=size // 4).split(text)
    for chunk in chunks:
        assert chunk.tokens <= size
        assert text[chunk.start:chunk.end] == chunk.text
    if text.strip():
        assert chunks


def _texts_without_full_stops() -> dict[str, str]:
    words = "the quick brown fox jumps over the lazy dog and keeps running through fields"
    log = "".join(f"2024-05-01 10:{i % 60:02d}:{i % 60:02d} INFO worker-{i % 8} handled request "
                  f"id={i} path=/v1/items/{i} status=200 in {i % 97} ms\n" for i in range(120))
    json_doc = ",".join(f'{{"id":{i},"name":"item{i}","tags":["a","b"],"price":{i}.5}}'
                        for i in range(400))
    return {
        "lower-case prose": (words + " ") * 400,
        "log lines": log,
        "CJK": "数据库在没有句号的情况下也必须被正确地切分成块" * 600,
        "minified JSON": "[" + json_doc + "]",
        "no spaces": "abcdefghij" * 4000,
    }


def _assert_chunks_cover(text: str, chunks: list, size: int) -> None:
    counter = get_counter()
    assert chunks
    covered = 0
    for chunk in chunks:
        assert chunk.tokens == counter.count(chunk.text) <= size
        assert text[chunk.start:chunk.end] == chunk.text
        # In order, with nothing but white space left between chunks.
        assert chunk.start >= covered or chunk.start < covered <= chunk.end
        assert text[covered:chunk.start].strip() == ""
        covered = max(covered, chunk.end)
    assert text[covered:].strip() == ""


def test_chunking_without_full_stops_is_exact_and_covers_text() -> None:
    counter = get_counter()
    for size in (16, 64, 256):
        for name, text in _texts_without_full_stops().items():
            chunks = SentenceChunker(counter, chunk_tokens=size, overlap_tokens=size // 4).split(
                text)
            _assert_chunks_cover(text, chunks, size)
            if name in ("lower-case prose", "log lines"):
                # Runs end at spaces, not inside words.
                assert all(text[c.end:c.end + 1] in (" ", "\n", "") for c in chunks), name


class TallyingCounter:
    """The real counter, tallying how many characters it was asked to tokenise."""

    def __init__(self) -> None:
        self.inner = get_counter()
        self.encoding_name = self.inner.encoding_name
        self.chars = 0

    def encode(self, text: str) -> list[int]:
        self.chars += len(text)
        return self.inner.encode(text)

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, tokens: list[int]) -> str:
        return self.inner.decode(tokens)


def test_chunking_without_sentence_boundaries_is_linear() -> None:
    for name, text in {
        "prose": ("lower case words without any full stop " * 26_000)[:1_000_000],
        "CJK": ("没有句号的中文文本" * 40_000)[:300_000],
    }.items():
        counter = TallyingCounter()
        chunks = SentenceChunker(counter, chunk_tokens=256, overlap_tokens=32).split(text)
        _assert_chunks_cover(text, chunks, 256)
        # Each character is tokenised a few times, not once per probe of the remainder.
        assert counter.chars <= 10 * len(text), name
        # Near-full chunks: the cut packs each run close to the limit.
        assert len(chunks) <= get_counter().count(text) // 200 + 1, name
