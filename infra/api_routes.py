"""The public HTTP contract: which function answers which route, and which routes are public.

Plain data with no CDK import, shared by the CDK API construct and the local gateway, so the
deployed API and `ledgerlink local` route exactly alike. A test checks every route here is also
declared by the function's own resolver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class FunctionName(StrEnum):
    OAUTH_CALLBACK = "oauth_callback"
    REFRESH_LISTS = "refresh_lists"
    PUBLISH_ITEM = "publish_item"
    MERGE_LISTS = "merge_lists"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway resource path, e.g. /v1/items/{item_id}
    function: FunctionName
    # Why the route needs no sign-in, for the routes that need none (no Cognito authorizer on them).
    public_because: str | None = None

    @property
    def public(self) -> bool:
        return self.public_because is not None


# Where the ledgers send the user's browser back after consent: the redirect URI registered with each ledger.
OAUTH_CALLBACK_PATH = "/v1/oauth/callback"

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/openapi.json",
        FunctionName.OAUTH_CALLBACK,
        public_because="it is the API's published description, the same for everyone, holding no data",
    ),
    Route("GET", "/v1/providers", FunctionName.OAUTH_CALLBACK),
    Route("POST", "/v1/connection", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/connection", FunctionName.OAUTH_CALLBACK),
    Route(
        "GET",
        OAUTH_CALLBACK_PATH,
        FunctionName.OAUTH_CALLBACK,
        public_because=(
            "the ledger redirects the user's browser here after consent, with no token; the request is "
            "bound to its user by the single-use OAuth state it must present, which the handler checks"
        ),
    ),
    Route("GET", "/v1/connection/organisations", FunctionName.OAUTH_CALLBACK),
    Route("POST", "/v1/connection/organisation", FunctionName.OAUTH_CALLBACK),
    Route("POST", "/v1/connection/reconnect", FunctionName.OAUTH_CALLBACK),
    Route("POST", "/v1/connection/change", FunctionName.OAUTH_CALLBACK),
    Route("DELETE", "/v1/connection", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/connection/settings", FunctionName.OAUTH_CALLBACK),
    Route("PUT", "/v1/connection/settings", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/licences", FunctionName.OAUTH_CALLBACK),
    Route("PUT", "/v1/licences/{feature}", FunctionName.OAUTH_CALLBACK),
    Route("DELETE", "/v1/licences/{feature}", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/lists/{list_type}", FunctionName.REFRESH_LISTS),
    Route("POST", "/v1/connection/refresh", FunctionName.REFRESH_LISTS),
    Route("POST", "/v1/items", FunctionName.PUBLISH_ITEM),
    Route("GET", "/v1/items", FunctionName.PUBLISH_ITEM),
    Route("GET", "/v1/items/{item_id}", FunctionName.PUBLISH_ITEM),
    Route("PATCH", "/v1/items/{item_id}", FunctionName.PUBLISH_ITEM),
    Route("POST", "/v1/items/{item_id}/preview", FunctionName.PUBLISH_ITEM),
    Route("POST", "/v1/items/{item_id}/publish", FunctionName.PUBLISH_ITEM),
    Route("POST", "/v1/connection/merge-lists/preview", FunctionName.MERGE_LISTS),
    Route("POST", "/v1/connection/merge-lists/apply", FunctionName.MERGE_LISTS),
    Route("POST", "/v1/connection/merge-lists/undo", FunctionName.MERGE_LISTS),
    Route("GET", "/v1/rules/suppliers", FunctionName.MERGE_LISTS),
    Route("GET", "/v1/rules/suppliers/{key}", FunctionName.MERGE_LISTS),
    Route("PUT", "/v1/rules/suppliers/{key}", FunctionName.MERGE_LISTS),
    Route("DELETE", "/v1/rules/suppliers/{key}", FunctionName.MERGE_LISTS),
    Route("GET", "/v1/rules/customers", FunctionName.MERGE_LISTS),
    Route("GET", "/v1/rules/customers/{key}", FunctionName.MERGE_LISTS),
    Route("PUT", "/v1/rules/customers/{key}", FunctionName.MERGE_LISTS),
    Route("DELETE", "/v1/rules/customers/{key}", FunctionName.MERGE_LISTS),
)


@dataclass(frozen=True)
class GatewayError:
    """An error API Gateway answers itself, before any function runs, in the API's error format
    ``{"error": {"code", "message"}}``."""

    code: str
    # None: the gateway's own message for the case (e.g. "Request too large"), which it quotes as JSON.
    message: str | None
    # None: keep the gateway's status for the response type (DEFAULT_4XX covers 400, 413, 415, ...).
    status: int | None = None


# By API Gateway response type. Codes and messages match the local gateway (sandbox/gateway.py) and the
# handlers' resolver (ledgerlink.api.http), so a client handles one set of codes whoever answered.
GATEWAY_ERRORS: Mapping[str, GatewayError] = MappingProxyType(
    {
        # The Cognito authorizer: no token, or an invalid or expired one.
        "UNAUTHORIZED": GatewayError("unauthenticated", "sign in first: missing or invalid token", 401),
        # A REST API answers a path or method no route matches with this type (as a 403): with no IAM
        # auth or API keys on this API, it never means anything else.
        "MISSING_AUTHENTICATION_TOKEN": GatewayError("route_not_found", "no such route", 404),
        "ACCESS_DENIED": GatewayError("forbidden", "not allowed", 403),
        # The stage's throttle (constants.API_THROTTLE_*), before any function runs.
        "THROTTLED": GatewayError("throttled", "too many requests: retry in a moment", 429),
        "DEFAULT_4XX": GatewayError("bad_request", None),
        "DEFAULT_5XX": GatewayError("internal_error", None),
    }
)
