"""The API fuzzed against its own published OpenAPI document with schemathesis, over real HTTP to
`ledgerlink local` (gateway, handlers, moto's server, the Xero simulator).

Every operation of ``/v1/openapi.json`` gets generated requests, valid ones and deliberately broken
ones, from three callers: an Admin and a standard user of a business whose Xero organisation is
connected with its six lists imported (so the routes do real work: settings checked against the
imported tax rates, items coded and previewed, rules stored, refreshes queued), and an Admin of a
business with no connection. Every answer must be: no 5xx; a status the document lists for the
operation, with a body matching the schema documented for it; every 4xx in the API's error format
``{"error": {"code", "message", "field"?}}``.

Reproducible: a fixed seed, Hypothesis derandomised and without its example database, so CI sends
the same requests as a laptop (bar the ids the API itself hands out, which schemathesis reuses in
later requests); a failure prints a curl command that replays it.

Nothing is left out: the OAuth callback is fuzzed too (public, and without a valid single-use state
it can only refuse). One operation is pointed elsewhere, see ``DISPOSABLE``. The document's own
route is not in the document; the ``base_url`` fixture fetches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sandbox.devauth import mint_token
from sandbox.openapi import merged_openapi

pytestmark = pytest.mark.e2e

SEED = 20261125
# Bounded: the coverage phase sends each operation a fixed set of boundary and invalid cases (missing
# and wrongly typed fields, edge lengths, odd content types), about 50 per operation; the fuzzing
# phase adds this many random cases per operation, half of them invalid on purpose.
FUZZ_EXAMPLES = 10

CONNECTED = "fuzz-connected"
UNCONNECTED = "fuzz-unconnected"
# DELETE /v1/connection by the connected business's Admin goes to this business instead, connected
# afresh (KashFlow logs in directly) before each request: a disconnect would leave every later
# request looking at a business with no connection, and the fuzz would stop doing real work.
DISPOSABLE = "fuzz-disconnect"
KASHFLOW = {"username": "demo", "password": "demo-password", "memorable_word": "ledgerlink"}


@dataclass(frozen=True)
class Caller:
    business: str
    role: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.business, self.role)}"}


ADMIN_CONNECTED = Caller(CONNECTED, "admin")
OTHER_CALLERS = {"standard-connected": Caller(CONNECTED, "standard"), "admin-unconnected": Caller(UNCONNECTED, "admin")}  # fmt: skip


def _wait_until(check: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def _connect_xero(api: httpx.Client) -> None:
    """Xero through its consent page (approved at once: the runtime runs with --auto-consent), the
    first organisation offered, then the first import of the six lists."""
    started = api.post("/v1/connection", json={"provider": "xero"})
    assert started.status_code == 201, started.text
    landed = httpx.get(started.json()["authorize_url"], follow_redirects=True, timeout=30)
    assert landed.status_code == 200, landed.text
    if landed.json()["status"] == "choose_organisation":
        organisation = api.get("/v1/connection/organisations").json()["organisations"][0]
        chosen = api.post("/v1/connection/organisation", json={"organisation_id": organisation["id"]})
        assert chosen.status_code == 200, chosen.text

    def imported() -> bool:
        lists = api.get("/v1/connection").json()["lists"]
        return len(lists) == 6 and all(entry["refreshed_at"] for entry in lists.values())

    _wait_until(imported, "the first import of the connected business's lists")


@pytest.fixture(scope="module")
def base_url(local: dict[str, str]) -> Iterator[str]:
    base = local["API"].removesuffix("/v1")
    served = httpx.get(f"{base}/v1/openapi.json", timeout=30).json()
    assert served == merged_openapi(base), "the fuzzed document is not the one the runtime serves"
    with httpx.Client(base_url=base, headers=ADMIN_CONNECTED.headers, timeout=30) as api:
        _connect_xero(api)
    yield base


def _disposable_connection(base_url: str) -> dict[str, str]:
    admin = Caller(DISPOSABLE, "admin")
    connected = httpx.post(
        f"{base_url}/v1/connection",
        json={"provider": "kashflow", "credentials": KASHFLOW},
        headers=admin.headers,
        timeout=30,
    )
    assert connected.status_code in (201, 409), connected.text  # 409: the last request kept it
    return admin.headers


@schemathesis.check
def error_format(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx, whoever refused (the gateway, request validation or a service), reads
    ``{"error": {"code", "message", "field"?, "details"?}}``, so a client needs one error parser."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"a {response.status_code} in {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error format: {body!r}"
    detail = body["error"]
    assert isinstance(detail, dict), f"not the error format: {body!r}"
    assert {"code", "message"} <= set(detail) <= {"code", "message", "field", "details"}, body
    assert all(isinstance(detail[key], str) and detail[key] for key in ("code", "message")), body
    assert isinstance(detail.get("field", ""), str), body
    assert isinstance(detail.get("details", {}), dict), body
    return True


# Not among them: negative_data_rejection (every schema-violating request refused). Validation is
# pydantic's lax mode, which takes 0 for false or "12" for 12 on purpose; what the invalid requests
# here must never cause is a 5xx or an answer off the document.

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_format,
]
# The local runtime runs each function one invocation at a time (one container), so an API call can
# wait behind the same function's queue batch, backing off from a ledger's 429: a slow answer here
# is that wait, not a failure (in AWS the call gets a container of its own).
REQUEST_TIMEOUT = 60
# Health checks judge the generation (slow or much-filtered data for the larger bodies), not the API.
HYPOTHESIS = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))


def _schema(*phases: str) -> Any:
    """The document `ledgerlink local` serves at /v1/openapi.json, built by the same function (the
    ``base_url`` fixture checks the served one is exactly this). Loaded at collection, so that
    schemathesis can make one test per operation."""
    config = {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES},
        "phases": {
            name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing", "stateful")
        },
    }
    return schemathesis.openapi.from_dict(merged_openapi(), config=schemathesis.Config.from_dict(config))


# The connected business's Admin reaches every code path, so it gets the coverage phase's boundary
# cases as well; for the other two callers, the same cases would mostly stop at the same validation,
# so they get the random cases only (this keeps the file near a minute on two busy cores).
@_schema("coverage", "fuzzing").parametrize()
@HYPOTHESIS
def test_admin_of_a_connected_business_gets_documented_answers(case: schemathesis.Case, base_url: str):
    headers = ADMIN_CONNECTED.headers
    if (case.operation.method.upper(), case.operation.path) == ("DELETE", "/v1/connection"):
        headers = _disposable_connection(base_url)
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT)


@pytest.fixture(scope="module", params=sorted(OTHER_CALLERS))
def other_caller(request: pytest.FixtureRequest) -> Caller:
    return OTHER_CALLERS[request.param]


@_schema("fuzzing").parametrize()
@HYPOTHESIS
def test_standard_user_and_unconnected_business_get_documented_answers(
    case: schemathesis.Case, base_url: str, other_caller: Caller
):
    case.call_and_validate(
        base_url=base_url, headers=other_caller.headers, checks=CHECKS, timeout=REQUEST_TIMEOUT
    )


def test_a_login_the_ledger_refuses_is_the_callers_error(base_url: str):
    """Found by the fuzz: KashFlow refusing a login came back as a 502 (a ledger failure) where the
    Admin has only to correct what they typed."""
    refused = httpx.post(
        f"{base_url}/v1/connection",
        json={"provider": "kashflow", "credentials": {**KASHFLOW, "password": "not-the-password"}},
        headers=Caller(UNCONNECTED, "admin").headers,
        timeout=REQUEST_TIMEOUT,
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["field"] == "credentials"
    assert "user name or password" in refused.json()["error"]["message"]
