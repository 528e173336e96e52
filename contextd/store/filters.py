"""Metadata filters compiled to SQL over `documents.metadata` (JSON).

    >>> sql, params = compile_filter({"lang": "en", "year": {"$gte": 2020}})
    >>> params
    ['en', 2020]
"""

from __future__ import annotations

import re
from typing import Any

from contextd.errors import InvalidRequest
from contextd.models import METADATA_KEY_PATTERN, check_json_scalar

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SCALAR = (str, int, float, bool)
MAX_FILTER_VALUES = 1_000


def compile_filter(filters: dict[str, Any] | None, alias: str = "d") -> tuple[str, list[Any]]:
    """A SQL condition on documents aliased `alias` and its parameters; ("1", []) for none."""
    if not filters:
        return "1", []
    if not isinstance(filters, dict):
        raise InvalidRequest("filters must be an object: {key: value} or {key: {op: value}}")
    clauses: list[str] = []
    params: list[Any] = []
    for key, condition in filters.items():
        if not isinstance(key, str) or not re.fullmatch(METADATA_KEY_PATTERN, key):
            raise InvalidRequest(f"filter key {key!r} is not a valid metadata key")
        field = f"json_extract({alias}.metadata, '$.\"{key}\"')"
        ops = condition if isinstance(condition, dict) else {"$eq": condition}
        if not ops:
            raise InvalidRequest(f"filter on {key!r} has no operator")
        for op, value in ops.items():
            clause, values = _compile_op(key, field, op, value)
            clauses.append(clause)
            params.extend(values)
    return " AND ".join(f"({c})" for c in clauses), params


def _compile_op(key: str, field: str, op: str, value: Any) -> tuple[str, list[Any]]:
    # json_each yields a scalar once and a list item by item, so equality and membership also
    # match list-valued fields that contain the value.
    each = field.replace("json_extract(", "json_each(", 1)
    if op in ("$eq", "$ne"):
        _check_scalar(key, op, value)
        negate = "NOT " if op == "$ne" else ""
        return f"{negate}EXISTS (SELECT 1 FROM {each} WHERE value = ?)", [_sql_value(value)]
    if op in _COMPARISONS:
        _check_scalar(key, op, value)
        return f"{field} {_COMPARISONS[op]} ?", [_sql_value(value)]
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or not value or len(value) > MAX_FILTER_VALUES:
            raise InvalidRequest(
                f"filter {key!r} {op} needs a non-empty list of at most {MAX_FILTER_VALUES} values"
            )
        for item in value:
            _check_scalar(key, op, item)
        marks = ", ".join("?" for _ in value)
        negate = "NOT " if op == "$nin" else ""
        return (
            f"{negate}EXISTS (SELECT 1 FROM {each} WHERE value IN ({marks}))",
            [_sql_value(v) for v in value],
        )
    if op == "$exists":
        if not isinstance(value, bool):
            raise InvalidRequest(f"filter {key!r} $exists needs true or false")
        return f"{field} IS {'NOT ' if value else ''}NULL", []
    raise InvalidRequest(
        f"unknown filter operator {op!r} on {key!r}: use one of "
        f"{', '.join([*_COMPARISONS, '$in', '$nin', '$exists'])}"
    )


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
