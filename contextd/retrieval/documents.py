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
    text = ""
    previous: ChunkRow | None = None
    for part in sorted(parts, key=lambda p: p.ord):
        if previous is None:
            text = part.text
        elif part.ord != previous.ord + 1:
            text += " … " + part.text
        else:
            text += _after_overlap(text, part.text)
        previous = part
    return text


def _after_overlap(before: str, after: str) -> str:
    """`after` without its leading sentences that `before` ends with, with a separator."""
    shared = 0
    for _, end in split_sentences(after):
        if before.endswith(after[:end]):
            shared = end
    rest = after[shared:].lstrip()
    return (" " + rest) if rest else ""
