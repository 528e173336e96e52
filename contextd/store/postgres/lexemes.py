"""Query terms as PostgreSQL lexemes: the same `english` stemming the stored text got.

The retriever hands every backend an FTS5 MATCH expression (`"term" OR "term"`); its quoted
terms are turned into lexemes once per process (stemming never changes) and into a tsquery
that matches any of them.

    >>> match_terms('"vitamin" OR "bones"')
    ['vitamin', 'bones']
    >>> tsquery_text(["vitamin", "bone"])
    "'vitamin' | 'bone'"
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def match_terms(match: str) -> list[str]:
    """The quoted terms of an FTS5 MATCH expression, in order."""
    return [m.replace('""', '"') for m in _QUOTED.findall(match)]


def tsquery_text(lexemes: Sequence[str]) -> str:
    """A tsquery (text form) matching any of `lexemes`, each quoted."""
    quoted = ("'" + lx.replace("\\", "\\\\").replace("'", "''") + "'" for lx in lexemes)
    return " | ".join(quoted)


class LexemeCache:
    """Term -> its lexemes under the `english` configuration, asked of the database once."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def lexemes(self, conn: Any, terms: Sequence[str]) -> dict[str, tuple[str, ...]]:
        missing = [t for t in dict.fromkeys(terms) if t not in self._known]
        if missing:
            rows = conn.execute(
                "SELECT t, tsvector_to_array(to_tsvector('english', t)) "
                "FROM unnest(%s::text[]) AS t", (missing,)).fetchall()
            with self._lock:
                if len(self._known) > 200_000:
                    self._known.clear()
                for term, found in rows:
                    self._known[term] = tuple(found)
        return {t: self._known.get(t, ()) for t in terms}

    def distinct(self, conn: Any, terms: Sequence[str]) -> list[str]:
        """Every lexeme of `terms`, once each, sorted: what a query searches for."""
        return sorted({lx for found in self.lexemes(conn, terms).values() for lx in found})
