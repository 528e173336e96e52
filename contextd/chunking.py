"""Token-aware chunking on sentence boundaries.

    >>> from contextd.tokens import get_counter
    >>> chunker = SentenceChunker(get_counter(), chunk_tokens=8, overlap_tokens=0)
    >>> [c.text for c in chunker.split("One two three. Four five six. Seven eight nine.")]
    ['One two three. Four five six.', 'Seven eight nine.']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contextd.protocols import TokenCounter

# A sentence ends at . ! ? (optionally followed by closing quotes or brackets) before white
# space and an opening character, or at a blank line / line break. Abbreviations such as
# "e.g." followed by a lower-case word do not split, because the next char must open a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*#\d])")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    tokens: int
    start: int
    end: int


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, white space trimmed.

    >>> t = "Hi there. How are you?"
    >>> [t[a:b] for a, b in split_sentences(t)]
    ['Hi there.', 'How are you?']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _append_trimmed(text, start, match.start(), spans)
        start = match.end()
    _append_trimmed(text, start, len(text), spans)
    return spans


def _append_trimmed(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


class SentenceChunker:
    """Packs whole sentences into chunks of at most `chunk_tokens`, overlapping by whole
    sentences of up to `overlap_tokens`. A sentence longer than a chunk is cut by tokens."""

    def __init__(self, counter: TokenCounter, chunk_tokens: int = 256, overlap_tokens: int = 32):
        if chunk_tokens < 8:
            raise ValueError("chunk_tokens must be at least 8")
        if not 0 <= overlap_tokens < chunk_tokens // 2:
            raise ValueError("overlap_tokens must be between 0 and half of chunk_tokens")
        self.counter = counter
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def split(self, text: str) -> list[Chunk]:
        """Chunks of `text`; their spans index into `text`."""
        pieces = self._pieces(text)
        chunks: list[Chunk] = []
        i = 0
        while i < len(pieces):
            j, tokens = i, 0
            # Sentences are joined by one separator; count each with its leading space to
            # stay close to the tokens of the joined text, then count the result exactly.
            while j < len(pieces) and (j == i or tokens + pieces[j][2] <= self.chunk_tokens):
                tokens += pieces[j][2]
                j += 1
            start, end = pieces[i][0], pieces[j - 1][1]
            chunk_text = text[start:end]
            exact = self.counter.count(chunk_text)
            if exact > self.chunk_tokens and j - 1 == i:
                # One sentence that fit when counted after a space but not alone (a space
                # can merge with its first characters into fewer tokens): cut it by tokens.
                pieces[i:j] = self._cut(text, start, end)
                continue
            while exact > self.chunk_tokens and j - 1 > i:
                j -= 1
                end = pieces[j - 1][1]
                chunk_text = text[start:end]
                exact = self.counter.count(chunk_text)
            chunks.append(Chunk(len(chunks), chunk_text, exact, start, end))
            if j >= len(pieces):
                break
            i = self._overlap_start(pieces, i, j)
        return chunks

    def _overlap_start(self, pieces: list[tuple[int, int, int]], i: int, j: int) -> int:
        back, tokens = j, 0
        while back - 1 > i and tokens + pieces[back - 1][2] <= self.overlap_tokens:
            back -= 1
            tokens += pieces[back][2]
        # The overlap must leave room for the next new sentence, or the chunk would repeat.
        if tokens + pieces[j][2] > self.chunk_tokens:
            return j
        return back

    def _pieces(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, tokens) per sentence; over-long sentences are cut into token windows."""
        pieces: list[tuple[int, int, int]] = []
        # A sentence this long cannot fit unless its tokens average more than 16 characters
        # (runs of spaces or repeated symbols); it is cut without being counted whole, since
        # BPE over one huge unbroken word (CJK, base64) costs more than linear time.
        longest = 16 * self.chunk_tokens
        for start, end in split_sentences(text):
            if end - start <= longest:
                n = self.counter.count(" " + text[start:end])
                if n <= self.chunk_tokens:
                    pieces.append((start, end, n))
                    continue
            pieces.extend(self._cut(text, start, end))
        return pieces

    def _cut(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """Split an over-long sentence into runs of at most `chunk_tokens - 1` tokens, at
        spaces if possible.

        Each run is found by tokenising a window a little longer than the run (the previous
        run's length sets the next window), so every character is tokenised a small, fixed
        number of times and the cost is linear in the sentence's length.
        """
        limit = self.chunk_tokens - 1  # room for the separator counted with each piece
        out: list[tuple[int, int, int]] = []
        width = 8 * limit
        pos = _skip_space(text, start, end)
        while pos < end:
            stop = self._longest_run(text, pos, end, limit, width)
            if stop < end:
                space = text.rfind(" ", pos + 1, stop)
                if space > pos + (stop - pos) // 2:
                    stop = space
            part_end = stop
            while part_end > pos and text[part_end - 1].isspace():
                part_end -= 1
            # The run's tokens are those of the window; re-tokenised alone they may merge
            # differently, so the run is counted exactly and gives way if over the limit.
            n = self.counter.count(text[pos:part_end])
            while part_end > pos + 1 and n > limit:
                part_end -= max(1, (part_end - pos) // 16)
                n = self.counter.count(text[pos:part_end])
            if part_end > pos:
                # About one token for the separator; `split` counts joined runs exactly.
                out.append((pos, part_end, n + 1))
            stop = max(part_end, pos + 1)
            width = max(4 * limit, (stop - pos) * 5 // 4 + 32)
            pos = _skip_space(text, stop, end)
        return out

    def _longest_run(self, text: str, pos: int, end: int, limit: int, width: int) -> int:
        """The end of the longest run from `pos` of at most `limit` tokens of a window's
        tokenisation, ending on a character boundary."""
        while True:
            window_end = min(end, pos + width)
            ids = self.counter.encode(text[pos:window_end])
            # One token more than the run so that the last token taken is a whole one.
            if len(ids) > limit + 1 or window_end == end:
                break
            width *= 2
        if len(ids) <= limit:
            return window_end
        k = limit
        while k > 1:
            run = self.counter.decode(ids[:k])
            # A run ending inside a multi-byte character decodes to U+FFFD and no longer
            # matches the text; one character spans at most four tokens.
            if text.startswith(run, pos) and run:
                return pos + len(run)
            k -= 1
        return pos + 1


def _skip_space(text: str, pos: int, end: int) -> int:
    while pos < end and text[pos].isspace():
        pos += 1
    return pos
