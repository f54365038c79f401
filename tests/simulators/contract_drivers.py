"""Drivers for the cross-ledger simulator contract (``test_simulator_contract.py``).

A driver knows how to do the few things the contract needs on ONE ledger — connect, renew the
credential, make a cheap rate-counted call, page a list to the end, change a record and ask for
changes since a stamp, send an invalid write — in that ledger's own way, through the per-ledger
test helpers and the simulator's in-process transport. It also states what the ledger is expected
to answer, taken from ``reference/providers.md`` (§1 to §6): where the reference is firm the value
is written here as a constant; where it is UNCONFIRMED (and the simulator has a setting for it)
the expectation is read from the simulator's settings.

Drivers do not assert the contract; the test functions do, once for every ledger.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import freeagent_sim_helpers as fa
import httpx
import kashflow_sim_helpers as kf
import qbo_sim_helpers as qbo
import sage_sim_helpers as sage
import xero_sim_helpers as xero

from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.harness import LedgerSimulator, SimClock
from sandbox.simulators.kashflow import KashFlowSimulator
from sandbox.simulators.quickbooks import QuickBooksSimulator
from sandbox.simulators.sage import SageSimulator
from sandbox.simulators.xero import XeroSimulator

Row = dict[str, Any]
DEMO = "Demo Company (UK)"
# The contract's new record: a supplier every ledger can create with just a name.
NEW_SUPPLIER = "Quayside Paper Co"


@dataclass(frozen=True)
class Credentials:
    """What API calls carry (``access``) and what renews it (``renewal``: a refresh token, or for
    KashFlow the session token itself — a KashFlow session is renewed by logging in again)."""

    access: str
    renewal: str


def json_or_text(response: httpx.Response) -> Any:
    """The body as JSON when it is JSON, else as text."""
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return response.json()
    return response.text


class LedgerDriver(ABC):
    """The contract's view of one ledger simulator. Subclasses set the ledger facts and
    implement the operations; ``settings`` change the simulator's settings first."""

    name: ClassVar[str]
    base_url: ClassVar[str]

    # -- facts from the reference (a subclass may compute them from the simulator's settings) ----
    # (1) How long a superseded credential keeps working after the renewal (math.inf: for ever).
    refresh_grace_seconds: float
    # (1) What presenting a dead credential gets: (HTTP status, error code or message).
    refused: tuple[int, str]
    # (2) Calls allowed per rate window, the window, and what the 429 carries (see ``throttle_signature``).
    rate_limit: int
    rate_window_seconds: int = 60
    throttle: dict[str, Any]
    # (4) True: the incremental filter includes a record changed exactly at the stamp; False:
    # strictly later only; None: the ledger has no incremental filter (the parameter is ignored).
    since_inclusive: bool | None
    # (5) What the invalid write gets (see ``validation_signature``).
    validation: dict[str, Any]

    def __init__(self, clock: SimClock, **settings: Any) -> None:
        self.sim = self.make_simulator(clock)
        if settings:
            self.sim.update_settings(**settings)
        self.http = httpx.Client(transport=self.sim.transport(), base_url=self.base_url)

    def close(self) -> None:
        self.http.close()

    @abstractmethod
    def make_simulator(self, clock: SimClock) -> LedgerSimulator: ...

    # -- (1) credentials ---------------------------------------------------------------------------

    @abstractmethod
    def connect(self) -> Credentials:
        """A fresh connection to the Demo Company."""

    @abstractmethod
    def renew(self, credentials: Credentials) -> httpx.Response:
        """Renew ``credentials`` (refresh grant; KashFlow: log in again); the ledger's response."""

    @abstractmethod
    def renewed(self, response: httpx.Response) -> Credentials:
        """The credentials a successful ``renew`` response carries."""

    @abstractmethod
    def present_previous(self, previous: Credentials) -> httpx.Response:
        """Use a superseded credential the way the ledger checks it (refresh grant with the old
        refresh token; KashFlow: an API call on the old session)."""

    @abstractmethod
    def refusal(self, response: httpx.Response) -> tuple[int, str]:
        """``(status, error code or message)`` of a refused credential."""

    # -- (2) rate limits ---------------------------------------------------------------------------

    @abstractmethod
    def call(self, credentials: Credentials) -> httpx.Response:
        """A cheap API call that counts against the rate limit."""

    @abstractmethod
    def throttle_signature(self, response: httpx.Response) -> dict[str, Any]:
        """The ledger-specific parts of a 429 (headers, body) to compare with ``throttle``."""

    # -- (3) paging --------------------------------------------------------------------------------

    @abstractmethod
    def pages(self, credentials: Credentials, page_size: int) -> list[list[Row]]:
        """The supplier/contact list, page by page in the ledger's own style, to the end."""

    @abstractmethod
    def row_id(self, row: Row) -> str: ...

    @abstractmethod
    def whole_list(self) -> set[str]:
        """The ids of every row that list holds, read from the simulator's state."""

    # -- (4) incremental ---------------------------------------------------------------------------

    @abstractmethod
    def touch(self, credentials: Credentials) -> tuple[str, str]:
        """Create a supplier through the API; its id and the change stamp the ledger reports."""

    @abstractmethod
    def stamp(self, moment: datetime) -> str:
        """``moment`` written the way a client sends the ledger's incremental filter."""

    @abstractmethod
    def changed_since(self, credentials: Credentials, stamp: str) -> set[str]:
        """The ids the ledger's incremental list returns for ``stamp`` (every page)."""

    # -- (5) validation ----------------------------------------------------------------------------

    @abstractmethod
    def post_invalid(self, credentials: Credentials) -> httpx.Response:
        """A purchase bill whose one line names an expense account that does not exist."""

    @abstractmethod
    def validation_signature(self, response: httpx.Response) -> dict[str, Any]:
        """The parts of a validation error to compare with ``validation``."""


class OAuthDriver(LedgerDriver):
    """The four OAuth ledgers: renewal is the refresh grant; a dead refresh token is
    ``400 invalid_grant``."""

    token_path: ClassVar[str]
    refused = (400, "invalid_grant")

    def renewed(self, response: httpx.Response) -> Credentials:
        body = response.json()
        return Credentials(body["access_token"], body["refresh_token"])

    def present_previous(self, previous: Credentials) -> httpx.Response:
        return self.renew(previous)

    def refusal(self, response: httpx.Response) -> tuple[int, str]:
        return response.status_code, json_or_text(response).get("error")


# --------------------------------------------------------------------------------------------
# Xero (§1, §6.2)
# --------------------------------------------------------------------------------------------


class XeroDriver(OAuthDriver):
    name = "xero"
    base_url = xero.BASE_URL
    refresh_grace_seconds = 30 * 60  # §1.1: the previous refresh token works 30 minutes
    rate_limit = 60  # §1.7: 60/minute per app and tenant
    # §1.7/§6.2: 429 + Retry-After + X-Rate-Limit-Problem, and the three X-*Limit-Remaining headers on
    # every response (the calls were all made at one instant: the window frees in 60 s).
    throttle = {"Retry-After": "60", "X-Rate-Limit-Problem": "minute", "X-MinLimit-Remaining": "0",
                "X-DayLimit-Remaining": str(5000 - 60), "X-AppMinLimit-Remaining": str(10_000 - 60)}
    since_inclusive = False  # §1.4/§6.2: If-Modified-Since returns rows updated strictly later
    validation = {"status": 400, "ErrorNumber": 10, "Type": "ValidationException",
                  "Message": "A validation exception occurred",
                  "ValidationErrors": ["Account code '999' is not a valid code for this document."]}

    sim: XeroSimulator

    def make_simulator(self, clock: SimClock) -> XeroSimulator:
        return XeroSimulator(clock, auto_consent=True)

    def api(self, credentials: Credentials) -> xero.XeroApi:
        tenant_id = self.sim.org(DEMO).tenant_id
        return xero.XeroApi(self.http, credentials.access, tenant_id)

    def connect(self) -> Credentials:
        tokens = self.sim.mint_tokens([DEMO])
        return Credentials(tokens["access_token"], tokens["refresh_token"])

    def renew(self, credentials: Credentials) -> httpx.Response:
        return xero.refresh(self.http, credentials.renewal)

    def call(self, credentials: Credentials) -> httpx.Response:
        return self.api(credentials).get("Organisation")

    def throttle_signature(self, response: httpx.Response) -> dict[str, Any]:
        return {name: response.headers.get(name) for name in self.throttle}

    def pages(self, credentials: Credentials, page_size: int) -> list[list[Row]]:
        return self.api(credentials).pages("Contacts", "Contacts", page_size, includeArchived="true")

    def row_id(self, row: Row) -> str:
        return str(row["ContactID"])

    def whole_list(self) -> set[str]:
        return {c["ContactID"] for c in self.sim.org(DEMO).contacts.values()}

    def touch(self, credentials: Credentials) -> tuple[str, str]:
        response = self.api(credentials).put("Contacts", json={"Contacts": [{"Name": NEW_SUPPLIER}]})
        assert response.status_code == 200, response.text
        [contact] = response.json()["Contacts"]
        return contact["ContactID"], contact["UpdatedDateUTC"]

    def stamp(self, moment: datetime) -> str:
        return format_datetime(moment, usegmt=True)  # an HTTP date, as the header takes

    def changed_since(self, credentials: Credentials, stamp: str) -> set[str]:
        pages = self.api(credentials).pages("Contacts", "Contacts", 100, includeArchived="true",
                                            headers={"If-Modified-Since": stamp})
        return {self.row_id(row) for page in pages for row in page}

    def post_invalid(self, credentials: Credentials) -> httpx.Response:
        supplier = next(c["ContactID"] for c in self.sim.org(DEMO).contacts.values()
                        if c["ContactStatus"] == "ACTIVE" and c["IsSupplier"])
        body = xero.bill(supplier, line={"AccountCode": "999"})
        return self.api(credentials).put("Invoices", json={"Invoices": [body]})

    def validation_signature(self, response: httpx.Response) -> dict[str, Any]:
        body = json_or_text(response)
        if not isinstance(body, dict):
            return {"status": response.status_code, "body": body}
        return {"status": response.status_code, "ErrorNumber": body.get("ErrorNumber"), "Type": body.get("Type"),
                "Message": body.get("Message"),
                "ValidationErrors": [e["Message"] for element in body.get("Elements", [])
                                     for e in element.get("ValidationErrors", [])]}


# --------------------------------------------------------------------------------------------
# QuickBooks Online (§2, §6.3)
# --------------------------------------------------------------------------------------------


class QuickBooksDriver(OAuthDriver):
    name = "quickbooks"
    base_url = qbo.QBO_URL
    refresh_grace_seconds = 24 * 60 * 60  # §2.1: the previous token works 24 h after a newer one
    rate_limit = 500  # §2.6: 500 requests/minute per app and realm
    since_inclusive = True  # §2.3: WHERE MetaData.LastUpdatedTime >= '…' (the documented incremental query)
    validation = {"status": 400, "type": "ValidationFault", "code": "2500",
                  "Error keys": ["Detail", "Message", "code", "element"]}
    VENDORS = "SELECT * FROM Vendor WHERE Active IN (true,false)"

    sim: QuickBooksSimulator

    @property
    def throttle(self) -> dict[str, Any]:
        # §2.6: Fault code 003001 "ThrottleExceeded"; Retry-After is UNCONFIRMED (a setting, none by default).
        retry_after = self.sim.settings.throttle_retry_after_seconds
        return {"type": "ValidationFault", "Message": "ThrottleExceeded", "code": "003001",
                "Retry-After": None if retry_after is None else str(retry_after)}

    def make_simulator(self, clock: SimClock) -> QuickBooksSimulator:
        return QuickBooksSimulator(clock, auto_consent=True)

    @property
    def realm_id(self) -> str:
        return self.sim.company(DEMO).realm_id

    def api(self, credentials: Credentials) -> qbo.QboApi:
        return qbo.QboApi(self.http, credentials.access, self.realm_id)

    def connect(self) -> Credentials:
        tokens = self.sim.mint_tokens([DEMO])
        return Credentials(tokens["access_token"], tokens["refresh_token"])

    def renew(self, credentials: Credentials) -> httpx.Response:
        return qbo.refresh(self.http, credentials.renewal)

    def call(self, credentials: Credentials) -> httpx.Response:
        return self.api(credentials).get("preferences")

    def throttle_signature(self, response: httpx.Response) -> dict[str, Any]:
        fault = json_or_text(response)["Fault"]
        [error] = fault["Error"]
        return {"type": fault["type"], "Message": error["Message"], "code": error["code"],
                "Retry-After": response.headers.get("Retry-After")}

    def pages(self, credentials: Credentials, page_size: int) -> list[list[Row]]:
        return self.api(credentials).pages(self.VENDORS, "Vendor", page_size)

    def row_id(self, row: Row) -> str:
        return str(row["Id"])

    def whole_list(self) -> set[str]:
        return {v["Id"] for v in self.sim.company(DEMO).entities["Vendor"].values()}

    def touch(self, credentials: Credentials) -> tuple[str, str]:
        response = self.api(credentials).post("vendor", json={"DisplayName": NEW_SUPPLIER})
        assert response.status_code == 200, response.text
        vendor = response.json()["Vendor"]
        return vendor["Id"], vendor["MetaData"]["LastUpdatedTime"]

    def stamp(self, moment: datetime) -> str:
        # Intuit's timestamps carry the server's offset (§2.7; the simulator's server_timezone).
        return moment.astimezone(ZoneInfo(self.sim.settings.server_timezone)).isoformat(timespec="seconds")

    def changed_since(self, credentials: Credentials, stamp: str) -> set[str]:
        statement = f"{self.VENDORS} AND MetaData.LastUpdatedTime >= '{stamp}'"
        pages = self.api(credentials).pages(statement, "Vendor", 1000)
        return {self.row_id(row) for page in pages for row in page}

    def post_invalid(self, credentials: Credentials) -> httpx.Response:
        return self.api(credentials).post("bill", json=qbo.bill(self.sim, self.realm_id,
                                                                  detail={"AccountRef": {"value": "9999"}}))

    def validation_signature(self, response: httpx.Response) -> dict[str, Any]:
        body = json_or_text(response)
        if not isinstance(body, dict) or "Fault" not in body:
            return {"status": response.status_code, "body": body}
        [error] = body["Fault"]["Error"]
        return {"status": response.status_code, "type": body["Fault"]["type"], "code": error["code"],
                "Error keys": sorted(error)}


# --------------------------------------------------------------------------------------------
# Sage Business Cloud Accounting v3.1 (§3, §6.4)
# --------------------------------------------------------------------------------------------


class SageDriver(OAuthDriver):
    name = "sage"
    base_url = sage.SAGE_URL
    refresh_grace_seconds = 0  # §6.4: refresh tokens are strictly single use
    since_inclusive = True  # §3.3: updated_or_created_since is inclusive
    DIAGNOSIS_KEYS: ClassVar[list[str]] = ["$dataCode", "$message", "$severity", "$source"]
    validation = {"status": 422, "keys": [DIAGNOSIS_KEYS], "$severity": ["error"],
                  "$dataCode": ["RecordInvalid"], "$source": ["invoice_lines.ledger_account_id"]}

    sim: SageSimulator

    @property
    def rate_limit(self) -> int:
        return self.sim.settings.minute_limit  # §3.6: UNCONFIRMED (100/min [3p]); a setting

    @property
    def throttle(self) -> dict[str, Any]:
        # §3.6: 429 with Sage's diagnosis array; Retry-After is UNCONFIRMED (a setting, none by default).
        retry_after = self.sim.settings.retry_after_seconds
        return {"keys": [self.DIAGNOSIS_KEYS], "$dataCode": ["TooManyRequests"],
                "Retry-After": None if retry_after is None else str(retry_after)}

    def make_simulator(self, clock: SimClock) -> SageSimulator:
        return SageSimulator(clock, auto_consent=True)

    def api(self, credentials: Credentials) -> sage.SageApi:
        return sage.SageApi(self.http, credentials.access, self.sim.business(DEMO).id)

    def connect(self) -> Credentials:
        tokens = self.sim.mint_tokens([DEMO])
        return Credentials(tokens["access_token"], tokens["refresh_token"])

    def renew(self, credentials: Credentials) -> httpx.Response:
        return sage.refresh(self.http, credentials.renewal)

    def call(self, credentials: Credentials) -> httpx.Response:
        return self.api(credentials).get("financial_settings")

    def throttle_signature(self, response: httpx.Response) -> dict[str, Any]:
        body = json_or_text(response)
        return {"keys": [sorted(d) for d in body], "$dataCode": [d["$dataCode"] for d in body],
                "Retry-After": response.headers.get("Retry-After")}

    def pages(self, credentials: Credentials, page_size: int) -> list[list[Row]]:
        return self.api(credentials).pages("contacts", items_per_page=page_size)

    def row_id(self, row: Row) -> str:
        return str(row["id"])

    def whole_list(self) -> set[str]:
        contacts = self.sim.business(DEMO).resources["contacts"].values()
        return {c["id"] for c in contacts if c["deleted_at"] is None}

    def touch(self, credentials: Credentials) -> tuple[str, str]:
        response = self.api(credentials).post("contacts", json={"contact": {
            "name": NEW_SUPPLIER, "contact_type_ids": ["VENDOR"], "reference": "QPC"}})
        assert response.status_code == 201, response.text
        contact = response.json()
        return contact["id"], contact["updated_at"]

    def stamp(self, moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def changed_since(self, credentials: Credentials, stamp: str) -> set[str]:
        pages = self.api(credentials).pages("contacts", items_per_page=200, updated_or_created_since=stamp)
        return {self.row_id(row) for page in pages for row in page}

    def post_invalid(self, credentials: Credentials) -> httpx.Response:
        body = sage.purchase_invoice(sage.ids(self.sim, DEMO), line={"ledger_account_id": "f" * 32})
        return self.api(credentials).post("purchase_invoices", json=body)

    def validation_signature(self, response: httpx.Response) -> dict[str, Any]:
        body = json_or_text(response)
        if not isinstance(body, list):
            return {"status": response.status_code, "body": body}
        return {"status": response.status_code, "keys": [sorted(d) for d in body],
                **{key: [d[key] for d in body] for key in ("$severity", "$dataCode", "$source")}}


# --------------------------------------------------------------------------------------------
# FreeAgent (§4, §6.5)
# --------------------------------------------------------------------------------------------


class FreeAgentDriver(OAuthDriver):
    name = "freeagent"
    base_url = fa.BASE_URL
    rate_limit = 120  # §4.4: 120 requests/minute per user
    throttle = {"Retry-After": "60", "Content-Type": "text/plain; charset=utf-8",
                "body": "You must not exceed 120 requests per 60 seconds"}

    sim: FreeAgentSimulator

    @property
    def refresh_grace_seconds(self) -> float:
        # §4.1: whether the previous refresh token keeps working is UNCONFIRMED: per the settings.
        settings = self.sim.settings
        return math.inf if settings.superseded_refresh_token_keeps_working else settings.refresh_token_grace_seconds

    @property
    def since_inclusive(self) -> bool:
        return self.sim.settings.updated_since_inclusive  # UNCONFIRMED: a setting (strictly later by default)

    @property
    def validation(self) -> dict[str, Any]:
        # §4.4: 422 {"errors":{"error":{"message":…}}} [src]; the array form [3p] is a setting.
        message = {"message": f"Bill item 1: Category {fa.BASE_URL}/v2/categories/999 does not exist"}
        errors = [message] if self.sim.settings.error_format == "array" else {"error": message}
        return {"status": 422, "body": {"errors": errors}}

    def make_simulator(self, clock: SimClock) -> FreeAgentSimulator:
        return fa.new_simulator(clock)

    def __init__(self, clock: SimClock, **settings: Any) -> None:
        super().__init__(clock, **settings)
        self.http.headers["User-Agent"] = fa.USER_AGENT  # FreeAgent requires one

    def api(self, credentials: Credentials) -> fa.FreeAgentApi:
        return fa.FreeAgentApi(self.http, credentials.access)

    def connect(self) -> Credentials:
        tokens = fa.connect(self.http)  # approve_app (auto-consent) → code → tokens
        return Credentials(tokens["access_token"], tokens["refresh_token"])

    def renew(self, credentials: Credentials) -> httpx.Response:
        return fa.refresh(self.http, credentials.renewal)

    def call(self, credentials: Credentials) -> httpx.Response:
        return self.api(credentials).get("company")

    def throttle_signature(self, response: httpx.Response) -> dict[str, Any]:
        return {"Retry-After": response.headers.get("Retry-After"),
                "Content-Type": response.headers.get("Content-Type"), "body": response.text}

    def pages(self, credentials: Credentials, page_size: int) -> list[list[Row]]:
        return self.api(credentials).pages("contacts", "contacts", view="all", per_page=page_size)

    def row_id(self, row: Row) -> str:
        return str(row["url"])

    def whole_list(self) -> set[str]:
        company = self.sim.company(DEMO)
        return {f"{fa.BASE_URL}{c['url']}" for c in company.contacts.values()}

    def touch(self, credentials: Credentials) -> tuple[str, str]:
        response = self.api(credentials).post("contacts", json={"contact": {"organisation_name": NEW_SUPPLIER}})
        assert response.status_code == 201, response.text
        contact = response.json()["contact"]
        return contact["url"], contact["updated_at"]

    def stamp(self, moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def changed_since(self, credentials: Credentials, stamp: str) -> set[str]:
        pages = self.api(credentials).pages("contacts", "contacts", view="all", per_page=100, updated_since=stamp)
        return {self.row_id(row) for page in pages for row in page}

    def post_invalid(self, credentials: Credentials) -> httpx.Response:
        api = self.api(credentials)
        supplier = next(c["url"] for c in self.sim.company(DEMO).contacts.values() if c["status"] == "Active")
        body = fa.bill(api, f"{fa.BASE_URL}{supplier}", item={"category": api.url("categories/999")})
        return api.post("bills", json=body)

    def validation_signature(self, response: httpx.Response) -> dict[str, Any]:
        return {"status": response.status_code, "body": json_or_text(response)}


# --------------------------------------------------------------------------------------------
# KashFlow REST v2 (§5, §6.6)
# --------------------------------------------------------------------------------------------


class KashFlowDriver(LedgerDriver):
    """No OAuth: a credential is a session; renewing it is logging in again (the two-step
    memorable-word login), and a session dies when its lifetime (a setting) runs out."""

    name = "kashflow"
    base_url = kf.BASE_URL
    refused = (401, "Authorization has been denied for this request.")
    since_inclusive = None  # §5.3: no incremental filter in REST — re-list and diff
    # What a client might try as a REST incremental filter (the SOAP call is GetCustomersModifiedSince).
    SINCE_PARAMETERS = ("ModifiedSince", "updated_since")

    sim: KashFlowSimulator

    @property
    def refresh_grace_seconds(self) -> float:
        # §6.6: session expiry configurable. Sessions renewed at once, so this counts from login too.
        return self.sim.settings.session_ttl_seconds

    @property
    def rate_limit(self) -> int:
        return self.sim.settings.rate_limit_per_minute  # §5.4: unpublished (UNCONFIRMED); a setting

    @property
    def throttle(self) -> dict[str, Any]:
        return {"Retry-After": "60", "body": self._body("Too many requests. Please slow down.")}

    @property
    def validation(self) -> dict[str, Any]:
        # §5.4: REST error body UNCONFIRMED — the configured format (ASP.NET ModelState by default).
        message = "Nominal code 9999 does not exist."
        if self.sim.settings.error_format == "modelstate":
            body: Any = {"Message": "The request is invalid.", "ModelState": {"LineItems[0].NominalCode": [message]}}
        else:
            body = self._body(message)
        return {"status": 400, "body": body}

    def _body(self, message: str) -> Any:
        """A plain message in the configured error format."""
        return message if self.sim.settings.error_format == "plain" else {"Message": message}

    def make_simulator(self, clock: SimClock) -> KashFlowSimulator:
        return kf.new_simulator(clock)

    def api(self, credentials: Credentials) -> kf.KashFlowApi:
        return kf.KashFlowApi(self.http, credentials.access)

    def connect(self) -> Credentials:
        session = kf.login(self.http)
        return Credentials(session, session)

    def renew(self, credentials: Credentials) -> httpx.Response:
        started = kf.start_login(self.http)
        assert started.status_code == 201, started.text
        return kf.answer(self.http, started.json())

    def renewed(self, response: httpx.Response) -> Credentials:
        session = response.json()["SessionToken"]
        return Credentials(session, session)

    def present_previous(self, previous: Credentials) -> httpx.Response:
        return self.call(previous)

    def refusal(self, response: httpx.Response) -> tuple[int, str]:
        body = json_or_text(response)
        return response.status_code, body["Message"] if isinstance(body, dict) else body

    def call(self, credentials: Credentials) -> httpx.Response:
        return self.api(credentials).get("vat/settings/vatrates")

    def throttle_signature(self, response: httpx.Response) -> dict[str, Any]:
        return {"Retry-After": response.headers.get("Retry-After"), "body": json_or_text(response)}

    def pages(self, credentials: Credentials, page_size: int) -> list[list[Row]]:
        return self.api(credentials).pages("suppliers", perpage=page_size)

    def row_id(self, row: Row) -> str:
        return str(row["Code"])

    def whole_list(self) -> set[str]:
        return {s["Code"] for s in self.sim.company(DEMO).suppliers.values()}

    def touch(self, credentials: Credentials) -> tuple[str, str]:
        response = self.api(credentials).post("suppliers", json={"Name": NEW_SUPPLIER})
        assert response.status_code == 201, response.text
        supplier = response.json()
        return supplier["Code"], supplier["LastUpdatedDate"]

    def stamp(self, moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S")  # §5.4's date format

    def changed_since(self, credentials: Credentials, stamp: str) -> set[str]:
        params = dict.fromkeys(self.SINCE_PARAMETERS, stamp)
        pages = self.api(credentials).pages("suppliers", perpage=100, **params)
        return {self.row_id(row) for page in pages for row in page}

    def post_invalid(self, credentials: Credentials) -> httpx.Response:
        supplier = next(s["Code"] for s in self.sim.company(DEMO).suppliers.values() if not s["IsArchived"])
        return self.api(credentials).post("purchases", json=kf.purchase(supplier, line={"NominalCode": 9999}))

    def validation_signature(self, response: httpx.Response) -> dict[str, Any]:
        return {"status": response.status_code, "body": json_or_text(response)}


DRIVERS: dict[str, type[LedgerDriver]] = {
    driver.name: driver for driver in (XeroDriver, QuickBooksDriver, SageDriver, FreeAgentDriver, KashFlowDriver)
}
