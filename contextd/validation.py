"""Turning untyped input into contract models, with errors that say what to change.

    >>> from contextd.models import SearchRequest
    >>> parse(SearchRequest, {"query": "x"}).top_k
    10
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contextd.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """One line per problem: where it is and what is wrong."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse(model: type[M], value: M | dict[str, Any] | Any) -> M:
    """`value` as `model`, or InvalidRequest listing every problem."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc), errors=_plain(exc)) from None


def _plain(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
