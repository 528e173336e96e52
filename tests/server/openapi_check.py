"""Checks answers against the app's own /openapi.json: every body a test sees must match the
schema declared for its route, status and media type."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema


@dataclass
class Seen:
    method: str
    path: str
    status: int
    media_type: str
    body: Any


@dataclass
class OpenAPIBook:
    """Answers recorded during a test, checked against the schema afterwards."""

    seen: list[Seen] = field(default_factory=list)

    def record(self, method: str, path: str, status: int, content_type: str,
               body: bytes) -> None:
        media_type = content_type.split(";")[0].strip()
        if path in ("/openapi.json", "/docs"):  # the schema and its viewer describe nothing
            return
        if media_type.endswith("json") and body:
            self.seen.append(Seen(method.lower(), path, status, media_type, json.loads(body)))

    def check(self, schema: dict[str, Any]) -> int:
        """Validate every recorded body; returns how many were checked."""
        check_structure(schema)
        cache: Validators = {}
        for item in self.seen:
            found = find_operation(schema, item.method, item.path)
            if found is None:
                # No route (404) or no such method (405): still a documented Problem body.
                assert item.status in (404, 405), f"{item.method} {item.path} not in schema"
                validate(schema, {"$ref": "#/components/schemas/Problem"}, item.body, cache)
                continue
            template, operation = found
            responses = operation["responses"]
            assert str(item.status) in responses, (
                f"{item.method.upper()} {template} answered {item.status}, undocumented")
            content = responses[str(item.status)].get("content", {})
            assert item.media_type in content, (
                f"{item.method.upper()} {template} {item.status}: {item.media_type} not in "
                f"{sorted(content)}")
            validate(schema, content[item.media_type]["schema"], item.body, cache)
        return len(self.seen)


Validators = dict[str, jsonschema.Draft202012Validator]


def validate(schema: dict[str, Any], body_schema: dict[str, Any], body: Any,
             cache: Validators) -> None:
    """`body` against `body_schema`, its $refs resolved in the OpenAPI document's components."""
    key = json.dumps(body_schema, sort_keys=True)
    if key not in cache:
        resolvable = {**body_schema, "components": schema.get("components", {})}
        cache[key] = jsonschema.Draft202012Validator(resolvable)
    cache[key].validate(body)


def check_structure(schema: dict[str, Any]) -> None:
    """The parts of OpenAPI 3 structure the clients rely on."""
    assert re.match(r"^3\.\d+\.\d+$", schema["openapi"])
    assert schema["info"]["title"] and schema["info"]["version"]
    for template, path in schema["paths"].items():
        assert template.startswith("/")
        for method, operation in path.items():
            assert method in {"get", "post", "put", "patch", "delete"}, method
            assert operation["responses"], f"{method} {template} documents no responses"
            for status, response in operation["responses"].items():
                assert re.match(r"^[1-5]\d\d$", status)
                assert "description" in response
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        jsonschema.Draft202012Validator.check_schema(component), name


def find_operation(schema: dict[str, Any], method: str,
                   path: str) -> tuple[str, dict[str, Any]] | None:
    for template, operations in schema["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        # A document id may contain '/', so its segment matches the rest of the path.
        pattern = pattern.replace(r"documents/[^/]+", "documents/.+")
        if re.fullmatch(pattern, path) and method in operations:
            return template, operations[method]
    return None
