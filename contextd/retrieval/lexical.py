"""Lexical query building for SQLite FTS5.

User text is never passed to MATCH as is: FTS5 has its own query syntax, so every term is
quoted. Stop words are dropped (they add noise to bm25 and cost time on large indexes); the
porter tokenizer of the index stems the quoted terms.

    >>> fts_query("What is the effect of vitamin D on bones?")
    '"effect" OR "vitamin" OR "d" OR "bones"'
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 64

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each few for from further had hadn't has hasn't have haven't
    having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll
    i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor
    not of off on once only or other ought our ours ourselves out over own same shan't she she'd
    she'll she's should shouldn't so some such than that that's the their theirs them themselves
    then there there's these they they'd they'll they're they've this those through to too under
    until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where
    where's which while who who's whom why why's with won't would wouldn't you you'd you'll
    you're you've your yours yourself yourselves s t does did also just""".split()  # noqa: SIM905
)


def query_terms(text: str) -> list[str]:
    """Distinct lower-case terms of `text` without stop words, in order of appearance."""
    terms: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOP_WORDS:
            terms.setdefault(word, None)
    words = list(terms)
    if not words:
        # A query of stop words only still deserves a lexical attempt.
        words = list(dict.fromkeys(_WORD.findall(text.lower())))
    return words[:MAX_TERMS]


def fts_query(text: str, terms: list[str] | None = None) -> str:
    """An FTS5 MATCH expression: any of the query's terms (or `terms`), each quoted."""
    return " OR ".join(f'"{term}"' for term in (terms or query_terms(text)))
