"""Fuzzing against the app's own OpenAPI schema (schemathesis, in process over ASGI), with a
key that may do everything: no request is a 5xx, every answer matches the schema declared for
its route and status, and no status is undocumented. Bounded: a few examples per operation in
each of three kinds: valid requests on the paths of data that exists (a namespace with a
document and a session), valid requests on generated paths, and invalid requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from contextd import Engine
from contextd.server import create_app

SECRET = "fuzz-admin-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
# Path parameters that name stored data, so valid requests reach past the 404s.
EXISTING = {"namespace": "default", "session_id": "s1", "doc_id": "d1"}
EXAMPLES = 4
# Every check on. Valid data may still be a 422 where it breaks a rule a JSON schema cannot
# state (a budget too small for its own query, a query empty while the history does not end
# with a user turn, a filter on a field in two contradictory ways): those are 422s with a
# message by design, so the positive-data check accepts them; 5xx are caught by
# not_a_server_error, undocumented statuses by status_code_conformance.
# Invalid data may also be too large to read (a 413 before the body is parsed): a rejection.
CONFIG = {"checks": {
    "positive_data_acceptance": {
        "expected-statuses": ["2xx", "401", "403", "404", "409", "413", "422"]},
    "negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415",
                              "422", "428", "429"]}}}


@pytest.fixture
def fuzz_app(make_engine: Callable[..., Engine]) -> FastAPI:
    engine = make_engine()
    engine.upsert_documents([{"id": "d1", "text": "Solar panels turn sunlight into power.",
                              "metadata": {"year": 2024}}])
    engine.append_messages("s1", [{"role": "user", "content": "What about solar?"}])
    return create_app(engine, api_key=SECRET)


def fuzz(operation: Any, mode: GenerationMode, **fixed: Any) -> str | None:
    """Run one operation's examples; the failure report, or None."""

    @given(operation.as_strategy(generation_mode=mode, **fixed))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH)

    try:
        run()
    except Unsatisfiable:
        return None  # no parameters to make invalid: nothing to send in this mode
    except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, together
        return f"{operation.label} ({mode.value}{', existing' if fixed else ''}):\n{exc}"
    return None


def test_no_request_breaks_the_contract(fuzz_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", fuzz_app, headers=AUTH,
        config=schemathesis.config.SchemathesisConfig.from_dict(CONFIG))
    assert fuzz_app.state.warmed.wait(60)  # loading the schema started the app
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 15
    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        existing = {k: v for k, v in EXISTING.items() if k in names}
        runs = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if existing:
            runs.append((GenerationMode.POSITIVE, {"path_parameters": existing}))
        for mode, fixed in runs:
            if (failure := fuzz(operation, mode, **fixed)) is not None:
                failures.append(failure)
    assert failures == [], "\n\n".join(failures)
