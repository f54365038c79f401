"""The public API's request and response bodies (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.connection import (
    Connection,
    ConnectionStatus,
    ListFreshness,
    Organisation,
    PreviousConnection,
    PublishingSettings,
)
from ledgerlink.models.items import CapturedItem, StoredItem
from ledgerlink.models.licences import Licence
from ledgerlink.models.lists import ListRecord
from ledgerlink.models.publishing import PublishPlan
from ledgerlink.models.refresh import RefreshRecord, RefreshState
from ledgerlink.providers.config import Capabilities


class ProvidersView(BaseModel):
    providers: list[Capabilities]


class ErrorDetail(BaseModel):
    """One error: a stable machine ``code``, a ``message`` for people, and the request ``field`` it
    is about where there is one (dotted path). ``details``: structured extras some errors carry."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class LoginCredentials(BaseModel):
    """For ledgers without OAuth (KashFlow): the ledger login, kept only in the token store."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=255)
    password: SecretStr = Field(min_length=1, max_length=255)
    memorable_word: SecretStr = Field(min_length=1, max_length=255)


class ConnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    return_url: str | None = Field(default=None, max_length=2048)
    credentials: LoginCredentials | None = None


class ReconnectRequest(BaseModel):
    """Reconnect or Change connection: OAuth ledgers answer with a consent link; KashFlow takes
    its login again."""

    model_config = ConfigDict(extra="forbid")

    return_url: str | None = Field(default=None, max_length=2048)
    credentials: LoginCredentials | None = None


class RefreshView(BaseModel):
    """The connection's latest list refresh as callers see it: the admin page follows a refresh it
    asked for (queued, running, waiting for the ledger, done or failed) through this."""

    refresh_id: str
    state: RefreshState
    reason: str
    requested_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    resume_at: datetime | None = None
    lists_done: list[ListType] = Field(default_factory=list)
    last_error: str | None = None

    @classmethod
    def of(cls, record: RefreshRecord) -> RefreshView:
        return cls.model_validate(record.model_dump(include=set(cls.model_fields)))


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
    previous: PreviousConnection | None = None
    merge_pending: bool = False
    refresh: RefreshView | None = None

    @classmethod
    def of(cls, connection: Connection, refresh: RefreshRecord | None = None) -> ConnectionView:
        view = cls.model_validate(connection.model_dump(include=set(cls.model_fields)))
        if refresh is not None:
            view.refresh = RefreshView.of(refresh)
        return view


class ConnectStarted(BaseModel):
    """Where the Admin goes next: the ledger's consent page, or (login ledgers) straight in."""

    authorize_url: str | None = None
    expires_at: datetime | None = None
    connection: ConnectionView | None = None


class CallbackResult(BaseModel):
    status: Literal["connected", "choose_organisation", "reconnected", "denied"]
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


class DisconnectResult(BaseModel):
    status: ConnectionStatus
    lists_kept: bool


class LicenceAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName  # the ledger the add-on should use: it must be the connected one


class LicencesView(BaseModel):
    licences: list[Licence]


class ItemPage(BaseModel):
    items: list[StoredItem]
    next_cursor: str | None = None


class PublishPreview(BaseModel):
    """Exactly what publishing would send now, and where each value came from."""

    item_id: str
    revision: int
    ready: bool
    plan: PublishPlan
