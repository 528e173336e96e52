"""Reading a BEIR dataset folder and turning its corpus into contextd documents.

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id  corpus-id  score`` with a header).
Only the queries judged in the chosen split are kept, as BEIR's own loader does.

BEIR ids may hold characters contextd ids refuse (spaces, ``#``, a leading ``_``...). Ids that
are already valid pass through unchanged, so the common numeric ids stay readable; any other id
is stored as ``beir64:`` + URL-safe base64 of its UTF-8 bytes. An id that already starts with
``beir64:`` is encoded too, which keeps the mapping one-to-one and `beir_id` its exact inverse,
so a run can be scored against the qrels without keeping a lookup table.

    >>> dataset = load_beir("tests/data/tiny-beir")
    >>> documents = list(beir_documents(dataset))
    >>> beir_id(documents[0].id) in dataset.corpus
    True
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contextd.errors import InvalidRequest
from contextd.models import ID_PATTERN, MAX_BATCH_DOCUMENTS, MAX_DOCUMENT_CHARS, Document

ENCODED_ID_PREFIX = "beir64:"
_VALID_ID = re.compile(ID_PATTERN)
_Where = tuple[Path, int]  # file and 1-based line number, for error messages
_MAX_TITLE_CHARS = Document.model_fields["title"].metadata[0].max_length


@dataclass(frozen=True)
class BeirDataset:
    """A loaded BEIR dataset, ready to index and score.

    `queries` holds only the queries judged in `split` (BEIR evaluates those alone);
    `unjudged_queries` says how many others ``queries.jsonl`` had. `empty_documents` lists the
    corpus ids whose text is blank: contextd cannot index them, so `beir_documents` skips them.

        >>> load_beir("tests/data/tiny-beir").split
        'test'
    """

    path: Path
    split: str
    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    unjudged_queries: int
    empty_documents: tuple[str, ...]
    missing_judged_documents: tuple[str, ...]
    """Judged corpus ids absent from ``corpus.jsonl``; they count as relevant but never found."""

    def summary(self) -> dict[str, Any]:
        """Counts worth printing next to the scores of a run.

        >>> load_beir("tests/data/tiny-beir").summary()["queries"]
        7
        """
        return {
            "path": str(self.path),
            "split": self.split,
            "documents": len(self.corpus),
            "indexable_documents": len(self.corpus) - len(self.empty_documents),
            "empty_documents": len(self.empty_documents),
            "queries": len(self.queries),
            "unjudged_queries": self.unjudged_queries,
            "judgements": sum(len(judged) for judged in self.qrels.values()),
            "missing_judged_documents": len(self.missing_judged_documents),
        }


def document_id(beir_doc_id: str) -> str:
    """The contextd document id for a BEIR corpus id (see the module docstring for the scheme).

    >>> document_id("31715818"), document_id("doc #7")
    ('31715818', 'beir64:ZG9jICM3')
    """
    if _VALID_ID.match(beir_doc_id) and not beir_doc_id.startswith(ENCODED_ID_PREFIX):
        return beir_doc_id
    encoded = ENCODED_ID_PREFIX + base64.urlsafe_b64encode(beir_doc_id.encode()).decode("ascii")
    if not _VALID_ID.match(encoded):
        raise InvalidRequest(
            f"BEIR id {beir_doc_id[:80]!r}... is too long to map to a contextd id "
            "(at most 256 characters once encoded); shorten the ids in the dataset"
        )
    return encoded


def beir_id(doc_id: str) -> str:
    """The BEIR corpus id a contextd document id came from; inverse of `document_id`.

    >>> beir_id("beir64:ZG9jICM3"), beir_id("31715818")
    ('doc #7', '31715818')
    """
    if not doc_id.startswith(ENCODED_ID_PREFIX):
        return doc_id
    try:
        return base64.urlsafe_b64decode(doc_id[len(ENCODED_ID_PREFIX) :]).decode()
    except ValueError as exc:  # binascii.Error, non-ASCII input or non-UTF-8 bytes
        raise InvalidRequest(f"{doc_id!r} is not an id made by document_id") from exc


def beir_documents(dataset: BeirDataset) -> Iterator[Document]:
    """The indexable corpus as `Document`s, in corpus order; blank-text documents are skipped.

    Their ids are in `dataset.empty_documents`. A title longer than a `Document` allows is cut
    to fit, since it only adds context; an over-long text is an error rather than a silent cut.

        >>> doc = next(beir_documents(load_beir("tests/data/tiny-beir")))
        >>> doc.id, doc.title
        ('bread-starter', 'Keeping a sourdough starter alive')
    """
    for corpus_id, fields in dataset.corpus.items():
        text = fields["text"]
        if not text.strip():
            continue
        if len(text) > MAX_DOCUMENT_CHARS:
            raise InvalidRequest(
                f"document {corpus_id!r} has {len(text):,} characters; contextd takes at most "
                f"{MAX_DOCUMENT_CHARS:,} per document"
            )
        title = fields["title"].strip()[:_MAX_TITLE_CHARS] or None
        yield Document(id=document_id(corpus_id), text=text, title=title)


def beir_document_batches(
    dataset: BeirDataset, size: int = MAX_BATCH_DOCUMENTS
) -> Iterator[list[Document]]:
    """`beir_documents` in lists of at most `size`, each small enough for one upsert request.

    >>> [len(batch) for batch in beir_document_batches(load_beir("tests/data/tiny-beir"), 10)]
    [10, 6]
    """
    if not 1 <= size <= MAX_BATCH_DOCUMENTS:
        raise ValueError(f"size must be between 1 and {MAX_BATCH_DOCUMENTS}, got {size}")
    batch: list[Document] = []
    for document in beir_documents(dataset):
        batch.append(document)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_beir(directory: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR dataset folder; raises `InvalidRequest` naming the file and line at fault.

    >>> dataset = load_beir("tests/data/tiny-beir")
    >>> len(dataset.corpus), len(dataset.queries)
    (17, 7)
    """
    root = Path(directory)
    if not root.is_dir():
        raise InvalidRequest(f"BEIR dataset folder {str(root)!r} does not exist")
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    corpus = read_corpus(root / "corpus.jsonl")
    all_queries = read_queries(root / "queries.jsonl")

    missing_queries = [qid for qid in qrels if qid not in all_queries]
    if missing_queries:
        raise InvalidRequest(
            f"qrels/{split}.tsv judges {len(missing_queries)} query id(s) that queries.jsonl "
            f"lacks, e.g. {missing_queries[:5]}; the qrels and queries files do not match"
        )
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(
        path=root,
        split=split,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        unjudged_queries=len(all_queries) - len(queries),
        empty_documents=tuple(cid for cid, doc in corpus.items() if not doc["text"].strip()),
        missing_judged_documents=tuple(
            sorted({cid for judged in qrels.values() for cid in judged if cid not in corpus})
        ),
    )


def read_corpus(path: Path) -> dict[str, dict[str, str]]:
    """``corpus.jsonl`` as id -> {"title", "text"}; a repeated id keeps its last line, as BEIR.

    >>> read_corpus(Path("tests/data/tiny-beir/corpus.jsonl"))["bee:waggle"]["title"]
    'The waggle dance'
    """
    corpus: dict[str, dict[str, str]] = {}
    for where, record in _read_jsonl(path):
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise _malformed(where, "'title' must be a string")
        corpus[_record_id(record, where)] = {"title": title, "text": _text(record, where)}
    return corpus


def read_queries(path: Path) -> dict[str, str]:
    """``queries.jsonl`` as id -> text (every query, judged or not).

    >>> read_queries(Path("tests/data/tiny-beir/queries.jsonl"))["q4"]
    'How do I fix a flat tire?'
    """
    queries: dict[str, str] = {}
    for where, record in _read_jsonl(path):
        text = _text(record, where)
        if not text.strip():
            raise _malformed(where, "a query needs non-blank 'text'")
        queries[_record_id(record, where)] = text
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A ``qrels/<split>.tsv`` file as query id -> {corpus id -> grade}; header line optional.

    >>> read_qrels(Path("tests/data/tiny-beir/qrels/test.tsv"))["q1"]
    {'bee:waggle': 2, 'bee:swarm': 0}
    """
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _read_lines(path):
        fields = line.rstrip("\r\n").split("\t")
        if number == 1 and fields[:3] == ["query-id", "corpus-id", "score"]:
            continue
        where = (path, number)
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise _malformed(
                where,
                "expected 3 tab-separated fields (query-id, corpus-id, score), "
                f"got {line.strip()[:80]!r}",
            )
        try:
            grade = int(fields[2])
        except ValueError:
            raise _malformed(where, f"score {fields[2]!r} is not an integer grade") from None
        qrels.setdefault(fields[0], {})[fields[1]] = grade
    return qrels


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines of a UTF-8 file with their 1-based numbers, read one at a time."""
    if not path.is_file():
        raise InvalidRequest(
            f"{path} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and "
            "qrels/<split>.tsv",
            file=str(path),
        )
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _malformed((path, number), "not valid UTF-8") from None
            if line.strip():
                yield number, line


def _read_jsonl(path: Path) -> Iterator[tuple[_Where, dict[str, Any]]]:
    for number, line in _read_lines(path):
        where = (path, number)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _malformed(where, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise _malformed(where, "expected a JSON object")
        yield where, record


def _malformed(where: _Where, problem: str) -> InvalidRequest:
    path, number = where
    return InvalidRequest(f"{path}, line {number}: {problem}", file=str(path), line=number)


def _record_id(record: dict[str, Any], where: _Where) -> str:
    value = record.get("_id")
    # Some exports write numeric ids as JSON numbers; BEIR compares them as strings.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _malformed(where, "'_id' must be a non-empty string")
    return value


def _text(record: dict[str, Any], where: _Where) -> str:
    text = record.get("text")
    if not isinstance(text, str):
        raise _malformed(where, "'text' must be a string")
    return text
