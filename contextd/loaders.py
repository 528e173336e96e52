"""Reading documents from files: JSONL (contextd or BEIR rows), one .txt/.md file, or a folder
of .txt/.md files.

    >>> docs = list(read_documents(Path("docs/")))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contextd.errors import InvalidRequest

TEXT_SUFFIXES = (".txt", ".md")


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    """Documents from a JSONL file (contextd `{id, text, title?, metadata?}` or BEIR
    `{_id, title, text}`), from one .txt or .md file (its name is the id), or from the .txt
    and .md files under a folder (their relative paths are the ids)."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES):
            doc = _text_document(file, file.relative_to(path).as_posix())
            if doc:
                yield doc
        return
    if not path.exists():
        raise InvalidRequest(f"{path} does not exist: give a .jsonl, .md or .txt file or a "
                             "folder of .md/.txt files")
    if path.suffix in TEXT_SUFFIXES:
        doc = _text_document(path, path.name)
        if doc:
            yield doc
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"{path}, line {number}: not JSON ({exc.msg})") from None
            if "_id" in row:
                doc = {"id": _safe_id(str(row["_id"])), "text": row.get("text", ""),
                       "title": row.get("title") or None,
                       "metadata": row.get("metadata") or {}}
            else:
                doc = row
            if doc.get("text"):
                yield doc


def _text_document(file: Path, rel: str) -> dict[str, Any] | None:
    text = file.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return None
    return {"id": _safe_id(rel), "text": text, "title": file.stem, "metadata": {"path": rel}}


def _safe_id(raw: str) -> str:
    from contextd.eval.beir import document_id

    return document_id(raw)
