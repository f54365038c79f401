"""The REST resolver every API function uses: validation on, and every error in one format,
``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from importlib.resources import files
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
    OpenAPIRequestValidationMiddleware,
)
from aws_lambda_powertools.event_handler.openapi.constants import (
    DEFAULT_OPENAPI_RESPONSE_DESCRIPTION,
    DEFAULT_STATUS_CODE,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.types import EventHandlerInstance

from ledgerlink.api.auth import Caller, caller_from_event
from ledgerlink.api.schemas import ErrorBody
from ledgerlink.errors import LedgerError, ResourceNotFound, ServiceError
from ledgerlink.observability import logger

# Documented on every route, so the OpenAPI document describes the error format too. The 5xx are
# documented because a client must be ready for them, not because any request should cause one.
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
        415: "The body is not JSON (Content-Type must be application/json)",
        422: "Invalid content",
        500: "Failed on our side",
        502: "The ledger could not complete the request",
        503: "The ledger is busy or down for now: try again in a minute",
    }.items()
}

# The OAuth callback's answer when the flow was started with a return_url: back to that page, with
# the outcome in its query string.
OAUTH_REDIRECT: OpenAPIResponse = {
    "description": "Back to the return_url the flow started with, the outcome in its query (status=...)",
    "headers": {"Location": {"description": "the return_url with the outcome", "schema": {"type": "string"}}},
    "content": {},
}

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response[Any]:
    detail: dict[str, Any] = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": detail})


class JsonBodiesOnly(OpenAPIRequestValidationMiddleware):
    """Request validation that reads a body as JSON or not at all. Powertools would also parse form
    and multipart bodies into the routes' models (a multipart type without a boundary even escapes
    as a bare ValueError, a 500); this API documents JSON bodies only, so anything else is a 415."""

    def _get_body(self, app: EventHandlerInstance) -> dict[str, Any]:
        content_type = app.current_event.headers.get("content-type", "").strip().lower()
        if content_type and not content_type.startswith(content_types.APPLICATION_JSON):
            raise RequestUnsupportedContentType(
                "Unsupported content type",
                errors=[{"type": "unsupported_content_type", "loc": ("body",), "msg": content_type}],
            )
        try:
            body: dict[str, Any] = super()._get_body(app)
        except UnicodeDecodeError as error:  # a base64 body that is not UTF-8: not JSON either
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "the body is not UTF-8 JSON"}]
            ) from error
        return body


class ApiResolver(APIGatewayRestResolver):
    """Powertools' REST resolver, documenting what the routes really answer.

    A route that documents its error responses also documents its success: Powertools leaves the
    success status out of the OpenAPI document as soon as a route passes ``responses``, and a client
    (or a fuzzer) would then read every 200 as undocumented. The success body's schema comes from
    the handler's return annotation as usual. Bodies are read as JSON only (JsonBodiesOnly)."""

    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        # Powertools keeps its request validation middleware here and puts it first on every route.
        self._request_validation_middleware = JsonBodiesOnly()  # type: ignore[no-untyped-call]

    # Powertools' own signature, positional and all: its get()/post()/... call route() positionally.
    def route(  # noqa: PLR0917
        self,
        rule: str,
        method: str | list[str] | tuple[str],
        cors: bool | None = None,
        compress: bool = False,
        cache_control: str | None = None,
        summary: str | None = None,
        description: str | None = None,
        responses: dict[int, OpenAPIResponse] | None = None,
        response_description: str = DEFAULT_OPENAPI_RESPONSE_DESCRIPTION,
        tags: list[str] | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
        security: list[dict[str, list[str]]] | None = None,
        openapi_extensions: dict[str, Any] | None = None,
        deprecated: bool = False,
        enable_validation: bool | None = None,
        custom_response_validation_http_code: int | HTTPStatus | None = None,
        status_code: int = DEFAULT_STATUS_CODE,
        middlewares: list[Callable[..., Any]] | None = None,
    ) -> Callable[[_Handler], _Handler]:
        # A response that breaks its own schema is our bug: 500 in the error format, never a 422
        # blaming the caller. Set per route rather than on the resolver, whose document would then
        # describe that 500 with Powertools' own body over the one documented in ERROR_RESPONSES.
        if custom_response_validation_http_code is None:
            custom_response_validation_http_code = HTTPStatus.INTERNAL_SERVER_ERROR
        if responses is not None and status_code not in responses:
            success: OpenAPIResponse = {"description": response_description}
            if status_code == HTTPStatus.NO_CONTENT:
                success["content"] = {}  # no body, whatever the annotation says
            responses = {status_code: success, **responses}
        return super().route(
            rule,
            method,
            cors,
            compress,
            cache_control,
            summary,
            description,
            responses,
            response_description,
            tags,
            operation_id,
            include_in_schema,
            security,
            openapi_extensions,
            deprecated,
            enable_validation,
            custom_response_validation_http_code,
            status_code,
            middlewares,
        )


def build_resolver() -> APIGatewayRestResolver:
    app = ApiResolver()

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

    def unsupported_body(_error: RequestUnsupportedContentType) -> Response[Any]:
        return error_response(
            415,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
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
    # Not a RequestValidationError: without its own handler it would fall through to a 500.
    app.exception_handler(RequestUnsupportedContentType)(unsupported_body)
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
    "OAUTH_REDIRECT",
    "ApiResolver",
    "ErrorBody",
    "JsonBodiesOnly",
    "build_resolver",
    "bundled_openapi",
    "current_caller",
    "error_response",
]
