"""Collapsing ranked chunks into ranked documents.

Search and assemble answer with documents: a document matching with several chunks is one
result, so it does not crowd out other documents, and `top_k` counts documents. Each result
keeps its best chunk and, when they are relevant too, the chunks right before and after it, so
a passage cut by chunking is read whole. Parts are kept in document order, and the sentences
that consecutive chunks share (chunking overlaps them) appear once when the parts are joined.

    >>> collapse([("a", 0, 0.9, 1.0), ("a", 1, 0.9, 0.8), ("b", 0, 0.5, 1.0)], neighbours=1)
    [('a', 0, [0, 1]), ('b', 0, [0])]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from contextd.chunking import split_sentences
from contextd.store.records import ChunkRow
from contextd.tokens import TiktokenCounter, is_cut, prepended_count

# A neighbour joins its document's result when its own fused score is at least this share of
# the best chunk's: retrieved at all is too weak a test (deep bm25 lists match stray terms).
NEIGHBOUR_SHARE = 0.5


def collapse(
    chunks: Iterable[tuple[str, int, float, float]], neighbours: int = 1,
    share: float = NEIGHBOUR_SHARE, limit: int | None = None,
) -> list[tuple[str, int, list[int]]]:
    """Documents in rank order, each with its best chunk number and the chunk numbers to show,
    in document order.

    `chunks` holds (document id, chunk number, document score, chunk score), best document
    first and, within a document, best chunk first. Up to `neighbours` chunks on each side of
    the best join when they are contiguous with it and score at least `share` of it. With
    `limit`, only the first `limit` documents are kept; `chunks` must then hold each
    document's chunks together (as ranked chunk lists do), and is read no further.

        >>> collapse([("a", 3, 1.0, 0.9), ("a", 5, 1.0, 0.8), ("a", 2, 1.0, 0.5)])
        [('a', 3, [2, 3])]
    """
    by_document: dict[str, dict[int, float]] = {}
    best_of: dict[str, int] = {}
    document_score: dict[str, float] = {}
    for doc, ord_, doc_score, chunk_score in chunks:
        if limit is not None and doc not in best_of and len(best_of) == limit:
            break
        best_of.setdefault(doc, ord_)
        by_document.setdefault(doc, {}).setdefault(ord_, chunk_score)
        document_score.setdefault(doc, doc_score)
    out: list[tuple[str, int, list[int]]] = []
    for doc, scores in by_document.items():
        best = best_of[doc]
        floor = share * scores[best]
        parts = [best]
        for step in (-1, 1):
            ord_ = best + step
            while abs(ord_ - best) <= neighbours and scores.get(ord_, float("-inf")) >= floor:
                parts.append(ord_)
                ord_ += step
        out.append((doc, best, sorted(parts)))
    # Stable sort: documents already arrive best first; equal scores keep their order.
    order = {doc: i for i, doc in enumerate(by_document)}
    out.sort(key=lambda item: (-document_score[item[0]], order[item[0]]))
    return out


def join_parts(parts: Sequence[ChunkRow]) -> str:
    """The text of consecutive chunks of one document, each shared sentence once.

    Chunks overlap by whole sentences: the next chunk starts with the last sentences of the
    one before. Non-consecutive parts are joined with an ellipsis.

        >>> rows = [ChunkRow(1, "d", 0, None, "One. Two. Three.", 4, {}, None),
        ...         ChunkRow(2, "d", 1, None, "Three. Four.", 3, {}, None)]
        >>> join_parts(rows)
        'One. Two. Three. Four.'
    """
    return joined_parts(parts)[0]


def joined_parts(parts: Sequence[ChunkRow],
                 counter: TiktokenCounter | None = None) -> tuple[str, int | None]:
    """`join_parts` of `parts` and, with `counter` (the encoding the parts' stored counts are
    in), its tokens from those counts: where the next chunk's new sentences start at a cut
    (`contextd.tokens.is_cut`), the joined text's tokens are the chunks' less the shared
    sentences' own, so only those are encoded. None when some join is not such a cut.

        >>> from contextd.tokens import get_counter
        >>> counter = get_counter()
        >>> rows = [ChunkRow(i, "d", i, None, text, counter.count(text), {}, None)
        ...         for i, text in enumerate(["One. Two. Three.", "Three. Four."])]
        >>> text, tokens = joined_parts(rows, counter)
        >>> text, tokens == counter.count(text)
        ('One. Two. Three. Four.', True)
    """
    text = ""
    tokens: int | None = None
    counting = counter is not None and counter.cuts_known
    previous: ChunkRow | None = None
    for part in sorted(parts, key=lambda p: p.ord):
        if previous is None:
            text, tokens = part.text, part.tokens if counting else None
        else:
            shared: int | None = None  # not consecutive: joined whole, after an ellipsis
            added = " … " + part.text
            if part.ord == previous.ord + 1:
                shared = _shared_prefix(text, part.text)
                rest = part.text[shared:].lstrip()
                added = " " + rest if rest else ""
            if tokens is not None and counter is not None and added:
                tokens = _added_tokens(counter, text, tokens, part, shared, added)
            text += added
        previous = part
    return text, tokens


def _added_tokens(counter: TiktokenCounter, text: str, tokens: int, part: ChunkRow,
                  shared: int | None, added: str) -> int | None:
    """Tokens of `text + added`, where `added` is the separator and the part of `part`'s text
    not shared with `text`: `text`'s tokens and `added`'s, when the join is a cut."""
    if not is_cut(text + added, len(text)):
        return None
    if shared and part.text[shared:] == added and is_cut(part.text, shared):
        # `added` is the chunk from the space after its shared sentences on, a cut of it.
        return tokens + part.tokens - counter.count(part.text[:shared])
    if not shared and added.endswith(part.text):
        return tokens + prepended_count(counter, added[:-len(part.text)], part.text,
                                        part.tokens)
    return None


def _shared_prefix(before: str, after: str) -> int:
    """The end of `after`'s leading sentences that `before` ends with (0: none)."""
    shared = 0
    for _, end in split_sentences(after):
        if before.endswith(after[:end]):
            shared = end
    return shared
