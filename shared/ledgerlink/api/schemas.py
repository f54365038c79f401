"""The public API's request and response bodies (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.connection import (
    Connection,
    ConnectionStatus,
    ListFreshness,
    Organisation,
    PublishingSettings,
)
from ledgerlink.models.items import CapturedItem
from ledgerlink.models.lists import ListRecord
from ledgerlink.providers.config import Capabilities


class ProvidersView(BaseModel):
    providers: list[Capabilities]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ConnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    return_url: str | None = Field(default=None, max_length=2048)


class ConnectStarted(BaseModel):
    authorize_url: str
    expires_at: datetime


class ConnectionView(BaseModel):
    """A connection as callers see it: never a token."""

    connection_id: str
    provider: ProviderName
    status: ConnectionStatus
    status_reason: str
    status_since: datetime
    organisation: Organisation | None
    settings: PublishingSettings
    lists: dict[ListType, ListFreshness]

    @classmethod
    def of(cls, connection: Connection) -> ConnectionView:
        return cls.model_validate(connection.model_dump(include=set(cls.model_fields)))


class CallbackResult(BaseModel):
    status: Literal["connected", "choose_organisation", "denied"]
    connection: ConnectionView | None
    redirect_to: str | None = None


class OrganisationsView(BaseModel):
    organisations: list[Organisation]
    selected: str | None = None


class ChooseOrganisationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_id: str = Field(min_length=1, max_length=255)


class ListPage(BaseModel):
    list_type: ListType
    records: list[ListRecord]
    next_cursor: str | None = None
    refreshed_at: datetime | None = None


class SubmitItemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: CapturedItem
    publish: bool = False
