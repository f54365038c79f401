"""The REST resolver every API function uses: validation on, and every error in one format,
``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from ledgerlink.api.auth import Caller, caller_from_event
from ledgerlink.api.schemas import ErrorBody
from ledgerlink.errors import LedgerError, ResourceNotFound, ServiceError
from ledgerlink.observability import logger

# Documented on every route, so the OpenAPI document describes the error format too.
ERROR_RESPONSES: dict[int, OpenAPIResponse] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, description in {
        400: "Bad request",
        401: "Not signed in",
        403: "Not allowed for this role",
        404: "Not found",
        409: "Conflicts with the current state",
        422: "Invalid content",
    }.items()
}


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    detail: dict[str, Any] = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": detail})


def build_resolver() -> APIGatewayRestResolver:
    # A response that breaks its own schema is our bug: 500, never a 422 blaming the caller.
    app = APIGatewayRestResolver(enable_validation=True, response_validation_error_http_code=500)

    def service_error(error: ServiceError) -> Response[Any]:
        logger.info("request refused", code=error.code, status=error.status)
        return Response(
            status_code=error.status, content_type=content_types.APPLICATION_JSON, body=error.body()
        )

    def invalid_request(error: RequestValidationError) -> Response[Any]:
        problems = error.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('body', 'query', 'path')) or 'request'}: {e.get('msg')}"
            for e in problems[:5]
        )
        return error_response(
            422, "validation_failed", message or "the request is not valid", ".".join(location) or None
        )

    def ledger_error(error: LedgerError) -> Response[Any]:
        logger.warning(
            "ledger error during a request", error_type=type(error).__name__, provider=error.provider
        )
        return error_response(
            502, "ledger_error", f"the ledger could not complete the request: {error.message}"
        )

    def invalid_response(error: ResponseValidationError) -> Response[Any]:
        logger.error(
            "response broke its schema",
            errors=[{"loc": e.get("loc"), "type": e.get("type")} for e in error.errors()],
        )
        return error_response(
            500, "internal_error", "the service could not produce a valid answer; try again"
        )

    def unexpected(error: Exception) -> Response[Any]:
        logger.exception("unhandled error", error_type=type(error).__name__)
        return error_response(500, "internal_error", "something went wrong on our side; try again")

    def not_found(_error: Exception) -> Response[Any]:
        return error_response(404, "route_not_found", "no such route")

    app.exception_handler(ServiceError)(service_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(LedgerError)(ledger_error)
    app.exception_handler(ResponseValidationError)(invalid_response)
    app.exception_handler(Exception)(unexpected)
    app.not_found(not_found)
    return app


OPENAPI_DOCUMENT = "openapi.json"


def bundled_openapi() -> dict[str, Any]:
    """The whole API's OpenAPI document, merged from the four functions' resolvers when the layer
    was bundled (no single function can generate the others' parts)."""
    document = files("ledgerlink.api").joinpath(OPENAPI_DOCUMENT)
    if not document.is_file():
        raise ResourceNotFound("this build has no OpenAPI document (the layer bundler writes it)")
    loaded: dict[str, Any] = json.loads(document.read_text())
    return loaded


def current_caller(app: APIGatewayRestResolver) -> Caller:
    return caller_from_event(app.current_event.raw_event)


__all__ = [
    "ERROR_RESPONSES",
    "ErrorBody",
    "build_resolver",
    "bundled_openapi",
    "current_caller",
    "error_response",
]
