"""The public HTTP contract: which function answers which route, and which routes are public.

Plain data with no CDK import, shared by the CDK API construct and the local gateway, so the
deployed API and `ledgerlink local` route exactly alike. A test checks every route here is also
declared by the function's own resolver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    public: bool = False  # True: no Cognito authorizer (the OAuth callback is bound by `state` instead)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/providers", FunctionName.OAUTH_CALLBACK),
    Route("POST", "/v1/connection", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/connection", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/oauth/callback", FunctionName.OAUTH_CALLBACK, public=True),
    Route("GET", "/v1/connection/organisations", FunctionName.OAUTH_CALLBACK),
    Route("POST", "/v1/connection/organisation", FunctionName.OAUTH_CALLBACK),
    Route("GET", "/v1/lists/{list_type}", FunctionName.REFRESH_LISTS),
    Route("POST", "/v1/items", FunctionName.PUBLISH_ITEM),
    Route("GET", "/v1/items/{item_id}", FunctionName.PUBLISH_ITEM),
    Route("POST", "/v1/connection/merge-lists/preview", FunctionName.MERGE_LISTS),
)
