"""Metadata filters: parsed once into a small tree, then compiled per backend.

A request's `filters` object (`{key: value}` for equality, `{key: {op: value}}` otherwise)
is validated and parsed by `parse_filter` into a `Filter`: a conjunction of `Condition`s,
each a key, an operator and its values. A backend compiles that tree to its own query
language; `compile_sqlite` writes SQLite over `documents.metadata` (JSON). Equality and
membership also match list-valued fields that contain the value, on every backend.

    >>> tree = parse_filter({"lang": "en", "year": {"$gte": 2020}})
    >>> [(c.key, c.op, c.values) for c in tree.conditions]
    [('lang', '$eq', ('en',)), ('year', '$gte', (2020,))]
    >>> compile_sqlite(tree)[1]
    ['en', 2020]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contextd.errors import InvalidRequest
from contextd.models import METADATA_KEY_PATTERN, check_json_scalar

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = (*_COMPARISONS, "$in", "$nin", "$exists")
_SCALAR = (str, int, float, bool)
MAX_FILTER_VALUES = 1_000

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Condition:
    """`key` `op` `values`: one value for comparisons, the list for $in/$nin, a bool for
    $exists."""

    key: str
    op: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Filter:
    """All of `conditions` hold (an empty filter matches everything)."""

    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)


def parse_filter(filters: Filter | dict[str, Any] | None) -> Filter:
    """The tree of a request's `filters`; InvalidRequest saying what to change."""
    if isinstance(filters, Filter):
        return filters
    if not filters:
        return Filter()
    if not isinstance(filters, dict):
        raise InvalidRequest("filters must be an object: {key: value} or {key: {op: value}}")
    conditions: list[Condition] = []
    for key, condition in filters.items():
        if not isinstance(key, str) or not re.fullmatch(METADATA_KEY_PATTERN, key):
            raise InvalidRequest(f"filter key {key!r} is not a valid metadata key")
        ops = condition if isinstance(condition, dict) else {"$eq": condition}
        if not ops:
            raise InvalidRequest(f"filter on {key!r} has no operator")
        for op, value in ops.items():
            conditions.append(_condition(key, op, value))
    return Filter(tuple(conditions))


def _condition(key: str, op: str, value: Any) -> Condition:
    if op in _COMPARISONS:
        _check_scalar(key, op, value)
        return Condition(key, op, (value,))
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or not value or len(value) > MAX_FILTER_VALUES:
            raise InvalidRequest(
                f"filter {key!r} {op} needs a non-empty list of at most {MAX_FILTER_VALUES} values"
            )
        for item in value:
            _check_scalar(key, op, item)
        return Condition(key, op, tuple(value))
    if op == "$exists":
        if not isinstance(value, bool):
            raise InvalidRequest(f"filter {key!r} $exists needs true or false")
        return Condition(key, op, (value,))
    raise InvalidRequest(
        f"unknown filter operator {op!r} on {key!r}: use one of {', '.join(OPERATORS)}")


def compile_sqlite(filters: Filter | dict[str, Any] | None,
                   alias: str = "d") -> tuple[str, list[Any]]:
    """A SQLite condition on documents aliased `alias` and its parameters; ("1", []) for none.

        >>> compile_sqlite({"tag": {"$exists": True}})
        ('(json_extract(d.metadata, \\'$."tag"\\') IS NOT NULL)', [])
    """
    tree = parse_filter(filters)
    if not tree:
        return "1", []
    clauses: list[str] = []
    params: list[Any] = []
    for c in tree.conditions:
        field = f"json_extract({alias}.metadata, '$.\"{c.key}\"')"
        # json_each yields a scalar once and a list item by item, so equality and membership
        # also match list-valued fields that contain the value.
        each = field.replace("json_extract(", "json_each(", 1)
        if c.op in ("$eq", "$ne"):
            negate = "NOT " if c.op == "$ne" else ""
            clauses.append(f"{negate}EXISTS (SELECT 1 FROM {each} WHERE value = ?)")
            params.append(_sql_value(c.values[0]))
        elif c.op in _COMPARISONS:
            clauses.append(f"{field} {_COMPARISONS[c.op]} ?")
            params.append(_sql_value(c.values[0]))
        elif c.op in ("$in", "$nin"):
            marks = ", ".join("?" for _ in c.values)
            negate = "NOT " if c.op == "$nin" else ""
            clauses.append(f"{negate}EXISTS (SELECT 1 FROM {each} WHERE value IN ({marks}))")
            params.extend(_sql_value(v) for v in c.values)
        else:  # $exists
            clauses.append(f"{field} IS {'NOT ' if c.values[0] else ''}NULL")
    return " AND ".join(f"({c})" for c in clauses), params


def _check_scalar(key: str, op: str, value: Any) -> None:
    if not isinstance(value, _SCALAR):
        raise InvalidRequest(
            f"filter {key!r} {op} needs a string, number or boolean, not {type(value).__name__}"
        )
    try:
        check_json_scalar(value, f"filter {key!r} {op} value")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _sql_value(value: Any) -> Any:
    # json_extract returns JSON true/false as 1/0.
    if isinstance(value, bool):
        return int(value)
    return value
