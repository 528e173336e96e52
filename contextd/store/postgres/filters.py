"""Metadata filters compiled to PostgreSQL over `documents.metadata` (JSONB).

The same tree as every backend (`contextd.store.filters.parse_filter`) and the same meaning:
equality and membership also match list-valued fields that contain the value, a missing field
(or a JSON null) does not exist, and comparisons only hold between values of one type.
Containment (`@>`) keeps equality and membership on the GIN index.

    >>> where, params = compile_postgres({"lang": "en", "year": {"$gte": 2020}})
    >>> params
    ['{"lang": "en"}', '{"lang": ["en"]}', 'year', 'year', 2020]
"""

from __future__ import annotations

import json
from typing import Any

from contextd.store.filters import Filter, parse_filter

_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def compile_postgres(filters: Filter | dict[str, Any] | None,
                     alias: str = "d") -> tuple[str, list[Any]]:
    """A condition on documents aliased `alias` and its parameters; ("true", []) for none.

        >>> compile_postgres(None)
        ('true', [])
    """
    tree = parse_filter(filters)
    if not tree:
        return "true", []
    field = f"{alias}.metadata"
    clauses: list[str] = []
    params: list[Any] = []
    for c in tree.conditions:
        if c.op in ("$eq", "$ne", "$in", "$nin"):
            # {"k": v} matches a scalar field equal to v, {"k": [v]} a list holding it.
            shapes = [json.dumps({c.key: shape}) for v in c.values for shape in (v, [v])]
            clause = f"{field} @> ANY(%s::jsonb[])"
            params.append(shapes)
            negate = c.op in ("$ne", "$nin")
            if c.op in ("$eq", "$ne") and len(shapes) == 2:
                clause = f"({field} @> %s::jsonb OR {field} @> %s::jsonb)"
                params[-1:] = shapes
            clauses.append(f"NOT {clause}" if negate else clause)
        elif c.op in _COMPARISONS:
            value = c.values[0]
            op = _COMPARISONS[c.op]
            if isinstance(value, bool):
                clauses.append(f"jsonb_typeof({field} -> %s) = 'boolean' AND "
                               f"({field} -> %s) {op} %s::jsonb")
                params.extend([c.key, c.key, json.dumps(value)])
            elif isinstance(value, int | float):
                clauses.append(f"jsonb_typeof({field} -> %s) = 'number' AND "
                               f"({field} ->> %s)::numeric {op} %s")
                params.extend([c.key, c.key, value])
            else:
                # Byte order, as SQLite compares text.
                clauses.append(f"jsonb_typeof({field} -> %s) = 'string' AND "
                               f"({field} ->> %s) COLLATE \"C\" {op} %s")
                params.extend([c.key, c.key, value])
        else:  # $exists
            test = "<>" if c.values[0] else "="
            clauses.append(f"coalesce(jsonb_typeof({field} -> %s), 'null') {test} 'null'")
            params.append(c.key)
    return " AND ".join(f"({c})" for c in clauses), params
