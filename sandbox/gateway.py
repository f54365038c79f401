"""A local stand-in for API Gateway: turns HTTP requests into REST API proxy events for the
handlers, after verifying the dev JWT the way the Cognito authorizer verifies its tokens."""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from infra.api_routes import ROUTES, Route
from sandbox.devauth import InvalidDevToken, mint_token, verify_token
from sandbox.lambda_host import FunctionHost

STAGE = "local"
SITE_PREFIX = "/app/"
SITE_DIR = Path(__file__).resolve().parents[1] / "infra" / "site"


def _route_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$")


_ROUTE_PATTERNS: list[tuple[Route, re.Pattern[str]]] = [
    (route, _route_pattern(route.path)) for route in ROUTES
]


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def unauthenticated(message: str) -> Response:
    # The same body the deployed API's UNAUTHORIZED gateway response sends.
    return _json(401, {"error": {"code": "unauthenticated", "message": message}})


class LocalSite:
    """The admin page (``infra/site``, deployed to S3 + CloudFront in AWS) at ``/app/``, with its
    runtime config and a development sign-in: ``/app/dev-login?business=B&role=admin|standard``
    mints the same dev JWT as `ledgerlink token` and hands it to the page in the URL fragment
    (never sent to a server again), as Cognito's hosted sign-in hands its tokens back in AWS."""

    def __init__(self, directory: Path = SITE_DIR):
        self._directory = directory.resolve()

    def dispatch(self, request: Request) -> Response:
        if request.path == SITE_PREFIX.rstrip("/"):
            return Response(status=308, headers={"Location": SITE_PREFIX})
        name = request.path.removeprefix(SITE_PREFIX)
        if request.method not in ("GET", "HEAD"):
            return _json(405, {"error": {"code": "method_not_allowed", "message": "the page is read-only"}})
        if name == "dev-login":
            return self._dev_login(request)
        if name == "config.json":
            origin = request.host_url.rstrip("/")
            config = {"api_url": origin, "auth": {"mode": "dev", "sign_in_url": f"{SITE_PREFIX}dev-login"}}
            return _json(200, config, {"Cache-Control": "no-store"})
        path = (self._directory / (name or "index.html")).resolve()
        if not path.is_relative_to(self._directory) or not path.is_file():
            return Response("not found", status=404, content_type="text/plain")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".js":
            content_type = "text/javascript"  # modules need a JavaScript MIME type
        return Response(
            path.read_bytes(),
            content_type=f"{content_type}; charset=utf-8"
            if content_type.startswith("text/")
            else content_type,
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @staticmethod
    def _dev_login(request: Request) -> Response:
        business = request.args.get("business", "").strip()
        role = request.args.get("role", "admin")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", business) or role not in (
            "admin",
            "standard",
        ):
            return Response(
                "dev-login needs ?business=<id>&role=admin|standard", status=400, content_type="text/plain"
            )
        token = mint_token(business, role)
        return Response(
            status=302,
            headers={"Location": f"{SITE_PREFIX}#id_token={quote(token)}", "Cache-Control": "no-store"},
        )


class LocalGateway:
    def __init__(
        self, host: FunctionHost, *, openapi: dict[str, Any] | None = None, site: LocalSite | None = None
    ):
        self._host = host
        self._openapi = openapi
        self._site = site

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if self._site is not None and (request.path + "/").startswith(SITE_PREFIX):
            return self._site.dispatch(request)
        if request.path == "/v1/openapi.json" and request.method == "GET" and self._openapi is not None:
            return _json(200, self._openapi)
        matched = self._match(request.method, request.path)
        if matched is None:
            allowed = any(pattern.match(request.path) for _route, pattern in _ROUTE_PATTERNS)
            if allowed:
                return _json(
                    405,
                    {
                        "error": {
                            "code": "method_not_allowed",
                            "message": f"{request.method} is not allowed here",
                        }
                    },
                )
            return _json(404, {"error": {"code": "route_not_found", "message": f"no route {request.path}"}})
        route, path_parameters = matched
        claims: dict[str, Any] | None = None
        if not route.public:
            authorization = request.headers.get("Authorization", "")
            token = authorization.removeprefix("Bearer ").strip()
            if not token:
                return unauthenticated("sign in first: the Authorization header is missing")
            try:
                claims = verify_token(token)
            except InvalidDevToken:
                return unauthenticated("the sign-in token is invalid or expired")
        event = self._event(request, route, path_parameters, claims)
        result = self._host.invoke(route.function, event)
        return self._response(result)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route, pattern in _ROUTE_PATTERNS:
            found = pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None

    @staticmethod
    def _event(
        request: Request, route: Route, path_parameters: dict[str, str], claims: dict[str, Any] | None
    ) -> dict[str, Any]:
        body = request.get_data()
        is_text = not body or (_is_text(request.headers) and _is_utf8(body))
        query = {key: request.args.getlist(key) for key in request.args}
        return {
            "resource": route.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": dict(request.headers),
            "multiValueHeaders": {key: request.headers.getlist(key) for key in request.headers.keys()},  # noqa: SIM118
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.path,
                "httpMethod": request.method,
                "path": f"/{STAGE}{request.path}",
                "stage": STAGE,
                "requestId": str(uuid.uuid4()),
                "identity": {"sourceIp": request.remote_addr or "127.0.0.1"},
                "authorizer": {"claims": claims} if claims is not None else None,
            },
            "body": (body.decode() if is_text else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": not is_text,
        }

    @staticmethod
    def _response(result: dict[str, Any]) -> Response:
        headers = Headers()
        multi = result.get("multiValueHeaders") or {}
        for key, values in multi.items():
            for value in values:
                headers.add(key, value)
        for key, value in (result.get("headers") or {}).items():
            if key not in multi:
                headers[key] = value
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        return Response(payload, status=int(result.get("statusCode", 200)), headers=headers)


def _is_utf8(body: bytes) -> bool:
    """A body that says it is text but is not UTF-8 goes to the handler base64-encoded, as API
    Gateway passes bytes it cannot carry as a string; the handler refuses it as invalid JSON."""
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_text(headers: Any) -> bool:
    content_type = headers.get("Content-Type", "")
    return (
        content_type.startswith(("application/json", "text/", "application/x-www-form-urlencoded"))
        or not content_type
    )
