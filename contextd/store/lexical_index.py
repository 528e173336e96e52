"""An in-memory bm25 index of a namespace's chunks: FTS5's ranking at sparse-matrix speed.

SQLite's FTS5 answers an OR of a query's terms in milliseconds, mostly spent walking posting
lists and calling bm25() per matching row. This index holds the same postings as numpy arrays
in column-compressed form (per term: the rows holding it and how often, in the title and in
the text), so a query gathers its terms' postings and scores them in a few vectorised
operations. Scores are FTS5's bm25 to the last bit: the same terms (SQLite's own tokenizer, see
`contextd.store.fts5_tokens`), idf from the live chunk count and document frequencies, row
length and mean length over title and text, `title_weight` weighting title occurrences.

Like the FAISS index it is derived from SQLite and stamped with the change-log sequence it
holds; `contextd.store.namespace` catches it up before answering. Rows are added in chunk id
order (ids only grow) in immutable segments, merged as they pile up; deleted rows are masked
and dropped at merges. Above `max_postings` the index gives up (`usable` turns False) and the
namespace answers with FTS5 again, so memory stays bounded.

    >>> index = Bm25Index()
    >>> index.add_chunks([(1, "Olive oil", "Olive oil and the heart."), (2, None, "Bread.")], seq=2)
    >>> [(cid, round(score, 4)) for cid, score in index.search(["oliv"], k=5)]
    [(1, 0.6786)]
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from contextd.store.fts5_tokens import Fts5Tokens, split_pieces

# FTS5's bm25 constants (fts5_aux.c).
K1 = 1.2
B = 0.75
# 16 bytes a posting while serving (row, title and text counts, the saturated frequency),
# briefly more while segments merge: 10M postings (~6M chunk-sized passages) stay near 200 MB.
DEFAULT_MAX_POSTINGS = 10_000_000


@dataclass(frozen=True)
class _Segment:
    """Postings of some rows, by term: rows `rows[ptr[t]:ptr[t + 1]]` hold term t."""

    ptr: np.ndarray  # int64, one more than the terms known when it was built
    rows: np.ndarray  # int32, global row numbers
    title: np.ndarray  # uint16
    text: np.ndarray  # uint16

    @property
    def nnz(self) -> int:
        return len(self.rows)

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        terms = np.repeat(np.arange(len(self.ptr) - 1, dtype=np.int64), np.diff(self.ptr))
        return terms, self.rows, self.title, self.text


def _segment(terms: np.ndarray, rows: np.ndarray, title: np.ndarray, text: np.ndarray,
             n_terms: int) -> _Segment:
    order = np.lexsort((rows, terms))
    ptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=n_terms), out=ptr[1:])
    return _Segment(ptr, rows[order].astype(np.int32), title[order].astype(np.uint16),
                    text[order].astype(np.uint16))


@dataclass(frozen=True)
class _State:
    """What one search reads; replaced whole by each change, so searches need no lock."""

    segments: tuple[_Segment, ...]
    chunk: np.ndarray  # int64 chunk id of each row, ascending
    length: np.ndarray  # int64 tokens of each row (title + text)
    alive: np.ndarray  # bool
    live_rows: int
    live_tokens: int
    seq: int
    vocab: dict[str, int]  # term -> id; grows in place, replaced (not cleared) by a reset


class Bm25Index:
    """bm25 over chunk ids, the scores of FTS5's bm25() (higher is better); thread-safe."""

    def __init__(self, seq: int = 0, max_postings: int = DEFAULT_MAX_POSTINGS,
                 tokens: Fts5Tokens | None = None) -> None:
        self.max_postings = max_postings
        self.tokens = tokens or Fts5Tokens()
        self._vocab: dict[str, int] = {}
        self._piece_terms: dict[str, tuple[int, ...]] = {}  # text piece -> its term ids
        self._lock = threading.Lock()  # serialises changes; searches never wait on it
        self.usable = True
        self._saturated_cache: tuple[_State, float, tuple[np.ndarray, ...]] | None = None
        self._state: _State
        self._clear(seq)

    @property
    def seq(self) -> int:
        return self._state.seq

    @property
    def max_chunk_id(self) -> int:
        chunk = self._state.chunk
        return int(chunk[-1]) if len(chunk) else 0

    @property
    def postings(self) -> int:
        return sum(s.nnz for s in self._state.segments)

    def __len__(self) -> int:
        return self._state.live_rows

    def chunk_ids(self) -> np.ndarray:
        """The ids of the chunks the index holds, ascending."""
        state = self._state
        return state.chunk[state.alive]

    def add_chunks(self, rows: Iterable[tuple[int, str | None, str]], seq: int) -> None:
        """Index (chunk id, title, text) rows whose ids are all above `max_chunk_id`.

        >>> Bm25Index().add_chunks([(3, "T", "Some text.")], seq=1)
        """
        rows = sorted(rows)
        with self._lock:
            state = self._state
            if rows and rows[0][0] <= self.max_chunk_id:
                raise ValueError(f"chunk {rows[0][0]} is not above {self.max_chunk_id}: rebuild")
            if not self.usable or not rows:
                self._state = _replace(state, seq=seq)
                return
            terms, chunk, col, lengths = self._term_ids(rows)
            first = len(state.chunk)
            segment = None
            if len(terms):
                n_terms = len(self._vocab)
                key = (chunk * 2 + col) * n_terms + terms
                key, counts = np.unique(key, return_counts=True)
                pair, col = np.divmod(key // n_terms, 2)
                terms = key % n_terms
                both = pair * n_terms + terms  # one posting per (chunk, term)
                both, where = np.unique(both, return_inverse=True)
                title = np.bincount(where, weights=counts * (col == 0), minlength=len(both))
                text = np.bincount(where, weights=counts * (col == 1), minlength=len(both))
                segment = _segment(both % n_terms, first + both // n_terms,
                                   np.minimum(title, 65535), np.minimum(text, 65535), n_terms)
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            segments = state.segments + ((segment,) if segment is not None else ())
            self._state = _State(
                segments, np.concatenate([state.chunk, ids]),
                np.concatenate([state.length, lengths]),
                np.concatenate([state.alive, np.ones(len(ids), bool)]),
                state.live_rows + len(ids), state.live_tokens + int(lengths.sum()), seq,
                state.vocab)
            self._merge()

    def remove_chunks(self, ids: Sequence[int] | np.ndarray, seq: int) -> None:
        """Forget chunks; ids the index does not hold are ignored."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._lock:
            state = self._state
            rows = np.searchsorted(state.chunk, ids)
            ok = rows < len(state.chunk)
            rows = rows[ok]
            rows = rows[(state.chunk[rows] == ids[ok]) & state.alive[rows]]
            rows = np.unique(rows)
            if not len(rows):
                self._state = _replace(state, seq=seq)
                return
            alive = state.alive.copy()
            alive[rows] = False
            self._state = _replace(state, alive=alive, live_rows=state.live_rows - len(rows),
                                   live_tokens=state.live_tokens - int(state.length[rows].sum()),
                                   seq=seq)
            if len(rows) and len(state.chunk) > max(1_000, 4 * self._state.live_rows // 3):
                self._compact()

    def mark(self, seq: int) -> None:
        """Record that the index holds every change up to `seq` (none touched chunks)."""
        with self._lock:
            self._state = _replace(self._state, seq=seq)

    def disable(self) -> None:
        """Stop indexing and free the postings (the namespace answers with FTS5)."""
        with self._lock:
            self._clear(self._state.seq)
            self.usable = False

    def reset(self, seq: int) -> None:
        """Forget every chunk (to be rebuilt), stamped `seq`."""
        with self._lock:
            self._clear(seq)

    def query_terms(self, words: Sequence[str]) -> list[str] | None:
        """FTS5's term of each query word (words without one are left out), or None when a
        word makes a phrase of several terms (only FTS5 matches those)."""
        made = self.tokens.terms(words)
        out: list[str] = []
        for word in words:
            terms = made[word]
            if len(terms) > 1:
                return None
            out.extend(terms)
        return out

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Whether each chunk id is in the index."""
        state = self._state
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.minimum(np.searchsorted(state.chunk, ids), max(len(state.chunk) - 1, 0))
        if not len(state.chunk):
            return np.zeros(len(ids), bool)
        return (state.chunk[rows] == ids) & state.alive[rows]

    def term_documents(self, word: str) -> int | None:
        """How many chunks hold `word`'s term (FTS5's count for `"word"`); None when the word
        makes a phrase."""
        terms = self.query_terms([word])
        if terms is None:
            return None
        if not terms:
            return 0
        state = self._state
        tid = state.vocab.get(terms[0])
        if tid is None:
            return 0
        count = 0
        for segment in state.segments:
            if tid + 1 < len(segment.ptr):
                lo, hi = segment.ptr[tid], segment.ptr[tid + 1]
                count += int(state.alive[segment.rows[lo:hi]].sum())
        return count

    def search(self, terms: Sequence[str], k: int, allowed: np.ndarray | None = None,
               title_weight: float = 1.0) -> list[tuple[int, float]]:
        """(chunk id, bm25) of the best `k` chunks holding any of `terms` (FTS5 terms, see
        `query_terms`; a repeated term counts twice, as in FTS5), optionally only among
        `allowed` chunk ids; best first, ties by chunk id."""
        state = self._state
        n = state.live_rows
        if n == 0 or k <= 0:
            return []
        saturated = self._saturated(state, title_weight)
        masked = state.live_rows < len(state.chunk)
        row_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        for term in terms:
            tid = state.vocab.get(term)
            if tid is None:
                continue
            spans = [(i, s.ptr[tid], s.ptr[tid + 1]) for i, s in enumerate(state.segments)
                     if tid + 1 < len(s.ptr) and s.ptr[tid] < s.ptr[tid + 1]]
            if not spans:
                continue
            if len(spans) == 1:
                i, lo, hi = spans[0]
                rows, part = state.segments[i].rows[lo:hi], saturated[i][lo:hi]
            else:
                rows = np.concatenate([state.segments[i].rows[lo:hi] for i, lo, hi in spans])
                part = np.concatenate([saturated[i][lo:hi] for i, lo, hi in spans])
            if masked:
                live = state.alive[rows]
                rows, part = rows[live], part[live]
            df = len(rows)
            if df == 0:
                continue
            idf = math.log((n - df + 0.5) / (df + 0.5))
            # Term by term, in query order, as fts5Bm25Function sums them.
            score_parts.append(idf * part if idf > 0.0 else 1e-6 * part)
            row_parts.append(rows)
        if not row_parts:
            return []
        rows = np.concatenate(row_parts)
        scores = np.concatenate(score_parts)
        if len(rows) * 16 > len(state.chunk):
            total = np.bincount(rows, weights=scores, minlength=len(state.chunk))
            hit = np.flatnonzero(np.bincount(rows, minlength=len(state.chunk)))
            total = total[hit]
        else:
            hit, where = np.unique(rows, return_inverse=True)
            total = np.bincount(where, weights=scores, minlength=len(hit))
        chunk = state.chunk[hit]
        if allowed is not None:
            keep = np.isin(chunk, allowed)
            chunk, total = chunk[keep], total[keep]
        if len(total) > k:
            cut = np.partition(total, len(total) - k)[len(total) - k]
            keep = total >= cut
            chunk, total = chunk[keep], total[keep]
        order = np.lexsort((chunk, -total))[:k]
        return [(int(c), float(s)) for c, s in zip(chunk[order], total[order], strict=True)]

    # ----------------------------------------------------------------- internals

    def _saturated(self, state: _State, title_weight: float) -> tuple[np.ndarray, ...]:
        """Each posting's bm25 term frequency part, for `state`'s mean length: what a search
        multiplies by the term's idf. Computed once per state and title weight."""
        cached = self._saturated_cache
        if cached is not None and cached[0] is state and cached[1] == title_weight:
            return cached[2]
        avgdl = state.live_tokens / state.live_rows
        out = []
        for segment in state.segments:
            freq = title_weight * segment.title.astype(np.float64) + segment.text
            length = state.length[segment.rows].astype(np.float64)
            out.append((freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * length / avgdl)))
        self._saturated_cache = (state, title_weight, tuple(out))
        return self._saturated_cache[2]


    def _term_ids(self, rows: list[tuple[int, str | None, str]]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(term id, row in batch, column 0 title / 1 text) of every token, and row lengths."""
        parts = [part for _, title, text in rows for part in (split_pieces(title),
                                                             split_pieces(text))]
        known = self._piece_terms
        if len(known) > 1_000_000:
            known.clear()
        missing = [p for p in set().union(*parts) if p not in known]
        if missing:
            vocab = self._vocab
            for piece, terms in self.tokens.tokenize(missing).items():
                known[piece] = tuple(vocab.setdefault(t, len(vocab)) for t in terms)
        flat: list[int] = []
        counts: list[int] = []
        for part in parts:
            ids = [t for piece in part for t in known[piece]]
            flat += ids
            counts.append(len(ids))
        per_part = np.asarray(counts, dtype=np.int64)
        owner = np.repeat(np.arange(len(per_part), dtype=np.int64), per_part)
        lengths = per_part.reshape(-1, 2).sum(axis=1)
        return np.asarray(flat, dtype=np.int64), owner // 2, owner % 2, lengths

    def _merge(self) -> None:
        """Merge the newest segments while the one before is at most twice as large, so
        there are O(log n) segments; give up above `max_postings`."""
        state = self._state
        segments = list(state.segments)
        while len(segments) >= 2 and segments[-2].nnz <= 2 * segments[-1].nnz:
            last = segments.pop()
            segments[-1] = self._merged([segments[-1], last], state.alive)
        self._state = _replace(state, segments=tuple(segments))
        if self.postings > self.max_postings:
            self._compact()
            if self.postings > self.max_postings:
                self._clear(self._state.seq)
                self.usable = False

    def _clear(self, seq: int) -> None:
        self._vocab, self._piece_terms = {}, {}
        self._saturated_cache = None
        self._state = _State((), np.zeros(0, np.int64), np.zeros(0, np.int64),
                             np.zeros(0, bool), 0, 0, seq, self._vocab)

    def _merged(self, segments: list[_Segment], alive: np.ndarray,
                renumber: np.ndarray | None = None) -> _Segment:
        parts = [s.triples() for s in segments]
        terms = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        title = np.concatenate([p[2] for p in parts])
        text = np.concatenate([p[3] for p in parts])
        keep = alive[rows]
        rows = rows[keep] if renumber is None else renumber[rows[keep]]
        return _segment(terms[keep], rows, title[keep], text[keep], len(self._vocab))

    def _compact(self) -> None:
        """One segment of the live rows only, renumbered (caller holds the lock)."""
        state = self._state
        renumber = np.cumsum(state.alive) - 1
        segment = self._merged(list(state.segments), state.alive, renumber) if (
            state.segments) else None
        self._state = _State((segment,) if segment is not None and segment.nnz else (),
                             state.chunk[state.alive], state.length[state.alive],
                             np.ones(state.live_rows, bool), state.live_rows, state.live_tokens,
                             state.seq, state.vocab)


def _replace(state: _State, **changes: object) -> _State:
    return replace(state, **changes)  # type: ignore[arg-type]
