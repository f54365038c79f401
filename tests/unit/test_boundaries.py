"""Structural rules: the layer never imports upward, and the API speaks one error format."""

from __future__ import annotations

import ast
from pathlib import Path

from ledgerlink.api.auth import caller_from_event
from ledgerlink.errors import ConnectionExists, NotAuthenticated
from ledgerlink.models.common import Role

LAYER = Path(__file__).resolve().parents[2] / "shared" / "ledgerlink"
FORBIDDEN_ROOTS = {"functions", "sandbox", "infra", "tests"}


def test_the_layer_imports_nothing_from_functions_sandbox_infra_or_tests():
    offenders = []
    for path in LAYER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(LAYER)}: {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN_ROOTS
            ]
    assert offenders == []


def test_errors_render_in_the_one_format():
    assert ConnectionExists("already connected").body() == {
        "error": {"code": "connection_exists", "message": "already connected"}
    }
    assert ConnectionExists.status == 409


def test_caller_comes_from_authorizer_claims_plain_or_cognito_custom():
    plain = {
        "requestContext": {"authorizer": {"claims": {"sub": "u1", "business_id": "b1", "role": "admin"}}}
    }
    cognito = {
        "requestContext": {
            "authorizer": {"claims": {"sub": "u1", "custom:business_id": "b1", "custom:role": "standard"}}
        }
    }
    assert caller_from_event(plain).role == Role.ADMIN
    assert caller_from_event(cognito).role == Role.STANDARD


def test_missing_or_partial_identity_is_unauthenticated():
    for event in (
        {},
        {"requestContext": {"authorizer": {"claims": {"sub": "u1", "role": "admin"}}}},
        {"requestContext": {"authorizer": {"claims": {"sub": "u1", "business_id": "b", "role": "owner"}}}},
    ):
        try:
            caller_from_event(event)
        except NotAuthenticated:
            continue
        raise AssertionError(f"accepted {event}")


def test_every_route_of_the_api_is_answered_by_its_own_function():
    import importlib

    from infra.api_routes import ROUTES, FunctionName

    declared = {}
    for function in FunctionName:
        app = importlib.import_module(f"functions.{function.value}.handler").app
        for route in app._static_routes + app._dynamic_routes:
            declared[(route.method, route.openapi_path)] = function
    assert {(r.method, r.path): r.function for r in ROUTES} == declared
