"""One OpenAPI document for the whole API, merged from the four functions' resolvers (each
function generates its own part with Powertools)."""

from __future__ import annotations

import importlib
from typing import Any

from infra.api_routes import GATEWAY_ERRORS, ROUTES, FunctionName
from ledgerlink.api.schemas import ErrorBody

TITLE = "ledgerlink API"
VERSION = "1.0.0"


def merged_openapi(server_url: str | None = None) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        merged["servers"] = [{"url": server_url}]
    for function in FunctionName:
        app = importlib.import_module(f"functions.{function.value}.handler").app
        part = app.get_openapi_schema(title=TITLE, version=VERSION).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        for path, operations in part.get("paths", {}).items():
            merged["paths"].setdefault(path, {}).update(operations)
        merged["components"]["schemas"].update(part.get("components", {}).get("schemas", {}))
    merged["components"]["schemas"].update(_error_schemas())
    for route in ROUTES:
        operation = merged["paths"].get(route.path, {}).get(route.method.lower())
        if operation is None:
            continue
        if route.public:
            operation["security"] = []  # bound by OAuth state, not by a sign-in token
        _document_gateway_errors(operation, public=route.public)
    return merged


# What API Gateway answers itself, before any function runs (GATEWAY_ERRORS, by response type), on
# any route; the functions' own documents cannot know it. The authorizer's 401 only where a route
# has the authorizer; 413 where there is a body to be too large (DEFAULT_4XX keeps the gateway's
# status, and a REST API refuses a payload over 10 MB with 413).
_GATEWAY_STATUSES = {"UNAUTHORIZED": 401, "THROTTLED": 429, "DEFAULT_4XX": 413}


def _document_gateway_errors(operation: dict[str, Any], *, public: bool) -> None:
    responses = operation.setdefault("responses", {})
    for response_type, status in _GATEWAY_STATUSES.items():
        if (status == 401 and public) or (status == 413 and "requestBody" not in operation):
            continue
        error = GATEWAY_ERRORS[response_type]
        assert error.status in (None, status), f"GATEWAY_ERRORS[{response_type}] no longer answers {status}"
        responses.setdefault(
            str(status),
            {
                "description": error.message or "The request is too large",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            },
        )


def _error_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"ErrorBody": schema, **definitions}
