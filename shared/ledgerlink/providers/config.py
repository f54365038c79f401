"""The typed, validated record of each ledger's endpoints, auth style and limits, and the
capability record the API publishes (what each ledger can do)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ledgerlink.models.common import ItemType, ListType, ProviderName


def _is_absolute_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class ProviderConfig(BaseModel):
    """Where a ledger lives and how to talk to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ProviderName
    authorize_url: str | None = None
    token_url: str | None = None
    revoke_url: str | None = None
    api_base_url: str
    # Named extra endpoints (e.g. Xero's /connections) so quirks stay data, not string literals in code.
    urls: dict[str, str] = Field(default_factory=dict)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] | None = None
    pkce: bool = False
    scopes: tuple[str, ...] = ()
    page_size: int = Field(gt=0, le=1000)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=10)
    # A Retry-After up to this long is waited out in place; longer ones go back to the queue.
    max_inline_wait_seconds: float = Field(default=10.0, ge=0)
    # How long an unused refresh token lives, for ledgers whose token response does not say
    # (Xero: 60 days). The keep-alive refreshes connections before this runs out.
    refresh_token_lifetime_seconds: int | None = Field(default=None, gt=0)
    # The ledger's published per-organisation call limit (Xero: 60 a minute). It sizes the
    # connection's call budget, which list refresh and publishing share (services/budget.py).
    calls_per_minute: int = Field(default=60, gt=0)
    # The part of the budget a list refresh may use; the rest is kept for publishing, so a refresh
    # never pushes publishing into the ledger's 429s.
    refresh_share: float = Field(default=0.5, gt=0, lt=1)

    @field_validator("authorize_url", "token_url", "revoke_url", "api_base_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not _is_absolute_url(value):
            raise ValueError(f"{value!r} is not an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _oauth_complete(self) -> ProviderConfig:
        oauth_fields = (self.authorize_url, self.token_url, self.token_endpoint_auth_method)
        if any(oauth_fields) and not all(oauth_fields):
            raise ValueError("an OAuth ledger needs authorize_url, token_url and token_endpoint_auth_method")
        return self

    def with_origin(self, origin: str) -> ProviderConfig:
        """The same ledger served from another origin (a simulator): every URL keeps its path."""
        target = urlsplit(origin)

        def moved(url: str | None) -> str | None:
            if url is None:
                return None
            parts = urlsplit(url)
            return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))

        return self.model_copy(
            update={
                "authorize_url": moved(self.authorize_url),
                "token_url": moved(self.token_url),
                "revoke_url": moved(self.revoke_url),
                "api_base_url": moved(self.api_base_url),
                "urls": {name: moved(url) for name, url in self.urls.items()},
            }
        )


class AttachmentRules(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_bytes: int
    content_types: tuple[str, ...] = ()  # empty: any
    per_document: int | None = None


class Capabilities(BaseModel):
    """What a ledger supports, as ``GET /v1/providers`` reports it and as the services check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: ProviderName
    display_name: str
    auth_style: Literal["oauth2", "oauth2_pkce", "session_login"]
    organisation_choice: bool  # one consent may cover several organisations
    lists: tuple[ListType, ...]
    incremental_lists: tuple[ListType, ...]
    destinations: dict[ItemType, tuple[str, ...]]
    default_destinations: dict[ItemType, str]
    bank_match: bool
    native_expense_claims: bool
    batch_size: int = Field(ge=1)  # 1 = no batch write
    idempotency: Literal["header", "query_parameter", "body_field", "lookup_by_reference"]
    attachments: AttachmentRules

    @model_validator(mode="after")
    def _defaults_are_choices(self) -> Capabilities:
        for item_type, destination in self.default_destinations.items():
            if destination not in self.destinations.get(item_type, ()):
                raise ValueError(f"default destination {destination!r} is not a choice for {item_type}")
        return self
