"""One OpenAPI document for the whole API, merged from the four functions' resolvers (each
function generates its own part with Powertools)."""

from __future__ import annotations

import importlib
from typing import Any

from infra.api_routes import ROUTES, FunctionName
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
        if route.public:
            operation = merged["paths"].get(route.path, {}).get(route.method.lower())
            if operation is not None:
                operation["security"] = []  # bound by OAuth state, not by a sign-in token
    return merged


def _error_schemas() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"ErrorBody": schema, **definitions}
