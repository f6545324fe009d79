"""Schemathesis drives every operation of the server's OpenAPI spec with generated requests (valid and not) over
real HTTP, positive and negative: no answer is a 5xx. (Schemathesis' strategies under plain hypothesis: its pytest plugin does not
run on this pytest.)"""

from __future__ import annotations

import itertools
import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = int(os.environ.get("STREAMCHAR_FUZZ_EXAMPLES", 25))


def test_no_operation_answers_5xx(tiny_model, start_server):
    with start_server(tiny_model, max_sessions=4, idle_seconds=2, max_lead_seconds=None) as (url, _):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/sessions", "/v1/sessions/{session_id}/text",
                                                  "/v1/sessions/{session_id}/interrupt", "/v1/health"}
        seen: dict[str, set] = {}
        for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call(base_url=url, timeout=60)
                assert response.status_code < 500, (case.method, case.path, case.body, response.status_code,
                                                    response.text[:300])
                seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode == GenerationMode.NEGATIVE and not operation.body and not operation.query
    created = seen.get("POST /v1/sessions", set())
    assert created & {201, 429} and created & {400, 413, 422}, seen  # both valid and invalid requests were made
