"""Text cut into terms exactly as a namespace's FTS5 index cuts it, by SQLite itself.

The in-memory bm25 index (`contextd.store.lexical_index`) must rank as FTS5 does, so it must
see the same terms: unicode61 word breaks, case and diacritics folded, then FTS5's own porter
stemmer (which is not quite Snowball's). Rather than re-implement those, text is first split
at characters unicode61 always treats as separators (white space and ASCII punctuation), and
each distinct piece goes once through a scratch FTS5 table in an in-memory database with the
tokenizer the namespace schema declares; its terms come back from an `fts5vocab` table and are
remembered. A piece may hold several terms ("foo_bar", "x²") or none ("_").

    >>> tokens = Fts5Tokens()
    >>> tokens.terms(["Running", "foo_bar", "naïve", "_"])
    {'Running': ('run',), 'foo_bar': ('foo', 'bar'), 'naïve': ('naiv',), '_': ()}
    >>> split_pieces("Vitamin-D (25OH) levels.")
    ['Vitamin', 'D', '25OH', 'levels']
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable

from contextd.store.schema import FTS5_TOKENIZE

# Runs of anything but white space and ASCII punctuation: unicode61 (default categories
# L* N* Co) never joins characters across those, so tokenizing each run alone gives the
# same terms as tokenizing the whole text.
_PIECE = re.compile(r"[^\s!-/:-@\[-`{-~]+")
# Pieces whose terms are remembered; stemming never changes, so only memory bounds it.
MAX_REMEMBERED = 500_000


def split_pieces(text: str | None) -> list[str]:
    """`text` cut at white space and ASCII punctuation (never inside an FTS5 term)."""
    return _PIECE.findall(text) if text else []


class Fts5Tokens:
    """FTS5's tokenizer (the schema's `tokenize` option) run on a scratch in-memory table.

    Thread-safe: one connection, used under a lock.
    """

    def __init__(self, tokenize: str = FTS5_TOKENIZE) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._conn.execute(f"CREATE VIRTUAL TABLE scratch USING fts5(text, tokenize='{tokenize}')")
        self._conn.execute("CREATE VIRTUAL TABLE scratch_terms USING fts5vocab(scratch, "
                           "'instance')")
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, ...]] = {}

    def terms(self, pieces: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The terms FTS5 makes of each distinct piece, in order."""
        wanted = dict.fromkeys(pieces)
        known = self._known
        missing = [p for p in wanted if p not in known]
        if missing:
            made = self.tokenize(missing)
            with self._lock:
                if len(known) + len(made) > MAX_REMEMBERED:
                    known.clear()
                known.update(made)
            return {p: known.get(p) or made[p] for p in wanted}
        return {p: known[p] for p in wanted}

    def tokenize(self, pieces: list[str]) -> dict[str, tuple[str, ...]]:
        """The terms of each of `pieces`, not remembered (for callers that keep their own)."""
        found: dict[int, list[str]] = {}
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                conn.executemany("INSERT INTO scratch(rowid, text) VALUES (?, ?)",
                                 enumerate(pieces))
                for doc, term in conn.execute(
                        "SELECT doc, term FROM scratch_terms ORDER BY doc, offset"):
                    found.setdefault(doc, []).append(term)
            finally:
                conn.execute("ROLLBACK")  # the scratch table is empty again
        return {p: tuple(found.get(i, ())) for i, p in enumerate(pieces)}
