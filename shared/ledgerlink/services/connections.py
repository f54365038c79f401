"""The connection lifecycle: connect over OAuth, choose the organisation, report status."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.api.schemas import (
    CallbackResult,
    ChooseOrganisationRequest,
    ConnectionView,
    ConnectRequest,
    ConnectStarted,
    OrganisationsView,
    ProvidersView,
)
from ledgerlink.clock import Clock
from ledgerlink.errors import (
    ConnectionExists,
    InvalidOAuthState,
    InvalidRequest,
    InvalidState,
    OAuthDenied,
    ResourceNotFound,
    Unprocessable,
)
from ledgerlink.models.connection import Connection, ConnectionStatus, Organisation
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import logger
from ledgerlink.providers import registry
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.queues import RefreshQueue, RefreshRequest
from ledgerlink.settings import ConnectionSettings
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.dynamo import ConditionFailed
from ledgerlink.storage.oauth_state import OAuthState, OAuthStateRepository

STATE_LIFETIME = timedelta(minutes=10)
CALLBACK_PATH = "/v1/oauth/callback"


class ConnectionService:
    def __init__(
        self,
        *,
        settings: ConnectionSettings,
        connections: ConnectionRepository,
        states: OAuthStateRepository,
        ledgers: Ledgers,
        status: ConnectionStatusKeeper,
        refresh_queue: RefreshQueue,
        clock: Clock,
    ):
        self._settings = settings
        self._connections = connections
        self._states = states
        self._ledgers = ledgers
        self._status = status
        self._refresh_queue = refresh_queue
        self._clock = clock

    def providers(self) -> ProvidersView:
        return ProvidersView(
            providers=[registry.capabilities(name) for name in registry.supported_providers()]
        )

    @property
    def redirect_uri(self) -> str:
        return self._settings.api_url.rstrip("/") + CALLBACK_PATH

    # --- connect ---------------------------------------------------------------------------------

    def start_connect(self, caller: Caller, request: ConnectRequest) -> ConnectStarted:
        require_admin(caller, "connect accounting software")
        adapter = self._ledgers.adapter(request.provider)  # refuses unsupported ledgers
        existing = self._connections.get(caller.business_id)
        if existing is not None:
            raise ConnectionExists(
                f"this business is already connected to {existing.provider.value}; "
                "disconnect or change the connection instead"
            )
        self._check_return_url(request.return_url)
        now = self._clock.now()
        state = OAuthState(
            state=secrets.token_urlsafe(32),
            business_id=caller.business_id,
            user_id=caller.user_id,
            provider=request.provider,
            purpose="connect",
            redirect_uri=self.redirect_uri,
            return_url=request.return_url,
            code_verifier=secrets.token_urlsafe(64) if adapter.config.pkce else None,
            created_at=now,
            expires_at=now + STATE_LIFETIME,
        )
        self._states.put(state)
        url = adapter.authorization_url(
            redirect_uri=state.redirect_uri,
            state=state.state,
            code_verifier=state.code_verifier.get_secret_value() if state.code_verifier else None,
        )
        logger.info("connect started", provider=request.provider.value)
        return ConnectStarted(authorize_url=url, expires_at=state.expires_at)

    def _check_return_url(self, return_url: str | None) -> None:
        if return_url is None:
            return
        parts = urlsplit(return_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if parts.scheme not in ("http", "https") or origin not in self._settings.allowed_return_origins:
            raise InvalidRequest(
                "return_url must be a page of the capture product (its origin is not allowed)",
                field="return_url",
            )

    def complete_oauth(self, params: Mapping[str, str]) -> CallbackResult:
        """The ledger sent the user back: check ``state``, exchange the code, store the tokens."""
        state_value = params.get("state")
        if not state_value:
            raise InvalidOAuthState("the callback has no state parameter", field="state")
        state = self._states.consume(state_value)
        if state is None:
            raise InvalidOAuthState(
                "this sign-in link is unknown or was already used; start again", field="state"
            )
        if state.expires_at <= self._clock.now():
            raise InvalidOAuthState("this sign-in link expired; start again", field="state")
        if params.get("error"):
            if state.return_url:
                return CallbackResult(
                    status="denied",
                    connection=None,
                    redirect_to=_with_query(state.return_url, status="denied"),
                )
            raise OAuthDenied(f"{state.provider.value} did not grant access ({params['error']})")
        code = params.get("code")
        if not code:
            raise InvalidRequest("the callback has no authorization code", field="code")

        adapter = self._ledgers.adapter(state.provider)
        tokens = adapter.exchange_code(
            code=code,
            redirect_uri=state.redirect_uri,
            code_verifier=state.code_verifier.get_secret_value() if state.code_verifier else None,
            callback_params=params,
        )
        organisations = adapter.organisations(tokens)
        if not organisations:
            raise InvalidRequest(
                f"the {state.provider.value} consent covers no organisation; choose one and retry"
            )
        connection = self._create_connection(state, tokens, organisations)
        status = "connected" if connection.status == ConnectionStatus.CONNECTED else "choose_organisation"
        redirect = _with_query(state.return_url, status=status) if state.return_url else None
        return CallbackResult(status=status, connection=ConnectionView.of(connection), redirect_to=redirect)

    def _create_connection(
        self, state: OAuthState, tokens: TokenSet, organisations: list[Organisation]
    ) -> Connection:
        now = self._clock.now()
        single = organisations[0] if len(organisations) == 1 else None
        connection = Connection(
            connection_id=uuid.uuid4().hex,
            business_id=state.business_id,
            provider=state.provider,
            status=ConnectionStatus.CONNECTED if single else ConnectionStatus.PENDING_ORGANISATION,
            status_reason="connected" if single else "choose which organisation to connect",
            status_since=now,
            organisation=single,
            organisation_choices=[] if single else organisations,
            token_store=self._ledgers.token_store_name(state.provider),
            created_at=now,
            created_by=state.user_id,
        )
        store = self._ledgers.token_store(connection.token_store)
        store.create(connection.connection_id, tokens)
        try:
            created = self._connections.create(connection, next_refresh_at=now + timedelta(hours=1))
        except ConditionFailed as error:
            # Another sign-in for the same business finished first: keep that one, drop ours.
            store.delete(connection.connection_id)
            raise ConnectionExists("this business was connected meanwhile; reload the page") from error
        self._status.announce(created, None)
        if created.status == ConnectionStatus.CONNECTED:
            self._request_initial_import(created)
        return created

    def _request_initial_import(self, connection: Connection) -> None:
        self._refresh_queue.request(
            RefreshRequest(
                business_id=connection.business_id,
                connection_id=connection.connection_id,
                reason="initial_import",
            )
        )

    # --- organisation choice ---------------------------------------------------------------------

    def organisations(self, caller: Caller) -> OrganisationsView:
        connection = self._connection_of(caller)
        if connection.status == ConnectionStatus.PENDING_ORGANISATION:
            return OrganisationsView(organisations=connection.organisation_choices)
        current = [connection.organisation] if connection.organisation else []
        return OrganisationsView(
            organisations=current, selected=connection.organisation.id if connection.organisation else None
        )

    def choose_organisation(self, caller: Caller, request: ChooseOrganisationRequest) -> ConnectionView:
        require_admin(caller, "choose the organisation")
        connection = self._connection_of(caller)
        if connection.status != ConnectionStatus.PENDING_ORGANISATION:
            raise InvalidState("the organisation was already chosen; use Change connection to switch")
        chosen = next((o for o in connection.organisation_choices if o.id == request.organisation_id), None)
        if chosen is None:
            raise Unprocessable("that organisation is not one this consent covers", field="organisation_id")
        updated = connection.model_copy(update={"organisation": chosen, "organisation_choices": []}).moved_to(
            ConnectionStatus.CONNECTED, f"connected to {chosen.name}", self._clock.now()
        )
        saved = self._connections.save(updated, next_refresh_at=self._clock.now() + timedelta(hours=1))
        self._status.announce(saved, ConnectionStatus.PENDING_ORGANISATION)
        self._request_initial_import(saved)
        return ConnectionView.of(saved)

    # --- status ----------------------------------------------------------------------------------

    def view(self, caller: Caller) -> ConnectionView:
        return ConnectionView.of(self._connection_of(caller))

    def _connection_of(self, caller: Caller) -> Connection:
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet")
        return connection


def _with_query(url: str, **params: str) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{urlencode(params)}"
