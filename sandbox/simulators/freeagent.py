"""The FreeAgent simulator: OAuth2 (draft 22, HTTP Basic client auth) and the API v2.

Every path is served under one origin, so an adapter keeps FreeAgent's paths and swaps only the
origin. Ids are URLs built on the origin each request arrives at (``{origin}/v2/contacts/12``), and
references in request bodies must be such URLs.

OAuth
    ``GET|POST /v2/approve_app`` (sign-in and consent page; auto-consent redirects at once),
    ``POST /v2/token_endpoint`` (``authorization_code`` and ``refresh_token`` grants, client
    credentials by HTTP Basic only; wrong ones → 401 ``HTTP Basic: Access denied.``). No revoke
    endpoint unless ``revoke_endpoint_enabled`` (then ``POST /v2/token_endpoint/revoke``).
API (``/v2``; ``Authorization: Bearer``; a ``User-Agent`` is required)
    ``GET company``, ``users/me``, ``users[?view]``, ``users/{id}``, ``categories`` (four arrays,
    unpaged), ``categories/{nominal_code}``, ``contacts[?view&sort&updated_since]``,
    ``contacts/{id}``, ``price_list_items[?sort]``, ``projects[?view&sort&contact]``,
    ``projects/{id}``, ``bank_accounts[?view]``, ``bank_accounts/{id}``,
    ``bills[?view&contact&project&from_date&to_date&updated_since&nested_bill_items]``,
    ``bills/{id}``, ``invoices[?view&contact&project&updated_since&nested_invoice_items]``,
    ``invoices/{id}``, ``expenses[?view&from_date&to_date&updated_since&project]``,
    ``expenses/{id}``, ``bank_transaction_explanations?bank_account=…[&updated_since]``,
    ``bank_transaction_explanations/{id}``, ``attachments/{id}`` (+ ``/content``, no token:
    FreeAgent's pre-signed ``content_src``); ``POST contacts``, ``bills``, ``invoices``,
    ``expenses`` (one ``expense`` or a batch ``expenses``), ``bank_transaction_explanations`` —
    201 + ``Location`` + ``{"<root>": {...}}``.
Sandbox extras (beside the harness's ``/_sandbox/`` API)
    ``POST /_sandbox/permission-level {"level": 0-8, "company": id or name, "email": ...}`` —
    :meth:`FreeAgentSimulator.set_permission_level`.

Behaviour (``reference/providers.md`` §4 and §6.5): a token is one user in one company (the
consent page offers the seeded user's companies as radio buttons); reach is the user's permission
level 0-8 with 403 below an endpoint's level; paging ``page``/``per_page`` (default 25, larger
values clamped to 100) with ``Link`` (``prev``/``next``/``first``/``last``) and ``X-Total-Count``;
``updated_since`` filters; validation errors 422 ``{"errors": {"error": {"message": ...}}}``;
rate limits 120/min and 3,600/hour per user and 15 refreshes/min, counted in windows that reset at
the top of each minute/hour, 429 + ``Retry-After: 60`` + a plain-text body, ``X-RateLimit-Test:
true`` → 5/min. **No idempotency**: a retried POST creates a second object, so a client must look
its document up (``GET /v2/bills?updated_since=…``) before retrying.

Settings (:class:`FreeAgentSettings`; ``update_settings`` or ``POST /_sandbox/settings``):

======================================= ============== ==========================================
setting                                 default        meaning
======================================= ============== ==========================================
authorization_code_ttl_seconds          900            15 minutes, single use [src]
access_token_ttl_seconds                3600           [src]
refresh_token_unused_ttl_seconds        631151957      ``refresh_token_expires_in`` (~20 y) [src]
superseded_refresh_token_keeps_working  False          UNCONFIRMED, see below
rate_limits_enabled                     True
minute_limit / hour_limit               120 / 3600     per user of the integration [src]
refresh_minute_limit                    15             token refreshes per user [src]
test_header_minute_limit                5              with ``X-RateLimit-Test: true`` [src]
retry_after_seconds                     60             [src]
default_page_size / max_page_size       25 / 100       [src]
max_bill_items                          40             [src]
attachment_max_bytes                    5000000        "5MB" [src]; decimal MB is the stricter read
attachment_content_types                (6 types)      [src]
permission_levels                       (see below)    minimum level per endpoint family
latency_seconds / fault_delay_seconds   0 / 35         harness knobs
======================================= ============== ==========================================

``permission_levels`` defaults: company and ``users/me`` 1 [src], contacts 1 [src doc copy],
expenses (own) 2 [src], projects and price list items 3, invoices and attachments 4, bills 5
[src], bank accounts and explanations 6 [src], categories and the user list 7 (as the reference's
§4.1 says; the FreeAgent doc copy lists categories at 2 — lower it with this setting if an adapter
must run as a less privileged user), expenses for *other* users 7 (UNCONFIRMED).

UNCONFIRMED behaviours — each a setting whose default is the stricter choice:

* ``superseded_refresh_token_keeps_working = False`` — whether the previous refresh token still
  works after a refresh is not documented; by default it dies at once (``invalid_grant``).
* ``invalid_grant_description = False`` — the body for a bad code or refresh token is not
  documented; by default it is the bare ``{"error": "invalid_grant"}`` (nothing to rely on).
* ``revoke_endpoint_enabled = False`` — FreeAgent documents no revocation; disconnecting only
  drops tokens. Enabled, ``POST /v2/token_endpoint/revoke`` (form ``token``) revokes the grant.
* ``accept_client_secret_in_body = False`` — only HTTP Basic authenticates the client.
* ``require_user_agent = True`` — a User-Agent is required [src]; what a request without one gets
  is not, so it is a 400 in the error envelope.
* ``error_format = "object"`` — ``{"errors": {"error": {"message": m}}}`` [src example]; several
  messages become a list under ``"error"`` (the example's XML-derived shape; UNCONFIRMED).
  ``"array"`` gives ``{"errors": [{"message": m}, ...]}`` [3p]. 401/403/404 use the same envelope.
* ``updated_since_inclusive = False`` — only records updated strictly after the instant are
  returned; stamps are whole seconds, so a high-water mark must allow for same-second writes.
* ``projects_default_view = "active"`` — the default ``view`` of ``GET /v2/projects`` is not
  documented; by default completed/cancelled/hidden projects need an explicit view.
* ``reference_origin_must_match = True`` — references must be URLs on the origin the request
  reached (the ones this API returned); bare ids and foreign hosts are refused.
* ``accept_legacy_single_category_bills = False`` — the pre-``bill_items`` bill body (one
  ``category`` + ``total_value`` on the bill) seen in an old Postman collection is refused.
* ``category_direction_checks = True`` — income categories are refused on bills and expenses and
  expense categories on invoice items.
* ``expense_batch_mode = "partial"`` — how ``{"expenses": [...]}`` fails is undocumented: by
  default the valid expenses ARE created and the response is 422 listing the failed ones (so a
  client must look up before retrying); ``"all_or_nothing"`` creates nothing on any error.
* ``bank_transaction_explanations`` lists require ``bank_account`` (422 without).
* Bills' ``status`` and ``long_status`` wording beyond the documented values, the 201 body of a
  batch (``{"expenses": [...]}``), the attachment ``content_src`` (a token-free path here) and the
  simulator's fixed exchange rates are the simulator's choices.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from flask import Flask, Response, request
from pydantic import Field

from sandbox.simulators.consent import (
    OrganisationChoice,
    consent_cancelled,
    consent_page,
    posted_user,
    posted_username,
    read_authorize_request,
)
from sandbox.simulators.freeagent_ledger import (
    CATEGORY_GROUPS,
    FreeAgentCompany,
    Prepared,
    Record,
    ReferenceReader,
    WriteContext,
    _attachment,
    _Errors,
    bill_view,
    contact_sort_name,
    prepare_bill,
    prepare_contact,
    prepare_expense,
    prepare_explanation,
    prepare_invoice,
    render,
    store_attachment,
)
from sandbox.simulators.harness import (
    DEFAULT_APP,
    DEFAULT_USER,
    NO_STORE_HEADERS,
    AccessTokenExpired,
    AccessTokenProblem,
    AccessTokenRecord,
    AccessTokenRevoked,
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
    TokenPolicy,
    find_named,
    find_route,
    json_response,
    match_path,
    parse_bool,
    request_json,
    request_json_object,
    sandbox_bad_request,
)
from sandbox.simulators.ledger_values import parse_iso_timestamp, whole_seconds
from sandbox.simulators.seed import Dataset, Preset

_FOREVER = 100 * 365 * 24 * 60 * 60

DEFAULT_PERMISSION_LEVELS: dict[str, int] = {
    "company": 1,
    "users_me": 1,
    "contacts": 1,
    "expenses": 2,
    "projects": 3,
    "price_list_items": 3,
    "invoices": 4,
    "attachments": 4,
    "bills": 5,
    "bank_accounts": 6,
    "bank_transaction_explanations": 6,
    "categories": 7,
    "users": 7,
    "expenses_other_users": 7,
}


class FreeAgentSettings(SimulatorSettings):
    authorization_code_ttl_seconds: float = Field(15 * 60, gt=0)
    access_token_ttl_seconds: float = Field(3600, gt=0)
    refresh_token_unused_ttl_seconds: float | None = Field(631_151_957, gt=0)
    refresh_token_rotation: bool = True
    refresh_token_grace_seconds: float = Field(0, ge=0)
    superseded_refresh_token_keeps_working: bool = False  # UNCONFIRMED
    invalid_grant_description: bool = False  # UNCONFIRMED
    revoke_endpoint_enabled: bool = False  # UNCONFIRMED
    accept_client_secret_in_body: bool = False  # UNCONFIRMED

    rate_limits_enabled: bool = True
    minute_limit: int = Field(120, gt=0)
    hour_limit: int = Field(3600, gt=0)
    refresh_minute_limit: int = Field(15, gt=0)
    test_header_minute_limit: int = Field(5, gt=0)
    retry_after_seconds: int = Field(60, gt=0)

    require_user_agent: bool = True  # UNCONFIRMED (status and body)
    error_format: Literal["object", "array"] = "object"  # UNCONFIRMED
    default_page_size: int = Field(25, gt=0)
    max_page_size: int = Field(100, gt=0)
    updated_since_inclusive: bool = False  # UNCONFIRMED
    projects_default_view: Literal["active", "completed", "cancelled", "hidden", "all"] = (
        "active"  # UNCONFIRMED
    )
    reference_origin_must_match: bool = True  # UNCONFIRMED

    max_bill_items: int = Field(40, gt=0)
    accept_legacy_single_category_bills: bool = False  # UNCONFIRMED
    category_direction_checks: bool = True  # UNCONFIRMED
    expense_batch_mode: Literal["partial", "all_or_nothing"] = "partial"  # UNCONFIRMED
    attachment_max_bytes: int = Field(5_000_000, gt=0)
    attachment_content_types: tuple[str, ...] = (
        "image/png",
        "image/x-png",
        "image/jpeg",
        "image/jpg",
        "image/gif",
        "application/x-pdf",
    )
    permission_levels: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_PERMISSION_LEVELS))


# --------------------------------------------------------------------------------------------
# Rate windows that reset on the clock
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowCheck:
    name: str
    limit: int
    window_seconds: int
    key: Hashable


class FixedWindowCounter:
    """Request counters that reset at the top of each window (minute, hour) of the simulated
    clock — FreeAgent's limits "are reset at the start of every hour/minute" [src], unlike the
    harness's rolling :class:`~sandbox.simulators.harness.RateLimiter`."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, Hashable, int, int], int] = {}

    def acquire(self, checks: Sequence[WindowCheck]) -> WindowCheck | None:
        """Count one request against every check, or return the first check already at its
        limit (counting nothing: a client that backs off recovers when the window turns)."""
        now = self._clock.timestamp()
        with self._lock:
            slots = []
            for check in checks:
                slot = (check.name, check.key, check.window_seconds, int(now // check.window_seconds))
                if self._counts.get(slot, 0) >= check.limit:
                    return check
                slots.append(slot)
            for slot in slots:
                self._counts[slot] = self._counts.get(slot, 0) + 1
            if len(self._counts) > 10_000:  # forget windows that have closed
                self._counts = {s: n for s, n in self._counts.items() if s[3] >= int(now // s[2])}
            return None

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


@dataclass
class ApiCall:
    """One authorised API call, as handlers see it."""

    company: FreeAgentCompany
    access: AccessTokenRecord
    user: Record  # the company user the token acts as
    params: dict[str, str]
    origin: str

    @property
    def user_id(self) -> int:
        return FreeAgentCompany.record_id(self.user)


Handler = Callable[[ApiCall], Response]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    pattern: tuple[str, ...]  # literals or "{name}"
    permission: str  # key into FreeAgentSettings.permission_levels
    handler: Handler

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        return match_path(self.pattern, segments) if method == self.method else None


_APPROVE_PARAMS = ("client_id", "response_type", "redirect_uri", "state")
_BASIC_DENIED = "HTTP Basic: Access denied.\n"

# ``view`` values → the record type or status each selects.
_BANK_VIEWS = {
    "standard_bank_accounts": "StandardBankAccount",
    "credit_card_accounts": "CreditCardAccount",
    "paypal_accounts": "PaypalAccount",
}
_PROJECT_VIEWS = {"active": "Active", "completed": "Completed", "cancelled": "Cancelled", "hidden": "Hidden"}
_USER_VIEWS = ("all", "staff", "active_staff", "advisors", "active_advisors")


def _sort_key(field: str) -> Callable[[Record], Any]:
    return lambda record: (record.get(field) is None, record.get(field) or "", record["url"])


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class FreeAgentSimulator(LedgerSimulator):
    """FreeAgent on one origin. ``FreeAgentSimulator(clock=None, *, auto_consent=False,
    preset="small", settings=None, fault_seed=0, data_seed=0)``; serve ``.wsgi_app`` or use
    ``.transport()``.

    Beyond the harness's control methods: ``companies`` (company id → :class:`FreeAgentCompany`,
    the live data), ``company(name_or_id)``, ``set_permission_level(level, company=None,
    email=...)``, ``auto_consent_company`` (which company auto-consent approves; None: the first)
    and ``revoke_consent()`` (the user removed the app in FreeAgent: every token dies).
    """

    provider: ClassVar[str] = "freeagent"
    settings_model: ClassVar[type[SimulatorSettings]] = FreeAgentSettings
    settings: FreeAgentSettings

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        auto_consent: bool = False,
        preset: Preset = "small",
        settings: FreeAgentSettings | None = None,
        fault_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        self.companies: dict[str, FreeAgentCompany] = {}
        self.auto_consent_company: str | None = None
        super().__init__(
            clock,
            auto_consent=auto_consent,
            preset=preset,
            settings=settings,
            fault_seed=fault_seed,
            data_seed=data_seed,
        )
        self.windows = FixedWindowCounter(self.clock)
        self._routes = self._api_routes()

    # -- data ------------------------------------------------------------------------------------

    def _load_dataset(self, dataset: Dataset) -> None:
        now = whole_seconds(self.clock.now())
        self.companies = {
            company.company_id: company
            for company in (FreeAgentCompany.from_seed(seed, now) for seed in dataset.organisations)
        }

    def organisations(self) -> list[dict[str, Any]]:
        return [
            {"id": c.company_id, "name": c.name, "subdomain": c.company["subdomain"]}
            for c in self.companies.values()
        ]

    def company(self, name_or_id: str) -> FreeAgentCompany:
        """A company by id, subdomain or (case-insensitive) name."""
        return find_named(
            self.companies.values(),
            name_or_id,
            lambda c: {c.company_id, c.name.lower(), c.company["subdomain"]},
            "company",
        )

    def set_permission_level(
        self, level: int, company: str | None = None, email: str = DEFAULT_USER.email
    ) -> None:
        """Change a user's permission level (0-8) in one company (None: every company)."""
        if not 0 <= level <= 8:
            raise ValueError("permission levels run from 0 (No Access) to 8 (Full)")
        with self.lock:
            targets = [self.company(company)] if company else list(self.companies.values())
            for target in targets:
                user = target.user_by_email(email)
                if user is None:
                    raise ValueError(f"{email} is not a user of {target.name}")
                user["permission_level"] = level
                user["updated_at"] = whole_seconds(self.clock.now())

    # -- tokens ----------------------------------------------------------------------------------

    @property
    def token_policy(self) -> TokenPolicy:
        policy = TokenPolicy.from_settings(self.settings)
        if self.settings.superseded_refresh_token_keeps_working:
            return replace(policy, grace_seconds=_FOREVER)
        return policy

    def _token_response(self, issued: IssuedTokens) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": issued.access.token,
            "token_type": "bearer",
            "expires_in": issued.access.expires_in,
            "refresh_token": issued.refresh_token,
        }
        if self.settings.refresh_token_unused_ttl_seconds is not None:
            body["refresh_token_expires_in"] = int(self.settings.refresh_token_unused_ttl_seconds)
        return body

    def _consent(
        self, user: SandboxUser, client_id: str, company: FreeAgentCompany, redirect_uri: str | None = None
    ) -> Consent:
        # FreeAgent has no scopes: the reach of a token is the user's permission level.
        return Consent(
            client_id=client_id,
            user_id=user.user_id,
            scope=(),
            redirect_uri=redirect_uri,
            extras={"company_id": company.company_id},
        )

    def mint_tokens(
        self, organisations: Sequence[str] | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        """Approve as the seeded user without the browser. A FreeAgent token covers one company:
        ``organisations`` names at most one (None: the first). ``scope`` is ignored (FreeAgent has
        none). Returns the token response plus ``company`` and ``expires_at`` (epoch seconds)."""
        with self.lock:
            if organisations and len(organisations) > 1:
                raise ValueError("a FreeAgent token is for one company; name only one")
            company = self.company(organisations[0]) if organisations else next(iter(self.companies.values()))
            issued = self.tokens.start_grant(
                self._consent(DEFAULT_USER, DEFAULT_APP.client_id, company),
                self.token_policy,
                with_refresh_token=True,
            )
            response = self._token_response(issued)
            response["expires_at"] = issued.access.expires_at.timestamp()
            response["company"] = {
                "id": company.company_id,
                "name": company.name,
                "subdomain": company.company["subdomain"],
            }
            return response

    def revoke_consent(self, user_id: str | None = None) -> None:
        """The user removed the app inside FreeAgent: every grant of theirs dies."""
        with self.lock:
            self.tokens.revoke_user(user_id, reason="consent revoked")

    # -- faults ----------------------------------------------------------------------------------

    def fault_response(self, rule: FaultRule) -> Response:
        if rule.kind is FaultKind.RATE_LIMIT:
            return self._rate_limited(self.settings.minute_limit, 60, rule.retry_after)
        if rule.kind is FaultKind.SERVER_ERROR:
            return self._error(500, "Sorry, something went wrong. Please try again later.")
        return Response(
            "FreeAgent is down for maintenance. Please try again shortly.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )

    def _rate_limited(self, limit: int, window: int, retry_after: int | None = None) -> Response:
        return Response(
            f"You must not exceed {limit} requests per {window} seconds",
            status=429,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": str(retry_after or self.settings.retry_after_seconds)},
        )

    def _error(self, status: int, *messages: str, headers: dict[str, str] | None = None) -> Response:
        """FreeAgent's error envelope (422 validation, and 400/401/403/404)."""
        items = [{"message": m} for m in messages]
        if self.settings.error_format == "array":
            body: Any = {"errors": items}
        else:
            body = {"errors": {"error": items[0] if len(items) == 1 else items}}
        return json_response(body, status, headers)

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self, app: Flask) -> None:
        app.add_url_rule("/v2/approve_app", "approve_app", self._approve_app, methods=["GET", "POST"])
        app.add_url_rule("/v2/token_endpoint", "token_endpoint", self._token_endpoint, methods=["POST"])
        app.add_url_rule("/v2/token_endpoint/revoke", "revoke", self._revoke, methods=["POST"])
        app.add_url_rule(
            "/v2/attachments/<int:attachment_id>/content",
            "attachment_content",
            self._attachment_content,
            methods=["GET"],
        )
        app.add_url_rule("/v2/<path:subpath>", "api", self._api, methods=["GET", "POST", "PUT", "DELETE"])
        app.add_url_rule(
            "/_sandbox/permission-level",
            "sandbox_permission_level",
            self._control_permission_level,
            methods=["POST"],
        )

    def _control_permission_level(self) -> Response:
        payload = request_json_object()
        try:
            self.set_permission_level(
                int(payload.get("level", -1)),
                payload.get("company"),
                payload.get("email") or DEFAULT_USER.email,
            )
        except (TypeError, ValueError) as error:
            return sandbox_bad_request(str(error))
        return json_response({"level": int(payload["level"]), "company": payload.get("company")})

    # -- OAuth: approve_app ----------------------------------------------------------------------

    def _approve_app(self) -> Response:
        authorize = read_authorize_request(
            self.apps,
            _APPROVE_PARAMS,
            "FreeAgent",
            unknown_client=("invalid_client", "The app is not recognised (check client_id)"),
            bad_redirect=(
                "invalid_redirect_uri",
                "The redirect_uri does not match one registered for this app",
            ),
        )
        if isinstance(authorize, Response):
            return authorize
        params, app = authorize.params, authorize.app

        def approve(user: SandboxUser, company: FreeAgentCompany) -> Response:
            with self.lock:
                code = self.codes.issue(
                    self._consent(user, app.client_id, company, authorize.redirect_uri),
                    self.settings.authorization_code_ttl_seconds,
                )
            return authorize.back({"code": code})

        if request.method == "GET":
            if self.auto_consent:
                if self.auto_consent_deny:
                    return authorize.back_with_error("access_denied")
                chosen = (
                    self.company(self.auto_consent_company)
                    if self.auto_consent_company
                    else next(iter(self.companies.values()))
                )
                return approve(DEFAULT_USER, chosen)
            return self._consent_page(app, params)
        if consent_cancelled():
            return authorize.back_with_error("access_denied")
        user = posted_user(self.users)
        if user is None:
            return self._consent_page(app, params, "Your email address or password is incorrect.")
        company = self.companies.get(request.form.get("organisation") or "")
        if company is None:
            return self._consent_page(app, params, "Choose the company to connect.")
        if company.user_by_email(user.email) is None:
            return self._consent_page(app, params, f"You are not a user of {company.name}.")
        return approve(user, company)

    def _consent_page(
        self, app: RegisteredApp, params: Mapping[str, str | None], error: str | None = None
    ) -> Response:
        chosen = request.form.get("organisation") if request.method == "POST" else None
        companies = list(self.companies.values())
        return consent_page(
            brand="FreeAgent",
            app_name=app.name,
            scope_lines=[
                "Read and change the accounts of the company you choose, as far as your "
                "FreeAgent permission level allows"
            ],
            action=request.path,
            hidden=params,
            organisations=[
                OrganisationChoice(
                    c.company_id, c.name, checked=c.company_id == chosen or (chosen is None and index == 0)
                )
                for index, c in enumerate(companies)
            ],
            organisation_legend="Company to connect (one per approval)",
            multiple=False,
            username=posted_username(),
            error=error,
        )

    # -- OAuth: token endpoint -------------------------------------------------------------------

    def _missing_user_agent(self) -> Response | None:
        if self.settings.require_user_agent and not request.headers.get("User-Agent", "").strip():
            return self._error(400, "A User-Agent header identifying your app is required")
        return None

    def _client_app(self) -> RegisteredApp | None:
        """The app authenticated by HTTP Basic (or, when allowed, by form fields)."""
        client_id = client_secret = None
        authorization = request.authorization
        if authorization is not None and authorization.type == "basic":
            client_id, client_secret = authorization.username, authorization.password
        elif self.settings.accept_client_secret_in_body:
            client_id, client_secret = request.form.get("client_id"), request.form.get("client_secret")
        try:
            return self.apps.authenticate(client_id, client_secret)
        except OAuthError:
            return None

    @staticmethod
    def _basic_denied() -> Response:
        """What FreeAgent's token endpoints answer a client that fails HTTP Basic authentication."""
        return Response(
            _BASIC_DENIED,
            status=401,
            content_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Basic realm="Application"'},
        )

    def _token_endpoint(self) -> Response:
        missing = self._missing_user_agent()
        if missing is not None:
            return missing
        app = self._client_app()
        if app is None:
            return self._basic_denied()
        # Form-encoded per the docs; a JSON body (what the docs' example header claims) is read too.
        payload = request_json_object()
        form = request.form if request.form else payload
        try:
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                with self.lock:
                    consent = self.codes.redeem(
                        form.get("code"),
                        client_id=app.client_id,
                        redirect_uri=form.get("redirect_uri"),
                        code_verifier=None,
                    )
                    issued = self.tokens.start_grant(consent, self.token_policy, with_refresh_token=True)
            elif grant_type == "refresh_token":
                refresh_token = str(form.get("refresh_token") or "")
                limited = self._refresh_limited(app.client_id, refresh_token)
                if limited is not None:
                    return limited
                with self.lock:
                    issued = self.tokens.refresh(
                        refresh_token, client_id=app.client_id, policy=self.token_policy
                    )
            else:
                raise OAuthError(
                    "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
                )
        except OAuthError as error:
            body = error.body(with_description=self.settings.invalid_grant_description)
            return json_response(body, error.status, NO_STORE_HEADERS)
        return json_response(self._token_response(issued), 200, NO_STORE_HEADERS)

    def _refresh_limited(self, client_id: str, refresh_token: str) -> Response | None:
        if not self.settings.rate_limits_enabled:
            return None
        with self.lock:
            grant = self.tokens.grant_for_refresh_token(refresh_token)
        user_key = (grant.user_id, grant.extras.get("company_id")) if grant else ("unknown",)
        check = WindowCheck("refresh", self.settings.refresh_minute_limit, 60, (client_id, *user_key))
        if self.windows.acquire([check]) is not None:
            return self._rate_limited(check.limit, 60)
        return None

    def _revoke(self) -> Response:
        if not self.settings.revoke_endpoint_enabled:
            return self._error(404, "Resource not found")
        app = self._client_app()
        if app is None:
            return self._basic_denied()
        token = request.form.get("token", "")
        with self.lock:
            grant = self.tokens.grant_for_refresh_token(token)
            if grant is None:  # perhaps an access token
                try:
                    record: AccessTokenRecord | None = self.tokens.authenticate(f"Bearer {token}")
                except AccessTokenProblem as problem:
                    record = problem.record
                grant = self.tokens.grant(record.grant_id) if record else None
            self.revoke_app_grant(grant, app.client_id)
        return Response(status=200)  # unknown tokens are not an error (RFC 7009)

    # -- the API pipeline ------------------------------------------------------------------------

    def _bearer(self) -> AccessTokenRecord | Response:
        challenge = {"WWW-Authenticate": 'Bearer realm="FreeAgent API", error="invalid_token"'}
        try:
            return self.bearer_access()
        except AccessTokenExpired:
            return self._error(401, "Access token has expired", headers=challenge)
        except AccessTokenRevoked:
            return self._error(401, "Access token has been revoked", headers=challenge)
        except AccessTokenProblem:
            return self._error(401, "Access token not recognised", headers=challenge)

    @staticmethod
    def _origin() -> str:
        return request.host_url.rstrip("/")

    def _api(self, subpath: str) -> Response:
        missing = self._missing_user_agent()
        if missing is not None:
            return missing
        access = self._bearer()
        if isinstance(access, Response):
            return access
        with self.lock:
            grant = self.tokens.grant(access.grant_id)
            company = self.companies.get(grant.extras.get("company_id", ""))
            sandbox_user = self.users.get(access.user_id)
            user = company.user_by_email(sandbox_user.email) if company and sandbox_user else None
        if company is None or user is None:
            return self._error(403, "You do not have access to this company")

        if self.settings.rate_limits_enabled:
            key = (access.client_id, access.user_id, company.company_id)
            testing = parse_bool(request.headers.get("X-RateLimit-Test"))
            minute_limit = self.settings.test_header_minute_limit if testing else self.settings.minute_limit
            refused = self.windows.acquire(
                [
                    WindowCheck("minute", minute_limit, 60, key),
                    WindowCheck("hour", self.settings.hour_limit, 3600, key),
                ]
            )
            if refused is not None:
                return self._rate_limited(refused.limit, refused.window_seconds)

        segments = [s for s in subpath.split("/") if s]
        matched = find_route(self._routes, request.method, segments)
        if matched is None:
            return self._error(404, "Resource not found")
        route, params = matched
        required = self.settings.permission_levels.get(route.permission, 8)
        if user["permission_level"] < required:
            return self._error(
                403,
                f"You need permission level {required} or above to do this; "
                f"yours is {user['permission_level']}",
            )
        call = ApiCall(company, access, user, params, self._origin())
        return self.run_in_flight(lambda: route.handler(call))

    def _api_routes(self) -> list[ApiRoute]:
        r = ApiRoute
        return [
            r("GET", ("company",), "company", self._get_company),
            r("GET", ("users", "me"), "users_me", self._get_me),
            r("GET", ("users",), "users", self._get_users),
            r("GET", ("users", "{id}"), "users", self._get_user),
            r("GET", ("categories",), "categories", self._get_categories),
            r("GET", ("categories", "{code}"), "categories", self._get_category),
            r("GET", ("contacts",), "contacts", self._get_contacts),
            r("GET", ("contacts", "{id}"), "contacts", self._get_contact),
            r("POST", ("contacts",), "contacts", self._post_contact),
            r("GET", ("price_list_items",), "price_list_items", self._get_price_list_items),
            r("GET", ("price_list_items", "{id}"), "price_list_items", self._get_price_list_item),
            r("GET", ("projects",), "projects", self._get_projects),
            r("GET", ("projects", "{id}"), "projects", self._get_project),
            r("GET", ("bank_accounts",), "bank_accounts", self._get_bank_accounts),
            r("GET", ("bank_accounts", "{id}"), "bank_accounts", self._get_bank_account),
            r("GET", ("bills",), "bills", self._get_bills),
            r("GET", ("bills", "{id}"), "bills", self._get_bill),
            r("POST", ("bills",), "bills", self._post_bill),
            r("PUT", ("bills", "{id}"), "bills", self._put_bill),
            r("GET", ("invoices",), "invoices", self._get_invoices),
            r("GET", ("invoices", "{id}"), "invoices", self._get_invoice),
            r("POST", ("invoices",), "invoices", self._post_invoice),
            r("GET", ("expenses",), "expenses", self._get_expenses),
            r("GET", ("expenses", "{id}"), "expenses", self._get_expense),
            r("POST", ("expenses",), "expenses", self._post_expenses),
            r("PUT", ("expenses", "{id}"), "expenses", self._put_expense),
            r(
                "GET",
                ("bank_transaction_explanations",),
                "bank_transaction_explanations",
                self._get_explanations,
            ),
            r(
                "GET",
                ("bank_transaction_explanations", "{id}"),
                "bank_transaction_explanations",
                self._get_explanation,
            ),
            r(
                "POST",
                ("bank_transaction_explanations",),
                "bank_transaction_explanations",
                self._post_explanation,
            ),
            r("GET", ("attachments", "{id}"), "attachments", self._get_attachment),
        ]

    # -- document updates --------------------------------------------------------------------------

    # FreeAgent updates a bill or expense with a PUT whose root element holds the attributes to
    # change (200 OK). The sandbox takes the one update a publishing client needs: adding the
    # document's attachment afterwards, validated by the same rules as an inline attachment.

    def _put_bill(self, call: ApiCall) -> Response:
        return self._put_attachment(
            call, call.company.bills, "bill", lambda b: bill_view(b, self.clock.today())
        )

    def _put_expense(self, call: ApiCall) -> Response:
        return self._put_attachment(call, call.company.expenses, "expense", lambda e: e)

    def _put_attachment(
        self, call: ApiCall, store: dict[int, Record], root: str, view: Callable[[Record], Record]
    ) -> Response:
        record = self._record(store, call.params["id"])
        if record is None:
            return self._error(404, "Resource not found")
        payload = request_json()
        changes = payload.get(root) if isinstance(payload, dict) else None
        if not isinstance(changes, dict):
            return self._error(422, f"The request must be JSON with a root {root} element")
        if set(changes) != {"attachment"}:
            return self._error(422, "This sandbox update takes only the attachment attribute")
        errors = _Errors()
        upload = _attachment(self._write_context(call), changes["attachment"], errors)
        if errors or upload is None:
            return self._error(422, *(errors or ["Attachment can't be blank"]))
        now = whole_seconds(self.clock.now())
        stored = store_attachment(call.company, upload, now)
        assert stored is not None
        with self.lock:
            record["attachment"] = stored
            record["updated_at"] = now
        wire = render(stored, call.origin)
        self.write_log.record(
            org=call.company.company_id, kind="Attachment", object_id=wire["url"], body=wire
        )
        self.write_log.record(
            org=call.company.company_id,
            kind=root.capitalize(),
            object_id=render(record, call.origin)["url"],
            body={"attachment": wire},
            action="update",
        )
        return json_response({root: render(view(record), call.origin)}, 200)

    # -- list helpers ----------------------------------------------------------------------------

    def _page(
        self, call: ApiCall, key: str, rows: list[Record], view: Callable[[Record], Record] = lambda r: r
    ) -> Response:
        """One page of ``rows`` with FreeAgent's ``Link`` and ``X-Total-Count`` headers."""
        try:
            page = int(request.args.get("page") or 1)
            per_page = int(request.args.get("per_page") or self.settings.default_page_size)
        except ValueError:
            return self._error(400, "page and per_page must be whole numbers")
        page = max(1, page)
        per_page = max(1, min(per_page, self.settings.max_page_size))  # larger sizes are clamped
        last = max(1, math.ceil(len(rows) / per_page))
        start = (page - 1) * per_page
        body = {key: [render(view(r), call.origin) for r in rows[start : start + per_page]]}

        def link(target: int) -> str:
            query = [(k, v) for k, v in request.args.items(multi=True) if k not in {"page", "per_page"}]
            query += [("page", str(target)), ("per_page", str(per_page))]
            return f"<{call.origin}{request.path}?{urlencode(query)}>"

        links = []
        if page > 1:
            links.append(f'{link(min(page - 1, last))}; rel="prev"')
        if page < last:
            links.append(f'{link(page + 1)}; rel="next"')
        links += [f'{link(1)}; rel="first"', f'{link(last)}; rel="last"']
        return json_response(body, 200, {"Link": ", ".join(links), "X-Total-Count": str(len(rows))})

    def _since(self) -> datetime | Response | None:
        raw = request.args.get("updated_since")
        if not raw:
            return None
        try:
            return parse_iso_timestamp(raw)
        except ValueError:
            return self._error(400, f"updated_since '{raw}' is not an ISO 8601 date and time")

    def _updated_after(self, since: datetime | None) -> Callable[[Record], bool]:
        if since is None:
            return lambda _record: True
        if self.settings.updated_since_inclusive:
            return lambda record: record["updated_at"] >= since
        return lambda record: record["updated_at"] > since

    def _dates(self) -> tuple[date | None, date | None] | Response:
        try:
            from_date = (
                date.fromisoformat(request.args["from_date"]) if request.args.get("from_date") else None
            )
            to_date = date.fromisoformat(request.args["to_date"]) if request.args.get("to_date") else None
        except ValueError:
            return self._error(400, "from_date and to_date must be dates (YYYY-MM-DD)")
        return from_date, to_date

    def _sorted(
        self, rows: list[Record], default: str, keys: dict[str, Callable[[Record], Any]]
    ) -> list[Record] | Response:
        sort = request.args.get("sort") or default
        descending = sort.startswith("-")
        key = keys.get(sort.lstrip("-"))
        if key is None:
            return self._error(400, f"sort must be one of {', '.join(keys)} (prefix - for descending)")
        return sorted(rows, key=key, reverse=descending)

    def _reference_filter(self, call: ApiCall, name: str, collection: str) -> str | Response | None:
        """A ``?contact=<url>``-style filter, as the relative path records store."""
        raw = request.args.get(name)
        if not raw:
            return None
        ident = ReferenceReader(
            call.origin, origin_must_match=self.settings.reference_origin_must_match
        ).read(raw, collection)
        if ident is None:
            return self._error(400, f"{name} must be the URL of a {collection[:-1]}")
        return f"/v2/{collection}/{ident}"

    def _unknown_view(self, view: str, allowed: Sequence[str]) -> Response:
        return self._error(400, f"view '{view}' is not one of {', '.join(allowed)}")

    @staticmethod
    def _record(store: dict[Any, Record], ident: str) -> Record | None:
        return store.get(int(ident)) if ident.isdigit() else None

    def _one(
        self, call: ApiCall, key: str, record: Record | None, view: Callable[[Record], Record] = lambda r: r
    ) -> Response:
        if record is None:
            return self._error(404, "Resource not found")
        return json_response({key: render(view(record), call.origin)})

    # -- company, users, categories ----------------------------------------------------------------

    def _get_company(self, call: ApiCall) -> Response:
        return json_response({"company": render(call.company.company, call.origin)})

    def _get_me(self, call: ApiCall) -> Response:
        return json_response({"user": render(call.user, call.origin)})

    def _get_users(self, call: ApiCall) -> Response:
        view = request.args.get("view") or "all"
        if view not in _USER_VIEWS:
            return self._unknown_view(view, _USER_VIEWS)
        advisors = view in {"advisors", "active_advisors"}
        rows = [
            u for u in call.company.users.values() if (u["role"] == "Accountant") == advisors or view == "all"
        ]
        if view.startswith("active_"):
            rows = [u for u in rows if not u.get("_hidden")]
        return self._page(call, "users", rows)

    def _get_user(self, call: ApiCall) -> Response:
        return self._one(call, "user", self._record(call.company.users, call.params["id"]))

    def _get_categories(self, call: ApiCall) -> Response:
        groups: dict[str, list[Record]] = {group: [] for group in CATEGORY_GROUPS}
        for code in sorted(call.company.categories):
            category = call.company.categories[code]
            groups[category["_group"]].append(render(category, call.origin))
        return json_response(groups)

    def _get_category(self, call: ApiCall) -> Response:
        category = call.company.categories.get(call.params["code"])
        if category is None:
            return self._error(404, "Resource not found")
        return json_response({category["_group"]: render(category, call.origin)})

    # -- contacts ----------------------------------------------------------------------------------

    _CONTACT_VIEWS = (
        "all",
        "active",
        "clients",
        "suppliers",
        "active_projects",
        "completed_projects",
        "open_clients",
        "open_suppliers",
        "hidden",
    )

    def _contact_view_filter(self, company: FreeAgentCompany, view: str) -> Callable[[Record], bool]:
        def with_projects(status: str) -> set[str]:
            return {p["contact"] for p in company.projects.values() if p["status"] == status}

        today = self.clock.today()
        if view == "all":
            return lambda c: True
        if view == "hidden":
            return lambda c: c["status"] == "Hidden"
        if view == "clients":  # "Show all clients" [src]: hidden ones too
            return lambda c: (
                c["_is_customer"] or any(i["contact"] == c["url"] for i in company.invoices.values())
            )
        if view == "suppliers":  # "Show only active suppliers" [src]
            return lambda c: (
                c["status"] == "Active"
                and (c["_is_supplier"] or any(b["contact"] == c["url"] for b in company.bills.values()))
            )
        if view == "active_projects":
            active = with_projects("Active")
            return lambda c: c["url"] in active
        if view == "completed_projects":
            completed = with_projects("Completed")
            return lambda c: c["url"] in completed
        if view == "open_clients":
            open_ids = {
                i["contact"] for i in company.invoices.values() if i["status"] != "Draft" and i["due_value"]
            }
            return lambda c: c["url"] in open_ids
        if view == "open_suppliers":
            open_ids = {b["contact"] for b in company.bills.values() if bill_view(b, today)["due_value"]}
            return lambda c: c["url"] in open_ids
        return lambda c: c["status"] == "Active"

    def _get_contacts(self, call: ApiCall) -> Response:
        view = request.args.get("view") or "active"
        if view not in self._CONTACT_VIEWS:
            return self._unknown_view(view, self._CONTACT_VIEWS)
        since = self._since()
        if isinstance(since, Response):
            return since
        wanted, fresh = self._contact_view_filter(call.company, view), self._updated_after(since)
        rows = [c for c in call.company.contacts.values() if wanted(c) and fresh(c)]
        ordered = self._sorted(
            rows,
            "name",
            {
                "name": lambda c: (contact_sort_name(c), c["url"]),
                "created_at": _sort_key("created_at"),
                "updated_at": _sort_key("updated_at"),
            },
        )
        return ordered if isinstance(ordered, Response) else self._page(call, "contacts", ordered)

    def _get_contact(self, call: ApiCall) -> Response:
        return self._one(call, "contact", self._record(call.company.contacts, call.params["id"]))

    def _post_contact(self, call: ApiCall) -> Response:
        return self._create(call, "contact", prepare_contact)

    # -- price list items, projects, bank accounts --------------------------------------------------

    def _get_price_list_items(self, call: ApiCall) -> Response:
        ordered = self._sorted(
            list(call.company.price_list_items.values()),
            "code",
            {
                "code": _sort_key("code"),
                "description": _sort_key("description"),
                "created_at": _sort_key("created_at"),
                "updated_at": _sort_key("updated_at"),
            },
        )
        return ordered if isinstance(ordered, Response) else self._page(call, "price_list_items", ordered)

    def _get_price_list_item(self, call: ApiCall) -> Response:
        return self._one(
            call, "price_list_item", self._record(call.company.price_list_items, call.params["id"])
        )

    def _get_projects(self, call: ApiCall) -> Response:
        view = request.args.get("view") or self.settings.projects_default_view
        if view != "all" and view not in _PROJECT_VIEWS:
            return self._unknown_view(view, [*_PROJECT_VIEWS, "all"])
        contact = self._reference_filter(call, "contact", "contacts")
        if isinstance(contact, Response):
            return contact
        rows = [
            p
            for p in call.company.projects.values()
            if (view == "all" or p["status"] == _PROJECT_VIEWS[view])
            and (contact is None or p["contact"] == contact)
        ]
        ordered = self._sorted(
            rows,
            "name",
            {
                "name": _sort_key("name"),
                "contact_name": _sort_key("contact_name"),
                "contact_display_name": _sort_key("contact_name"),
                "created_at": _sort_key("created_at"),
                "updated_at": _sort_key("updated_at"),
            },
        )
        return ordered if isinstance(ordered, Response) else self._page(call, "projects", ordered)

    def _get_project(self, call: ApiCall) -> Response:
        return self._one(
            call,
            "project",
            self._record(call.company.projects, call.params["id"]),
            lambda p: {**p, "is_deletable": False},
        )

    def _get_bank_accounts(self, call: ApiCall) -> Response:
        view = request.args.get("view")
        if view is not None and view not in _BANK_VIEWS:
            return self._unknown_view(view, list(_BANK_VIEWS))
        rows = [
            b for b in call.company.bank_accounts.values() if view is None or b["type"] == _BANK_VIEWS[view]
        ]
        return self._page(call, "bank_accounts", rows)

    def _get_bank_account(self, call: ApiCall) -> Response:
        return self._one(call, "bank_account", self._record(call.company.bank_accounts, call.params["id"]))

    # -- bills ---------------------------------------------------------------------------------------

    _BILL_VIEWS = ("all", "open", "overdue", "open_or_overdue", "paid", "recurring", "hire_purchase", "cis")

    def _get_bills(self, call: ApiCall) -> Response:
        view = request.args.get("view") or "all"
        if view not in self._BILL_VIEWS:
            return self._unknown_view(view, self._BILL_VIEWS)
        since, dates = self._since(), self._dates()
        contact = self._reference_filter(call, "contact", "contacts")
        project = self._reference_filter(call, "project", "projects")
        for problem in (since, dates, contact, project):
            if isinstance(problem, Response):
                return problem
        assert not isinstance(since, Response) and not isinstance(dates, Response)
        from_date, to_date = dates
        today, fresh = self.clock.today(), self._updated_after(since)
        statuses = {
            "open": {"Open"},
            "overdue": {"Overdue"},
            "open_or_overdue": {"Open", "Overdue"},
            "paid": {"Paid"},
        }.get(view)
        rows = []
        for bill in call.company.bills.values():
            shown = bill_view(bill, today)
            if (
                fresh(bill)
                and (statuses is None or shown["status"] in statuses)
                and view not in {"recurring", "hire_purchase", "cis"}
                and (contact is None or bill["contact"] == contact)
                and (
                    project is None
                    or bill.get("project") == project
                    or any(i.get("project") == project for i in bill["bill_items"])
                )
                and (from_date is None or bill["dated_on"] >= from_date)
                and (to_date is None or bill["dated_on"] <= to_date)
            ):
                rows.append(bill)
        nested = parse_bool(request.args.get("nested_bill_items"))
        return self._page(call, "bills", rows, lambda b: bill_view(b, today, nested_items=nested))

    def _get_bill(self, call: ApiCall) -> Response:
        return self._one(
            call,
            "bill",
            self._record(call.company.bills, call.params["id"]),
            lambda b: bill_view(b, self.clock.today()),
        )

    def _post_bill(self, call: ApiCall) -> Response:
        return self._create(call, "bill", prepare_bill, lambda b: bill_view(b, self.clock.today()))

    # -- invoices --------------------------------------------------------------------------------------

    _INVOICE_VIEWS = ("all", "recent_open_or_overdue", "open_or_overdue", "open", "overdue", "draft", "paid")

    def _get_invoices(self, call: ApiCall) -> Response:
        view = request.args.get("view") or "all"
        if view not in self._INVOICE_VIEWS:
            return self._unknown_view(view, self._INVOICE_VIEWS)
        since = self._since()
        contact = self._reference_filter(call, "contact", "contacts")
        project = self._reference_filter(call, "project", "projects")
        for problem in (since, contact, project):
            if isinstance(problem, Response):
                return problem
        assert not isinstance(since, Response)
        fresh = self._updated_after(since)
        statuses = (
            None if view == "all" else {"draft": {"Draft"}, "paid": {"Paid"}}.get(view, {"Open", "Overdue"})
        )
        rows = [
            i
            for i in call.company.invoices.values()
            if fresh(i)
            and (statuses is None or i["status"] in statuses)
            and (contact is None or i["contact"] == contact)
            and (project is None or i.get("project") == project)
        ]
        nested = parse_bool(request.args.get("nested_invoice_items"))
        return self._page(
            call,
            "invoices",
            rows,
            lambda i: i if nested else {k: v for k, v in i.items() if k != "invoice_items"},
        )

    def _get_invoice(self, call: ApiCall) -> Response:
        return self._one(call, "invoice", self._record(call.company.invoices, call.params["id"]))

    def _post_invoice(self, call: ApiCall) -> Response:
        return self._create(call, "invoice", prepare_invoice)

    # -- expenses ----------------------------------------------------------------------------------------

    def _may_act_for_others(self, call: ApiCall) -> bool:
        level: int = call.user["permission_level"]
        return level >= self.settings.permission_levels.get("expenses_other_users", 8)

    def _get_expenses(self, call: ApiCall) -> Response:
        view = request.args.get("view")
        if view is not None and view not in {"recent", "recurring"}:
            return self._unknown_view(view, ["recent", "recurring"])
        since, dates = self._since(), self._dates()
        project = self._reference_filter(call, "project", "projects")
        for problem in (since, dates, project):
            if isinstance(problem, Response):
                return problem
        assert not isinstance(since, Response) and not isinstance(dates, Response)
        from_date, to_date = dates
        fresh, everyone = self._updated_after(since), self._may_act_for_others(call)
        rows = [
            e
            for e in call.company.expenses.values()
            if fresh(e)
            and view != "recurring"
            and (everyone or e["user"] == call.user["url"])
            and (project is None or e.get("project") == project)
            and (from_date is None or e["dated_on"] >= from_date)
            and (to_date is None or e["dated_on"] <= to_date)
        ]
        return self._page(call, "expenses", rows)

    def _get_expense(self, call: ApiCall) -> Response:
        expense = self._record(call.company.expenses, call.params["id"])
        if expense is not None and expense["user"] != call.user["url"] and not self._may_act_for_others(call):
            expense = None  # other people's expenses are invisible below the level
        return self._one(call, "expense", expense)

    def _post_expenses(self, call: ApiCall) -> Response:
        payload = request_json()
        if not isinstance(payload, dict) or "expenses" not in payload:
            return self._create(call, "expense", prepare_expense)
        elements = payload["expenses"]
        if not isinstance(elements, list) or not elements:
            return self._error(422, "Expenses must be a non-empty array")
        ctx = self._write_context(call)
        prepared = [
            prepare_expense(ctx, element, label=f"Expense {n}: ") for n, element in enumerate(elements, 1)
        ]
        failed = [message for p in prepared for message in p.errors]
        if failed and self.settings.expense_batch_mode == "all_or_nothing":
            return self._error(422, *failed)
        created = [self._commit(call, p) for p in prepared if p.ok]
        if failed:
            # The valid expenses above ARE created; nothing in this response says which.
            return self._error(422, *failed)
        return json_response({"expenses": created}, 201)

    # -- bank transaction explanations ---------------------------------------------------------------

    def _get_explanations(self, call: ApiCall) -> Response:
        bank_account = self._reference_filter(call, "bank_account", "bank_accounts")
        if isinstance(bank_account, Response):
            return bank_account
        if bank_account is None:
            return self._error(
                422, "bank_account is required (the URL of one of the company's bank accounts)"
            )
        since, dates = self._since(), self._dates()
        for problem in (since, dates):
            if isinstance(problem, Response):
                return problem
        assert not isinstance(since, Response) and not isinstance(dates, Response)
        from_date, to_date = dates
        fresh = self._updated_after(since)
        rows = [
            x
            for x in call.company.explanations.values()
            if x["bank_account"] == bank_account
            and fresh(x)
            and (from_date is None or x["dated_on"] >= from_date)
            and (to_date is None or x["dated_on"] <= to_date)
        ]
        return self._page(call, "bank_transaction_explanations", rows)

    def _get_explanation(self, call: ApiCall) -> Response:
        return self._one(
            call, "bank_transaction_explanation", self._record(call.company.explanations, call.params["id"])
        )

    def _post_explanation(self, call: ApiCall) -> Response:
        return self._create(call, "bank_transaction_explanation", prepare_explanation)

    # -- attachments -----------------------------------------------------------------------------------

    def _get_attachment(self, call: ApiCall) -> Response:
        return self._one(call, "attachment", self._record(call.company.attachments, call.params["id"]))

    def _attachment_content(self, attachment_id: int) -> Response:
        with self.lock:
            for company in self.companies.values():
                if attachment_id in company.attachment_content:
                    record = company.attachments[attachment_id]
                    return Response(
                        company.attachment_content[attachment_id],
                        status=200,
                        content_type=record["content_type"],
                    )
        return Response("Not Found", status=404, content_type="text/plain")

    # -- writes ----------------------------------------------------------------------------------------

    def _write_context(self, call: ApiCall) -> WriteContext:
        return WriteContext(
            company=call.company,
            settings=self.settings,
            today=self.clock.today(),
            refs=ReferenceReader(call.origin, origin_must_match=self.settings.reference_origin_must_match),
            acting_user_id=call.user_id,
            may_act_for_others=self._may_act_for_others(call),
        )

    def _commit(
        self, call: ApiCall, prepared: Prepared, view: Callable[[Record], Record] = lambda r: r
    ) -> Record:
        """Apply a validated write and log it. No idempotency: every call creates a new object."""
        assert prepared.apply is not None
        record = prepared.apply(whole_seconds(self.clock.now()))
        wire: Record = render(view(record), call.origin)
        self.write_log.record(
            org=call.company.company_id, kind=prepared.kind, object_id=wire["url"], body=wire
        )
        return wire

    def _create(
        self,
        call: ApiCall,
        root: str,
        prepare: Callable[[WriteContext, Any], Prepared],
        view: Callable[[Record], Record] = lambda r: r,
    ) -> Response:
        payload = request_json()
        if not isinstance(payload, dict) or not isinstance(payload.get(root), dict):
            return self._error(422, f"The request must be JSON with a root {root} element")
        prepared = prepare(self._write_context(call), payload[root])
        if not prepared.ok:
            return self._error(422, *prepared.errors)
        wire = self._commit(call, prepared, view)
        return json_response({root: wire}, 201, {"Location": wire["url"]})


__all__ = ["DEFAULT_PERMISSION_LEVELS", "FixedWindowCounter", "FreeAgentSettings", "FreeAgentSimulator"]
