"""The QuickBooks Online simulator: Intuit OAuth2 + OpenID discovery, and the Accounting API v3.

Every real path is served under one origin, so an adapter keeps its paths and only swaps the
origin (``appcenter.intuit.com``, ``oauth.platform.intuit.com``, ``developer.api.intuit.com``,
``accounts.platform.intuit.com`` and ``quickbooks.api.intuit.com`` all become the base URL):

OAuth / OpenID
    ``GET|POST /connect/oauth2`` (consent page: sign in and pick ONE company; auto-consent
    redirects at once with ``code``, ``state`` and ``realmId``), ``POST /oauth2/v1/tokens/bearer``
    (HTTP Basic client auth; authorization_code and refresh_token grants), ``POST
    /v2/oauth2/tokens/revoke`` (Basic, JSON ``{"token"}``), ``GET /v1/openid_connect/userinfo``,
    ``GET /op/v1/jwks``, and the discovery documents ``GET /.well-known/openid_configuration``
    and ``/.well-known/openid_sandbox_configuration`` (with or without the trailing slash), which
    name this simulator's own endpoints: ``intuitlib.client.AuthClient(..., environment=<that
    URL>)`` runs the whole flow unchanged (intuitlib treats any environment other than
    sandbox/production as the discovery URL itself).
Accounting (``/v3/company/{realmId}/...``, ``minorversion`` on every call)
    ``GET|POST query`` (the query language below), ``GET cdc``, ``POST batch``, ``POST upload``,
    ``GET companyinfo/{realmId}``, ``GET preferences``, ``GET {entity}/{Id}`` for Account, Vendor,
    Customer, Employee, Item, Class, Department, TaxCode, TaxRate, Bill, Purchase, Invoice and
    Attachable, ``POST {bill|purchase|invoice|vendor|customer}`` (create; update with ``Id`` +
    ``SyncToken``, ``sparse``; ``?operation=delete`` for the three transactions), ``GET
    download/{Id}`` (a temporary URL for an attachment's bytes).

Query language: ``SELECT * | COUNT(*) | Field[, ...] FROM Entity [WHERE a op 'v' AND ...]
[ORDER BY|ORDERBY f [ASC|DESC]] [STARTPOSITION n] [MAXRESULTS m]`` with ``=, <, >, <=, >=, IN,
LIKE``; only AND; ``MAXRESULTS`` default 100, above 1000 refused (4001); inactive names left out
unless the WHERE mentions ``Active`` (``Active IN (true,false)``); no rows → ``{"QueryResponse": {}}``;
``MetaData.LastUpdatedTime`` compares as a timestamp (no offset: server-local time).

Behaviour (``reference/providers.md`` §2 and §6.3): tokens bound to the consented realm (another
realm → 403 ``AuthorizationFault``); expired/invalid token → 401 with the gateway's lowercase
``fault`` body; ``minorversion`` below 75 → 400; SyncToken (5010), sparse updates, DisplayName
uniqueness across vendors/customers/employees (6240), invalid (2500) and inactive (610) refs,
duplicate invoice numbers (6140); ``requestid`` replay of the first response; ``/batch`` with
per-item ``Fault`` (items cannot see objects created earlier in the same batch); throttles of
500/min per realm, 10 concurrent and 120 batch calls/min, answered with 429 Fault ``003001``;
every response carries ``intuit_tid``.

Settings (:class:`QuickBooksSettings`; change with ``update_settings`` or ``POST /_sandbox/settings``)
and defaults:

====================================== ============ ===========================================
setting                                default      meaning
====================================== ============ ===========================================
authorization_code_ttl_seconds         300          code lifetime
access_token_ttl_seconds               3600         [src]
refresh_token_unused_ttl_seconds       8726400      101 days (``x_refresh_token_expires_in``)
refresh_token_rotation                 True         every refresh returns a new refresh token
refresh_token_grace_seconds            86400        previous token works 24 h after a newer one
refresh_token_max_lifetime_seconds     5 years      Nov 2025 absolute cap per authorization
id_token_ttl_seconds                   3600         OpenID id_token lifetime
min_minorversion                       75           below → 400 [src]
minute_limit / concurrent_limit        500 / 10     per app and realm [src]
batch_minute_limit                     120          /batch calls per app and realm [src]
second_limit                           None         sandbox companies: 10/s since Sep 2025
rate_limits_enabled                    True
query_default_max_results / max        100 / 1000   [src]
cdc_max_lookback_days / max_objects    30 / 1000    [src]
requestid_max_length / batch           50 / 36      batch item ids ≤ 10 with a requestid [src]
enforce_scopes                         True         the API needs com.intuit.quickbooks.accounting
server_timezone                        America/Los_Angeles   offset of timestamps (see below)
====================================== ============ ===========================================

UNCONFIRMED behaviours — each a setting whose default is the stricter choice:

* ``throttle_retry_after_seconds = None`` — 429s carry no ``Retry-After`` (not reliably sent);
  set a number to add one.
* ``batch_max_items = 30`` — sources say 10, 25 or 30; more items → 400.
* ``requestid_window_seconds = 3600`` — how long a ``requestid`` replays; later it executes again.
* ``require_minorversion = True`` — a call without ``minorversion`` → 400 (rather than defaulting).
* ``accept_client_secret_post = False`` — only HTTP Basic client auth at the token endpoint.
* ``pkce_supported = False`` — a ``code_challenge`` on authorize → ``invalid_request``.
* ``enforce_unique_invoice_doc_number = True`` — duplicate Invoice DocNumber → 6140 (a company
  preference in QBO).
* ``enforce_book_close_date = True`` — transactions dated on/before the company's closing date
  (the seed's period lock date) → 6000.
* ``invoice_line_item_required = True`` — a SalesItemLineDetail without ``ItemRef`` → 2020
  (QBO may default to its "Services" item).
* ``attachment_max_bytes = 20 MB`` — upload size cap (6000 above it).
* ``cdc_changed_since_inclusive = True`` — an object changed exactly at ``changedSince`` is
  returned (so a client storing the high-water mark sees it again and must de-duplicate).
* ``server_timezone = America/Los_Angeles`` — timestamps print with Intuit's server offset, not the
  company's; offset-less timestamps in queries and ``changedSince`` are read in it.
* The 403 body for another realm (``AuthorizationFault`` code 003100), the fault codes for CDC
  look-back and unsupported entities, over-size batches and bad ``requestid`` (all 4001/2010
  ``ValidationFault``s here), the 500/503 bodies, and ``IsProject`` on project sub-customers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, Response, request
from pydantic import Field

from sandbox.simulators.consent import (
    OrganisationChoice,
    consent_cancelled,
    consent_page,
    posted_organisations,
    posted_user,
    posted_username,
    read_authorize_request,
    redirect_to,
)
from sandbox.simulators.harness import (
    DEFAULT_APP,
    DEFAULT_USER,
    NO_STORE_HEADERS,
    AccessTokenProblem,
    AccessTokenRecord,
    Consent,
    FaultKind,
    FaultRule,
    IssuedTokens,
    LedgerSimulator,
    OAuthError,
    RegisteredApp,
    SandboxUser,
    SimClock,
    SimulatorSettings,
    WindowLimit,
    client_credentials_from_request,
    find_named,
    json_response,
    request_json,
    token_endpoint_error,
    truncate_to_millis,
)
from sandbox.simulators.quickbooks_ledger import (
    CDC_ENTITIES,
    ENTITY_BY_SEGMENT,
    NAME_LIST_ENTITIES,
    STORED_ENTITIES,
    WRITABLE_ENTITIES,
    QboCompany,
    QboFault,
    QueryProblem,
    WriteContext,
    change_data_capture,
    create_attachable,
    parse_multipart,
    parse_qbo_datetime,
    parse_query,
    project_fields,
    read_upload,
    realm_id_for,
    run_query,
    save_entity,
    to_wire,
)
from sandbox.simulators.seed import Dataset, Preset

_DAY = 24 * 60 * 60

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
_KNOWN_SCOPES = frozenset({ACCOUNTING_SCOPE, "com.intuit.quickbooks.payment", "openid", "profile", "email",
                           "phone", "address", "intuit_name"})
_SCOPE_DESCRIPTIONS = {
    ACCOUNTING_SCOPE: "Read and write your QuickBooks company's accounting data",
    "com.intuit.quickbooks.payment": "Process payments", "openid": "Know who you are",
    "profile": "See your name", "email": "See your email address",
}
_AUTHORIZE_PARAMS = ("client_id", "response_type", "scope", "redirect_uri", "state", "code_challenge",
                     "code_challenge_method", "claims", "locale")


class QuickBooksSettings(SimulatorSettings):
    authorization_code_ttl_seconds: float = Field(300, gt=0)
    access_token_ttl_seconds: float = Field(3600, gt=0)
    refresh_token_unused_ttl_seconds: float | None = Field(101 * _DAY, gt=0)
    refresh_token_rotation: bool = True
    refresh_token_grace_seconds: float = Field(_DAY, ge=0)
    refresh_token_max_lifetime_seconds: float | None = Field(5 * 365 * _DAY, gt=0)
    id_token_ttl_seconds: float = Field(3600, gt=0)
    accept_client_secret_post: bool = False  # UNCONFIRMED
    pkce_supported: bool = False  # UNCONFIRMED

    min_minorversion: int = Field(75, ge=0)
    require_minorversion: bool = True  # UNCONFIRMED
    enforce_scopes: bool = True

    rate_limits_enabled: bool = True
    minute_limit: int = Field(500, gt=0)
    concurrent_limit: int = Field(10, gt=0)
    batch_minute_limit: int = Field(120, gt=0)
    second_limit: int | None = Field(None, gt=0)
    throttle_retry_after_seconds: int | None = Field(None, gt=0)  # UNCONFIRMED

    query_default_max_results: int = Field(100, gt=0)
    query_max_results: int = Field(1000, gt=0)
    cdc_max_lookback_days: int = Field(30, gt=0)
    cdc_max_objects: int = Field(1000, gt=0)
    cdc_changed_since_inclusive: bool = True  # UNCONFIRMED

    batch_max_items: int = Field(30, gt=0)  # UNCONFIRMED
    requestid_max_length: int = Field(50, gt=0)
    batch_requestid_max_length: int = Field(36, gt=0)
    batch_item_id_max_length_with_requestid: int = Field(10, gt=0)
    requestid_window_seconds: float = Field(3600, gt=0)  # UNCONFIRMED

    enforce_unique_invoice_doc_number: bool = True  # UNCONFIRMED
    enforce_book_close_date: bool = True  # UNCONFIRMED
    invoice_line_item_required: bool = True  # UNCONFIRMED
    attachment_max_bytes: int = Field(20 * 1000 * 1000, gt=0)  # UNCONFIRMED
    server_timezone: str = "America/Los_Angeles"  # UNCONFIRMED


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:  # a machine without tz data: keep working, in UTC
        return UTC


@dataclass
class ApiCall:
    """One authorised Accounting call, as handlers see it."""

    company: QboCompany
    access: AccessTokenRecord
    request_id: str | None


class QuickBooksSimulator(LedgerSimulator):
    """QuickBooks Online on one origin. ``QuickBooksSimulator(clock=None, *, auto_consent=False,
    preset="small", settings=None, fault_seed=0, data_seed=0)``; serve ``.wsgi_app`` or use
    ``.transport()``.

    Beyond the harness's control methods: ``companies`` (realm id → :class:`QboCompany`, the live
    data), ``company(name_or_realm)``, ``auto_consent_company`` (which company auto-consent picks;
    the first by default), ``mint_tokens([one company])`` and ``revoke_consent()``.
    """

    provider: ClassVar[str] = "quickbooks"
    settings_model: ClassVar[type[SimulatorSettings]] = QuickBooksSettings
    settings: QuickBooksSettings

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        auto_consent: bool = False,
        preset: Preset = "small",
        settings: QuickBooksSettings | None = None,
        fault_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        self.companies: dict[str, QboCompany] = {}
        self.auto_consent_company: str | None = None
        self._signing_key: Any = None  # RSA key for id_tokens, made on first use (it costs ~50 ms)
        super().__init__(clock, auto_consent=auto_consent, preset=preset, settings=settings,
                         fault_seed=fault_seed, data_seed=data_seed)

    # -- data ------------------------------------------------------------------------------------

    def _load_dataset(self, dataset: Dataset) -> None:
        now = self.clock.now()
        self.companies = {}
        for seed in dataset.organisations:
            realm_id = realm_id_for(seed.key)
            self.companies[realm_id] = QboCompany.from_seed(seed, realm_id, now)

    def organisations(self) -> list[dict[str, Any]]:
        return [{"id": c.realm_id, "realmId": c.realm_id, "name": c.name} for c in self.companies.values()]

    def company(self, name_or_realm: str) -> QboCompany:
        """A company by realm id or (case-insensitive) name."""
        return find_named(self.companies.values(), name_or_realm, lambda c: {c.realm_id, c.name.lower()}, "company")

    @property
    def zone(self) -> tzinfo:
        return _zone(self.settings.server_timezone)

    def _time(self) -> str:
        return self.clock.now().astimezone(self.zone).isoformat(timespec="milliseconds")

    # -- tokens ----------------------------------------------------------------------------------

    def _token_response(self, issued: IssuedTokens, *, id_token_for: SandboxUser | None = None) -> dict[str, Any]:
        now = self.clock.now()
        body: dict[str, Any] = {
            "token_type": "bearer",
            "access_token": issued.access.token,
            "expires_in": issued.access.expires_in,
        }
        if issued.refresh_token:
            body["refresh_token"] = issued.refresh_token
            body["x_refresh_token_expires_in"] = self._refresh_seconds_left(issued, now)
        if id_token_for is not None and "openid" in issued.grant.scope:
            body["id_token"] = self._id_token(issued, id_token_for)
        return body

    def _refresh_seconds_left(self, issued: IssuedTokens, now: datetime) -> int:
        """What ``x_refresh_token_expires_in`` counts down: the token's own life, capped by the
        authorization's absolute maximum."""
        record = next(r for r in self.tokens.refresh_token_records(issued.grant.grant_id)
                      if r["token"] == issued.refresh_token)
        deadlines = []
        if record["unused_expires_at"]:
            deadlines.append(datetime.fromisoformat(record["unused_expires_at"]))
        cap = self.settings.refresh_token_max_lifetime_seconds
        if cap is not None:
            deadlines.append(issued.grant.issued_at + timedelta(seconds=cap))
        return int(min(deadlines).timestamp() - now.timestamp()) if deadlines else 8726400

    def _signing(self) -> Any:
        if self._signing_key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa  # only needed for OpenID

            self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._signing_key

    def _issuer(self) -> str:
        return f"{request.host_url.rstrip('/')}/op/v1"

    def _id_token(self, issued: IssuedTokens, user: SandboxUser) -> str:
        import jwt  # PyJWT signs RS256, which intuitlib verifies against our JWKS

        now = self.clock.now()
        claims = {
            "sub": user.user_id, "aud": [issued.grant.client_id], "iss": self._issuer(),
            "realmid": issued.grant.extras.get("realm_id"), "auth_time": int(issued.grant.issued_at.timestamp()),
            "iat": int(now.timestamp()), "exp": int(now.timestamp() + self.settings.id_token_ttl_seconds),
        }
        return jwt.encode(claims, self._signing(), algorithm="RS256", headers={"kid": "sandbox-qbo"})

    def mint_tokens(self, organisations: Sequence[str] | None = None, scope: str | None = None) -> dict[str, Any]:
        """Consent as the seeded user to ONE company (the first if none is named); returns the token
        response plus ``realmId``, ``companyName`` and ``expires_at`` (epoch seconds, simulator clock)."""
        with self.lock:
            if organisations and len(organisations) > 1:
                raise ValueError("QuickBooks connects exactly one company per authorization")
            chosen = self.company(organisations[0]) if organisations else next(iter(self.companies.values()))
            scopes = tuple((scope or f"{ACCOUNTING_SCOPE} openid profile email").split())
            unknown = set(scopes) - _KNOWN_SCOPES
            if unknown:
                raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
            issued = self.tokens.start_grant(
                Consent(client_id=DEFAULT_APP.client_id, user_id=DEFAULT_USER.user_id, scope=scopes,
                        extras={"realm_id": chosen.realm_id}),
                self.token_policy, with_refresh_token=True)
            response = self._token_response(issued)
            response |= {"realmId": chosen.realm_id, "companyName": chosen.name,
                         "expires_at": issued.access.expires_at.timestamp()}
            return response

    def revoke_consent(self, user_id: str | None = None) -> None:
        """The user disconnected the app inside QuickBooks: every grant dies."""
        with self.lock:
            self.tokens.revoke_user(user_id, reason="consent revoked")

    # -- faults ----------------------------------------------------------------------------------

    def _fault(self, error: QboFault, headers: dict[str, str] | None = None) -> Response:
        return json_response({"Fault": error.fault(), "time": self._time()}, error.status, headers)

    def _throttled(self, detail: str, retry_after: int | None = None) -> Response:
        seconds = retry_after or self.settings.throttle_retry_after_seconds
        return self._fault(QboFault("003001", "ThrottleExceeded", f"Throttle exceeded: {detail}", status=429),
                           {"Retry-After": str(seconds)} if seconds else None)

    def fault_response(self, rule: FaultRule) -> Response:
        if rule.kind is FaultKind.RATE_LIMIT:
            return self._throttled("too many requests for this company", rule.retry_after)
        if rule.kind is FaultKind.SERVER_ERROR:
            return self._fault(QboFault("10000", "An application error has occurred while processing your request",
                                        "System Failure Error: An unexpected error occurred while accessing or "
                                        "saving your data.", fault_type="SystemFault", status=500))
        return Response("<html><body><h1>503 Service Unavailable</h1></body></html>", status=503,
                        content_type="text/html; charset=utf-8")

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self, app: Flask) -> None:
        app.add_url_rule("/connect/oauth2", "authorize", self._authorize, methods=["GET", "POST"])
        app.add_url_rule("/oauth2/v1/tokens/bearer", "token", self._token, methods=["POST"])
        app.add_url_rule("/v2/oauth2/tokens/revoke", "revoke", self._revoke, methods=["POST"])
        app.add_url_rule("/v1/openid_connect/userinfo", "userinfo", self._userinfo, methods=["GET"])
        app.add_url_rule("/op/v1/jwks", "jwks", self._jwks, methods=["GET"])
        for name in ("openid_configuration", "openid_sandbox_configuration"):
            for suffix in ("", "/"):
                app.add_url_rule(f"/.well-known/{name}{suffix}", f"discovery-{name}{suffix}", self._discovery,
                                 methods=["GET"])
        app.add_url_rule("/v3/company/<realm_id>/<path:subpath>", "accounting", self._api, methods=["GET", "POST"])
        app.add_url_rule("/_sandbox/quickbooks/files/<realm_id>/<attachable_id>", "attachment-bytes",
                         self._attachment_bytes, methods=["GET"])

        @app.after_request
        def stamp_transaction_id(response: Response) -> Response:
            # Intuit puts a transaction id on every response; support asks for it.
            response.headers.setdefault("intuit_tid", str(uuid.uuid4()))
            return response

    # -- OpenID discovery, userinfo, JWKS --------------------------------------------------------

    def _discovery(self) -> Response:
        base = request.host_url.rstrip("/")
        return json_response({
            "issuer": f"{base}/op/v1",
            "authorization_endpoint": f"{base}/connect/oauth2",
            "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
            "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
            "jwks_uri": f"{base}/op/v1/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
        })

    def _jwks(self) -> Response:
        from jwt.algorithms import RSAAlgorithm

        with self.lock:
            public = self._signing().public_key()
        key = json.loads(RSAAlgorithm.to_jwk(public))
        return json_response({"keys": [{**key, "kid": "sandbox-qbo", "use": "sig", "alg": "RS256"}]})

    def _userinfo(self) -> Response:
        try:
            access = self.bearer_access()
        except AccessTokenProblem:
            return json_response({"error": "invalid_token"}, 401,
                                 {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'})
        user = self.users.get(access.user_id)
        if "openid" not in access.scope or user is None:
            return json_response({"error": "insufficient_scope"}, 403)
        body: dict[str, Any] = {"sub": user.user_id}
        if "email" in access.scope:
            body |= {"email": user.email, "emailVerified": True}
        if "profile" in access.scope:
            body |= {"givenName": user.first_name, "familyName": user.last_name}
        return json_response(body)

    # -- authorize -------------------------------------------------------------------------------

    def _authorize(self) -> Response:
        authorize = read_authorize_request(
            self.apps, _AUTHORIZE_PARAMS, "QuickBooks",
            unknown_client=("invalid_client", "The client_id is not recognised."),
            bad_redirect=("invalid_request", "The redirect_uri is not registered for this app."))
        if isinstance(authorize, Response):
            return authorize
        params, app, redirect_uri = authorize.params, authorize.app, authorize.redirect_uri
        back_with_error = authorize.back_with_error
        if not params["state"]:
            return back_with_error("invalid_request", "state is required")
        scopes = tuple((params["scope"] or "").split())
        unknown = sorted(set(scopes) - _KNOWN_SCOPES)
        if not scopes or unknown:
            return back_with_error("invalid_scope", f"Unknown scope(s): {', '.join(unknown)}" if unknown else None)
        if params["code_challenge"] is not None and not self.settings.pkce_supported:
            return back_with_error("invalid_request", "code_challenge is not supported")

        def grant_code(user: SandboxUser, realm_id: str) -> Response:
            with self.lock:
                code = self.codes.issue(Consent(
                    client_id=app.client_id, user_id=user.user_id, scope=scopes, redirect_uri=redirect_uri,
                    code_challenge=params["code_challenge"],
                    code_challenge_method=(params["code_challenge_method"] or "plain")
                    if params["code_challenge"] else None,
                    extras={"realm_id": realm_id},
                ), self.settings.authorization_code_ttl_seconds)
            query = {"code": code, "state": params["state"] or ""}
            if ACCOUNTING_SCOPE in scopes:
                query["realmId"] = realm_id  # the callback's realmId selects the company
            return redirect_to(redirect_uri, query)

        if request.method == "GET":
            if self.auto_consent:
                if self.auto_consent_deny:
                    return back_with_error("access_denied", "The user denied access")
                with self.lock:
                    chosen = (self.company(self.auto_consent_company) if self.auto_consent_company
                              else next(iter(self.companies.values())))
                return grant_code(DEFAULT_USER, chosen.realm_id)
            return self._consent_page(app, params, scopes)
        if consent_cancelled():
            return back_with_error("access_denied", "The user denied access")
        user = posted_user(self.users)
        if user is None:
            return self._consent_page(app, params, scopes, "Your email or password is incorrect.")
        chosen_ids = [r for r in request.form.getlist("organisation") if r in self.companies]
        if len(chosen_ids) != 1:
            return self._consent_page(app, params, scopes, "Choose one company to connect.")
        return grant_code(user, chosen_ids[0])

    def _consent_page(self, app: RegisteredApp, params: Mapping[str, str | None], scopes: tuple[str, ...],
                      error: str | None = None) -> Response:
        chosen = posted_organisations()
        return consent_page(
            brand="QuickBooks", app_name=app.name, action=request.path, hidden=params, error=error,
            scope_lines=[_SCOPE_DESCRIPTIONS.get(s, f"Use {s}") for s in scopes],
            username=posted_username(),
            organisations=[OrganisationChoice(c.realm_id, c.name, c.realm_id in chosen)
                           for c in self.companies.values()],
            organisation_legend="Choose the company to connect", multiple=False,
        )

    # -- token and revoke ------------------------------------------------------------------------

    def _client(self) -> RegisteredApp:
        credentials = client_credentials_from_request()
        if credentials.method == "client_secret_post" and not self.settings.accept_client_secret_post:
            raise OAuthError("invalid_client", "use HTTP Basic client authentication", status=401)
        try:
            return self.apps.authenticate(credentials.client_id, credentials.client_secret)
        except OAuthError as error:
            raise OAuthError("invalid_client", status=401) from error

    def _token(self) -> Response:
        try:
            with self.lock:
                app = self._client()
                grant_type = request.form.get("grant_type")
                if grant_type == "authorization_code":
                    consent = self.redeem_posted_code(app.client_id)
                    issued = self.tokens.start_grant(consent, self.token_policy, with_refresh_token=True)
                elif grant_type == "refresh_token":
                    issued = self._refresh(app, request.form.get("refresh_token"))
                else:
                    raise OAuthError("unsupported_grant_type")
                body = self._token_response(issued, id_token_for=self.users.get(issued.grant.user_id))
        except OAuthError as error:
            return token_endpoint_error(error)
        return json_response(body, 200, NO_STORE_HEADERS)

    def _refresh(self, app: RegisteredApp, refresh_token: str | None) -> IssuedTokens:
        grant = self.tokens.grant_for_refresh_token(refresh_token or "")
        cap = self.settings.refresh_token_max_lifetime_seconds
        if grant is not None and cap is not None and self.clock.now() >= grant.issued_at + timedelta(seconds=cap):
            raise OAuthError("invalid_grant", "the authorization reached its absolute maximum lifetime")
        return self.tokens.refresh(refresh_token, client_id=app.client_id, policy=self.token_policy)

    def _revoke(self) -> Response:
        try:
            with self.lock:
                app = self._client()
        except OAuthError as error:
            return json_response(error.body(), error.status)
        payload = request_json()
        token = payload.get("token") if isinstance(payload, dict) else None
        if not token:
            return json_response({"error": "invalid_request", "error_description": "token is required"}, 400)
        with self.lock:
            # Either token of the pair ends the whole authorization.
            grant = self.tokens.grant_for_refresh_token(token) or self.tokens.grant_for_access_token(token)
            self.revoke_app_grant(grant, app.client_id)
        return Response(status=200)

    # -- the API pipeline ------------------------------------------------------------------------

    def _unauthorized(self, detail: str) -> Response:
        # The API gateway's own 401 speaks lowercase keys, unlike the Accounting API's Faults.
        body = {"fault": {"error": [{
            "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
            "detail": detail, "code": "3200"}], "type": "AUTHENTICATION"}, "time": self._time()}
        return json_response(body, 401, {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'})

    def _forbidden(self, detail: str) -> Response:
        return self._fault(QboFault("003100", "message=ApplicationAuthorizationFailed; errorCode=003100; "
                                              "statusCode=403", detail, fault_type="AuthorizationFault", status=403))

    def _rate_checks(self, client_id: str, realm_id: str, *, batch: bool) -> list[tuple[WindowLimit, Any]]:
        s, key = self.settings, (client_id, realm_id)
        checks: list[tuple[WindowLimit, Any]] = [(WindowLimit("minute", s.minute_limit, 60), key)]
        if s.second_limit is not None:
            checks.append((WindowLimit("second", s.second_limit, 1), key))
        if batch:
            checks.append((WindowLimit("batch", s.batch_minute_limit, 60), key))
        return checks

    def _api(self, realm_id: str, subpath: str) -> Response:
        try:
            access = self.bearer_access()
        except AccessTokenProblem as problem:
            detail = {"AccessTokenExpired": "Token expired: the access token has expired",
                      "AccessTokenRevoked": "Token revoked"}.get(type(problem).__name__, "Token invalid")
            return self._unauthorized(detail)
        if self.settings.enforce_scopes and ACCOUNTING_SCOPE not in access.scope:
            return self._forbidden("The token does not carry the com.intuit.quickbooks.accounting scope")
        with self.lock:
            grant_realm = self.tokens.grant(access.grant_id).extras.get("realm_id")
            company = self.companies.get(realm_id)
        if company is None or grant_realm != realm_id:
            return self._forbidden(f"This app is not authorized for company {realm_id}")
        version_problem = self._check_minorversion()
        if version_problem is not None:
            return self._fault(version_problem)

        segments = [s for s in subpath.split("/") if s]
        is_batch = segments[:1] == ["batch"]
        limited = self.settings.rate_limits_enabled
        with self.concurrency_slot((access.client_id, realm_id), self.settings.concurrent_limit,
                                   enabled=limited) as admitted:
            if not admitted:
                return self._throttled("too many concurrent requests for this company")
            if limited:
                decision = self.rate_limiter.acquire(self._rate_checks(access.client_id, realm_id, batch=is_batch))
                if not decision.allowed:
                    return self._throttled(f"{decision.problem} limit exceeded for this company")
            call = ApiCall(company, access, request.args.get("requestid"))
            return self.run_in_flight(lambda: self._dispatch(segments, call))

    def _check_minorversion(self) -> QboFault | None:
        raw = request.args.get("minorversion")
        if raw is None or raw == "":
            if self.settings.require_minorversion:
                return QboFault("2010", "Invalid or unsupported minorversion",
                                f"minorversion is required; the minimum supported is {self.settings.min_minorversion}",
                                "minorversion")
            return None
        if not raw.isdigit() or int(raw) < self.settings.min_minorversion:
            return QboFault("2010", "Invalid or unsupported minorversion",
                            f"minorversion {raw} is no longer supported; the minimum is "
                            f"{self.settings.min_minorversion}", "minorversion")
        return None

    def _dispatch(self, segments: list[str], call: ApiCall) -> Response:
        method = request.method
        head = segments[0].lower() if segments else ""
        if head == "query" and len(segments) == 1:
            return self._query(call)
        if head == "cdc" and len(segments) == 1 and method == "GET":
            return self._cdc(call)
        if head == "companyinfo" and len(segments) == 2 and method == "GET":
            if segments[1] != call.company.realm_id:
                return self._fault(QboFault("610", "Object Not Found", f"CompanyInfo {segments[1]} not found"))
            return self._object(call, "CompanyInfo", call.company.company_info)
        if head == "preferences" and len(segments) == 1 and method == "GET":
            return self._object(call, "Preferences", call.company.preferences)
        if head == "download" and len(segments) == 2 and method == "GET":
            return self._download_url(call, segments[1])
        if method == "POST" and len(segments) == 1 and head in {"batch", "upload"}:
            return self._idempotent(call, self._batch if head == "batch" else self._upload, batch=head == "batch")
        entity = ENTITY_BY_SEGMENT.get(head)
        if entity is not None and method == "GET" and len(segments) == 2 and entity in STORED_ENTITIES:
            record = call.company.get(entity, segments[1])
            if record is None:
                return self._fault(QboFault("610", "Object Not Found",
                                            f"Object Not Found : {entity} {segments[1]} was not found"))
            return self._object(call, entity, record)
        if entity in WRITABLE_ENTITIES and method == "POST" and len(segments) == 1:
            assert entity is not None
            return self._idempotent(call, lambda c: self._write(c, entity), batch=False)
        return self._fault(QboFault("2010", "Unsupported Operation",
                                    f"{method} /{'/'.join(segments)} is not supported", status=400))

    def _object(self, call: ApiCall, entity: str, record: dict[str, Any]) -> Response:
        return json_response({entity: to_wire(record, self.zone), "time": self._time()})

    # -- idempotency (requestid) -----------------------------------------------------------------

    def _idempotent(self, call: ApiCall, handler: Callable[[ApiCall], Response], *, batch: bool) -> Response:
        """Run a write, replaying the first response for a ``requestid`` seen before.

        QBO keys the replay on the id alone (unique per company), so a different body under a reused
        id still gets the original response: that is what the simulator does too.
        """
        key = call.request_id
        if key is None:
            return handler(call)
        limit = self.settings.batch_requestid_max_length if batch else self.settings.requestid_max_length
        if not key.strip() or len(key) > limit:
            return self._fault(QboFault("2010", "Invalid requestid",
                                        f"requestid must be 1 to {limit} characters", "requestid"))
        # One fingerprint for every request: the id alone decides, so a reused id never conflicts.
        return self.replay_or_run((call.access.client_id, call.company.realm_id), key, "requestid",
                                  self.settings.requestid_window_seconds, lambda: handler(call))

    # -- reads: query and CDC --------------------------------------------------------------------

    def _statement(self) -> str:
        if request.method == "GET":
            return request.args.get("query", "")
        return request.get_data(as_text=True) or request.form.get("query", "")

    def _query(self, call: ApiCall) -> Response:
        statement = self._statement()
        if not statement.strip():
            return self._fault(QboFault("4000", "Error parsing query", "QueryParserError: the query is empty"))
        s = self.settings
        try:
            query = parse_query(statement, default_max=s.query_default_max_results, max_allowed=s.query_max_results)
            if query.entity in {"CompanyInfo", "Preferences"}:
                single = call.company.company_info if query.entity == "CompanyInfo" else call.company.preferences
                rows, total = run_query(query, [single], self.zone, name_list=False)
            else:
                rows, total = run_query(query, list(call.company.entities[query.entity].values()), self.zone,
                                        name_list=query.entity in NAME_LIST_ENTITIES)
        except QueryProblem as problem:
            return self._fault(problem.fault)
        if query.count:
            body: dict[str, Any] = {"totalCount": total}
        elif not rows:
            body = {}
        else:
            body = {query.entity: [to_wire(project_fields(r, query.fields), self.zone) for r in rows],
                    "startPosition": query.start_position, "maxResults": len(rows)}
        return json_response({"QueryResponse": body, "time": self._time()})

    def _cdc(self, call: ApiCall) -> Response:
        requested = [e.strip() for e in (request.args.get("entities") or "").split(",") if e.strip()]
        if not requested:
            return self._fault(QboFault("2020", "Required param missing, need to supply the required value for the "
                                                "API", "Required parameter entities is missing", "entities"))
        entities = []
        for name in requested:
            entity = ENTITY_BY_SEGMENT.get(name.lower())
            if entity is None or entity not in CDC_ENTITIES:
                return self._fault(QboFault("4001", "Invalid query",
                                            f"QueryValidationError: entity {name} is not supported by ChangeDataCapture",
                                            "entities"))
            entities.append(entity)
        raw_since = request.args.get("changedSince") or ""
        try:
            since = parse_qbo_datetime(raw_since, self.zone)
        except ValueError:
            return self._fault(QboFault("2020" if not raw_since else "2010", "Invalid changedSince",
                                        f"changedSince must be an ISO-8601 date-time, not {raw_since!r}",
                                        "changedSince"))
        oldest = self.clock.now() - timedelta(days=self.settings.cdc_max_lookback_days)
        if since < oldest:
            return self._fault(QboFault("4001", "Invalid query",
                                        f"QueryValidationError: changedSince cannot be more than "
                                        f"{self.settings.cdc_max_lookback_days} days in the past", "changedSince"))
        changes = change_data_capture(call.company, entities, since, self.settings.cdc_max_objects,
                                      inclusive=self.settings.cdc_changed_since_inclusive)
        responses = [
            {entity: [to_wire(r, self.zone) for r in rows], "startPosition": 1, "maxResults": len(rows),
             "totalCount": len(rows)} if rows else {}
            for entity, rows in changes
        ]
        return json_response({"CDCResponse": [{"QueryResponse": responses}], "time": self._time()})

    # -- writes ----------------------------------------------------------------------------------

    def _context(self, call: ApiCall) -> WriteContext:
        now = truncate_to_millis(self.clock.now())
        return WriteContext(call.company, self.settings, now, now.astimezone(self.zone).date())

    def _record_write(self, call: ApiCall, entity: str, record: dict[str, Any], action: str) -> None:
        self.write_log.record(org=call.company.realm_id, kind=entity, object_id=record["Id"], action=action,
                              body=to_wire(record, self.zone), idempotency_key=call.request_id)

    def _write(self, call: ApiCall, entity: str) -> Response:
        payload = request_json()
        operation = (request.args.get("operation") or "create").lower()
        if operation not in {"create", "update", "delete"}:
            return self._fault(QboFault("2010", "Unsupported Operation", f"operation {operation} is not supported"))
        try:
            record, action = save_entity(self._context(call), entity, payload, operation=operation)
        except QboFault as fault:
            return self._fault(fault)
        self._record_write(call, entity, record, action)
        return self._object(call, entity, record)

    def _batch(self, call: ApiCall) -> Response:
        payload = request_json()
        items = payload.get("BatchItemRequest") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return self._fault(QboFault("2020", "Required param missing, need to supply the required value for the "
                                                "API", "BatchItemRequest is missing or empty", "BatchItemRequest"))
        if len(items) > self.settings.batch_max_items:
            return self._fault(QboFault("4001", "Invalid batch request",
                                        f"A batch may hold at most {self.settings.batch_max_items} items; this one "
                                        f"has {len(items)}", "BatchItemRequest"))
        ids = [str(item.get("bId", "")) if isinstance(item, dict) else "" for item in items]
        if any(not bid for bid in ids) or len(set(ids)) != len(ids):
            return self._fault(QboFault("2010", "Invalid batch request", "every item needs a unique bId", "bId"))
        limit = self.settings.batch_item_id_max_length_with_requestid
        if call.request_id is not None and any(len(bid) > limit for bid in ids):
            return self._fault(QboFault("2010", "Invalid batch request",
                                        f"with a requestid, bIds may be at most {limit} characters", "bId"))
        ctx = self._context(call)
        responses = [self._batch_item(call, ctx, item) for item in items]
        return json_response({"BatchItemResponse": responses, "time": self._time()})

    def _batch_item(self, call: ApiCall, ctx: WriteContext, item: dict[str, Any]) -> dict[str, Any]:
        bid = str(item["bId"])
        if "Query" in item:
            s = self.settings
            try:
                query = parse_query(str(item["Query"]), default_max=s.query_default_max_results,
                                    max_allowed=s.query_max_results)
                if query.entity not in STORED_ENTITIES:
                    raise QueryProblem(QboFault("4001", "Invalid query", f"{query.entity} cannot be batched"))
                rows, total = run_query(query, list(call.company.entities[query.entity].values()), self.zone,
                                        name_list=query.entity in NAME_LIST_ENTITIES)
            except QueryProblem as problem:
                return {"bId": bid, "Fault": problem.fault.fault()}
            body: dict[str, Any] = ({"totalCount": total} if query.count else
                                    {query.entity: [to_wire(r, self.zone) for r in rows],
                                     "startPosition": query.start_position, "maxResults": len(rows)} if rows else {})
            return {"bId": bid, "QueryResponse": body}
        entity = next((k for k in item if k in WRITABLE_ENTITIES), None)
        if entity is None:
            return {"bId": bid, "Fault": QboFault("2010", "Unsupported Operation",
                                                  "the item names no supported entity or Query").fault()}
        operation = str(item.get("operation") or "create").lower()
        try:
            if operation not in {"create", "update", "delete"}:
                raise QboFault("2010", "Unsupported Operation", f"operation {operation} is not supported")
            record, action = save_entity(ctx, entity, item[entity], operation=operation)
        except QboFault as fault:
            return {"bId": bid, "Fault": fault.fault()}
        self._record_write(call, entity, record, action)
        return {"bId": bid, entity: to_wire(record, self.zone)}

    def _upload(self, call: ApiCall) -> Response:
        try:
            uploads = read_upload(parse_multipart(request.get_data(), request.headers.get("Content-Type", "")))
        except ValueError:
            return self._fault(QboFault("2010", "Invalid multipart request",
                                        "the body must be multipart/form-data with file_content_NN parts"))
        except QboFault as fault:
            return self._fault(fault)
        ctx = self._context(call)
        base = f"{request.host_url.rstrip('/')}/_sandbox/quickbooks/files/{call.company.realm_id}"
        created = []
        try:
            for upload in uploads:
                created.append(create_attachable(ctx, upload, base))
        except QboFault as fault:
            for record in created:  # all or nothing: undo the files stored before the failure
                call.company.entities["Attachable"].pop(record["Id"], None)
                call.company.attachment_content.pop(record["Id"], None)
            return self._fault(fault)
        for record in created:
            self._record_write(call, "Attachable", record, "create")
        return json_response({"AttachableResponse": [{"Attachable": to_wire(r, self.zone)} for r in created],
                              "time": self._time()})

    def _download_url(self, call: ApiCall, attachable_id: str) -> Response:
        record = call.company.get("Attachable", attachable_id)
        if record is None:
            return self._fault(QboFault("610", "Object Not Found", f"Attachable {attachable_id} was not found"))
        return Response(record["TempDownloadUri"], status=200, content_type="text/plain; charset=utf-8")

    def _attachment_bytes(self, realm_id: str, attachable_id: str) -> Response:
        with self.lock:
            company = self.companies.get(realm_id)
            record = company.get("Attachable", attachable_id) if company else None
            content = company.attachment_content.get(attachable_id) if company else None
        if record is None or content is None:
            return Response("Not found", status=404, content_type="text/plain")
        return Response(content, status=200, content_type=record["ContentType"])


__all__ = ["ACCOUNTING_SCOPE", "QuickBooksSettings", "QuickBooksSimulator"]
