"""The Xero simulator: identity (OAuth2 + PKCE, connections), Accounting API 2.0 and Projects.

Every real Xero path is served under one origin, so an adapter keeps its paths and only swaps
the origin (``https://login.xero.com``, ``https://identity.xero.com`` and ``https://api.xero.com``
all become the simulator's base URL):

Identity
    ``GET|POST /identity/connect/authorize`` (consent page; auto-consent redirects at once),
    ``POST /connect/token`` (authorization_code and refresh_token grants), ``POST
    /connect/revocation``, ``GET /connections[?authEventId=]``, ``DELETE /connections/{id}``.
Accounting (``/api.xro/2.0``; paths are case-insensitive, as Xero's are)
    Accounts, Contacts (GET/PUT/POST), TaxRates, Items, TrackingCategories, Organisation, Users,
    Currencies, Invoices (GET/PUT/POST), Payments (GET/PUT/POST), BankTransactions (GET/PUT/POST),
    Receipts and ExpenseClaims (classic expenses; GET/PUT), and
    ``GET|PUT|POST /{Endpoint}/{Guid}/Attachments[/{FileName}]`` for Invoices, BankTransactions,
    Receipts, Contacts and Accounts.
Projects (``/projects.xro/2.0``)
    ``GET|POST /Projects``, ``GET|PUT|PATCH /Projects/{projectId}``.

Seeded bank lines: Xero's bank statement lines are not readable through the Accounting API, so
the unreconciled money on a bank account is what ``GET /BankTransactions?where=IsReconciled==false``
returns. Every live bank and card account of the seeded organisations carries the neutral seed's
five unreconciled SPEND transactions (``seed.SeedBankLine``: dated 2-27 days before the clock's
start, paid to seeded suppliers, no tax); ``add_bank_line`` adds more for a test. They are seed
data, not writes: ``writes(kind="BankTransaction")`` shows only what a client created.

Behaviour (see ``reference/providers.md`` §1 and §6.2): MS-JSON dates in responses, ``YYYY-MM-DD``
(or MS-JSON, as the SDKs send) in requests; the ``Id/Status/ProviderName/DateTimeUTC``
envelope; 401 ``TokenExpired`` / ``AuthenticationUnsuccessful`` problem bodies; 403
``AuthenticationUnsuccessful`` for a missing or unconnected ``xero-tenant-id``; refresh-token
rotation with a grace window for the previous token and an unused expiry; revocation removing the
user's connections; per-tenant and app rate limits with the ``X-*Limit-Remaining`` headers on
every API response and 429 + ``Retry-After`` + ``X-Rate-Limit-Problem`` on breach;
``Idempotency-Key`` replay; ``summarizeErrors``; the §6.2 validation rules.

Settings (:class:`XeroSettings`; change with ``update_settings`` or ``POST /_sandbox/settings``)
and defaults:

===================================== ============ ============================================
setting                               default      meaning
===================================== ============ ============================================
authorization_code_ttl_seconds        300          code lifetime (~5 min [3p])
access_token_ttl_seconds              1800         access token lifetime [src]
id_token_ttl_seconds                  300          id_token lifetime [3p]
refresh_token_unused_ttl_seconds      5184000      60 days unused → dead [src]
refresh_token_rotation                True         each refresh returns a new refresh token [src]
refresh_token_grace_seconds           1800         previous token works 30 min after use [src]
minute_limit / day_limit              60 / 5000    per app and tenant (day: 1000 on Starter) [src]
concurrent_limit                      5            per app and tenant in flight [src]
app_minute_limit                      10000        per app across tenants [src]
rate_limits_enabled                   True
idempotency_window_seconds            360          UNCONFIRMED, see below
idempotency_key_max_length            128          [src]
default_page_size / max_page_size     100 / 1000   paged endpoints; larger sizes are clamped
projects_default_page_size / max      50 / 500     Projects API [src]
max_tracking_categories_per_line      2
enforce_scopes                        True         endpoints check the token's scopes
fault_delay_seconds                   35           over HTTP, timeout faults hold then 504
latency_seconds                       0            wall time in flight per API call (benchmarks)
===================================== ============ ============================================

UNCONFIRMED behaviours — each a setting whose default is the stricter choice:

* ``idempotency_window_seconds = 360`` — Xero's docs are quoted as "about 6 minutes" only by
  third parties; a replay after the window creates a new object.
* ``attachment_max_bytes = 10 MiB`` — pages disagree (10 MB vs 25 MB); the smaller is simulated
  (413 above it).
* ``create_contact_from_unknown_name = False`` — whether a ``Contact.Name`` matching no contact
  creates one is not in a primary source; by default the element is rejected.
* ``unpaged_list_returns_all = False`` — without ``page``, Contacts/Invoices/Payments/
  BankTransactions return page 1 only (100 rows), so a client that forgets to page is caught.
* ``lock_date_applies_to_drafts = True`` — whether drafts may be dated on/before the period lock
  date is unconfirmed; by default they are refused like approved documents.
* ``granular_scopes_only = True`` — apps created on/after 2 Mar 2026 may only request granular
  scopes [3p]; the broad ``accounting.transactions(.read)`` scopes are refused at authorize.
* ``batch_max_elements = 50`` — the "≤ ~50 elements per request" guidance [3p] is enforced (400).
* ``attachment_put_replaces_same_name = False`` — a second PUT of the same file name adds a
  second attachment (POST replaces), so a blind retry of an upload shows up as a duplicate.
* ``X-Rate-Limit-Problem`` spellings for the app-wide and concurrency limits (``appminute``,
  ``concurrent``) are not confirmed; ``minute`` and ``day`` are [src].
* An organisation without Projects (``XeroOrganisation.projects_enabled = False``) answers every
  Projects API call 403 with a problem body; what Xero answers there is not in a primary source.
* The bodies of 429, 404, idempotency-conflict (400) and attachment-limit errors are not
  documented; the simulator uses the problem-details shape of Xero's 401/403 bodies or plain
  text, and the ``ValidationException`` envelope where a validation message fits.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

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
    AccessTokenExpired,
    AccessTokenProblem,
    AccessTokenRecord,
    Consent,
    FaultKind,
    FaultRule,
    IdempotencyKeyReused,
    IdempotencyStore,
    IssuedTokens,
    LedgerSimulator,
    OAuthError,
    RegisteredApp,
    SandboxUser,
    SimClock,
    SimulatorSettings,
    TokenGrant,
    WindowLimit,
    client_credentials_from_request,
    encode_jwt,
    find_named,
    find_route,
    json_response,
    match_path,
    parse_bool,
    path_is_routed,
    request_json,
    token_endpoint_error,
    truncate_to_millis,
)
from sandbox.simulators.seed import Dataset, Preset, stable_uuid
from sandbox.simulators.xero_ledger import (
    ATTACHABLE_ENDPOINTS,
    AttachmentRejected,
    ElementOutcome,
    QueryError,
    Record,
    WriteContext,
    XeroOrganisation,
    add_attachment,
    apply_order,
    contact_view,
    invoice_view,
    ms_date,
    parse_timestamp,
    prepare_bank_transaction,
    prepare_contact,
    prepare_expense_claim,
    prepare_invoice,
    prepare_payment,
    prepare_receipt,
    to_decimal,
    to_wire,
    where_filter,
)

_DAY = 24 * 60 * 60


class XeroSettings(SimulatorSettings):
    authorization_code_ttl_seconds: float = Field(300, gt=0)
    access_token_ttl_seconds: float = Field(1800, gt=0)
    id_token_ttl_seconds: float = Field(300, gt=0)
    refresh_token_unused_ttl_seconds: float | None = Field(60 * _DAY, gt=0)
    refresh_token_rotation: bool = True
    refresh_token_grace_seconds: float = Field(30 * 60, ge=0)

    rate_limits_enabled: bool = True
    minute_limit: int = Field(60, gt=0)
    day_limit: int = Field(5000, gt=0)
    concurrent_limit: int = Field(5, gt=0)
    app_minute_limit: int = Field(10_000, gt=0)

    idempotency_window_seconds: float = Field(360, gt=0)  # UNCONFIRMED
    idempotency_key_max_length: int = Field(128, gt=0)

    default_page_size: int = Field(100, gt=0)
    max_page_size: int = Field(1000, gt=0)
    projects_default_page_size: int = Field(50, gt=0)
    projects_max_page_size: int = Field(500, gt=0)
    unpaged_list_returns_all: bool = False  # UNCONFIRMED
    batch_max_elements: int | None = Field(50, gt=0)  # UNCONFIRMED

    create_contact_from_unknown_name: bool = False  # UNCONFIRMED
    lock_date_applies_to_drafts: bool = True  # UNCONFIRMED
    max_tracking_categories_per_line: int = Field(2, ge=0)

    attachment_max_bytes: int = Field(10 * 1024 * 1024, gt=0)  # UNCONFIRMED
    attachments_per_document: int = Field(10, gt=0)
    attachment_put_replaces_same_name: bool = False  # UNCONFIRMED

    granular_scopes_only: bool = True  # UNCONFIRMED ([3p])
    enforce_scopes: bool = True


# --------------------------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------------------------

_IDENTITY_SCOPES = {"openid", "profile", "email", "offline_access"}
_BROAD_TRANSACTION_SCOPES = {"accounting.transactions", "accounting.transactions.read"}
_KNOWN_SCOPES = _IDENTITY_SCOPES | _BROAD_TRANSACTION_SCOPES | {
    f"{base}{suffix}"
    for base in ("accounting.settings", "accounting.contacts", "accounting.invoices", "accounting.payments",
                 "accounting.banktransactions", "accounting.manualjournals", "accounting.attachments",
                 "accounting.classicexpenses", "projects", "files", "assets")
    for suffix in ("", ".read")
} | {"accounting.reports.read", "accounting.journals.read", "accounting.budgets.read"}

# Endpoint family → (scopes that may read, scopes that may write).
_SCOPE_GROUPS: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


def _scope_group(name: str, *writers: str) -> None:
    _SCOPE_GROUPS[name] = (frozenset(writers) | frozenset(f"{w}.read" for w in writers), frozenset(writers))


_scope_group("settings", "accounting.settings")
_scope_group("items", "accounting.settings", "accounting.invoices")
_scope_group("contacts", "accounting.contacts")
_scope_group("invoices", "accounting.transactions", "accounting.invoices")
_scope_group("payments", "accounting.transactions", "accounting.payments")
_scope_group("banktransactions", "accounting.transactions", "accounting.banktransactions")
_scope_group("classicexpenses", "accounting.transactions", "accounting.classicexpenses")
_scope_group("attachments", "accounting.attachments")
_scope_group("projects", "projects")

_SCOPE_DESCRIPTIONS = {
    "openid": "Know who you are", "profile": "See your name", "email": "See your email address",
    "offline_access": "Stay connected when you are not using it",
}

# What /_sandbox/tokens grants when no scope is given: everything the adapter needs.
DEFAULT_MINT_SCOPE = (
    "openid profile email offline_access accounting.settings accounting.contacts accounting.invoices "
    "accounting.payments accounting.banktransactions accounting.classicexpenses accounting.attachments projects"
)

_IDENTITY_ISSUER = "https://identity.xero.com"


# --------------------------------------------------------------------------------------------
# Connections and API routing
# --------------------------------------------------------------------------------------------


@dataclass
class XeroConnection:
    id: str
    tenant_id: str
    user_id: str
    client_id: str
    auth_event_id: str
    created: datetime
    updated: datetime

    def describe(self, tenant_name: str) -> dict[str, Any]:
        def stamp(moment: datetime) -> str:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"  # Xero prints 7 fractional digits

        return {"id": self.id, "authEventId": self.auth_event_id, "tenantId": self.tenant_id,
                "tenantType": "ORGANISATION", "tenantName": tenant_name,
                "createdDateUtc": stamp(self.created), "updatedDateUtc": stamp(self.updated)}


@dataclass
class ApiCall:
    """One authorised Accounting/Projects call, as handlers see it."""

    org: XeroOrganisation
    access: AccessTokenRecord
    app: RegisteredApp
    params: dict[str, str]
    idempotency_key: str | None


Handler = Callable[[ApiCall], Response]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    pattern: tuple[str, ...]  # lowercase literals or "{name}"; a trailing "{name*}" takes the rest
    scope_group: str
    handler: Handler
    writes: bool = False

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        return match_path(self.pattern, segments, ignore_case=True) if method == self.method else None


_NOT_FOUND_TEXT = "The resource you're looking for cannot be found"


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    """Xero's problem-details body (what its 401 and 403 responses look like)."""
    return json_response({"Type": None, "Title": title, "Status": status, "Detail": detail,
                          "Instance": str(uuid.uuid4()), "Extensions": {}}, status, headers)


def _api_exception(error_number: int, error_type: str, message: str, elements: list[Any] | None = None,
                   status: int = 400) -> Response:
    body: dict[str, Any] = {"ErrorNumber": error_number, "Type": error_type, "Message": message}
    if elements is not None:
        body["Elements"] = elements
    return json_response(body, status)


def _validation_exception(elements: list[Any]) -> Response:
    return _api_exception(10, "ValidationException", "A validation exception occurred", elements)


def _not_found() -> Response:
    return Response(_NOT_FOUND_TEXT, status=404, content_type="text/plain; charset=utf-8")


# --------------------------------------------------------------------------------------------
# Authorize
# --------------------------------------------------------------------------------------------

_AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                     "code_challenge_method", "nonce", "acr_values", "prompt")


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class XeroSimulator(LedgerSimulator):
    """Xero on one origin. ``XeroSimulator(clock=None, *, auto_consent=False, preset="small",
    settings=None, fault_seed=0, data_seed=0)``; serve ``.wsgi_app`` or use ``.transport()``.

    Beyond the harness's control methods: ``orgs`` (tenant id → :class:`XeroOrganisation`, the
    live ledger data), ``org(name_or_id)``, ``connections``, ``disconnect(tenant)`` (the user
    removes one organisation) and ``revoke_consent()`` (the user removes the app).
    """

    provider: ClassVar[str] = "xero"
    settings_model: ClassVar[type[SimulatorSettings]] = XeroSettings
    settings: XeroSettings

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        auto_consent: bool = False,
        preset: Preset = "small",
        settings: XeroSettings | None = None,
        fault_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        self.orgs: dict[str, XeroOrganisation] = {}
        self.connections: dict[str, XeroConnection] = {}
        # Signs our JWTs; clients never verify them, so a per-instance random key is enough.
        self._jwt_key = secrets.token_bytes(32)
        super().__init__(clock, auto_consent=auto_consent, preset=preset, settings=settings,
                         fault_seed=fault_seed, data_seed=data_seed)
        self._routes = self._api_routes()
        self._project_routes = self._projects_routes()

    # -- data ------------------------------------------------------------------------------------

    def _load_dataset(self, dataset: Dataset) -> None:
        now = self.clock.now()
        self.orgs = {org.tenant_id: org for org in
                     (XeroOrganisation.from_seed(seed, now) for seed in dataset.organisations)}

    def organisations(self) -> list[dict[str, Any]]:
        return [{"id": org.tenant_id, "tenantId": org.tenant_id, "name": org.name,
                 "shortCode": org.organisation["ShortCode"]} for org in self.orgs.values()]

    def org(self, name_or_id: str) -> XeroOrganisation:
        """An organisation by tenant id or (case-insensitive) name."""
        return find_named(self.orgs.values(), name_or_id, lambda o: {o.tenant_id, o.name.lower()}, "organisation")

    # -- consent, connections and tokens ---------------------------------------------------------

    def _consent(self, user_id: str, client_id: str, tenant_ids: Sequence[str]) -> str:
        """Connect the user's chosen tenants to the app; returns the new auth event id."""
        auth_event_id = str(uuid.uuid4())
        now = self.clock.now()
        for tenant_id in tenant_ids:
            existing = self._connection(user_id, client_id, tenant_id)
            if existing is not None:
                existing.auth_event_id, existing.updated = auth_event_id, now
            else:
                connection = XeroConnection(str(uuid.uuid4()), tenant_id, user_id, client_id, auth_event_id,
                                            now, now)
                self.connections[connection.id] = connection
        return auth_event_id

    def _connection(self, user_id: str, client_id: str, tenant_id: str) -> XeroConnection | None:
        return next((c for c in self.connections.values()
                     if c.user_id == user_id and c.client_id == client_id and c.tenant_id == tenant_id), None)

    def _make_access_token(self, grant: TokenGrant, jti: str, issued: datetime, expires: datetime) -> str:
        return encode_jwt({
            "nbf": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "iss": _IDENTITY_ISSUER,
            "aud": f"{_IDENTITY_ISSUER}/resources",
            "client_id": grant.client_id,
            "sub": uuid.UUID(stable_uuid("xero", "sub", grant.user_id)).hex,
            "auth_time": int(grant.issued_at.timestamp()),
            "xero_userid": grant.user_id,
            "global_session_id": grant.extras.get("session_id"),
            "sid": grant.extras.get("session_id"),
            "jti": jti,
            "authentication_event_id": grant.extras.get("auth_event_id"),
            "scope": list(grant.scope),
            "amr": ["pwd"],
        }, self._jwt_key)

    def _id_token(self, grant: TokenGrant, user: SandboxUser) -> str:
        now = self.clock.now()
        claims = {
            "nbf": int(now.timestamp()),
            "exp": int(now.timestamp() + self.settings.id_token_ttl_seconds),
            "iat": int(now.timestamp()),
            "iss": _IDENTITY_ISSUER,
            "aud": grant.client_id,
            "sub": uuid.UUID(stable_uuid("xero", "sub", grant.user_id)).hex,
            "auth_time": int(grant.issued_at.timestamp()),
            "xero_userid": grant.user_id,
            "global_session_id": grant.extras.get("session_id"),
            "sid": grant.extras.get("session_id"),
            "preferred_username": user.email,
            "email": user.email,
            "given_name": user.first_name,
            "family_name": user.last_name,
            "name": user.display_name,
        }
        if grant.extras.get("nonce"):
            claims["nonce"] = grant.extras["nonce"]
        return encode_jwt(claims, self._jwt_key)

    def _token_response(self, issued: IssuedTokens) -> dict[str, Any]:
        grant = issued.grant
        body: dict[str, Any] = {}
        user = self.users.get(grant.user_id)
        if "openid" in grant.scope and user is not None:
            body["id_token"] = self._id_token(grant, user)
        body |= {
            "access_token": issued.access.token,
            "expires_in": issued.access.expires_in,
            "token_type": "Bearer",
        }
        if issued.refresh_token:
            body["refresh_token"] = issued.refresh_token
        body["scope"] = " ".join(grant.scope)
        return body

    def _start_grant(self, consent: Consent) -> IssuedTokens:
        # offline_access is what earns a refresh token.
        return self.tokens.start_grant(consent, self.token_policy,
                                       with_refresh_token="offline_access" in consent.scope)

    def mint_tokens(self, organisations: Sequence[str] | None = None, scope: str | None = None) -> dict[str, Any]:
        """Consent as the seeded user without the browser; returns the token response plus
        ``tenants``, ``authEventId`` and ``expires_at`` (epoch seconds on the simulator clock)."""
        with self.lock:
            chosen = [self.org(o) for o in organisations] if organisations else list(self.orgs.values())
            scopes = tuple((scope or DEFAULT_MINT_SCOPE).split())
            unknown = set(scopes) - _KNOWN_SCOPES
            if unknown:
                raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
            tenant_ids = [o.tenant_id for o in chosen]
            auth_event_id = self._consent(DEFAULT_USER.user_id, DEFAULT_APP.client_id, tenant_ids)
            issued = self._start_grant(Consent(
                client_id=DEFAULT_APP.client_id, user_id=DEFAULT_USER.user_id, scope=scopes,
                extras={"auth_event_id": auth_event_id, "tenant_ids": tenant_ids,
                        "session_id": uuid.uuid4().hex},
            ))
            response = self._token_response(issued)
            response["expires_at"] = issued.access.expires_at.timestamp()
            response["authEventId"] = auth_event_id
            response["tenants"] = [{"tenantId": o.tenant_id, "tenantName": o.name} for o in chosen]
            return response

    def revoke_consent(self, user_id: str | None = None) -> None:
        """The user disconnected the app inside Xero: grants revoked, connections removed."""
        with self.lock:
            self.tokens.revoke_user(user_id, reason="consent revoked")
            for connection_id in [c.id for c in self.connections.values() if user_id in (None, c.user_id)]:
                del self.connections[connection_id]

    def disconnect(self, tenant: str, user_id: str = DEFAULT_USER.user_id,
                   client_id: str = DEFAULT_APP.client_id) -> None:
        """Remove one tenant's connection (what ``DELETE /connections/{id}`` does)."""
        with self.lock:
            connection = self._connection(user_id, client_id, self.org(tenant).tenant_id)
            if connection is not None:
                del self.connections[connection.id]

    def add_bank_line(self, tenant: str, bank_account_id: str, on: date, amount: Decimal | str, *,
                      contact_id: str | None = None, reference: str = "CARD PAYMENT") -> str:
        """An unreconciled money-out line (a SPEND BankTransaction with ``IsReconciled`` false) on a
        bank account, as a bank feed would leave it; returns its BankTransactionID. Not an API write:
        the write log stays as it was."""
        with self.lock:
            record = self.org(tenant).add_bank_line(bank_account_id, on, Decimal(str(amount)),
                                                    contact_id=contact_id, reference=reference,
                                                    now=self.clock.now())
        return str(record["BankTransactionID"])

    # -- faults ----------------------------------------------------------------------------------

    def fault_response(self, rule: FaultRule) -> Response:
        if rule.kind is FaultKind.RATE_LIMIT:
            retry_after = rule.retry_after or 1
            return _problem(429, "Too Many Requests", "You've exceeded the per minute rate limit", {
                "Retry-After": str(retry_after), "X-Rate-Limit-Problem": "minute",
                "X-MinLimit-Remaining": "0",
            })
        if rule.kind is FaultKind.SERVER_ERROR:
            return _problem(500, "An error occurred", "An error occurred in Xero. Check the API Status page "
                                                      "for current service status.")
        return Response("Service Unavailable: the organisation is offline for maintenance.", status=503,
                        content_type="text/plain; charset=utf-8")

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self, app: Flask) -> None:
        app.add_url_rule("/identity/connect/authorize", "authorize", self._authorize, methods=["GET", "POST"])
        app.add_url_rule("/connect/token", "token", self._token, methods=["POST"])
        app.add_url_rule("/connect/revocation", "revocation", self._revocation, methods=["POST"])
        for prefix in ("/connections", "/Connections"):
            app.add_url_rule(prefix, f"connections{prefix}", self._list_connections, methods=["GET"])
            app.add_url_rule(f"{prefix}/<connection_id>", f"connection{prefix}", self._delete_connection,
                             methods=["DELETE"])
        methods = ["GET", "PUT", "POST", "PATCH", "DELETE"]
        app.add_url_rule("/api.xro/2.0/<path:subpath>", "accounting",
                         lambda subpath: self._api(subpath, self._routes), methods=methods)
        app.add_url_rule("/projects.xro/2.0/<path:subpath>", "projects",
                         lambda subpath: self._api(subpath, self._project_routes), methods=methods)

    # -- identity: authorize ---------------------------------------------------------------------

    def _authorize(self) -> Response:
        authorize = read_authorize_request(
            self.apps, _AUTHORIZE_PARAMS, "Xero",
            unknown_client=("unauthorized_client", "Unknown client or client not enabled"),
            bad_redirect=("invalid_request", "Invalid redirect_uri"))
        if isinstance(authorize, Response):
            return authorize
        params, app, redirect_uri = authorize.params, authorize.app, authorize.redirect_uri
        back_with_error = authorize.back_with_error
        scopes = tuple((params["scope"] or "").split())
        unknown = sorted(set(scopes) - _KNOWN_SCOPES)
        if not scopes or unknown:
            return back_with_error("invalid_scope", f"Unknown scope(s): {', '.join(unknown)}" if unknown else None)
        if self.settings.granular_scopes_only and _BROAD_TRANSACTION_SCOPES & set(scopes):
            return back_with_error("invalid_scope", "This app can only request granular scopes "
                                                    "(accounting.invoices, accounting.payments, ...)")
        challenge, method = params["code_challenge"], params["code_challenge_method"]
        if challenge is not None and (method or "plain") not in {"S256", "plain"}:
            return back_with_error("invalid_request", "code_challenge_method must be S256")
        if challenge is None and method is not None:
            return back_with_error("invalid_request", "code_challenge is missing")
        single_org = "bulk_connect:false" in (params["acr_values"] or "")

        def grant_code(user: SandboxUser, tenant_ids: list[str]) -> Response:
            with self.lock:
                auth_event_id = self._consent(user.user_id, app.client_id, tenant_ids)
                code = self.codes.issue(Consent(
                    client_id=app.client_id, user_id=user.user_id, scope=scopes, redirect_uri=redirect_uri,
                    code_challenge=challenge, code_challenge_method=(method or "plain") if challenge else None,
                    nonce=params["nonce"],
                    extras={"auth_event_id": auth_event_id, "tenant_ids": tenant_ids,
                            "session_id": uuid.uuid4().hex, "nonce": params["nonce"]},
                ), self.settings.authorization_code_ttl_seconds)
            query = {"code": code, "scope": " ".join(scopes),
                     **({"state": params["state"]} if params["state"] is not None else {}),
                     "session_state": secrets.token_urlsafe(16)}
            return redirect_to(redirect_uri, query)

        tenants = list(self.orgs.values())
        if request.method == "GET":
            if self.auto_consent:
                if self.auto_consent_deny:
                    return back_with_error("access_denied")
                chosen = tenants[:1] if single_org else tenants
                return grant_code(DEFAULT_USER, [t.tenant_id for t in chosen])
            return self._consent_page(app, params, scopes, single_org)
        if consent_cancelled():
            return back_with_error("access_denied")
        user = posted_user(self.users)
        if user is None:
            return self._consent_page(app, params, scopes, single_org, "Your email or password is incorrect.")
        known = {t.tenant_id for t in tenants}
        chosen_ids = [t for t in request.form.getlist("organisation") if t in known]
        if not chosen_ids:
            return self._consent_page(app, params, scopes, single_org, "Choose at least one organisation.")
        if single_org and len(chosen_ids) > 1:
            return self._consent_page(app, params, scopes, single_org, "Choose only one organisation.")
        return grant_code(user, chosen_ids)

    def _consent_page(self, app: RegisteredApp, params: Mapping[str, str | None], scopes: tuple[str, ...],
                      single: bool, error: str | None = None) -> Response:
        chosen = posted_organisations()
        return consent_page(
            brand="Xero", app_name=app.name, action=request.path, hidden=params, error=error,
            scope_lines=[_SCOPE_DESCRIPTIONS.get(s, f"Use {s}") for s in scopes],
            username=posted_username(),
            organisations=[OrganisationChoice(o.tenant_id, o.name, o.tenant_id in chosen) for o in self.orgs.values()],
            organisation_legend="Choose the organisation to connect" if single else "Organisations to connect",
            # Checkboxes even for a single-organisation connection (bulk_connect:false), as Xero's
            # page does; choosing more than one is refused when the form is posted.
            multiple=True,
        )

    # -- identity: token, revocation, connections ------------------------------------------------

    def _token(self) -> Response:
        credentials = client_credentials_from_request()
        try:
            with self.lock:
                app = self.apps.authenticate(credentials.client_id, credentials.client_secret)
                grant_type = request.form.get("grant_type")
                if grant_type == "authorization_code":
                    consent = self.redeem_posted_code(app.client_id)
                    if app.client_secret is None and consent.code_challenge is None:
                        raise OAuthError("invalid_grant", "public clients must use PKCE")
                    issued = self._start_grant(consent)
                elif grant_type == "refresh_token":
                    issued = self.tokens.refresh(request.form.get("refresh_token"), client_id=app.client_id,
                                                 policy=self.token_policy)
                else:
                    raise OAuthError("unsupported_grant_type")
                body = self._token_response(issued)
        except OAuthError as error:
            return token_endpoint_error(error)
        return json_response(body, 200, NO_STORE_HEADERS)

    def _revocation(self) -> Response:
        credentials = client_credentials_from_request()
        try:
            with self.lock:
                app = self.apps.authenticate(credentials.client_id, credentials.client_secret)
                grant = self.tokens.grant_for_refresh_token(request.form.get("token", ""))
                if self.revoke_app_grant(grant, app.client_id):
                    assert grant is not None
                    for connection in [c for c in self.connections.values()
                                       if c.user_id == grant.user_id and c.client_id == app.client_id]:
                        del self.connections[connection.id]
        except OAuthError as error:
            return json_response(error.body(), error.status)
        return Response(status=200)  # RFC 7009: unknown tokens are not an error

    def _bearer(self) -> AccessTokenRecord | Response:
        try:
            return self.bearer_access()
        except AccessTokenExpired as expired:
            assert expired.record is not None
            at = expired.record.expires_at.strftime("%m/%d/%Y %H:%M:%S")
            return _problem(401, "Unauthorized", f"TokenExpired: token expired at {at}", {
                "WWW-Authenticate": f'Bearer error="invalid_token", error_description="The token expired at '
                                    f"'{at}'\""})
        except AccessTokenProblem:
            return _problem(401, "Unauthorized", "AuthenticationUnsuccessful",
                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _list_connections(self) -> Response:
        access = self._bearer()
        if isinstance(access, Response):
            return access
        auth_event_id = request.args.get("authEventId")
        with self.lock:
            rows = [c.describe(self.orgs[c.tenant_id].name) for c in self.connections.values()
                    if c.user_id == access.user_id and c.client_id == access.client_id
                    and c.tenant_id in self.orgs and (auth_event_id is None or c.auth_event_id == auth_event_id)]
        return json_response(rows)

    def _delete_connection(self, connection_id: str) -> Response:
        access = self._bearer()
        if isinstance(access, Response):
            return access
        with self.lock:
            connection = self.connections.get(connection_id.lower())
            if connection is None or connection.user_id != access.user_id or connection.client_id != access.client_id:
                return _not_found()
            del self.connections[connection.id]
        return Response(status=204)

    # -- the API pipeline ------------------------------------------------------------------------

    def _rate_checks(self, client_id: str, tenant_id: str) -> list[tuple[WindowLimit, Any]]:
        s = self.settings
        return [
            (WindowLimit("day", s.day_limit, _DAY), (client_id, tenant_id)),
            (WindowLimit("minute", s.minute_limit, 60), (client_id, tenant_id)),
            (WindowLimit("appminute", s.app_minute_limit, 60), client_id),
        ]

    @staticmethod
    def _limit_headers(remaining: dict[str, int]) -> dict[str, str]:
        return {"X-DayLimit-Remaining": str(remaining["day"]), "X-MinLimit-Remaining": str(remaining["minute"]),
                "X-AppMinLimit-Remaining": str(remaining["appminute"])}

    def _api(self, subpath: str, routes: list[ApiRoute]) -> Response:
        access = self._bearer()
        if isinstance(access, Response):
            return access
        tenant_id = request.headers.get("xero-tenant-id", "").strip().lower()
        with self.lock:
            connected = self._connection(access.user_id, access.client_id, tenant_id)
            org = self.orgs.get(tenant_id)
            app = self.apps.get(access.client_id)
        if connected is None or org is None or app is None:
            return _problem(403, "Forbidden", "AuthenticationUnsuccessful")

        segments = [s for s in subpath.split("/") if s]
        matched = find_route(routes, request.method, segments)
        if self.settings.enforce_scopes and matched is not None:
            readers, writers = _SCOPE_GROUPS[matched[0].scope_group]
            if not set(access.scope) & (writers if matched[0].writes else readers):
                return _problem(401, "Unauthorized", "AuthorizationUnsuccessful")
        if matched is not None and matched[0].scope_group == "projects" and not org.projects_enabled:
            return _problem(403, "Forbidden", "Projects is not enabled for this organisation")

        # Concurrency first: a request refused for being one too many is not counted per minute.
        limited = self.settings.rate_limits_enabled
        checks = self._rate_checks(access.client_id, tenant_id)
        with self.concurrency_slot((access.client_id, tenant_id), self.settings.concurrent_limit,
                                   enabled=limited) as admitted:
            if not admitted:
                remaining = self.rate_limiter.remaining(checks)
                return _problem(429, "Too Many Requests", "You've exceeded the concurrent request limit",
                                {"Retry-After": "1", "X-Rate-Limit-Problem": "concurrent",
                                 **self._limit_headers(remaining)})
            if limited:
                decision = self.rate_limiter.acquire(checks)
                headers = self._limit_headers(dict(decision.remaining))
                if not decision.allowed:
                    return _problem(429, "Too Many Requests",
                                    f"You've exceeded the per {decision.problem} rate limit",
                                    {"Retry-After": str(decision.retry_after_seconds),
                                     "X-Rate-Limit-Problem": decision.problem or "minute", **headers})
            else:
                headers = self._limit_headers(self.rate_limiter.remaining(checks))

            def handle() -> Response:
                if matched is None:
                    return self._unrouted(segments, routes)
                route, params = matched
                call = ApiCall(org, access, app, params, request.headers.get("Idempotency-Key"))
                return self._dispatch(route, call)

            response = self.run_in_flight(handle)
        for name, value in headers.items():
            response.headers[name] = value
        return response

    @staticmethod
    def _unrouted(segments: list[str], routes: list[ApiRoute]) -> Response:
        if path_is_routed(routes, segments):
            return Response(f"The requested resource does not support http method '{request.method}'.",
                            status=405, content_type="text/plain; charset=utf-8")
        return _not_found()

    def _dispatch(self, route: ApiRoute, call: ApiCall) -> Response:
        """Run a handler (lock held), replaying or storing it under its Idempotency-Key."""
        key = call.idempotency_key
        if key is None or request.method not in {"PUT", "POST", "PATCH"}:
            return route.handler(call)
        if not key.strip() or len(key) > self.settings.idempotency_key_max_length:
            return _problem(400, "Bad Request", f"The Idempotency-Key must be between 1 and "
                                                f"{self.settings.idempotency_key_max_length} characters.")
        scope = (call.access.client_id, call.org.tenant_id)
        query = "&".join(sorted(f"{k.lower()}={v}" for k, v in request.args.items(multi=True)))
        fingerprint = IdempotencyStore.fingerprint(request.method, f"{request.path}?{query}", request.get_data())
        try:
            return self.replay_or_run(scope, key, fingerprint, self.settings.idempotency_window_seconds,
                                      lambda: route.handler(call))
        except IdempotencyKeyReused:
            return _problem(400, "Bad Request", f"The Idempotency-Key '{key}' has already been used with a "
                                                f"different request.")

    # -- API helpers -----------------------------------------------------------------------------

    def _envelope(self, call: ApiCall, key: str, rows: list[Record], pagination: dict[str, int] | None = None,
                  status: int = 200) -> Response:
        body: dict[str, Any] = {"Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": call.app.name,
                                "DateTimeUTC": ms_date(self.clock.now(), offset=False)}
        if pagination is not None:
            body["pagination"] = pagination
        body[key] = to_wire(rows)
        return json_response(body, status)

    @dataclass(frozen=True)
    class _ListQuery:
        """The list parameters of a request, parsed once; bad values are the client's 400."""

        since: datetime | None
        predicate: Callable[[Record], bool]
        order: str | None
        page: int | None
        page_size: int | None

    def _list_query(self, *, modified: bool) -> _ListQuery | Response:
        try:
            header = request.headers.get("If-Modified-Since") if modified else None
            since = parse_timestamp(header) if header else None
        except (ValueError, TypeError):
            return _problem(400, "Bad Request", f"If-Modified-Since '{header}' is not a valid timestamp.")
        try:
            raw_page, raw_size = request.args.get("page"), request.args.get("pageSize")
            page = int(raw_page) if raw_page else None
            page_size = int(raw_size) if raw_size else None
        except ValueError:
            return _problem(400, "Bad Request", "page and pageSize must be whole numbers.")
        try:
            predicate = where_filter(request.args.get("where"))
        except QueryError as error:
            return _api_exception(16, "QueryParseException", str(error))
        return self._ListQuery(since, predicate, request.args.get("order"), page, page_size)

    def _page(self, rows: list[Record], query: _ListQuery) -> tuple[list[Record], dict[str, int]]:
        if query.page is None and query.page_size is None and self.settings.unpaged_list_returns_all:
            return rows, {"page": 1, "pageSize": len(rows), "pageCount": 1, "itemCount": len(rows)}
        page = max(1, query.page or 1)
        # Larger page sizes are clamped (and reported in `pagination`), smaller than 1 raised to 1.
        size = max(1, min(query.page_size or self.settings.default_page_size, self.settings.max_page_size))
        start = (page - 1) * size
        return rows[start:start + size], {"page": page, "pageSize": size,
                                          "pageCount": math.ceil(len(rows) / size), "itemCount": len(rows)}

    @staticmethod
    def _ids(name: str) -> set[str] | None:
        value = request.args.get(name)
        if not value:
            return None
        return {part.strip().strip('"').lower() for part in value.split(",") if part.strip()}

    def _list(self, call: ApiCall, key: str, records: list[Record], *, default_order: Callable[[Record], Any],
              paged: bool = False, modified: bool = True, extra: Callable[[Record], bool] | None = None,
              view: Callable[[Record], Record] = lambda r: r) -> Response:
        """A GET of a collection: If-Modified-Since (strictly later), ``where``, ``order``, paging."""
        query = self._list_query(modified=modified)
        if isinstance(query, Response):
            return query
        rows = [r for r in records
                if (query.since is None or r["UpdatedDateUTC"] > query.since)
                and (extra is None or extra(r)) and query.predicate(r)]
        try:
            rows = apply_order(rows, query.order, default_order)
        except QueryError as error:
            return _api_exception(16, "QueryParseException", str(error))
        pagination = None
        if paged:
            rows, pagination = self._page(rows, query)
        return self._envelope(call, key, [view(r) for r in rows], pagination)

    def _one(self, call: ApiCall, key: str, record: Record | None,
             view: Callable[[Record], Record] = lambda r: r) -> Response:
        if record is None:
            return _not_found()
        return self._envelope(call, key, [view(record)])

    # -- writes ----------------------------------------------------------------------------------

    def _elements(self, key: str) -> list[Any] | Response:
        payload = request_json()
        if isinstance(payload, dict):
            if key in payload or key[:1].lower() + key[1:] in payload:
                elements = payload.get(key, payload.get(key[:1].lower() + key[1:]))
            else:
                elements = [payload]  # a single object, as some SDK calls send
        elif isinstance(payload, list):
            elements = payload
        else:
            return _api_exception(14, "PostDataInvalidException", "The request body is not valid JSON.")
        if not isinstance(elements, list) or not elements:
            return _api_exception(14, "PostDataInvalidException", f"The request must contain {key}.")
        limit = self.settings.batch_max_elements
        if limit is not None and len(elements) > limit:
            return _validation_exception([{"ValidationErrors": [
                {"Message": f"A request can contain at most {limit} {key}; this one has {len(elements)}."}]}])
        return elements

    def _write(self, call: ApiCall, key: str, prepare: Callable[[WriteContext, Any], ElementOutcome],
               *, mode: str, view: Callable[[Record], Record] = lambda r: r,
               force: dict[str, str] | None = None) -> Response:
        elements = self._elements(key)
        if isinstance(elements, Response):
            return elements
        if force:
            elements = [{**e, **force} if isinstance(e, dict) else e for e in elements]
        summarize = parse_bool(request.args.get("summarizeErrors"), default=True)
        ctx = WriteContext(call.org, self.settings, self.clock.today(), mode=mode, client_id=call.access.client_id)
        now = truncate_to_millis(self.clock.now())

        def commit(outcome: ElementOutcome) -> Record:
            assert outcome.apply is not None
            record = outcome.apply(now)
            shown = {**view(record), "StatusAttributeString": "OK"}
            record_id = record[f"{outcome.kind}ID"]
            self.write_log.record(org=call.org.tenant_id, kind=outcome.kind, object_id=record_id,
                                  action=outcome.action, body=to_wire(shown), idempotency_key=call.idempotency_key)
            return shown

        if summarize:
            outcomes = [prepare(ctx, element) for element in elements]
            failed = [o for o in outcomes if not o.ok]
            if failed:
                return _validation_exception([
                    {**o.echo, "ValidationErrors": [{"Message": m} for m in o.errors]} for o in failed])
            return self._envelope(call, key, [commit(o) for o in outcomes])
        results: list[Record] = []
        for element in elements:
            outcome = prepare(ctx, element)
            if outcome.ok:
                results.append(commit(outcome))
            else:
                results.append({**outcome.echo, "HasErrors": True, "StatusAttributeString": "ERROR",
                                "ValidationErrors": [{"Message": m} for m in outcome.errors]})
        return self._envelope(call, key, results)

    # -- route table -----------------------------------------------------------------------------

    def _api_routes(self) -> list[ApiRoute]:
        r = ApiRoute
        return [
            r("GET", ("accounts",), "settings", self._get_accounts),
            r("GET", ("accounts", "{id}"), "settings", self._get_account),
            r("GET", ("taxrates",), "settings", self._get_tax_rates),
            r("GET", ("trackingcategories",), "settings", self._get_tracking_categories),
            r("GET", ("trackingcategories", "{id}"), "settings", self._get_tracking_category),
            r("GET", ("organisation",), "settings", self._get_organisation),
            r("GET", ("users",), "settings", self._get_users),
            r("GET", ("users", "{id}"), "settings", self._get_user),
            r("GET", ("currencies",), "settings", self._get_currencies),
            r("GET", ("items",), "items", self._get_items),
            r("GET", ("items", "{id}"), "items", self._get_item),
            r("GET", ("contacts",), "contacts", self._get_contacts),
            r("GET", ("contacts", "{id}"), "contacts", self._get_contact),
            r("PUT", ("contacts",), "contacts", self._put_contacts, writes=True),
            r("POST", ("contacts",), "contacts", self._post_contacts, writes=True),
            r("POST", ("contacts", "{id}"), "contacts", self._post_contact, writes=True),
            r("GET", ("invoices",), "invoices", self._get_invoices),
            r("GET", ("invoices", "{id}"), "invoices", self._get_invoice),
            r("PUT", ("invoices",), "invoices", self._put_invoices, writes=True),
            r("POST", ("invoices",), "invoices", self._post_invoices, writes=True),
            r("POST", ("invoices", "{id}"), "invoices", self._post_invoice, writes=True),
            r("GET", ("payments",), "payments", self._get_payments),
            r("GET", ("payments", "{id}"), "payments", self._get_payment),
            r("PUT", ("payments",), "payments", self._put_payments, writes=True),
            r("POST", ("payments",), "payments", self._put_payments, writes=True),
            r("GET", ("banktransactions",), "banktransactions", self._get_bank_transactions),
            r("GET", ("banktransactions", "{id}"), "banktransactions", self._get_bank_transaction),
            r("PUT", ("banktransactions",), "banktransactions", self._put_bank_transactions, writes=True),
            r("POST", ("banktransactions",), "banktransactions", self._post_bank_transactions, writes=True),
            r("POST", ("banktransactions", "{id}"), "banktransactions", self._post_bank_transaction, writes=True),
            r("GET", ("receipts",), "classicexpenses", self._get_receipts),
            r("GET", ("receipts", "{id}"), "classicexpenses", self._get_receipt),
            r("PUT", ("receipts",), "classicexpenses", self._put_receipts, writes=True),
            r("GET", ("expenseclaims",), "classicexpenses", self._get_expense_claims),
            r("GET", ("expenseclaims", "{id}"), "classicexpenses", self._get_expense_claim),
            r("PUT", ("expenseclaims",), "classicexpenses", self._put_expense_claims, writes=True),
            r("GET", ("{endpoint}", "{id}", "attachments"), "attachments", self._get_attachments),
            r("GET", ("{endpoint}", "{id}", "attachments", "{name*}"), "attachments", self._get_attachment),
            r("PUT", ("{endpoint}", "{id}", "attachments", "{name*}"), "attachments", self._upload, writes=True),
            r("POST", ("{endpoint}", "{id}", "attachments", "{name*}"), "attachments", self._upload, writes=True),
        ]

    def _projects_routes(self) -> list[ApiRoute]:
        r = ApiRoute
        return [
            r("GET", ("projects",), "projects", self._get_projects),
            r("POST", ("projects",), "projects", self._post_project, writes=True),
            r("GET", ("projects", "{id}"), "projects", self._get_project),
            r("PUT", ("projects", "{id}"), "projects", self._put_project, writes=True),
            r("PATCH", ("projects", "{id}"), "projects", self._patch_project, writes=True),
        ]

    # -- settings-scoped lists -------------------------------------------------------------------

    @staticmethod
    def _by(*fields: str) -> Callable[[Record], Any]:
        def key(record: Record) -> tuple[Any, ...]:
            return tuple(str(record.get(f) or "").lower() for f in fields)

        return key

    def _get_accounts(self, call: ApiCall) -> Response:
        return self._list(call, "Accounts", list(call.org.accounts.values()), default_order=self._by("Code", "Name"))

    def _get_account(self, call: ApiCall) -> Response:
        return self._one(call, "Accounts", call.org.accounts.get(call.params["id"].lower()))

    def _get_tax_rates(self, call: ApiCall) -> Response:
        # TaxRates take no If-Modified-Since (§6.2): the header is ignored.
        return self._list(call, "TaxRates", list(call.org.tax_rates.values()), default_order=self._by("Name"),
                          modified=False)

    def _tracking_view(self, include_archived: bool) -> Callable[[Record], Record]:
        def view(category: Record) -> Record:
            options = [o for o in category["Options"] if include_archived or o["Status"] == "ACTIVE"]
            return {**category, "Options": options}

        return view

    def _get_tracking_categories(self, call: ApiCall) -> Response:
        include_archived = parse_bool(request.args.get("includeArchived"))
        return self._list(call, "TrackingCategories", list(call.org.tracking_categories.values()),
                          default_order=self._by("Name"), modified=False,
                          extra=lambda c: include_archived or c["Status"] == "ACTIVE",
                          view=self._tracking_view(include_archived))

    def _get_tracking_category(self, call: ApiCall) -> Response:
        return self._one(call, "TrackingCategories", call.org.tracking_categories.get(call.params["id"].lower()),
                         self._tracking_view(include_archived=True))

    def _get_organisation(self, call: ApiCall) -> Response:
        return self._envelope(call, "Organisations", [call.org.organisation])

    def _get_users(self, call: ApiCall) -> Response:
        return self._list(call, "Users", list(call.org.users.values()), default_order=self._by("LastName"))

    def _get_user(self, call: ApiCall) -> Response:
        return self._one(call, "Users", call.org.users.get(call.params["id"].lower()))

    def _get_currencies(self, call: ApiCall) -> Response:
        return self._envelope(call, "Currencies", [{"Code": "GBP", "Description": "British Pound"}])

    def _get_items(self, call: ApiCall) -> Response:
        return self._list(call, "Items", list(call.org.items.values()), default_order=self._by("Code"))

    def _get_item(self, call: ApiCall) -> Response:
        return self._one(call, "Items", call.org.item_by_ref(call.params["id"]))

    # -- contacts --------------------------------------------------------------------------------

    def _get_contacts(self, call: ApiCall) -> Response:
        ids = self._ids("IDs")
        include_archived = parse_bool(request.args.get("includeArchived")) or ids is not None
        term = (request.args.get("searchTerm") or "").strip().lower()
        summary = parse_bool(request.args.get("summaryOnly"))

        def wanted(contact: Record) -> bool:
            if ids is not None and contact["ContactID"] not in ids:
                return False
            if not include_archived and contact["ContactStatus"] != "ACTIVE":
                return False
            if term:
                haystack = " ".join(str(contact.get(f) or "") for f in
                                    ("Name", "FirstName", "LastName", "ContactNumber", "EmailAddress"))
                return term in haystack.lower()
            return True

        return self._list(call, "Contacts", list(call.org.contacts.values()), default_order=self._by("Name"),
                          paged=True, extra=wanted, view=lambda c: contact_view(c, summary_only=summary))

    def _get_contact(self, call: ApiCall) -> Response:
        ref = call.params["id"]
        return self._one(call, "Contacts", call.org.contacts.get(ref.lower()) or call.org.contact_by_number(ref))

    def _put_contacts(self, call: ApiCall) -> Response:
        return self._write(call, "Contacts", prepare_contact, mode="create")

    def _post_contacts(self, call: ApiCall) -> Response:
        return self._write(call, "Contacts", prepare_contact, mode="upsert")

    def _post_contact(self, call: ApiCall) -> Response:
        return self._write(call, "Contacts", prepare_contact, mode="upsert", force={"ContactID": call.params["id"]})

    # -- invoices --------------------------------------------------------------------------------

    def _get_invoices(self, call: ApiCall) -> Response:
        ids, numbers = self._ids("IDs"), self._ids("InvoiceNumbers")
        contact_ids, statuses = self._ids("ContactIDs"), self._ids("Statuses")
        term = (request.args.get("searchTerm") or "").strip().lower()
        summary = parse_bool(request.args.get("summaryOnly"))
        mine_only = parse_bool(request.args.get("createdByMyApp"))

        def wanted(invoice: Record) -> bool:
            return ((ids is None or invoice["InvoiceID"] in ids)
                    and (not mine_only or invoice.get("_CreatedByApp") == call.access.client_id)
                    and (numbers is None or (invoice.get("InvoiceNumber") or "").lower() in numbers)
                    and (contact_ids is None or invoice["Contact"]["ContactID"] in contact_ids)
                    and (statuses is None or invoice["Status"].lower() in statuses)
                    and (not term or term in f"{invoice.get('InvoiceNumber') or ''} "
                                             f"{invoice.get('Reference') or ''}".lower()))

        return self._list(call, "Invoices", list(call.org.invoices.values()),
                          default_order=lambda i: (i["UpdatedDateUTC"], i["InvoiceID"]), paged=True, extra=wanted,
                          view=lambda i: invoice_view(i, summary_only=summary))

    def _get_invoice(self, call: ApiCall) -> Response:
        return self._one(call, "Invoices", call.org.invoice_by_ref(call.params["id"]), invoice_view)

    def _put_invoices(self, call: ApiCall) -> Response:
        return self._write(call, "Invoices", prepare_invoice, mode="create", view=invoice_view)

    def _post_invoices(self, call: ApiCall) -> Response:
        return self._write(call, "Invoices", prepare_invoice, mode="upsert", view=invoice_view)

    def _post_invoice(self, call: ApiCall) -> Response:
        return self._write(call, "Invoices", prepare_invoice, mode="upsert", view=invoice_view,
                           force={"InvoiceID": call.params["id"]})

    # -- payments, bank transactions, classic expenses --------------------------------------------

    def _get_payments(self, call: ApiCall) -> Response:
        return self._list(call, "Payments", list(call.org.payments.values()),
                          default_order=lambda p: (p["UpdatedDateUTC"], p["PaymentID"]), paged=True)

    def _get_payment(self, call: ApiCall) -> Response:
        return self._one(call, "Payments", call.org.payments.get(call.params["id"].lower()))

    def _put_payments(self, call: ApiCall) -> Response:
        return self._write(call, "Payments", prepare_payment, mode="create")

    def _get_bank_transactions(self, call: ApiCall) -> Response:
        return self._list(call, "BankTransactions", list(call.org.bank_transactions.values()),
                          default_order=lambda t: (t["UpdatedDateUTC"], t["BankTransactionID"]), paged=True)

    def _get_bank_transaction(self, call: ApiCall) -> Response:
        return self._one(call, "BankTransactions", call.org.bank_transactions.get(call.params["id"].lower()))

    def _put_bank_transactions(self, call: ApiCall) -> Response:
        return self._write(call, "BankTransactions", prepare_bank_transaction, mode="create")

    def _post_bank_transactions(self, call: ApiCall) -> Response:
        return self._write(call, "BankTransactions", prepare_bank_transaction, mode="upsert")

    def _post_bank_transaction(self, call: ApiCall) -> Response:
        return self._write(call, "BankTransactions", prepare_bank_transaction, mode="upsert",
                           force={"BankTransactionID": call.params["id"]})

    def _get_receipts(self, call: ApiCall) -> Response:
        return self._list(call, "Receipts", list(call.org.receipts.values()),
                          default_order=lambda r: (r["UpdatedDateUTC"], r["ReceiptID"]))

    def _get_receipt(self, call: ApiCall) -> Response:
        return self._one(call, "Receipts", call.org.receipts.get(call.params["id"].lower()))

    def _put_receipts(self, call: ApiCall) -> Response:
        return self._write(call, "Receipts", prepare_receipt, mode="create")

    def _get_expense_claims(self, call: ApiCall) -> Response:
        return self._list(call, "ExpenseClaims", list(call.org.expense_claims.values()),
                          default_order=lambda c: (c["UpdatedDateUTC"], c["ExpenseClaimID"]))

    def _get_expense_claim(self, call: ApiCall) -> Response:
        return self._one(call, "ExpenseClaims", call.org.expense_claims.get(call.params["id"].lower()))

    def _put_expense_claims(self, call: ApiCall) -> Response:
        return self._write(call, "ExpenseClaims", prepare_expense_claim, mode="create")

    # -- attachments -----------------------------------------------------------------------------

    def _attachment_target(self, call: ApiCall) -> tuple[str, str] | Response:
        endpoint = call.params["endpoint"].lower()
        if endpoint not in ATTACHABLE_ENDPOINTS:
            return _not_found()
        return endpoint, call.params["id"].lower()

    def _get_attachments(self, call: ApiCall) -> Response:
        target = self._attachment_target(call)
        if isinstance(target, Response):
            return target
        endpoint, document_id = target
        if call.org.document(endpoint, document_id) is None:
            return _not_found()
        return self._envelope(call, "Attachments", call.org.attachments.get(document_id, []))

    def _get_attachment(self, call: ApiCall) -> Response:
        target = self._attachment_target(call)
        if isinstance(target, Response):
            return target
        _, document_id = target
        wanted = call.params["name"].lower()
        attachment = next((a for a in call.org.attachments.get(document_id, [])
                           if wanted in {a["FileName"].lower(), a["AttachmentID"]}), None)
        if attachment is None:
            return _not_found()
        return Response(call.org.attachment_content[attachment["AttachmentID"]], status=200,
                        content_type=attachment["MimeType"])

    def _upload(self, call: ApiCall) -> Response:
        target = self._attachment_target(call)
        if isinstance(target, Response):
            return target
        endpoint, document_id = target
        file_name = call.params["name"]
        url = (f"{request.host_url.rstrip('/')}/api.xro/2.0/{ATTACHABLE_ENDPOINTS[endpoint]}/{document_id}"
               f"/Attachments/{quote(file_name)}")
        try:
            attachment = add_attachment(
                call.org, self.settings, endpoint=endpoint, document_id=document_id, file_name=file_name,
                content=request.get_data(), mime_type=request.mimetype or "application/octet-stream",
                include_online=parse_bool(request.args.get("IncludeOnline") or request.args.get("includeOnline")),
                replace_same_name=request.method == "POST" or self.settings.attachment_put_replaces_same_name,
                url=url,
            )
        except AttachmentRejected as rejected:
            if rejected.status == 400:
                return _validation_exception([{"ValidationErrors": [{"Message": rejected.message}]}])
            if rejected.status == 404:
                return _not_found()
            return Response(rejected.message, status=rejected.status, content_type="text/plain; charset=utf-8")
        self.write_log.record(org=call.org.tenant_id, kind="Attachment", object_id=attachment["AttachmentID"],
                              body={**to_wire(attachment), "Endpoint": ATTACHABLE_ENDPOINTS[endpoint],
                                    "DocumentID": document_id},
                              idempotency_key=call.idempotency_key)
        return self._envelope(call, "Attachments", [attachment])

    # -- projects --------------------------------------------------------------------------------

    @staticmethod
    def _project_wire(project: Record) -> Record:
        """Projects speak camelCase JSON with ISO-8601 dates, unlike the Accounting API."""
        wire = {k: v for k, v in project.items() if v is not None}
        if isinstance(wire.get("deadlineUtc"), datetime):
            wire["deadlineUtc"] = wire["deadlineUtc"].strftime("%Y-%m-%dT%H:%M:%SZ")
        return to_wire(wire)

    @staticmethod
    def _project_error(message: str, field: str | None = None) -> Response:
        return json_response({"message": message, "modelState": {field: [message]} if field else {}}, 400)

    def _get_projects(self, call: ApiCall) -> Response:
        try:
            page = int(request.args.get("page", 1))
            size = int(request.args.get("pageSize", self.settings.projects_default_page_size))
        except ValueError:
            return self._project_error("page and pageSize must be numbers")
        if page < 1 or not 1 <= size <= self.settings.projects_max_page_size:
            return self._project_error(f"page must be > 0 and pageSize between 1 and "
                                       f"{self.settings.projects_max_page_size}")
        states = {s.strip().upper() for s in (request.args.get("states") or "").split(",") if s.strip()}
        ids = self._ids("projectIds")
        contact = (request.args.get("contactID") or "").lower()
        rows = [p for p in sorted(call.org.projects.values(), key=lambda p: p["name"].lower())
                if (not states or p["status"] in states) and (ids is None or p["projectId"] in ids)
                and (not contact or p["contactId"] == contact)]
        start = (page - 1) * size
        return json_response({
            "pagination": {"page": page, "pageSize": size, "pageCount": math.ceil(len(rows) / size),
                           "itemCount": len(rows)},
            "items": [self._project_wire(p) for p in rows[start:start + size]],
        })

    def _get_project(self, call: ApiCall) -> Response:
        project = call.org.projects.get(call.params["id"].lower())
        return json_response(self._project_wire(project)) if project else _not_found()

    def _project_fields(self, call: ApiCall, existing: Record | None) -> Record | Response:
        payload = request_json()
        if not isinstance(payload, dict):
            return self._project_error("The request body must be a project object.")
        name = payload.get("name", (existing or {}).get("name"))
        if not name or not str(name).strip():
            return self._project_error("The Name field is required.", "name")
        contact_id = payload.get("contactId", (existing or {}).get("contactId"))
        if contact_id and str(contact_id).lower() not in call.org.contacts:
            return self._project_error("The contact could not be found.", "contactId")
        fields: Record = {"name": str(name).strip(), "contactId": str(contact_id).lower() if contact_id else None}
        if payload.get("estimateAmount") is not None:
            try:
                fields["estimate"] = {"currency": "GBP", "value": to_decimal(payload["estimateAmount"])}
            except ValueError:
                return self._project_error("estimateAmount must be a number.", "estimateAmount")
        if payload.get("deadlineUtc"):
            try:
                fields["deadlineUtc"] = parse_timestamp(str(payload["deadlineUtc"]))
            except (ValueError, TypeError):
                return self._project_error("deadlineUtc must be an ISO-8601 date and time.", "deadlineUtc")
        return fields

    def _post_project(self, call: ApiCall) -> Response:
        fields = self._project_fields(call, None)
        if isinstance(fields, Response):
            return fields
        zero = {"currency": "GBP", "value": to_decimal(0)}
        project: Record = {
            "projectId": str(uuid.uuid4()), "currencyCode": "GBP", "minutesLogged": 0, "minutesToBeInvoiced": 0,
            **dict.fromkeys(("totalTaskAmount", "totalExpenseAmount", "taskAmountToBeInvoiced",
                             "taskAmountInvoiced", "expenseAmountToBeInvoiced", "expenseAmountInvoiced",
                             "projectAmountInvoiced", "deposit", "depositApplied", "creditNoteAmount",
                             "totalInvoiced", "totalToBeInvoiced", "estimate"), zero),
            "status": "INPROGRESS", **fields,
        }
        call.org.projects[project["projectId"]] = project
        self.write_log.record(org=call.org.tenant_id, kind="Project", object_id=project["projectId"],
                              body=self._project_wire(project), idempotency_key=call.idempotency_key)
        return json_response(self._project_wire(project), 201)

    def _put_project(self, call: ApiCall) -> Response:
        project = call.org.projects.get(call.params["id"].lower())
        if project is None:
            return _not_found()
        fields = self._project_fields(call, project)
        if isinstance(fields, Response):
            return fields
        project.update(fields)
        self.write_log.record(org=call.org.tenant_id, kind="Project", object_id=project["projectId"],
                              action="update", body=self._project_wire(project),
                              idempotency_key=call.idempotency_key)
        return Response(status=204)

    def _patch_project(self, call: ApiCall) -> Response:
        project = call.org.projects.get(call.params["id"].lower())
        if project is None:
            return _not_found()
        payload = request_json()
        status = str((payload or {}).get("status", "")).upper() if isinstance(payload, dict) else ""
        if status not in {"INPROGRESS", "CLOSED"}:
            return self._project_error("status must be INPROGRESS or CLOSED.", "status")
        project["status"] = status
        self.write_log.record(org=call.org.tenant_id, kind="Project", object_id=project["projectId"],
                              action="update", body=self._project_wire(project),
                              idempotency_key=call.idempotency_key)
        return Response(status=204)


__all__ = ["DEFAULT_MINT_SCOPE", "XeroConnection", "XeroSettings", "XeroSimulator"]
