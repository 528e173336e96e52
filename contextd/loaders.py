"""Reading documents from files: JSONL (contextd or BEIR rows) or a folder of .txt/.md.

    >>> docs = list(read_documents(Path("docs/")))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contextd.errors import InvalidRequest


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    """Documents from a JSONL file (contextd `{id, text, title?, metadata?}` or BEIR
    `{_id, title, text}`) or from the .txt and .md files under a folder."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md")):
            text = file.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                rel = file.relative_to(path).as_posix()
                yield {"id": _safe_id(rel), "text": text, "title": file.stem,
                       "metadata": {"path": rel}}
        return
    if not path.exists():
        raise InvalidRequest(f"{path} does not exist: give a .jsonl file or a folder")
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


def _safe_id(raw: str) -> str:
    from contextd.eval.beir import document_id

    return document_id(raw)
