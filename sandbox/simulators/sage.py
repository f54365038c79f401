"""The Sage Business Cloud Accounting (API v3.1) simulator: Sage ID OAuth2 and the v3.1 API.

Every real path is served under one origin (``www.sageone.com``, ``oauth.accounting.sage.com``
and ``api.accounting.sage.com`` all become the base URL):

OAuth
    ``GET|POST /oauth2/auth/central`` (sign in and pick a business; auto-consent redirects at once
    with ``code=GB/...``, ``country=GB`` and ``state``), ``POST /token`` (client credentials in the
    FORM BODY; authorization_code with optional PKCE S256/plain, refresh_token), ``POST /revoke``
    (``token=<refresh token>`` → ``{"success": "ok"}``).
API (``/v3.1``; ``X-Business`` picks the business, absent → the user's lead business)
    ``GET /user``, ``GET /businesses``, ``GET /businesses/{id|lead}``; lists ``GET`` ledger_accounts,
    contacts, tax_rates, products, services, analysis_types, analysis_type_categories,
    bank_accounts, purchase_invoices, purchase_quick_entries, sales_invoices, other_payments,
    contact_payments, attachments, bank_transactions (UNCONFIRMED, below) (and ``GET /{resource}/{id}``); ``GET /financial_settings``,
    ``GET /business_settings``; ``POST`` contacts, purchase_invoices, purchase_quick_entries,
    sales_invoices, other_payments, contact_payments, attachments (base64 JSON); ``DELETE
    /{resource}/{id}`` for those; ``GET /attachments/{id}/file``.

Lists (``reference/providers.md`` §3.3): ``{"$total", "$page", "$next", "$back", "$itemsPerPage",
"$items"}``; rows carry only ``id``, ``displayed_as`` and ``$path`` unless ``attributes=all`` (or a
comma list); ``items_per_page`` default 20, at most 200; ``page`` past the end → the last page;
``$next``/``$back`` are relative URLs keeping the query; ``updated_or_created_since`` is inclusive,
``deleted_since`` (contacts, products, services, bank accounts, transactions, attachments) is not
and lists only deleted rows with their ``deleted_at``. Filters: ``contact_type_id``, ``search``,
``email`` (contacts); ``visible_in``, ``ledger_account_type_id``, ``show_included_in_chart``
(ledger accounts); ``active`` (products, services); ``analysis_type_id`` (categories);
``contact_id``, ``status_id``, ``bank_account_id``, ``transaction_type_id``, ``from_date``,
``to_date`` (transactions); ``attachment_context_type_id``/``_id`` (attachments).

Errors are Sage's JSON array of diagnoses (``$severity``, ``$dataCode``, ``$message``, ``$source``):
422 ``RecordInvalid`` for validation (every problem at once), 404 ``RecordNotFound``, 401 for a
missing/expired/revoked token, 403 ``MultiUserAccessDenied`` for a ``readonly`` token writing,
429 ``TooManyRequests``. ``idempotency_id`` (32 hex, inside the resource object) replays the first
response and creates nothing.

Settings (:class:`SageSettings`; change with ``update_settings`` or ``POST /_sandbox/settings``)
and defaults:

====================================== ============ ===========================================
setting                                default      meaning
====================================== ============ ===========================================
authorization_code_ttl_seconds         60           single use [src]
access_token_ttl_seconds               300          [src]
refresh_token_unused_ttl_seconds       2678400      31 days [src]
refresh_token_rotation                 True         every refresh returns a new refresh token [src]
default_items_per_page / max           20 / 200     [src]
rate_limits_enabled                    True
payment_method_ids                     CREDIT_DEBIT, BANK_TRANSFER, CASH, CHEQUE, ALTERNATIVE_PAYMENT
attachment_mime_types                  pdf, jpeg, png, gif, tiff, plain text, csv, Word, Excel
====================================== ============ ===========================================

UNCONFIRMED behaviours — each a setting whose default is the stricter choice:

* ``refresh_token_grace_seconds = 0`` — a used refresh token is dead at once (single use).
* ``accept_basic_client_auth = False`` — client credentials only in the form body.
* ``unknown_business_status = 403`` — an ``X-Business`` the user cannot see → 403 (or 404).
* ``minute_limit = 100`` / ``day_limit = 2500`` per business ([3p]; v3.0 documented 200/min).
* ``retry_after_seconds = None`` — 429s carry no ``Retry-After``; set a number to add one.
* ``items_per_page_above_max = "error"`` — ``items_per_page`` above 200 → 422 (``"clamp"``: 200).
* ``GET /bank_transactions`` — NOT in the published v3.1 definitions: Sage keeps bank-feed lines in
  its Banking Service and the Accounting API documents no read of them. The simulator serves the
  unreconciled lines there (filters ``bank_account_id``, ``transaction_type_id``, ``from_date``,
  ``to_date``; rows ``{id, date, reference, payee_name, contact, bank_account, transaction_type
  MONEY_OUT, total_amount, is_reconciled}``) so bank match can be exercised; every live bank and
  card account carries the neutral seed's five lines (``seed.SeedBankLine``) and ``add_bank_line``
  adds more. Against the real API the adapter treats a 404 there as "no line found".
* ``idempotency_window_seconds = 3600`` — how long an ``idempotency_id`` replays.
* ``idempotency_mismatch_is_error = True`` — the same ``idempotency_id`` with a different body → 422
  (``False``: replay the first response anyway).
* ``line_analysis_field = "analysis_type_categories"`` — the line attribute carrying analysis
  categories (not in the published definitions).
* ``other_payment_requires_bank_account = True`` — ``bank_account_id`` required on other payments.
* ``enforce_lockdown_date = True`` — documents dated on/before ``year_end_lockdown_date`` → 422.
* ``attachment_max_bytes = 10 MB``; ``attachment_context_types`` — PURCHASE_INVOICE is documented;
  SALES_INVOICE, PURCHASE_QUICK_ENTRY, OTHER_PAYMENT, CONTACT_PAYMENT and CONTACT are assumed
  (remove them from the setting to be stricter still).
* Wording and ``$dataCode`` of 401 (``AuthenticationFailure``), 403 for an unknown business
  (``BusinessNotFound``) and for analysis types on Start (``NotAvailableForSubscription``), 429
  (``TooManyRequests``) and 500/503 bodies; the shape of ``deleted_since`` rows; subscription ids
  (``ACCOUNTING``, ``ACCOUNTING_PLUS``, ``START``); archived seed contacts appear as deleted contacts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

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
    IdempotencyKeyReused,
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
    parse_bool,
    request_json,
    token_endpoint_error,
    truncate_to_millis,
)
from sandbox.simulators.sage_ledger import (
    DELETABLE_RESOURCES,
    LIMITED_TIERS,
    LIST_RESOURCES,
    PREPARERS,
    WRITABLE_RESOURCES,
    SageBusiness,
    SageInvalid,
    WriteContext,
    base_ref,
    delete_record,
    diagnosis,
    parse_since,
    to_wire,
)
from sandbox.simulators.seed import Dataset, Preset

_DAY = 24 * 60 * 60
_SCOPES = frozenset({"full_access", "readonly"})
_AUTHORIZE_PARAMS = ("filter", "response_type", "client_id", "redirect_uri", "scope", "state", "country", "locale",
                     "code_challenge", "code_challenge_method")
_IDEMPOTENCY_ID = re.compile(r"^[0-9a-fA-F]{32}$")
# The seeded businesses' tiers, in seed order: the lead on Accounting Plus, the other on Accounting.
_SEED_TIERS = ("ACCOUNTING_PLUS", "ACCOUNTING")


class SageSettings(SimulatorSettings):
    authorization_code_ttl_seconds: float = Field(60, gt=0)
    access_token_ttl_seconds: float = Field(300, gt=0)
    refresh_token_unused_ttl_seconds: float | None = Field(31 * _DAY, gt=0)
    refresh_token_rotation: bool = True
    refresh_token_grace_seconds: float = Field(0, ge=0)  # UNCONFIRMED
    accept_basic_client_auth: bool = False  # UNCONFIRMED
    unknown_business_status: Literal[403, 404] = 403  # UNCONFIRMED

    rate_limits_enabled: bool = True
    minute_limit: int = Field(100, gt=0)  # UNCONFIRMED
    day_limit: int = Field(2500, gt=0)  # UNCONFIRMED
    retry_after_seconds: int | None = Field(None, gt=0)  # UNCONFIRMED

    default_items_per_page: int = Field(20, gt=0)
    max_items_per_page: int = Field(200, gt=0)
    items_per_page_above_max: Literal["error", "clamp"] = "error"  # UNCONFIRMED

    idempotency_window_seconds: float = Field(3600, gt=0)  # UNCONFIRMED
    idempotency_mismatch_is_error: bool = True  # UNCONFIRMED
    line_analysis_field: str = "analysis_type_categories"  # UNCONFIRMED
    other_payment_requires_bank_account: bool = True  # UNCONFIRMED
    enforce_lockdown_date: bool = True  # UNCONFIRMED
    payment_method_ids: tuple[str, ...] = ("CREDIT_DEBIT", "BANK_TRANSFER", "CASH", "CHEQUE", "ALTERNATIVE_PAYMENT")
    attachment_max_bytes: int = Field(10 * 1000 * 1000, gt=0)  # UNCONFIRMED
    attachment_context_types: tuple[str, ...] = (  # UNCONFIRMED beyond PURCHASE_INVOICE
        "PURCHASE_INVOICE", "SALES_INVOICE", "PURCHASE_QUICK_ENTRY", "OTHER_PAYMENT", "CONTACT_PAYMENT", "CONTACT")
    attachment_mime_types: tuple[str, ...] = (
        "application/pdf", "image/jpeg", "image/png", "image/gif", "image/tiff", "text/plain", "text/csv",
        "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def _errors(status: int, data_code: str, message: str, source: str = "",
            headers: dict[str, str] | None = None) -> Response:
    return json_response([diagnosis(source, message, data_code)], status, headers)


@dataclass
class ApiCall:
    business: SageBusiness
    access: AccessTokenRecord
    params: list[str]


class SageSimulator(LedgerSimulator):
    """Sage Accounting v3.1 on one origin. ``SageSimulator(clock=None, *, auto_consent=False,
    preset="small", settings=None, fault_seed=0, data_seed=0)``; serve ``.wsgi_app`` or use
    ``.transport()``.

    Beyond the harness's control methods: ``businesses`` (id → :class:`SageBusiness`, the live
    data), ``business(name_or_id)``, ``lead_business_id`` and ``set_lead_business()`` (Sage may
    change the lead silently), ``set_subscription(business, tier)`` (``START`` switches off
    analysis types and payments on account), ``mint_tokens(scope="full_access"|"readonly")``.
    """

    provider: ClassVar[str] = "sage"
    settings_model: ClassVar[type[SimulatorSettings]] = SageSettings
    settings: SageSettings

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        auto_consent: bool = False,
        preset: Preset = "small",
        settings: SageSettings | None = None,
        fault_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        self.businesses: dict[str, SageBusiness] = {}
        self.lead_business_id = ""
        super().__init__(clock, auto_consent=auto_consent, preset=preset, settings=settings,
                         fault_seed=fault_seed, data_seed=data_seed)

    # -- data ------------------------------------------------------------------------------------

    def _load_dataset(self, dataset: Dataset) -> None:
        now = self.clock.now()
        tiers = {b.id: b.tier for b in self.businesses.values()}  # a re-seed keeps chosen tiers
        self.businesses = {}
        for index, seed in enumerate(dataset.organisations):
            business = SageBusiness.from_seed(seed, now, _SEED_TIERS[min(index, len(_SEED_TIERS) - 1)])
            if business.id in tiers:
                business.tier = tiers[business.id]
                business.business["subscriptions"] = business.subscriptions()
            self.businesses[business.id] = business
        if self.lead_business_id not in self.businesses:
            self.lead_business_id = next(iter(self.businesses))

    def organisations(self) -> list[dict[str, Any]]:
        return [{"id": b.id, "name": b.name, "lead": b.id == self.lead_business_id, "subscription": b.tier}
                for b in self.businesses.values()]

    def business(self, name_or_id: str) -> SageBusiness:
        return find_named(self.businesses.values(), name_or_id, lambda b: {b.id, b.name.lower()}, "business")

    def add_bank_line(self, business: str, bank_account_id: str, on: date, amount: Decimal | str, *,
                      reference: str = "CARD PAYMENT") -> str:
        """An unreconciled money-out line on a bank account (what bank match pairs a payment with);
        returns its id. Not an API write: the write log stays as it was."""
        with self.lock:
            record = self.business(business).add_bank_line(bank_account_id, on, Decimal(str(amount)),
                                                           reference=reference, now=self.clock.now())
        return str(record["id"])

    def set_lead_business(self, name_or_id: str) -> None:
        with self.lock:
            self.lead_business_id = self.business(name_or_id).id

    def set_subscription(self, name_or_id: str, tier: str) -> None:
        with self.lock:
            business = self.business(name_or_id)
            business.tier = tier
            business.business["subscriptions"] = business.subscriptions()

    # -- tokens ----------------------------------------------------------------------------------

    def _token_response(self, issued: IssuedTokens) -> dict[str, Any]:
        return {
            "access_token": issued.access.token, "scope": " ".join(issued.grant.scope), "token_type": "bearer",
            "expires_in": issued.access.expires_in,
            "refresh_token": issued.refresh_token,
            "refresh_token_expires_in": int(self.settings.refresh_token_unused_ttl_seconds or 31 * _DAY),
            "requested_by_id": uuid.UUID(issued.grant.user_id).hex,
        }

    def mint_tokens(self, organisations: Sequence[str] | None = None, scope: str | None = None) -> dict[str, Any]:
        """Consent as the seeded user; returns the token response plus ``businesses``,
        ``lead_business_id`` and ``expires_at``. A Sage token covers every business of the user;
        ``organisations`` only records which one was picked at consent."""
        with self.lock:
            scopes = tuple((scope or "full_access").split())
            if len(scopes) != 1 or scopes[0] not in _SCOPES:
                raise ValueError("scope must be full_access or readonly")
            picked = self.business(organisations[0]) if organisations else self.businesses[self.lead_business_id]
            issued = self.tokens.start_grant(
                Consent(client_id=DEFAULT_APP.client_id, user_id=DEFAULT_USER.user_id, scope=scopes,
                        extras={"selected_business_id": picked.id}),
                self.token_policy, with_refresh_token=True)
            return {**self._token_response(issued), "expires_at": issued.access.expires_at.timestamp(),
                    "lead_business_id": self.lead_business_id,
                    "businesses": [{"id": b.id, "name": b.name} for b in self.businesses.values()]}

    def revoke_consent(self, user_id: str | None = None) -> None:
        with self.lock:
            self.tokens.revoke_user(user_id, reason="consent revoked")

    # -- faults ----------------------------------------------------------------------------------

    def _throttled(self, retry_after: int | None = None) -> Response:
        seconds = retry_after or self.settings.retry_after_seconds
        return _errors(429, "TooManyRequests", "Too many requests. Please try again later.",
                       headers={"Retry-After": str(seconds)} if seconds else None)

    def fault_response(self, rule: FaultRule) -> Response:
        if rule.kind is FaultKind.RATE_LIMIT:
            return self._throttled(rule.retry_after)
        if rule.kind is FaultKind.SERVER_ERROR:
            return _errors(500, "UnexpectedError", "An unexpected error occurred.")
        return _errors(503, "ServiceUnavailable", "The service is temporarily unavailable.")

    # -- routes ----------------------------------------------------------------------------------

    def _register_routes(self, app: Flask) -> None:
        app.add_url_rule("/oauth2/auth/central", "authorize", self._authorize, methods=["GET", "POST"])
        app.add_url_rule("/token", "token", self._token, methods=["POST"])
        app.add_url_rule("/revoke", "revoke", self._revoke, methods=["POST"])
        app.add_url_rule("/v3.1/<path:subpath>", "api", self._api, methods=["GET", "POST", "PUT", "DELETE"])

    # -- authorize -------------------------------------------------------------------------------

    def _authorize(self) -> Response:
        authorize = read_authorize_request(
            self.apps, _AUTHORIZE_PARAMS, "Sage",
            unknown_client=("unauthorized_client", "The client_id is not recognised."),
            bad_redirect=("invalid_request", "The redirect_uri does not match the app."))
        if isinstance(authorize, Response):
            return authorize
        params, app, redirect_uri = authorize.params, authorize.app, authorize.redirect_uri
        back_with_error = authorize.back_with_error
        scopes = tuple((params["scope"] or "").split())
        if len(scopes) != 1 or scopes[0] not in _SCOPES:
            return back_with_error("invalid_scope", "scope must be full_access or readonly")
        challenge, method = params["code_challenge"], params["code_challenge_method"]
        if challenge is not None and (method or "plain") not in {"S256", "plain"}:
            return back_with_error("invalid_request", "code_challenge_method must be S256 or plain")
        if challenge is None and method is not None:
            return back_with_error("invalid_request", "code_challenge is missing")

        def grant_code(user: SandboxUser, business_id: str) -> Response:
            with self.lock:
                code = self.codes.issue(Consent(
                    client_id=app.client_id, user_id=user.user_id, scope=scopes, redirect_uri=redirect_uri,
                    code_challenge=challenge,
                    code_challenge_method=(method or "plain") if challenge else None,
                    extras={"selected_business_id": business_id},
                ), self.settings.authorization_code_ttl_seconds, prefix="GB/")
            return authorize.back({"code": code, "country": "GB"})

        if request.method == "GET":
            if self.auto_consent:
                if self.auto_consent_deny:
                    return back_with_error("access_denied")
                return grant_code(DEFAULT_USER, self.lead_business_id)
            return self._consent_page(app, params, scopes)
        if consent_cancelled():
            return back_with_error("access_denied")
        user = posted_user(self.users)
        if user is None:
            return self._consent_page(app, params, scopes, "Your email or password is incorrect.")
        chosen = [b for b in request.form.getlist("organisation") if b in self.businesses]
        if len(chosen) != 1:
            return self._consent_page(app, params, scopes, "Choose the business to open.")
        return grant_code(user, chosen[0])

    def _consent_page(self, app: RegisteredApp, params: Mapping[str, str | None], scopes: tuple[str, ...],
                      error: str | None = None) -> Response:
        chosen = posted_organisations(default=[self.lead_business_id])
        lines = {"full_access": "Read and change your accounting data in every business you can see",
                 "readonly": "Read your accounting data in every business you can see"}
        return consent_page(
            brand="Sage Accounting", app_name=app.name, action=request.path, hidden=params, error=error,
            scope_lines=[lines[s] for s in scopes],
            username=posted_username(),
            organisations=[OrganisationChoice(b.id, b.name, b.id in chosen) for b in self.businesses.values()],
            organisation_legend="Choose the business to open", multiple=False,
        )

    # -- token and revoke ------------------------------------------------------------------------

    def _client(self) -> RegisteredApp:
        credentials = client_credentials_from_request()
        if credentials.method == "client_secret_basic" and not self.settings.accept_basic_client_auth:
            raise OAuthError("invalid_client", "send client_id and client_secret in the form body")
        return self.apps.authenticate(credentials.client_id, credentials.client_secret)

    def _token(self) -> Response:
        try:
            with self.lock:
                app = self._client()
                grant_type = request.form.get("grant_type")
                if grant_type == "authorization_code":
                    consent = self.redeem_posted_code(app.client_id)
                    issued = self.tokens.start_grant(consent, self.token_policy, with_refresh_token=True)
                elif grant_type == "refresh_token":
                    issued = self.tokens.refresh(request.form.get("refresh_token"), client_id=app.client_id,
                                                 policy=self.token_policy)
                elif not grant_type:
                    raise OAuthError("invalid_request", "grant_type is required")
                else:
                    raise OAuthError("unsupported_grant_type")
                body = self._token_response(issued)
        except OAuthError as error:
            return token_endpoint_error(error)
        return json_response(body, 200, NO_STORE_HEADERS)

    def _revoke(self) -> Response:
        try:
            with self.lock:
                app = self._client()
                # Only refresh tokens can be revoked; access tokens simply run out.
                self.revoke_app_grant(self.tokens.grant_for_refresh_token(request.form.get("token", "")),
                                      app.client_id)
        except OAuthError as error:
            return json_response(error.body(), error.status)
        return json_response({"success": "ok"})

    # -- the API pipeline ------------------------------------------------------------------------

    def _rate_checks(self, business_id: str) -> list[tuple[WindowLimit, Any]]:
        return [(WindowLimit("day", self.settings.day_limit, _DAY), business_id),
                (WindowLimit("minute", self.settings.minute_limit, 60), business_id)]

    def _api(self, subpath: str) -> Response:
        try:
            access = self.bearer_access()
        except AccessTokenProblem:
            return _errors(401, "AuthenticationFailure", "The access token is invalid, has expired or was revoked.",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        segments = [s for s in subpath.split("/") if s]
        if segments[:1] in (["user"], ["businesses"]):
            with self.lock:
                return self._user_routes(segments, access)
        header = request.headers.get("X-Business", "").strip().lower()
        with self.lock:
            business = self.businesses.get(header or self.lead_business_id)
        if business is None:
            status = self.settings.unknown_business_status
            return _errors(status, "BusinessNotFound", f"You do not have access to the business {header}.")
        if request.method != "GET" and "full_access" not in access.scope:
            return _errors(403, "MultiUserAccessDenied", "You do not have permission to make changes here.")
        if self.settings.rate_limits_enabled:
            decision = self.rate_limiter.acquire(self._rate_checks(business.id))
            if not decision.allowed:
                return self._throttled()
        return self.run_in_flight(lambda: self._dispatch(ApiCall(business, access, segments)))

    def _user_routes(self, segments: list[str], access: AccessTokenRecord) -> Response:
        user = self.users.get(access.user_id)
        if request.method != "GET" or user is None:
            return _errors(405, "MethodNotAllowed", "Only GET is simulated here.")
        if segments == ["user"]:
            return json_response(self._user_record(user))
        visible = [b.business for b in self.businesses.values()]
        if segments == ["businesses"]:
            return self._list_response("businesses", visible)
        if len(segments) == 2:
            wanted = self.lead_business_id if segments[1] == "lead" else segments[1].lower()
            business = self.businesses.get(wanted)
            if business is not None:
                return json_response(to_wire(business.business))
        return _errors(404, "RecordNotFound", "Record not found")

    def _user_record(self, user: SandboxUser) -> dict[str, Any]:
        user_id = uuid.UUID(user.user_id).hex
        return {"id": user_id, "displayed_as": user.display_name, "$path": "/user", "first_name": user.first_name,
                "last_name": user.last_name, "initials": user.first_name[0] + user.last_name[0],
                "email": user.email, "locale": "en-GB"}

    def _dispatch(self, call: ApiCall) -> Response:
        segments, method = call.params, request.method
        resource = segments[0] if segments else ""
        business = call.business
        if resource in {"financial_settings", "business_settings"} and len(segments) == 1 and method == "GET":
            return json_response(to_wire(getattr(business, resource)))
        if resource not in LIST_RESOURCES:
            return _errors(404, "RecordNotFound", f"/{'/'.join(segments)} is not a known resource")
        if resource in {"analysis_types", "analysis_type_categories"} and business.tier in LIMITED_TIERS:
            return _errors(403, "NotAvailableForSubscription", "Analysis types are not available on this subscription.")
        if len(segments) == 1 and method == "GET":
            return self._list(call, resource)
        if len(segments) == 1 and method == "POST" and resource in WRITABLE_RESOURCES:
            return self._create(call, resource)
        if len(segments) == 3 and resource == "attachments" and segments[2] == "file" and method == "GET":
            return self._attachment_file(business, segments[1])
        if len(segments) == 2 and method == "GET":
            record = business.resources[resource].get(segments[1].lower())
            if record is None or record.get("deleted_at") is not None:
                return _errors(404, "RecordNotFound", "Record not found")
            return json_response(to_wire(record))
        if len(segments) == 2 and method == "DELETE" and resource in DELETABLE_RESOURCES:
            try:
                record = delete_record(business, resource, segments[1].lower(), truncate_to_millis(self.clock.now()))
            except SageInvalid as invalid:
                return json_response(invalid.diagnoses, invalid.status)
            self.write_log.record(org=business.id, kind=resource, object_id=record["id"], action="delete",
                                  body=to_wire(base_ref(record)))
            return Response(status=204)
        return _errors(405, "MethodNotAllowed", f"{method} is not allowed on /{'/'.join(segments)}")

    # -- lists -----------------------------------------------------------------------------------

    def _list(self, call: ApiCall, resource: str) -> Response:
        args = request.args
        rows = list(call.business.resources[resource].values())
        try:
            deleted_since = (parse_since(args["deleted_since"])
                             if args.get("deleted_since") and LIST_RESOURCES[resource] else None)
            changed_since = parse_since(args["updated_or_created_since"]) if args.get("updated_or_created_since") \
                else None
        except ValueError:
            name = "deleted_since" if args.get("deleted_since") else "updated_or_created_since"
            return _errors(422, "RecordInvalid", "is not a valid date or date-time", name)
        if deleted_since is not None:
            # Deleted rows only, strictly after the timestamp [src spec].
            deleted = [r for r in rows if r.get("deleted_at") is not None and r["deleted_at"] > deleted_since]
            return self._list_response(resource, deleted, shape=lambda r: {**base_ref(r), "deleted_at": r["deleted_at"]})
        rows = [r for r in rows if r.get("deleted_at") is None]
        if changed_since is not None:  # inclusive of the timestamp [src spec]
            rows = [r for r in rows if max(r["created_at"], r["updated_at"]) >= changed_since]
        rows = [r for r in rows if self._matches_filters(resource, r)]
        return self._list_response(resource, rows)

    @staticmethod
    def _matches_filters(resource: str, record: dict[str, Any]) -> bool:
        args = request.args

        def ref_is(field: str, param: str) -> bool:
            wanted = args.get(param)
            return not wanted or (record.get(field) or {}).get("id", "").lower() == wanted.lower()

        if resource == "contacts":
            wanted_type = args.get("contact_type_id")
            if wanted_type and wanted_type.upper() not in {t["id"] for t in record["contact_types"]}:
                return False
            term = (args.get("search") or "").lower()
            if term and term not in f"{record['name']} {record.get('reference') or ''}".lower():
                return False
            return not args.get("email") or (record.get("email") or "").lower() == args["email"].lower()
        if resource == "ledger_accounts":
            areas = [a.strip() for a in (args.get("visible_in") or "").split(",") if a.strip()]
            if any(not record.get(f"visible_in_{a}") for a in areas):
                return False
            if parse_bool(args.get("show_included_in_chart")) and not record["included_in_chart"]:
                return False
            return ref_is("ledger_account_type", "ledger_account_type_id")
        if resource in {"products", "services"} and args.get("active") not in (None, ""):
            return record["active"] == parse_bool(args.get("active"))
        if resource == "analysis_type_categories":
            return ref_is("analysis_type", "analysis_type_id")
        if resource == "attachments":
            return ref_is("attachment_context_type", "attachment_context_type_id") and ref_is(
                "attachment_context", "attachment_context_id")
        if resource in {"purchase_invoices", "purchase_quick_entries", "sales_invoices", "other_payments",
                        "contact_payments", "bank_transactions"}:
            from_date, to_date = args.get("from_date"), args.get("to_date")
            return (ref_is("contact", "contact_id") and ref_is("status", "status_id")
                    and ref_is("bank_account", "bank_account_id") and ref_is("transaction_type", "transaction_type_id")
                    and (not from_date or record["date"] >= from_date) and (not to_date or record["date"] <= to_date))
        return True

    def _list_response(self, resource: str, rows: list[dict[str, Any]],
                       shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Response:
        args = request.args
        try:
            per_page = int(args.get("items_per_page") or self.settings.default_items_per_page)
            page = int(args.get("page") or 1)
        except ValueError:
            return _errors(422, "RecordInvalid", "must be a whole number", "items_per_page")
        if per_page < 1:
            return _errors(422, "RecordInvalid", "must be at least 1", "items_per_page")
        if per_page > self.settings.max_items_per_page:
            if self.settings.items_per_page_above_max == "error":
                return _errors(422, "RecordInvalid", f"must be at most {self.settings.max_items_per_page}",
                               "items_per_page")
            per_page = self.settings.max_items_per_page
        last_page = max(1, math.ceil(len(rows) / per_page))
        page = min(max(1, page), last_page)  # a page past the end is the last page
        window = rows[(page - 1) * per_page:page * per_page]
        if shape is None:
            shape = self._attribute_shaper(args.get("attributes"))

        def link(target: int) -> str:
            query = {k: v for k, v in args.items() if k not in {"page", "items_per_page"}}
            return f"/{resource}?{urlencode({**query, 'page': target, 'items_per_page': per_page})}"

        return json_response({
            "$total": len(rows), "$page": page,
            "$next": link(page + 1) if page < last_page else None,
            "$back": link(page - 1) if page > 1 else None,
            "$itemsPerPage": per_page,
            "$items": [to_wire(shape(r)) for r in window],
        })

    @staticmethod
    def _attribute_shaper(attributes: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
        if not attributes:
            return base_ref
        if attributes.strip().lower() == "all":
            return lambda record: record
        wanted = {a.strip() for a in attributes.split(",") if a.strip()}
        return lambda record: {**base_ref(record), **{k: v for k, v in record.items() if k in wanted}}

    # -- writes ----------------------------------------------------------------------------------

    def _create(self, call: ApiCall, resource: str) -> Response:
        wrapper = WRITABLE_RESOURCES[resource]
        payload = request_json()
        raw = payload.get(wrapper) if isinstance(payload, dict) else None
        if not isinstance(raw, dict):
            return _errors(422, "RecordInvalid", f"The request body must hold a {wrapper} object", wrapper)
        key = raw.get("idempotency_id")
        if key is None:
            return self._commit(call, resource, raw, None)
        if not isinstance(key, str) or not _IDEMPOTENCY_ID.match(key):
            return _errors(422, "RecordInvalid", "must be 32 hexadecimal characters without hyphens", "idempotency_id")
        scope = (call.business.id, resource)
        canonical = json.dumps({k: v for k, v in raw.items() if k != "idempotency_id"}, sort_keys=True, default=str)
        fingerprint = (hashlib.sha256(canonical.encode()).hexdigest()
                       if self.settings.idempotency_mismatch_is_error else "any")
        try:
            return self.replay_or_run(scope, key.lower(), fingerprint, self.settings.idempotency_window_seconds,
                                      lambda: self._commit(call, resource, raw, key.lower()))
        except IdempotencyKeyReused:
            return _errors(422, "RecordInvalid", "has already been used for a different request", "idempotency_id")

    def _commit(self, call: ApiCall, resource: str, raw: dict[str, Any], key: str | None) -> Response:
        ctx = WriteContext(call.business, self.settings, truncate_to_millis(self.clock.now()))
        try:
            prepared = PREPARERS[resource](ctx, raw)
        except SageInvalid as invalid:
            return json_response(invalid.diagnoses, invalid.status)
        record = prepared.commit(call.business)
        wire = to_wire(record)
        self.write_log.record(org=call.business.id, kind=resource, object_id=record["id"], body=wire,
                              idempotency_key=key)
        return json_response(wire, 201)

    def _attachment_file(self, business: SageBusiness, attachment_id: str) -> Response:
        record = business.live("attachments", attachment_id.lower())
        content = business.attachment_content.get(attachment_id.lower())
        if record is None or content is None:
            return _errors(404, "RecordNotFound", "Record not found")
        return Response(content, status=200, content_type=record["mime_type"])

    # -- helpers for tests -----------------------------------------------------------------------

    def record_ids(self, business: str, resource: str) -> list[str]:
        """Live record ids of a business's resource, in list order."""
        with self.lock:
            return [r["id"] for r in self.business(business).resources[resource].values()
                    if r.get("deleted_at") is None]


__all__ = ["SageSettings", "SageSimulator"]
