"""When two near-identical queries may share a cached answer: a token-level diff, on principle.

Embeddings put "how do I increase the dose" and "how do I decrease the dose" side by side
(cosine ~0.9 with all-MiniLM-L6-v2), and likewise a query and its negation, or the same question
about another year, product or city: the known false hits of semantic caches. A cosine threshold
cannot tell these apart, because the vectors are close precisely when the wording is. So a
near-duplicate is served from the cache only if, on top of the cosine threshold, the two queries
use the same words up to what cannot change the meaning:

* **Normalisation.** Unicode NFKC, lower case for comparison, sentence punctuation dropped; signs,
  decimals, ``%``, currency symbols and ``+``/``#`` stay (``C++``, ``3.5``, ``-2``, ``$5``).
  Contractions are split (``don't`` -> ``do not``), hyphenated words are split into their words.
* **Stop words are ignored**: articles, pronouns, auxiliaries and modals, ``to``/``of``/``for``/
  ``in``/``on``/``at``/``with``, and request fillers ("please", "tell me"). Words that can change
  the meaning on their own are not stop words: question words, quantifiers (``all``, ``some``,
  ``only``), directions (``from``, ``off``, ``out``, ``up``), comparison (``than``, ``more``).
* **Negations must match exactly** ("not", "no", "never", "without", "none", "neither", "nor",
  "except", "unless"...), counted, so one more or one fewer is a miss.
* **Numbers and dates must match exactly**: digits in any form, number and ordinal words,
  months, weekdays, relative days ("today", "tomorrow"), parts of the day and seasons.
* **Named entities must match exactly** (no stemming): words capitalised away from a sentence
  start, acronyms, words with digits, underscores, dots or inner capitals (``getUser``), URLs,
  and quoted strings, which count as one entity each.
* **Question words must match** ("how" is not "why"), unless one query is a bare phrase
  ("sort a list in Go") whose type the other's question word fixes; a yes/no question ("is
  support open on Sunday") is not a bare phrase, so it never pairs with "when is support open".
* **Every other content word must be the same word or an inflection of one in the other query**
  (plural, ``-ed``, ``-ing``, third person ``-s``: "runs" ~ "running"). Derivations, synonyms and
  antonyms are not inflections, so "increase"/"decrease", "cheap"/"cheaper" and "fix"/"repair"
  are misses. A synonym is a lost hit; treating an antonym as a synonym is a wrong answer.
* **Order matters where it carries meaning**: entities and numbers must come in the same order
  ("USD to EUR" is not "EUR to USD"), and when either query has a relation word ("to", "from",
  "than", "vs", "before", "after", "into", "per", "by"...) so must every compared word ("is a dog
  bigger than a cat"). Otherwise a reordering is a paraphrase ("password reset: how?").
* A query with nothing left to compare (only stop words) is never a near-duplicate hit.

The rule only ever removes hits, so a wrong guess costs a cache miss, never a wrong response.

    >>> same_meaning("How do I reset my password?", "how can i reset the password").same
    True
    >>> same_meaning("flights to Paris in May", "flights to Paris in June").reason
    'date'
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Reason = Literal["negation", "number", "date", "entity", "question", "content", "order",
                 "empty"]
TokenKind = Literal["stop", "negation", "number", "date", "entity", "question", "content"]

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_WORDS = _words("""
a an the this that these those there here it its i me my mine myself we us our ours you your
yours he him his she her they them their is are was were be been being am do does did doing
have has had having can could would should will shall may might must 's 're 'll 've 'd 'm
to of for in on at with about and or so just also really very please kindly any
tell know wondering wonder help hi hello hey thanks thank quick question way ways steps possible
want
""")

NEGATIONS = _words("""
not no never without none nobody nothing nowhere neither nor cannot except excluding unless
hardly barely instead non
""")

_NUMBER_WORDS = _words("""
zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
hundred thousand million billion trillion dozen half once twice thrice double triple single
first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth twentieth
hundredth thousandth last next previous final
""")

# "may" and "march" are months only when capitalised away from a sentence start (see _kind).
_DATE_WORDS = _words("""
january february april june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thurs fri sat sun
today tomorrow yesterday tonight weekend weekday weekdays morning afternoon evening night
noon midnight daily weekly monthly yearly annually hourly quarterly spring summer autumn winter
pm ago
""")

QUESTION_WORDS = _words("what how why when where which who whom whose")
# A query opening with one of these asks yes or no.
_AUXILIARIES = _words("""
is are was were am do does did can could would should will shall may might must have has had
""")

# Words that make the order of the others part of the meaning.
RELATION_WORDS = _words("""
to from than into onto vs versus before after over under between per by against toward towards
""")

_MONTH_OR_MODAL = frozenset({"may", "march"})
_NEGATED_AUXILIARY = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}
_IRREGULAR = {
    "children": "child", "men": "man", "women": "woman", "people": "person", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose", "data": "datum",
}

_TOKEN = re.compile(
    r"""(?P<url>\b(?:https?|ftp)://\S+)
      | "(?P<dq>[^"]{1,200})" | “(?P<cq>[^”]{1,200})” | (?<!\w)'(?P<sq>[^']{1,200})'(?!\w)
      | (?P<word>(?:(?<![\w.])-(?=\d))?[$€£¥]?[\w][\w.+#%$€£¥/:'-]*)""",
    re.VERBOSE,
)
_TRAILING = ".:/'-"
_BOUNDARY = re.compile(r"[.!?;:]")
_HAS_DIGIT = re.compile(r"\d")
_CODE_LIKE = re.compile(r"[_.]|[a-z][A-Z]|\+\+|#")


@dataclass(frozen=True)
class Token:
    """One compared unit of a query: its lower-case form and what kind of word it is."""

    text: str
    kind: TokenKind


@dataclass(frozen=True)
class Verdict:
    """Whether two queries mean the same for the cache, and if not, the first difference.

        >>> same_meaning("is ibuprofen safe", "is ibuprofen not safe")
        Verdict(same=False, reason='negation', detail='not')
    """

    same: bool
    reason: Reason | None = None
    detail: str | None = None


def normalise(query: str) -> str:
    """The query as the exact-match key sees it: case, spacing and sentence punctuation folded.

        >>> normalise("  How do I   reset my Password?? ")
        'how do i reset my password'
        >>> normalise("C++ vs C: which is faster?")
        'c++ vs c which is faster'
    """
    return " ".join(_raw_tokens(query))


def tokens(query: str) -> tuple[Token, ...]:
    """The query's tokens, each with its kind (stop words included, marked ``stop``).

        >>> [t.kind for t in tokens("Don't book flights to Rome on 3 May")]
        ['stop', 'negation', 'content', 'content', 'stop', 'entity', 'stop', 'number', 'date']
    """
    return _analyse(query)


def same_meaning(a: str, b: str) -> Verdict:
    """Whether `a` and `b` may share a cached response (see the module docstring for the rule).

        >>> same_meaning("running shoes for flat feet", "shoes for running, flat foot").same
        True
        >>> same_meaning("increase the dose", "decrease the dose")
        Verdict(same=False, reason='content', detail='increase')
        >>> same_meaning("convert USD to EUR", "convert EUR to USD").reason
        'order'
    """
    ta = [t for t in _analyse(a) if t.kind != "stop"]
    tb = [t for t in _analyse(b) if t.kind != "stop"]
    if not ta or not tb:
        return Verdict(False, "empty")
    for kind in ("negation", "number", "date"):
        ca = Counter(t.text for t in ta if t.kind == kind)
        cb = Counter(t.text for t in tb if t.kind == kind)
        if ca != cb:
            return Verdict(False, kind, _first((ca - cb) + (cb - ca)))  # type: ignore[arg-type]
    for mine, theirs in ((ta, tb), (tb, ta)):
        forms = {t.text for t in theirs}
        for t in mine:
            if t.kind == "entity" and t.text not in forms:
                return Verdict(False, "entity", t.text)
        for t in mine:
            if t.kind == "content" and not any(_inflections_meet(t.text, o.text) for o in theirs):
                return Verdict(False, "content", t.text)
    question = _question_type_differs(a, b, ta, tb)
    if question:
        return Verdict(False, "question", question)
    relation = any(t.text in RELATION_WORDS for t in (*_analyse(a), *_analyse(b)))
    ordered = ("content", "entity", "number", "date") if relation else ("entity", "number", "date")
    if not _same_order([t for t in ta if t.kind in ordered], [t for t in tb if t.kind in ordered]):
        return Verdict(False, "order")
    return Verdict(True)


# --------------------------------------------------------------------------- internals


def _question_type_differs(a: str, b: str, ta: list[Token], tb: list[Token]) -> str | None:
    """The question word that makes the two ask different things, if any.

    Both queries must use the same question words, or one of them must be a bare phrase ("sort
    a list in Go") whose type the other's question word fixes; a yes/no question ("is support
    open on Sunday") is not a bare phrase, so it never pairs with "when is support open".
    """
    qa = {t.text for t in ta if t.kind == "question"}
    qb = {t.text for t in tb if t.kind == "question"}
    if qa == qb:
        return None
    if qa and qb:
        return sorted(qa ^ qb)[0]
    bare, asked = (a, qb) if not qa else (b, qa)
    first = next((t for t in _analyse(bare)
                  if t.text not in ("please", "so", "hi", "hello", "hey", "quick", "question")),
                 None)
    return sorted(asked)[0] if first is not None and first.text in _AUXILIARIES else None


def _first(counter: Counter[str]) -> str:
    return sorted(counter)[0]


def _prepare(query: str) -> str:
    text = unicodedata.normalize("NFKC", query)
    return text.replace("’", "'").replace("‘", "'")


def _raw_tokens(query: str) -> list[str]:
    return [t.text for t in _analyse(query)]


@lru_cache(maxsize=4096)
def _analyse(query: str) -> tuple[Token, ...]:
    text = _prepare(query)
    out: list[Token] = []
    prev_end = 0
    for match in _TOKEN.finditer(text):
        sentence_start = not out or bool(_BOUNDARY.search(text[prev_end:match.start()]))
        prev_end = match.end()
        quoted = match.group("dq") or match.group("cq") or match.group("sq")
        if match.group("url"):
            out.append(Token(match.group("url").rstrip(_TRAILING + ",").lower(), "entity"))
        elif quoted:
            out.append(Token(normalise(quoted), "entity"))
        else:
            word = match.group("word").rstrip(_TRAILING)
            prev_end = match.start() + len(word)  # a stripped "." still ends the sentence
            for i, part in enumerate(_split_word(word)):
                out.extend(_classify(part, sentence_start and i == 0))
    return tuple(out)


def _split_word(word: str) -> list[str]:
    # Hyphens and slashes join words ("sign-in", "client/server") unless the token is a number,
    # date or code-like name ("COVID-19", "2024-05-01", "10/12"), which stays whole.
    if _HAS_DIGIT.search(word) or word.isupper():
        return [word]
    return [p for p in re.split(r"[-/]", word) if p]


def _classify(word: str, sentence_start: bool) -> list[Token]:
    lower = word.lower()
    if lower.endswith("n't") and len(lower) > 3:
        base = lower[:-3]
        return [Token(_NEGATED_AUXILIARY.get(base, base), "stop"), Token("not", "negation")]
    if lower == "cannot":
        return [Token("can", "stop"), Token("not", "negation")]
    for clitic in ("'s", "'re", "'ll", "'ve", "'d", "'m"):
        if lower.endswith(clitic) and len(lower) > len(clitic):
            return [*_classify(word[: -len(clitic)], sentence_start), Token(clitic, "stop")]
    return [Token(lower, _kind(word, lower, sentence_start))]


def _kind(word: str, lower: str, sentence_start: bool) -> TokenKind:
    if lower in NEGATIONS:
        return "negation"
    if _HAS_DIGIT.search(word):
        return "number" if word[0] in "-+$€£¥" or word[0].isdigit() else "entity"
    if lower in _NUMBER_WORDS:
        return "number"
    if lower in _DATE_WORDS:
        return "date"
    capitalised_inside = word[0].isupper() and not sentence_start and word != "I"
    if lower in _MONTH_OR_MODAL and capitalised_inside:
        return "date"
    if (len(word) >= 2 and word.isupper()) or _CODE_LIKE.search(word[1:] if word[0] == "." else
                                                                word):
        return "entity"
    if capitalised_inside:
        return "entity"
    if lower in QUESTION_WORDS:
        return "question"
    if lower in STOP_WORDS:
        return "stop"
    return "content"


def _base_forms(word: str) -> frozenset[str]:
    """The word and what it could be an inflection of: plural, -ed, -ing, third person -s."""
    forms = {word}
    if word in _IRREGULAR:
        forms.add(_IRREGULAR[word])
    n = len(word)
    if word.endswith("ies") and n > 4:
        forms.add(word[:-3] + "y")
    if word.endswith("ied") and n > 4:
        forms.add(word[:-3] + "y")
    if word.endswith("es") and n > 4:
        forms.add(word[:-2])
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and n > 3:
        forms.add(word[:-1])
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and n - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            forms.update({stem, stem + "e"})
            if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiousl":
                forms.add(stem[:-1])  # running -> run, stopped -> stop
    return frozenset(forms)


def _inflections_meet(a: str, b: str) -> bool:
    return a == b or not _base_forms(a).isdisjoint(_base_forms(b))


def _same_order(a: list[Token], b: list[Token]) -> bool:
    """Whether every word of `a` pairs with one of `b` (same form or inflection) in order."""
    if len(a) != len(b):
        # Repeats differ ("cat and cat" vs "cat"): pair what pairs, in order, and allow the rest.
        a, b = (a, b) if len(a) <= len(b) else (b, a)
    used: set[int] = set()
    last = -1
    for t in a:
        match = next((j for j, o in enumerate(b)
                      if j not in used and _inflections_meet(t.text, o.text)), None)
        if match is None:
            continue
        used.add(match)
        if match < last:
            return False
        last = match
    return True
