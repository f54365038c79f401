"""The connection lifecycle: connect (OAuth, or a ledger login), choose the organisation, report
status, reconnect, change organisation, disconnect.

OAuth ``state`` is single use, lives ten minutes and is bound to the business, the user and the
purpose; a reconnect must land on the same organisation or changes nothing.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from ledgerlink.api.auth import Caller, require_admin
from ledgerlink.api.schemas import (
    CallbackResult,
    ChooseOrganisationRequest,
    ConnectionView,
    ConnectRequest,
    ConnectStarted,
    DisconnectResult,
    LoginCredentials,
    OrganisationsView,
    ProvidersView,
    ReconnectRequest,
)
from ledgerlink.clock import Clock
from ledgerlink.errors import (
    AuthRevoked,
    Conflict,
    ConnectionExists,
    InvalidOAuthState,
    InvalidRequest,
    InvalidState,
    LedgerBusy,
    LedgerError,
    OAuthDenied,
    RateLimited,
    ResourceNotFound,
    ServiceError,
    Unavailable,
    Unprocessable,
)
from ledgerlink.models.common import ProviderName
from ledgerlink.models.connection import Connection, ConnectionStatus, Organisation, PreviousConnection
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import logger
from ledgerlink.providers import registry
from ledgerlink.providers.base import CALLBACK_BUDGET_SECONDS, LedgerAdapter
from ledgerlink.services.connection_status import ConnectionStatusKeeper
from ledgerlink.services.ledgers import Ledgers
from ledgerlink.services.licences import LicenceService
from ledgerlink.services.lists import first_refresh_due, refresh_interval
from ledgerlink.services.queues import HeldItems, RefreshQueue, RefreshRequest
from ledgerlink.settings import ConnectionSettings
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.dynamo import ConditionFailed
from ledgerlink.storage.lists import ListRepository, RefreshRecordRepository
from ledgerlink.storage.oauth_state import OAuthState, OAuthStateRepository
from ledgerlink.tokens.store import TokenNotFound

STATE_LIFETIME = timedelta(minutes=10)
CALLBACK_PATH = "/v1/oauth/callback"


class WrongOrganisation(Conflict):
    code = "wrong_organisation"


class SameOrganisation(Conflict):
    code = "same_organisation"


class ConnectionService:
    def __init__(
        self,
        *,
        settings: ConnectionSettings,
        connections: ConnectionRepository,
        states: OAuthStateRepository,
        lists: ListRepository,
        ledgers: Ledgers,
        status: ConnectionStatusKeeper,
        licences: LicenceService,
        refresh_queue: RefreshQueue,
        held_items: HeldItems,
        clock: Clock,
        refreshes: RefreshRecordRepository | None = None,
    ):
        self._settings = settings
        self._connections = connections
        self._states = states
        self._lists = lists
        self._ledgers = ledgers
        self._status = status
        self._licences = licences
        self._refresh_queue = refresh_queue
        self._held_items = held_items
        self._clock = clock
        self._refreshes = refreshes

    def providers(self) -> ProvidersView:
        return ProvidersView(
            providers=[registry.capabilities(name) for name in registry.supported_providers()]
        )

    @property
    def redirect_uri(self) -> str:
        return self._settings.api_url.rstrip("/") + CALLBACK_PATH

    # --- connect -----------------------------------------------------------------------------------

    def start_connect(self, caller: Caller, request: ConnectRequest) -> ConnectStarted:
        require_admin(caller, "connect accounting software")
        adapter = self._ledgers.adapter(request.provider)  # refuses ledgers that are not supported
        existing = self._connections.get(caller.business_id)
        if existing is not None:
            raise ConnectionExists(
                f"this business is already connected to {existing.provider.value}; "
                "use Change connection, or disconnect first"
            )
        self._licences.check_ledger_allowed(caller.business_id, request.provider)
        if request.credentials is not None:
            tokens = self._sign_in_directly(adapter, request.credentials)
            organisations = adapter.organisations(tokens)
            connection = self._create_connection(
                caller.business_id, caller.user_id, request.provider, tokens, organisations
            )
            return ConnectStarted(connection=ConnectionView.of(connection))
        return self._consent_link(
            caller, adapter, request.provider, purpose="connect", return_url=request.return_url
        )

    def _consent_link(
        self,
        caller: Caller,
        adapter: LedgerAdapter,
        provider: ProviderName,
        *,
        purpose: str,
        return_url: str | None,
        connection_id: str | None = None,
    ) -> ConnectStarted:
        if adapter.config.authorize_url is None:
            raise InvalidRequest(
                f"{adapter.capabilities.display_name} connects with its own login: send credentials",
                field="credentials",
            )
        self._check_return_url(return_url)
        now = self._clock.now()
        state = OAuthState(
            state=secrets.token_urlsafe(32),
            business_id=caller.business_id,
            user_id=caller.user_id,
            provider=provider,
            purpose=purpose,
            connection_id=connection_id,
            redirect_uri=self.redirect_uri,
            return_url=return_url,
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
        logger.info("consent started", provider=provider.value, purpose=purpose)
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

    @staticmethod
    def _sign_in_directly(adapter: LedgerAdapter, credentials: LoginCredentials) -> TokenSet:
        try:
            return adapter.connect_directly(
                {
                    "username": credentials.username,
                    "password": credentials.password.get_secret_value(),
                    "memorable_word": credentials.memorable_word.get_secret_value(),
                }
            )
        except AuthRevoked as error:  # a login the ledger refuses is the caller's to correct, not a 502
            raise InvalidRequest(error.message, field="credentials") from error

    def complete_oauth(self, params: Mapping[str, str]) -> CallbackResult:
        """The ledger sent the user back: check ``state``, exchange the code, act on the purpose."""
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
        ledger = adapter.capabilities.display_name
        # The state stays consumed whatever happens below: the code it came with is single use, so a
        # failed callback is cured only by starting the connection again (a new state, a new code),
        # which nothing stored here stands in the way of.
        failure: ServiceError
        try:
            with adapter.time_budget(CALLBACK_BUDGET_SECONDS):
                tokens = adapter.exchange_code(
                    code=code,
                    redirect_uri=state.redirect_uri,
                    code_verifier=state.code_verifier.get_secret_value() if state.code_verifier else None,
                    callback_params=params,
                )
                organisations = adapter.organisations(tokens)
        except (RateLimited, Unavailable) as busy:
            # Retried inside the budget already; the tokens (if any) are dropped unstored.
            logger.warning(
                "ledger busy during the OAuth callback",
                provider=state.provider.value,
                error_type=type(busy).__name__,
                status=busy.status,
            )
            failure = LedgerBusy(
                f"{ledger} is busy; start the connection again in a minute",
                field="provider",
                details={"provider": state.provider.value},
            )
        except AuthRevoked as refused:
            logger.info("ledger refused the sign-in", provider=state.provider.value)
            failure = OAuthDenied(
                f"{ledger} did not accept this sign-in (it was already used or has expired); "
                "start the connection again",
                details={"provider": state.provider.value, "reason": refused.message},
            )
        else:
            return self._finish_callback(state, adapter, tokens, organisations)
        if state.return_url:
            return CallbackResult(
                status="denied",
                connection=None,
                redirect_to=_with_query(state.return_url, status=failure.code),
            )
        raise failure

    def _finish_callback(
        self, state: OAuthState, adapter: LedgerAdapter, tokens: TokenSet, organisations: list[Organisation]
    ) -> CallbackResult:
        """Act on the sign-in's purpose with the tokens and organisations it brought."""
        if not organisations:
            raise InvalidRequest(
                f"the {state.provider.value} consent covers no organisation; choose one and retry"
            )
        try:
            if state.purpose == "reconnect":
                connection = self._finish_reconnect(state, adapter, tokens, organisations)
                outcome = "reconnected"
            else:
                connection = self._finish_connect_or_change(state, adapter, tokens, organisations)
                outcome = (
                    "connected" if connection.status == ConnectionStatus.CONNECTED else "choose_organisation"
                )
        except Conflict as refused:
            if state.return_url:
                logger.info("callback refused", code=refused.code)
                return CallbackResult(
                    status="denied",
                    connection=None,
                    redirect_to=_with_query(state.return_url, status=refused.code),
                )
            raise
        redirect = _with_query(state.return_url, status=outcome) if state.return_url else None
        return CallbackResult(status=outcome, connection=ConnectionView.of(connection), redirect_to=redirect)

    def _finish_connect_or_change(
        self, state: OAuthState, adapter: LedgerAdapter, tokens: TokenSet, organisations: list[Organisation]
    ) -> Connection:
        if state.purpose == "connect":
            return self._create_connection(
                state.business_id, state.user_id, state.provider, tokens, organisations
            )
        current = self._connections.get(state.business_id)
        if current is None or current.connection_id != state.connection_id:
            _discard_unused_grant(adapter)
            raise InvalidState("the connection changed while you were signing in; start again")
        others = [o for o in organisations if current.organisation is None or o.id != current.organisation.id]
        if not others:
            raise SameOrganisation(
                "you chose the organisation that is already connected: use Reconnect to renew access, "
                "or sign in again and choose another organisation"
            )
        return self._replace_connection(current, state.user_id, tokens, others)

    # --- creating and replacing connections --------------------------------------------------------

    def _new_connection(
        self, business_id: str, user_id: str, provider: ProviderName, organisations: list[Organisation]
    ) -> Connection:
        now = self._clock.now()
        single = organisations[0] if len(organisations) == 1 else None
        previous = self._connections.previous(business_id)
        return Connection(
            connection_id=uuid.uuid4().hex,
            business_id=business_id,
            provider=provider,
            status=ConnectionStatus.CONNECTED if single else ConnectionStatus.PENDING_ORGANISATION,
            status_reason=f"connected to {single.name}" if single else "choose which organisation to connect",
            status_since=now,
            organisation=single,
            organisation_choices=[] if single else organisations,
            token_store=self._ledgers.token_store_name(provider),
            created_at=now,
            created_by=user_id,
            previous=previous,
            merge_pending=bool(previous and previous.lists_kept),
        )

    def _create_connection(
        self,
        business_id: str,
        user_id: str,
        provider: ProviderName,
        tokens: TokenSet,
        organisations: list[Organisation],
    ) -> Connection:
        connection = self._new_connection(business_id, user_id, provider, organisations)
        store = self._ledgers.token_store(connection.token_store)
        store.create(connection.connection_id, tokens)
        try:
            created = self._connections.create(
                connection, next_refresh_at=self._first_refresh_due(connection)
            )
        except ConditionFailed as error:
            # Another sign-in for the same business finished first: keep that one, drop ours.
            store.delete(connection.connection_id)
            raise ConnectionExists("this business was connected meanwhile; reload the page") from error
        self._after_connected(created, None)
        return created

    def _replace_connection(
        self, current: Connection, user_id: str, tokens: TokenSet, organisations: list[Organisation]
    ) -> Connection:
        """Change connection: a new connection to another organisation of the same ledger. The old
        connection's lists stay for Merge Lists; its access at the ledger is withdrawn."""
        self._connections.remember_previous(
            current.business_id,
            PreviousConnection(
                connection_id=current.connection_id,
                provider=current.provider,
                organisation=current.organisation,
                ended_at=self._clock.now(),
                ended_by="change",
                lists_kept=True,
            ),
        )
        connection = self._new_connection(current.business_id, user_id, current.provider, organisations)
        connection = connection.model_copy(update={"settings": current.settings})
        store = self._ledgers.token_store(connection.token_store)
        store.create(connection.connection_id, tokens)
        replaced = self._connections.replace(
            current, connection, next_refresh_at=self._first_refresh_due(connection)
        )
        self._release_old_access(current)
        self._status.announce(
            current.moved_to(
                ConnectionStatus.DISCONNECTED, "replaced by Change connection", self._clock.now()
            ),
            current.status,
        )
        self._after_connected(replaced, None)
        return replaced

    def _after_connected(self, connection: Connection, previous_status: ConnectionStatus | None) -> None:
        self._status.announce(connection, previous_status)
        if connection.status == ConnectionStatus.CONNECTED:
            self._request_refresh(connection, "initial_import")

    def _first_refresh_due(self, connection: Connection) -> datetime:
        # The connection's own slot in its interval: no wave when many connect at once.
        return first_refresh_due(connection.connection_id, refresh_interval(connection), self._clock.now())

    def _request_refresh(self, connection: Connection, reason: str) -> None:
        self._refresh_queue.request(
            RefreshRequest(
                business_id=connection.business_id, connection_id=connection.connection_id, reason=reason
            )
        )

    def _release_old_access(self, old: Connection) -> None:
        store = self._ledgers.token_store(old.token_store)
        try:
            tokens = store.read(old.connection_id)
        except TokenNotFound:
            return
        adapter = self._ledgers.adapter(old.provider)
        try:
            adapter.release_organisation(tokens, old.organisation.id if old.organisation else None)
        except LedgerError as error:
            # The ledger may already have dropped us; our side forgets the tokens either way.
            logger.warning(
                "could not withdraw access at the ledger",
                provider=old.provider.value,
                error=type(error).__name__,
            )
        store.delete(old.connection_id)
        self._ledgers.token_manager(old).forget(old.connection_id)

    # --- organisation choice -----------------------------------------------------------------------

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
        saved = self._connections.save(updated, next_refresh_at=self._first_refresh_due(updated))
        self._after_connected(saved, ConnectionStatus.PENDING_ORGANISATION)
        return ConnectionView.of(saved)

    # --- reconnect and change ------------------------------------------------------------------------

    def start_reconnect(self, caller: Caller, request: ReconnectRequest) -> ConnectStarted:
        require_admin(caller, "reconnect the accounting software")
        connection = self._connection_of(caller)
        if connection.status == ConnectionStatus.PENDING_ORGANISATION:
            raise InvalidState("choose the organisation first; there is nothing to reconnect yet")
        adapter = self._ledgers.adapter(connection.provider)
        if request.credentials is not None:
            tokens = self._sign_in_directly(adapter, request.credentials)
            reconnected = self._reconnect_with(connection, adapter, tokens, adapter.organisations(tokens))
            return ConnectStarted(connection=ConnectionView.of(reconnected))
        return self._consent_link(
            caller, adapter, connection.provider, purpose="reconnect", return_url=request.return_url,
            connection_id=connection.connection_id,
        )  # fmt: skip

    def _finish_reconnect(
        self, state: OAuthState, adapter: LedgerAdapter, tokens: TokenSet, organisations: list[Organisation]
    ) -> Connection:
        connection = self._connections.get(state.business_id)
        if connection is None or connection.connection_id != state.connection_id:
            _discard_unused_grant(adapter)
            raise InvalidState("the connection changed while you were signing in; start again")
        return self._reconnect_with(connection, adapter, tokens, organisations)

    def _reconnect_with(
        self,
        connection: Connection,
        adapter: LedgerAdapter,
        tokens: TokenSet,
        organisations: list[Organisation],
    ) -> Connection:
        """Fresh tokens for the same organisation; anything else fails closed and changes nothing."""
        expected = connection.organisation
        if expected is None or expected.id not in {o.id for o in organisations}:
            _discard_unused_grant(adapter)
            names = ", ".join(o.name for o in organisations) or "no organisation"
            raise WrongOrganisation(
                f"you signed in to {names}, but this connection is for {expected.name if expected else 'another organisation'}. "
                "Nothing was changed: reconnect and choose that organisation, or use Change connection."
            )
        store = self._ledgers.token_store(connection.token_store)
        try:
            current = store.read(connection.connection_id)
            generation = current.generation + 1
        except TokenNotFound:
            generation = 1
        fresh = tokens.model_copy(update={"generation": generation})
        try:
            store.write(connection.connection_id, fresh)
        except TokenNotFound:
            store.create(connection.connection_id, fresh)
        self._ledgers.token_manager(connection).forget(connection.connection_id)
        self._connections.publish_token_generation(connection.business_id, generation)
        reconnected = self._status.move(
            connection, ConnectionStatus.CONNECTED, f"reconnected to {expected.name}"
        )
        released = self._held_items.release(connection.business_id)
        logger.info("reconnected", connection_id=connection.connection_id, held_items_released=released)
        self._request_refresh(reconnected, "reconnected")
        return reconnected

    def start_change(self, caller: Caller, request: ReconnectRequest) -> ConnectStarted:
        require_admin(caller, "change the connection")
        connection = self._connection_of(caller)
        adapter = self._ledgers.adapter(connection.provider)
        if request.credentials is not None:
            tokens = self._sign_in_directly(adapter, request.credentials)
            others = [
                o
                for o in adapter.organisations(tokens)
                if not connection.organisation or o.id != connection.organisation.id
            ]
            if not others:
                raise SameOrganisation(
                    "that login is for the organisation already connected; use Reconnect instead"
                )
            replaced = self._replace_connection(connection, caller.user_id, tokens, others)
            return ConnectStarted(connection=ConnectionView.of(replaced))
        return self._consent_link(
            caller, adapter, connection.provider, purpose="change", return_url=request.return_url,
            connection_id=connection.connection_id,
        )  # fmt: skip

    # --- disconnect ------------------------------------------------------------------------------------

    def disconnect(self, caller: Caller, *, keep_lists: bool) -> DisconnectResult:
        require_admin(caller, "disconnect the accounting software")
        connection = self._connection_of(caller)
        self._release_old_access(connection)
        if keep_lists:
            self._connections.remember_previous(
                connection.business_id,
                PreviousConnection(
                    connection_id=connection.connection_id,
                    provider=connection.provider,
                    organisation=connection.organisation,
                    ended_at=self._clock.now(),
                    ended_by="disconnect",
                    lists_kept=True,
                ),
            )
        else:
            removed = self._lists.delete_all(connection.connection_id)
            self._connections.forget_previous(connection.business_id)
            logger.info("lists wiped", connection_id=connection.connection_id, records=removed)
        self._connections.delete(connection)
        ended = connection.moved_to(
            ConnectionStatus.DISCONNECTED, "disconnected by an Admin", self._clock.now()
        )
        self._status.announce(ended, connection.status)
        return DisconnectResult(status=ConnectionStatus.DISCONNECTED, lists_kept=keep_lists)

    # --- status ------------------------------------------------------------------------------------------

    def view(self, caller: Caller) -> ConnectionView:
        connection = self._connection_of(caller)
        # The latest list refresh rides along, so a page can follow one it asked for.
        refresh = (
            self._refreshes.get(connection.business_id, connection.connection_id)
            if self._refreshes is not None
            else None
        )
        return ConnectionView.of(connection, refresh)

    def _connection_of(self, caller: Caller) -> Connection:
        connection = self._connections.get(caller.business_id)
        if connection is None:
            raise ResourceNotFound("this business has no accounting connection yet")
        return connection


def _discard_unused_grant(adapter: LedgerAdapter) -> None:
    """A grant we will not use (a wrong organisation, a stale sign-in) is simply not stored. It is
    not revoked: at Xero a revocation drops every organisation the user connected to our app,
    including the connection this business already has."""
    logger.info("unused grant discarded", provider=adapter.provider)


def _with_query(url: str, **params: str) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{urlencode(params)}"
