"""Schemathesis against /openapi.json (T15): generated valid and invalid requests for every
operation, with Schemathesis's own checks (no 5xx, documented status codes and content types,
responses that match their schema, invalid data rejected).

The operations are driven one by one with Hypothesis (a fixed seed, a bounded number of
examples each) and every failure is collected, so one run reports all operations at fault.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from api_helpers import ADMIN, running_api
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.auths import AuthStorage

from conveyor import App

EXAMPLES_PER_OPERATION = 20
FUZZ_SEED = 20240517


class AdminToken:
    """Schemathesis auth provider: every generated request carries the admin token (except
    the negative cases that drop the header on purpose, which must then get 401)."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return ADMIN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


AUTH = AuthStorage(providers=[AdminToken()])


def _runner(operation: schemathesis.APIOperation, mode: GenerationMode,
            base_url: str) -> Callable[[], None]:
    @seed(FUZZ_SEED)
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, auth_storage=AUTH))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url)

    return run


def _modes(operation: schemathesis.APIOperation) -> list[GenerationMode]:
    """Negative data needs something to break: operations without parameters get none."""
    has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
    return [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])


@pytest.mark.slow  # about 1,200 generated requests
def test_openapi_conformance(job_app: App) -> None:
    job_app.enqueue("echo", args=[1])
    failures: list[str] = []
    with running_api(job_app) as server:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 28
        for operation in operations:
            for mode in _modes(operation):
                try:
                    _runner(operation, mode, server.url)()
                except BaseException as exc:  # collect every operation's failure, then report
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
