"""The KashFlow simulator: REST v2 with the memorable-word session login.

KashFlow has no OAuth for general partners: a client logs in with a user name and password, is
asked for three random letters of the user's memorable word, and gets a session token it sends as
``Authorization: KfToken <token>`` until the session expires (then it logs in again). One login is
one company. Paths are case-insensitive, as ASP.NET's are.

Session (``reference/providers.md`` §5.2)
    ``POST /v2/sessiontoken {"UserName", "Password"}`` → 201 ``{"TemporaryToken",
    "MemorableWordList": [{"Position": n}, ...], "IsLockedOut", ...}`` (positions are 1-based,
    three distinct, random); ``PUT /v2/sessiontoken {"TemporaryToken", "MemorableWordList":
    [{"Position", "Value"}, ...]}`` → 200 ``{"SessionToken", "CompanyName", ...}``;
    ``DELETE /v2/sessiontoken/{token}`` → 204.
Lists
    bare arrays: ``GET /v2/nominals[?type&searchText]``, ``/v2/vat/settings/vatrates``,
    ``/v2/bankaccounts[?includeArchivedAccounts=true]``; paged ``{"Data": [...], "MetaData":
    {"FirstPageUrl", "LastPageUrl", "NextPageUrl", "PreviousPageUrl", "TotalRecords"}}`` with
    ``page``/``perpage`` (default 50) and ``sortby``/``order``: ``/v2/suppliers``,
    ``/v2/customers`` (``filterarchived=true`` drops archived rows), ``/v2/purchases``
    (``suppliercode``, ``projectnumber``), ``/v2/invoices`` (``customercode``), ``/v2/projects``
    (``status``), ``/v2/products``. Details: ``/v2/suppliers/{code}``, ``/v2/customers/{code}``,
    ``/v2/purchases/{number}``, ``/v2/invoices/{number}``, ``/v2/projects/{number}``. No
    incremental filter exists: clients re-list and diff by ``Code``/``Number``.
Writes (201 + the full object; **no idempotency**: a retry creates a second purchase)
    ``POST /v2/purchases`` (SupplierCode must exist; each line's NominalCode must exist and be a
    purchase nominal; VATLevel must be a configured rate; ≥1 line; PaymentLines pay from a bank
    account ``Id``), ``POST /v2/invoices`` (CustomerCode, sales nominals), ``POST /v2/suppliers``,
    ``POST /v2/customers``, and files: ``POST|GET /v2/{objectType}/{objectNumber}/files``
    (``purchases``, ``invoices``, ``suppliers``, ``customers``), ``GET …/files/{id}`` (content).
Sandbox extras
    ``POST /_sandbox/unlock {"username"}`` — :meth:`KashFlowSimulator.unlock`;
    ``POST /_sandbox/tokens`` mints a session (no consent page: KashFlow has no OAuth).

Seeded logins (one per company): ``demo`` / ``demo-password`` / memorable word ``ledgerlink`` →
"Demo Company (UK)"; ``joinery`` / ``demo-password`` / ``ledgerlink`` → the joinery company.

Settings (:class:`KashFlowSettings`):

==================================== ================ ===========================================
setting                              default          meaning
==================================== ================ ===========================================
session_ttl_seconds                  2700             UNCONFIRMED (a client re-logs every 45 min)
session_sliding_expiry               False            UNCONFIRMED: expiry counts from login
temporary_token_ttl_seconds          300              UNCONFIRMED: time to answer the letters
memorable_word_positions             3                [src]
memorable_word_case_sensitive        True             UNCONFIRMED
wrong_memorable_word_status          401              UNCONFIRMED (401 or 400)
lockout_after_failures               5                UNCONFIRMED (None: never locks)
error_format                         "modelstate"     UNCONFIRMED, see below
rate_limits_enabled                  True
rate_limit_per_minute                60               UNCONFIRMED (per company)
rate_limit_per_hour                  None             UNCONFIRMED (None: no hourly limit)
default_page_size / max_page_size    50 / 100         50 [src]; larger ``perpage`` is clamped
page_url_style                       "absolute"       UNCONFIRMED
archived_included_by_default         True             UNCONFIRMED
projects_list_shape                  "paged"          UNCONFIRMED ("bare" in one client)
nominal_type_checks                  True             purchase lines need purchase nominals [3p]
reject_archived_references           True             UNCONFIRMED
require_document_dates               True             UNCONFIRMED
file_upload_format                   "base64_json"    UNCONFIRMED, see below
file_max_bytes                       5000000          UNCONFIRMED
file_content_types                   pdf/png/jpeg/gif UNCONFIRMED
==================================== ================ ===========================================

UNCONFIRMED behaviours — each a setting; the default is the stricter choice where one is stricter:

* Session lifetime 45 minutes from login, not extended by use; the temporary token lasts 5 minutes
  and dies after one attempt (right or wrong).
* Wrong letters → 401 (``wrong_memorable_word_status``); after ``lockout_after_failures``
  consecutive failures the login is locked: ``POST /v2/sessiontoken`` answers 201 with
  ``"IsLockedOut": true`` and no temporary token (a client must read the flag) until
  :meth:`KashFlowSimulator.unlock`. Letters are compared case-sensitively.
* Error bodies (``error_format``): ``"modelstate"`` — ASP.NET Web API's ``{"Message": ...}`` and,
  for validation, ``{"Message": "The request is invalid.", "ModelState": {"LineItems[0].NominalCode":
  [...]}}`` (KashFlow's REST API is ASP.NET Web API: its Swagger lives at ``/swagger/docs/v1``);
  ``"message"`` — ``{"Message": "..."}`` only; ``"plain"`` — a text/plain body (for testing a
  client's robustness). Validation failures are 400; unknown records 404; auth failures 401.
* Rate limits are unpublished: 60 requests per rolling minute per company, 429 + ``Retry-After``.
* ``MetaData`` page URLs are absolute on the request origin (``"path"``: ``/v2/...`` only);
  ``NextPageUrl``/``PreviousPageUrl`` are ``null`` at the ends; a page past the end is empty.
* Lists include archived suppliers/customers (with ``IsArchived``) unless ``filterarchived=true``.
* Purchases and invoices need ``IssuedDate`` and ``DueDate``; archived suppliers, customers,
  nominals and bank accounts are refused; a line needs ``NominalCode`` and ``Rate`` (``Quantity``
  defaults to 1, ``VATLevel`` to the nominal's rate); a client's ``VATAmount`` is kept as sent.
* Files: the REST ``/{objectType}/{objectNumber}/files`` upload contract is not documented. The
  default ``"base64_json"`` takes the one documented attachment shape — SOAP
  ``AttachFileToReceipt``'s fields as JSON: ``{"Filename", "ContentType", "Base64String",
  "FileExtension"?, "FileSize"?}`` (a ``FileSize`` must match the decoded bytes);
  ``"multipart"`` takes ``multipart/form-data`` with one ``file`` part instead. The 201 body
  ``{"Id", "FileName", "ContentType", "Size", "UploadedDate"}`` is the simulator's choice.
* Purchase/invoice ``Status`` values (``Unpaid``, ``Overdue``, ``Paid``), ``IsArchived`` on
  suppliers/customers and ``Permalink`` pointing at the detail path are the simulator's choices.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from flask import Flask, Response, request
from pydantic import Field

from sandbox.simulators.harness import (
    FaultKind,
    FaultRule,
    LedgerSimulator,
    SimClock,
    SimulatorSettings,
    WindowLimit,
    find_named,
    find_route,
    json_response,
    match_path,
    parse_bool,
    path_is_routed,
    request_json,
    request_json_object,
    sandbox_bad_request,
)
from sandbox.simulators.kashflow_ledger import (
    KashFlowCompany,
    KashFlowLogin,
    Prepared,
    Record,
    WriteContext,
    contact_summary,
    document_view,
    fold,
    prepare_contact,
    prepare_invoice,
    prepare_purchase,
    render,
)
from sandbox.simulators.ledger_values import whole_seconds
from sandbox.simulators.seed import Dataset, Preset

SEEDED_PASSWORD = "demo-password"
SEEDED_MEMORABLE_WORD = "ledgerlink"
# Seed organisation key → login name.
SEEDED_LOGINS = {"demo-uk": "demo", "harbour-finch": "joinery"}


class KashFlowSettings(SimulatorSettings):
    session_ttl_seconds: float = Field(45 * 60, gt=0)  # UNCONFIRMED
    session_sliding_expiry: bool = False  # UNCONFIRMED
    temporary_token_ttl_seconds: float = Field(300, gt=0)  # UNCONFIRMED
    memorable_word_positions: int = Field(3, gt=0)
    memorable_word_case_sensitive: bool = True  # UNCONFIRMED
    wrong_memorable_word_status: Literal[400, 401] = 401  # UNCONFIRMED
    lockout_after_failures: int | None = Field(5, gt=0)  # UNCONFIRMED
    error_format: Literal["modelstate", "message", "plain"] = "modelstate"  # UNCONFIRMED

    rate_limits_enabled: bool = True
    rate_limit_per_minute: int = Field(60, gt=0)  # UNCONFIRMED
    rate_limit_per_hour: int | None = Field(None, gt=0)  # UNCONFIRMED

    default_page_size: int = Field(50, gt=0)
    max_page_size: int = Field(100, gt=0)  # UNCONFIRMED
    page_url_style: Literal["absolute", "path"] = "absolute"  # UNCONFIRMED
    archived_included_by_default: bool = True  # UNCONFIRMED
    projects_list_shape: Literal["paged", "bare"] = "paged"  # UNCONFIRMED

    nominal_type_checks: bool = True
    reject_archived_references: bool = True  # UNCONFIRMED
    require_document_dates: bool = True  # UNCONFIRMED
    file_upload_format: Literal["base64_json", "multipart"] = "base64_json"  # UNCONFIRMED
    file_max_bytes: int = Field(5_000_000, gt=0)  # UNCONFIRMED
    file_content_types: tuple[str, ...] = ("application/pdf", "image/png", "image/jpeg", "image/gif")


@dataclass
class PendingLogin:
    """Step one done: the temporary token and the letters it asked for."""

    username: str
    positions: tuple[int, ...]
    expires_at: datetime


@dataclass
class KashFlowSession:
    token: str
    username: str
    company_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass
class ApiCall:
    company: KashFlowCompany
    session: KashFlowSession
    params: dict[str, str]
    origin: str


Handler = Callable[[ApiCall], Response]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    pattern: tuple[str, ...]  # lower-case literals or "{name}"
    handler: Handler

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        return match_path(self.pattern, segments, ignore_case=True) if method == self.method else None


# Which object types take files, and how the object is found.
_FILE_OBJECTS = ("purchases", "invoices", "suppliers", "customers")


def _number_or_code(record: Record) -> str:
    """How a record is named in URLs and logs: documents and projects by Number, contacts by Code."""
    return str(record.get("Number") or record.get("Code"))


def _arg(name: str) -> str | None:
    """A query parameter, matched case-insensitively (ASP.NET model binding)."""
    wanted = name.lower()
    return next((value for key, value in request.args.items(multi=True) if key.lower() == wanted), None)


class KashFlowSimulator(LedgerSimulator):
    """KashFlow REST v2 on one origin. ``KashFlowSimulator(clock=None, *, auto_consent=False,
    preset="small", settings=None, fault_seed=0, data_seed=0)`` (``auto_consent`` is accepted for
    the common constructor and ignored: there is no consent step).

    Beyond the harness's control methods: ``companies`` (company id → :class:`KashFlowCompany`),
    ``company(name_or_id)``, ``logins`` (user name → :class:`KashFlowLogin`), ``sessions``,
    ``unlock(username)``, ``expire_sessions()`` and ``revoke_consent()`` (every session ends).
    """

    provider: ClassVar[str] = "kashflow"
    settings_model: ClassVar[type[SimulatorSettings]] = KashFlowSettings
    settings: KashFlowSettings

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        auto_consent: bool = False,
        preset: Preset = "small",
        settings: KashFlowSettings | None = None,
        fault_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        self.companies: dict[str, KashFlowCompany] = {}
        self.logins: dict[str, KashFlowLogin] = {}
        self.sessions: dict[str, KashFlowSession] = {}
        self._issued_session_tokens: list[str] = []  # kept after expiry, for leak tests
        self.pending: dict[str, PendingLogin] = {}
        # Which letters are asked for is random, but reproducible for a data seed.
        self._positions_rng = random.Random(f"kashflow-positions:{data_seed}")
        super().__init__(
            clock,
            auto_consent=auto_consent,
            preset=preset,
            settings=settings,
            fault_seed=fault_seed,
            data_seed=data_seed,
        )
        self._routes = self._api_routes()

    # -- data ------------------------------------------------------------------------------------

    def _load_dataset(self, dataset: Dataset) -> None:
        now = self.clock.now()
        self.companies = {}
        for seed in dataset.organisations:
            company = KashFlowCompany.from_seed(seed, now)
            self.companies[company.company_id] = company
            username = SEEDED_LOGINS.get(seed.key, seed.key)
            if username not in self.logins:  # a re-seed keeps lockouts and sessions
                self.logins[username] = KashFlowLogin(
                    username, SEEDED_PASSWORD, SEEDED_MEMORABLE_WORD, company.company_id
                )

    def organisations(self) -> list[dict[str, Any]]:
        usernames = {login.company_id: login.username for login in self.logins.values()}
        return [
            {"id": c.company_id, "name": c.name, "username": usernames.get(c.company_id)}
            for c in self.companies.values()
        ]

    def company(self, name_or_id: str) -> KashFlowCompany:
        """A company by id, (case-insensitive) name or login name."""

        def aliases(company: KashFlowCompany) -> set[str]:
            login = next((u for u, lg in self.logins.items() if lg.company_id == company.company_id), "")
            return {company.company_id, company.name.lower(), login}

        return find_named(self.companies.values(), name_or_id, aliases, "company")

    # -- sessions --------------------------------------------------------------------------------

    def _new_session(self, login: KashFlowLogin) -> KashFlowSession:
        now = self.clock.now()
        session = KashFlowSession(
            secrets.token_hex(20),
            login.username,
            login.company_id,
            now,
            now + timedelta(seconds=self.settings.session_ttl_seconds),
        )
        self.sessions[session.token] = session
        self._issued_session_tokens.append(session.token)
        return session

    def _session_body(self, session: KashFlowSession) -> dict[str, Any]:
        company = self.companies[session.company_id]
        return {
            "SessionToken": session.token,
            "CompanyName": company.name,
            "IsAdmin": True,
            "SubscriptionExpired": False,
            "SubscriptionExpiryDate": None,
            "PartnerId": 0,
            "PackageName": "KashFlow Business",
            "PartnerBrandingOptOut": False,
            "StartPageUrl": "/dashboard",
            "HasTemporaryPassword": False,
        }

    def mint_tokens(
        self, organisations: Sequence[str] | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        """Log in as the seeded user of one company (None: the first) without the two steps.
        Returns the ``PUT /v2/sessiontoken`` body plus ``UserName``, ``expires_at`` (epoch
        seconds) and ``company``. ``scope`` is ignored."""
        with self.lock:
            if organisations and len(organisations) > 1:
                raise ValueError("a KashFlow login is for one company; name only one")
            company = self.company(organisations[0]) if organisations else next(iter(self.companies.values()))
            login = next(lg for lg in self.logins.values() if lg.company_id == company.company_id)
            session = self._new_session(login)
            return {
                **self._session_body(session),
                "UserName": login.username,
                "expires_at": session.expires_at.timestamp(),
                "company": {"id": company.company_id, "name": company.name},
            }

    def issued_secrets(self) -> list[str]:
        with self.lock:
            return [*self._issued_session_tokens, *self.tokens.issued_values()]

    def revoke_consent(self, user_id: str | None = None) -> None:
        """End every session (of one login when ``user_id`` names it)."""
        with self.lock:
            for token in [t for t, s in self.sessions.items() if user_id in (None, s.username)]:
                del self.sessions[token]

    def expire_sessions(self) -> None:
        self.revoke_consent()

    def unlock(self, username: str) -> None:
        with self.lock:
            login = self.logins[username]
            login.locked_out, login.failed_attempts = False, 0

    # -- responses ---------------------------------------------------------------------------------

    def _message(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        if self.settings.error_format == "plain":
            return Response(message, status=status, content_type="text/plain; charset=utf-8", headers=headers)
        return json_response({"Message": message}, status, headers)

    def _invalid(self, problems: list[tuple[str, str]]) -> Response:
        """A 400 for failed validation, in the configured error format."""
        if self.settings.error_format == "modelstate":
            model_state: dict[str, list[str]] = {}
            for field_path, message in problems:
                model_state.setdefault(field_path, []).append(message)
            return json_response({"Message": "The request is invalid.", "ModelState": model_state}, 400)
        return self._message(400, " ".join(message for _, message in problems))

    def _not_found(self, what: str) -> Response:
        return self._message(404, f"{what} was not found.")

    def fault_response(self, rule: FaultRule) -> Response:
        if rule.kind is FaultKind.RATE_LIMIT:
            return self._message(
                429, "Too many requests. Please slow down.", {"Retry-After": str(rule.retry_after or 60)}
            )
        if rule.kind is FaultKind.SERVER_ERROR:
            return self._message(500, "An error has occurred.")
        return Response("Service Unavailable", status=503, content_type="text/plain; charset=utf-8")

    # -- routes ------------------------------------------------------------------------------------

    def _register_routes(self, app: Flask) -> None:
        app.add_url_rule(
            "/v2/<path:subpath>", "api", self._dispatch, methods=["GET", "POST", "PUT", "DELETE"]
        )
        app.add_url_rule("/_sandbox/unlock", "sandbox_unlock", self._control_unlock, methods=["POST"])

    def _control_unlock(self) -> Response:
        username = request_json_object().get("username")
        if username not in self.logins:
            return sandbox_bad_request("username must name a login")
        self.unlock(username)
        return json_response({"username": username, "locked_out": False})

    def _dispatch(self, subpath: str) -> Response:
        segments = [s for s in subpath.split("/") if s]
        if segments and segments[0].lower() == "sessiontoken":
            return self._session_endpoint(segments)
        return self._api(segments)

    # -- the two-step login --------------------------------------------------------------------------

    def _session_endpoint(self, segments: list[str]) -> Response:
        if request.method == "POST" and len(segments) == 1:
            return self._start_login()
        if request.method == "PUT" and len(segments) == 1:
            return self._finish_login()
        if request.method == "DELETE" and len(segments) == 2:
            # Logging out takes a valid session of the same login.
            current = self._session()
            if isinstance(current, Response):
                return current
            with self.lock:
                target = self.sessions.get(segments[1])
                if target is not None and target.username == current.username:
                    del self.sessions[target.token]
            return Response(status=204)
        return self._message(405, f"The requested resource does not support http method '{request.method}'.")

    def _start_login(self) -> Response:
        body = fold(request_json())
        with self.lock:
            login = self.logins.get(str(body.get("username") or "").strip().lower())
            if login is None or not secrets.compare_digest(
                login.password.encode(), str(body.get("password") or "").encode()
            ):
                return self._message(401, "The user name or password is incorrect.")
            response: dict[str, Any] = {
                "IsLockedOut": login.locked_out,
                "HasTemporaryPassword": False,
                "IsAdmin": True,
                "PackageName": "KashFlow Business",
                "PartnerId": 0,
                "PartnerBrandingOptOut": False,
                "SubscriptionExpired": False,
            }
            if login.locked_out:
                return json_response({**response, "TemporaryToken": None, "MemorableWordList": []}, 201)
            count = min(self.settings.memorable_word_positions, len(login.memorable_word))
            positions = tuple(
                sorted(self._positions_rng.sample(range(1, len(login.memorable_word) + 1), count))
            )
            temporary = secrets.token_hex(16)
            self.pending[temporary] = PendingLogin(
                login.username,
                positions,
                self.clock.now() + timedelta(seconds=self.settings.temporary_token_ttl_seconds),
            )
        return json_response(
            {
                **response,
                "TemporaryToken": temporary,
                "MemorableWordList": [{"Position": p} for p in positions],
            },
            201,
        )

    def _finish_login(self) -> Response:
        body = fold(request_json())
        with self.lock:
            # A temporary token is good for one answer, right or wrong.
            pending = self.pending.pop(str(body.get("temporarytoken") or ""), None)
            if pending is None or self.clock.now() >= pending.expires_at:
                return self._message(
                    401, "The temporary token is invalid or has expired; start the login again."
                )
            login = self.logins[pending.username]
            if login.locked_out:
                return self._message(401, "This login is locked out.")
            answers: dict[int, str] = {}
            for item in body.get("memorablewordlist") or []:
                entry = fold(item)
                try:
                    answers[int(str(entry.get("position")))] = str(entry.get("value") or "")
                except (TypeError, ValueError):
                    continue
            if not self._letters_match(login, pending.positions, answers):
                login.failed_attempts += 1
                limit = self.settings.lockout_after_failures
                if limit is not None and login.failed_attempts >= limit:
                    login.locked_out = True
                return self._message(
                    self.settings.wrong_memorable_word_status, "The memorable word characters are incorrect."
                )
            login.failed_attempts = 0
            session = self._new_session(login)
            return json_response(self._session_body(session))

    def _letters_match(
        self, login: KashFlowLogin, positions: tuple[int, ...], answers: dict[int, str]
    ) -> bool:
        if set(answers) != set(positions):
            return False
        word = login.memorable_word
        for position in positions:
            expected, given = word[position - 1], answers[position]
            if not self.settings.memorable_word_case_sensitive:
                expected, given = expected.lower(), given.lower()
            if given != expected:
                return False
        return True

    def _session(self) -> KashFlowSession | Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        denied = "Authorization has been denied for this request."
        if scheme.lower() != "kftoken" or not token.strip():
            return self._message(401, denied)
        with self.lock:
            session = self.sessions.get(token.strip())
            now = self.clock.now()
            if session is None:
                return self._message(401, denied)
            if now >= session.expires_at:
                del self.sessions[session.token]
                return self._message(401, denied)
            if self.settings.session_sliding_expiry:
                session.expires_at = now + timedelta(seconds=self.settings.session_ttl_seconds)
            return session

    # -- the API pipeline ------------------------------------------------------------------------------

    def _api(self, segments: list[str]) -> Response:
        session = self._session()
        if isinstance(session, Response):
            return session
        company = self.companies.get(session.company_id)
        if company is None:
            return self._message(401, "Authorization has been denied for this request.")
        if self.settings.rate_limits_enabled:
            checks = [(WindowLimit("minute", self.settings.rate_limit_per_minute, 60), company.company_id)]
            if self.settings.rate_limit_per_hour is not None:
                checks.append(
                    (WindowLimit("hour", self.settings.rate_limit_per_hour, 3600), company.company_id)
                )
            decision = self.rate_limiter.acquire(checks)
            if not decision.allowed:
                return self._message(
                    429,
                    "Too many requests. Please slow down.",
                    {"Retry-After": str(decision.retry_after_seconds)},
                )
        matched = find_route(self._routes, request.method, segments)
        if matched is None:
            if path_is_routed(self._routes, segments):
                return self._message(
                    405, f"The requested resource does not support http method '{request.method}'."
                )
            return self._message(
                404, f"No HTTP resource was found that matches the request URI '{request.url}'."
            )
        route, params = matched
        call = ApiCall(company, session, params, request.host_url.rstrip("/"))
        return self.run_in_flight(lambda: route.handler(call))

    def _api_routes(self) -> list[ApiRoute]:
        r = ApiRoute
        return [
            r("GET", ("nominals",), self._get_nominals),
            r("GET", ("vat", "settings", "vatrates"), self._get_vat_rates),
            r("GET", ("bankaccounts",), self._get_bank_accounts),
            r("GET", ("suppliers",), lambda c: self._get_contacts(c, c.company.suppliers)),
            r("GET", ("suppliers", "{code}"), lambda c: self._get_contact(c, c.company.supplier, "Supplier")),
            r("POST", ("suppliers",), lambda c: self._post_contact(c, "Supplier")),
            r("GET", ("customers",), lambda c: self._get_contacts(c, c.company.customers)),
            r("GET", ("customers", "{code}"), lambda c: self._get_contact(c, c.company.customer, "Customer")),
            r("POST", ("customers",), lambda c: self._post_contact(c, "Customer")),
            r("GET", ("products",), self._get_products),
            r("GET", ("projects",), self._get_projects),
            r("GET", ("projects", "{number}"), self._get_project),
            r("GET", ("purchases",), lambda c: self._get_documents(c, "purchases")),
            r("GET", ("purchases", "{number}"), lambda c: self._get_document(c, "purchases")),
            r("POST", ("purchases",), lambda c: self._post_document(c, "purchases")),
            r("GET", ("invoices",), lambda c: self._get_documents(c, "invoices")),
            r("GET", ("invoices", "{number}"), lambda c: self._get_document(c, "invoices")),
            r("POST", ("invoices",), lambda c: self._post_document(c, "invoices")),
            r("GET", ("{object}", "{number}", "files"), self._get_files),
            r("POST", ("{object}", "{number}", "files"), self._post_file),
            r("GET", ("{object}", "{number}", "files", "{file_id}"), self._get_file),
        ]

    # -- list helpers -----------------------------------------------------------------------------------

    def _paged(
        self, call: ApiCall, rows: list[Record], view: Callable[[Record], Record] = lambda r: r
    ) -> Response:
        """``{"Data", "MetaData"}`` with ``page``/``perpage`` and the four page URLs."""
        try:
            page = int(_arg("page") or 1)
            per_page = int(_arg("perpage") or self.settings.default_page_size)
        except ValueError:
            return self._invalid([("page", "page and perpage must be whole numbers.")])
        page = max(1, page)
        per_page = max(1, min(per_page, self.settings.max_page_size))
        last = max(1, math.ceil(len(rows) / per_page))
        start = (page - 1) * per_page
        base = call.origin if self.settings.page_url_style == "absolute" else ""

        def url(target: int) -> str:
            query = [
                (k, v) for k, v in request.args.items(multi=True) if k.lower() not in {"page", "perpage"}
            ]
            query += [("page", str(target)), ("perpage", str(per_page))]
            return f"{base}{request.path}?{urlencode(query)}"

        return json_response(
            {
                "Data": [render(view(r)) for r in rows[start : start + per_page]],
                "MetaData": {
                    "FirstPageUrl": url(1),
                    "LastPageUrl": url(last),
                    "NextPageUrl": url(page + 1) if page < last else None,
                    "PreviousPageUrl": url(min(page - 1, last)) if page > 1 else None,
                    "TotalRecords": len(rows),
                },
            }
        )

    def _ordered(self, rows: list[Record], default: str, allowed: Sequence[str]) -> list[Record] | Response:
        sort_by = _arg("sortby") or default
        field_name = next((name for name in allowed if name.lower() == sort_by.lower()), None)
        if field_name is None:
            return self._invalid([("sortby", f"sortby must be one of {', '.join(allowed)}.")])
        order = (_arg("order") or "Asc").lower()
        if order not in {"asc", "desc"}:
            return self._invalid([("order", "order must be Asc or Desc.")])

        def key(record: Record) -> tuple[bool, Any]:
            value = record.get(field_name)
            return value is None, value.lower() if isinstance(
                value, str
            ) else value if value is not None else 0

        return sorted(rows, key=key, reverse=order == "desc")

    # -- bare lists ---------------------------------------------------------------------------------------

    def _get_nominals(self, call: ApiCall) -> Response:
        wanted_type = (_arg("type") or "").strip().lower()
        term = (_arg("searchText") or "").strip().lower()
        rows = [
            n
            for code, n in sorted(call.company.nominals.items())
            if (not wanted_type or wanted_type in {n["Type"].lower(), n["Classification"].lower()})
            and (not term or term in f"{n['Code']} {n['Name']}".lower())
        ]
        return json_response(render(rows))

    def _get_vat_rates(self, call: ApiCall) -> Response:
        return json_response(render(call.company.vat_rates))

    def _get_bank_accounts(self, call: ApiCall) -> Response:
        include_archived = parse_bool(_arg("includeArchivedAccounts"))
        rows = [b for b in call.company.bank_accounts.values() if include_archived or not b["IsArchived"]]
        return json_response(render(rows))

    # -- suppliers and customers --------------------------------------------------------------------------

    def _get_contacts(self, call: ApiCall, store: dict[str, Record]) -> Response:
        filter_archived = _arg("filterarchived")
        drop_archived = (
            parse_bool(filter_archived)
            if filter_archived is not None
            else not self.settings.archived_included_by_default
        )
        rows = [c for c in store.values() if not (drop_archived and c["IsArchived"])]
        ordered = self._ordered(
            rows, "Code", ("Code", "Name", "CreatedDate", "LastUpdatedDate", "OutstandingBalance")
        )
        return ordered if isinstance(ordered, Response) else self._paged(call, ordered, contact_summary)

    def _get_contact(self, call: ApiCall, lookup: Callable[[Any], Record | None], what: str) -> Response:
        contact = lookup(call.params["code"])
        return (
            json_response(render(contact)) if contact else self._not_found(f"{what} '{call.params['code']}'")
        )

    def _post_contact(self, call: ApiCall, kind: str) -> Response:
        return self._create(
            call, prepare_contact(self._write_context(call), request_json(), kind=kind), lambda r: r
        )

    # -- products and projects ------------------------------------------------------------------------------

    def _get_products(self, call: ApiCall) -> Response:
        ordered = self._ordered(list(call.company.products.values()), "Code", ("Code", "Name", "Price"))
        return ordered if isinstance(ordered, Response) else self._paged(call, ordered)

    def _get_projects(self, call: ApiCall) -> Response:
        status = (_arg("status") or "").strip().lower()
        customer = (_arg("customerCode") or "").strip().upper()
        rows = [
            p
            for _, p in sorted(call.company.projects.items())
            if (not status or p["Status"].lower() == status)
            and (not customer or (p["CustomerCode"] or "") == customer)
        ]
        if self.settings.projects_list_shape == "bare":
            return json_response(render(rows))
        ordered = self._ordered(rows, "Number", ("Number", "Name", "Reference", "Status"))
        return ordered if isinstance(ordered, Response) else self._paged(call, ordered)

    def _get_project(self, call: ApiCall) -> Response:
        number = call.params["number"]
        project = call.company.projects.get(int(number)) if number.isdigit() else None
        return json_response(render(project)) if project else self._not_found(f"Project {number}")

    # -- purchases and invoices -------------------------------------------------------------------------------

    def _documents(self, company: KashFlowCompany, object_type: str) -> dict[int, Record]:
        return company.purchases if object_type == "purchases" else company.invoices

    def _get_documents(self, call: ApiCall, object_type: str) -> Response:
        party_field = "SupplierCode" if object_type == "purchases" else "CustomerCode"
        party = (_arg(party_field) or "").strip().upper()
        project = _arg("projectnumber")
        rows = [
            d
            for d in self._documents(call.company, object_type).values()
            if (not party or d[party_field] == party)
            and (
                not project
                or str(d["ProjectNumber"]) == project
                or any(str(line["ProjectNumber"]) == project for line in d["LineItems"])
            )
        ]
        ordered = self._ordered(
            rows,
            "Number",
            ("Number", party_field, "IssuedDate", "DueDate", "GrossAmount", "NetAmount", "PaidDate"),
        )
        if isinstance(ordered, Response):
            return ordered
        today = self.clock.today()
        return self._paged(
            call, ordered, lambda d: document_view(d, today, call.origin, object_type, summary=True)
        )

    def _get_document(self, call: ApiCall, object_type: str) -> Response:
        number = call.params["number"]
        document = self._documents(call.company, object_type).get(int(number)) if number.isdigit() else None
        if document is None:
            return self._not_found(f"{object_type[:-1].capitalize()} {number}")
        return json_response(render(document_view(document, self.clock.today(), call.origin, object_type)))

    def _post_document(self, call: ApiCall, object_type: str) -> Response:
        prepare = prepare_purchase if object_type == "purchases" else prepare_invoice
        today = self.clock.today()
        return self._create(
            call,
            prepare(self._write_context(call), request_json()),
            lambda d: document_view(d, today, call.origin, object_type),
        )

    # -- writes -----------------------------------------------------------------------------------------------

    def _write_context(self, call: ApiCall) -> WriteContext:
        return WriteContext(call.company, self.settings, self.clock.today())

    def _create(self, call: ApiCall, prepared: Prepared, view: Callable[[Record], Record]) -> Response:
        """Apply a validated write and log it. No idempotency: every call creates a new object."""
        if not prepared.ok:
            return self._invalid(prepared.problems)
        assert prepared.apply is not None
        record = prepared.apply(whole_seconds(self.clock.now()))
        wire = render(view(record))
        self.write_log.record(
            org=call.company.company_id, kind=prepared.kind, object_id=_number_or_code(wire), body=wire
        )
        return json_response(wire, 201)

    # -- files --------------------------------------------------------------------------------------------------

    def _file_owner(self, call: ApiCall) -> tuple[tuple[str, str], Record] | Response:
        """The record a files path names, with the key its files are stored under."""
        object_type, number = call.params["object"].lower(), call.params["number"]
        company = call.company
        owner: Record | None = None
        if object_type in ("purchases", "invoices") and number.isdigit():
            owner = self._documents(company, object_type).get(int(number))
        elif object_type == "suppliers":
            owner = company.supplier(number)
        elif object_type == "customers":
            owner = company.customer(number)
        elif object_type not in _FILE_OBJECTS:
            return self._message(404, f"Files are not supported on '{call.params['object']}'.")
        if owner is None:
            return self._not_found(f"{object_type[:-1].capitalize()} {number}")
        return (object_type, _number_or_code(owner)), owner

    def _get_files(self, call: ApiCall) -> Response:
        owner = self._file_owner(call)
        if isinstance(owner, Response):
            return owner
        key, _ = owner
        return json_response(render(call.company.files.get(key, [])))

    def _get_file(self, call: ApiCall) -> Response:
        owner = self._file_owner(call)
        if isinstance(owner, Response):
            return owner
        key, _ = owner
        wanted = call.params["file_id"]
        found = next((f for f in call.company.files.get(key, []) if str(f["Id"]) == wanted), None)
        if found is None:
            return self._not_found(f"File {wanted}")
        return Response(call.company.file_content[found["Id"]], status=200, content_type=found["ContentType"])

    def _read_upload(self) -> tuple[str, str, bytes] | list[tuple[str, str]]:
        """The uploaded file as (name, content type, bytes), or validation problems."""
        if self.settings.file_upload_format == "multipart":
            upload = request.files.get("file")
            if upload is None or not upload.filename:
                return [("file", "Send the file as multipart/form-data in a part named 'file'.")]
            return upload.filename, (upload.mimetype or "").lower(), upload.read()
        body = fold(request_json())
        problems: list[tuple[str, str]] = []
        name = str(body.get("filename") or "").strip()
        content_type = str(body.get("contenttype") or "").strip().lower()
        if not name:
            problems.append(("Filename", "The Filename field is required."))
        try:
            content = base64.b64decode(str(body.get("base64string") or ""), validate=True)
        except (binascii.Error, ValueError):
            content = b""
        if not content:
            problems.append(("Base64String", "Base64String must hold the file's bytes, base64-encoded."))
        size = body.get("filesize")
        if size not in (None, "") and str(size) != str(len(content)):
            problems.append(("FileSize", f"FileSize {size} does not match the {len(content)} bytes sent."))
        extension = str(body.get("fileextension") or "").strip().lstrip(".").lower()
        if extension and not name.lower().endswith(f".{extension}"):
            problems.append(
                ("FileExtension", f"FileExtension '{extension}' does not match Filename '{name}'.")
            )
        return problems or (name, content_type, content)

    def _post_file(self, call: ApiCall) -> Response:
        owner = self._file_owner(call)
        if isinstance(owner, Response):
            return owner
        key, record = owner
        upload = self._read_upload()
        if isinstance(upload, list):
            return self._invalid(upload)
        name, content_type, content = upload
        problems = []
        if content_type not in self.settings.file_content_types:
            problems.append(
                (
                    "ContentType",
                    f"Content type '{content_type or '(none)'}' is not allowed; use one of "
                    f"{', '.join(self.settings.file_content_types)}.",
                )
            )
        if len(content) > self.settings.file_max_bytes:
            problems.append(
                (
                    "Base64String",
                    f"The file is {len(content)} bytes; the limit is {self.settings.file_max_bytes}.",
                )
            )
        if problems:
            return self._invalid(problems)
        company, now = call.company, whole_seconds(self.clock.now())
        file_id = company.next_id("files", 800)
        stored: Record = {
            "Id": file_id,
            "FileName": name,
            "ContentType": content_type,
            "Size": len(content),
            "UploadedDate": now,
        }
        company.files.setdefault(key, []).append(stored)
        company.file_content[file_id] = content
        if "FileCount" in record:
            record["FileCount"] += 1
            record["LastUpdatedDate"] = now
        wire = render(stored)
        self.write_log.record(
            org=company.company_id,
            kind="File",
            object_id=str(file_id),
            body={**wire, "ObjectType": key[0], "ObjectNumber": key[1]},
        )
        return json_response(wire, 201)


__all__ = ["SEEDED_MEMORABLE_WORD", "SEEDED_PASSWORD", "KashFlowSettings", "KashFlowSimulator"]
