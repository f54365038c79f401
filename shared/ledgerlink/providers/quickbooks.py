"""QuickBooks Online (Accounting API v3): OAuth2 with HTTP Basic client auth and no PKCE, one
company per consent (the callback's ``realmId``, which goes into every URL path), the six lists
through the query language, bills / expenses / sales invoices created exactly once with
``requestid``, attachments through multipart ``/upload``. Facts: reference/providers.md §2, §6.3.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from ledgerlink.errors import AuthRevoked, FieldError, LedgerError, NotFound, Rejected, Unavailable
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.connection import Organisation
from ledgerlink.models.lists import ListRecord, RecordStatus, normalise_name, record_id
from ledgerlink.models.publishing import PlannedLine, PublishPlan, PublishResult, Resolved
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import logger
from ledgerlink.providers.base import USER_AGENT, Attachment, LedgerAdapter, LedgerSession, ListFetch
from ledgerlink.providers.config import AttachmentRules, Capabilities, ProviderConfig

# The oldest minor version Intuit still serves (2025 deprecation); every call names it.
MINOR_VERSION = "75"
ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
# Where the callback's realmId is kept in TokenSet.extras (the base merges extras on refresh).
REALM_EXTRA = "realm_id"
REALM_ID = re.compile(r"^\d{1,32}$")

# Account types a cost, a sale or an expense claim can be coded to. QuickBooks has no per-account
# "show in expense claims" flag, so claims take the profit-and-loss expense types only.
COST_ACCOUNT_TYPES = frozenset(
    {"Expense", "Other Expense", "Cost of Goods Sold", "Fixed Asset", "Other Current Asset", "Other Asset"}
)
EXPENSE_CLAIM_ACCOUNT_TYPES = frozenset({"Expense", "Other Expense", "Cost of Goods Sold"})
SALES_ACCOUNT_TYPES = frozenset({"Income", "Other Income"})
# Bank accounts (and cards) are Accounts too: they form the bank list, not the categories.
BANK_ACCOUNT_TYPES = frozenset({"Bank", "Credit Card"})
# A Purchase ("expense") says how it was paid, and QuickBooks checks that against the account.
PAYMENT_TYPE_BY_ACCOUNT_TYPE = {"Bank": "Cash", "Credit Card": "CreditCard"}

DOC_NUMBER_MAX_LENGTH = 21
REQUEST_ID_MAX_LENGTH = 50
BATCH_REQUEST_ID_MAX_LENGTH = 36  # and then each bId at most 10 characters [src Intuit blog]
# DisplayName is unique across vendors, customers and employees: a business that is also a
# customer (or an employee claiming expenses) gets a vendor record with this suffix, as QuickBooks
# users commonly do.
ROLE_SUFFIX = {"Vendor": " (Supplier)", "Customer": " (Customer)"}
CONTACT_PREFIX = {"Vendor": "vendor", "Customer": "customer"}
CONTACT_ENTITY_BY_PREFIX = {prefix: entity for entity, prefix in CONTACT_PREFIX.items()}
# QuickBooks' two tracking lists are our project dimensions 1 and 2.
PROJECT_DIMENSIONS = (("Class", 1), ("Department", 2))
PROJECT_PREFIX = {"Class": "class", "Department": "department"}
PROJECT_ENTITY_BY_PREFIX = {prefix: entity for entity, prefix in PROJECT_PREFIX.items()}
DEFAULT_DEPARTMENT_TERMINOLOGY = "Location"

# An incremental fetch starts this long before the previous fetch began (by the ledger's clock):
# covers changes committed while we paged and the lag before a write shows in queries. Rows seen
# again are unchanged and the list service writes nothing for them.
HIGH_WATER_OVERLAP = timedelta(minutes=5)

ATTACHMENT_CONTENT_TYPES = (
    "application/pdf",
    "image/jpeg",
    "image/jpg",
    "image/png",
    "image/gif",
    "image/tiff",
    "image/bmp",
    "text/plain",
    "text/csv",
    "text/xml",
    "application/xml",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/rtf",
)
# Intuit publishes no firm cap (reference §2.4: UNCONFIRMED); 20 MB is the stricter figure.
ATTACHMENT_MAX_BYTES = 20 * 1000 * 1000


@dataclass(frozen=True)
class Destination:
    """Where a plan's destination name lands in QuickBooks."""

    entity: str  # the transaction entity created (and named by an attachment's EntityRef)
    path: str  # the create endpoint under /v3/company/{realmId}
    contact_entity: str  # the name entity its contact must be
    app_page: str  # the QuickBooks web page that shows it


BILL = Destination("Bill", "bill", "Vendor", "bill")
DESTINATIONS: dict[str, Destination] = {
    "bill": BILL,
    # No native expense claims: a bill to a vendor record that stands for the employee.
    "bill_to_employee": BILL,
    # A Purchase, which QuickBooks calls an Expense: paid at once from a bank or card account.
    "expense": Destination("Purchase", "purchase", "Vendor", "expense"),
    "sales_invoice": Destination("Invoice", "invoice", "Customer", "invoice"),
}


@dataclass(frozen=True)
class PreparedDocument:
    """A plan ready to send: where it goes, its body, and what was noticed building it."""

    plan: PublishPlan
    destination: Destination
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()


class DuplicateName(Rejected):
    """QuickBooks refused a name already used by another vendor, customer or employee (6240)."""


# --- formats -------------------------------------------------------------------------------------


def parse_qbo_datetime(value: Any) -> datetime | None:
    """QuickBooks stamps, ``2026-11-02T01:00:00-08:00`` (server-local with offset); UTC if none."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ref_value(ref: Any) -> str | None:
    """The ``value`` of a ``{"value": ..., "name": ...}`` reference."""
    if isinstance(ref, Mapping) and ref.get("value") not in (None, ""):
        return str(ref["value"])
    return None


def contact_remote_id(entity: str, entity_id: str) -> str:
    """Vendors and customers number their Ids separately, so one contacts list needs both parts."""
    return f"{CONTACT_PREFIX[entity]}:{entity_id}"


def split_contact_remote_id(value: str | None) -> tuple[str | None, str | None]:
    """``vendor:56`` → ``("Vendor", "56")``; a bare Id (sent by the capture product) has no entity."""
    if not value:
        return None, None
    prefix, separator, entity_id = value.partition(":")
    if separator and prefix in CONTACT_ENTITY_BY_PREFIX:
        return CONTACT_ENTITY_BY_PREFIX[prefix], entity_id
    return None, value


def project_remote_id(entity: str, entity_id: str) -> str:
    return f"{PROJECT_PREFIX[entity]}:{entity_id}"


def split_project_remote_id(value: str, dimension_remote_id: str | None) -> tuple[str | None, str]:
    """``class:3`` → ``("Class", "3")``; a bare Id takes its entity from the dimension."""
    prefix, separator, entity_id = value.partition(":")
    if separator and prefix in PROJECT_ENTITY_BY_PREFIX:
        return PROJECT_ENTITY_BY_PREFIX[prefix], entity_id
    return (dimension_remote_id if dimension_remote_id in PROJECT_PREFIX else None), value


def request_id(key: str) -> str:
    """``requestid`` may be at most 50 characters; our keys are 32 hex, derived ones a little more."""
    if len(key) <= REQUEST_ID_MAX_LENGTH:
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def batch_request_id(keys: list[str]) -> str:
    """The ``requestid`` of a ``/batch`` carrying these plans: at most 36 characters, the same for
    the same plans in the same order, so a resent batch is replayed instead of run again."""
    return "lb-" + hashlib.sha256("\x1f".join(keys).encode()).hexdigest()[: BATCH_REQUEST_ID_MAX_LENGTH - 3]


def note_marker(key: str) -> str:
    """How a document's private note names the plan key it was published under."""
    return f"key {key}"


def quote_query_literal(value: str) -> str:
    """A value inside '...' in the query language: quotes and backslashes are escaped."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def strip_role_suffix(display_name: str) -> str:
    for suffix in ROLE_SUFFIX.values():
        if display_name.endswith(suffix):
            return display_name[: -len(suffix)]
    return display_name


@dataclass(frozen=True)
class LedgerFault:
    """One entry of QuickBooks' ``Fault.Error`` (or the gateway's lowercase ``fault.error``)."""

    message: str
    detail: str
    code: str
    element: str

    @property
    def words(self) -> str:
        return self.detail or self.message


def parse_fault(body: Any) -> list[LedgerFault]:
    """The errors of ``{"Fault": {"Error": [...], "type"}}`` and of the 401 ``{"fault": {"error"}}``."""
    if not isinstance(body, Mapping):
        return []
    fault = body.get("Fault") or body.get("fault")
    if not isinstance(fault, Mapping):
        return []
    raw_errors = fault.get("Error") or fault.get("error") or []
    errors = []
    for raw in raw_errors if isinstance(raw_errors, list) else []:
        if not isinstance(raw, Mapping):
            continue

        def field(name: str, raw: Mapping[str, Any] = raw) -> str:
            value = raw.get(name, raw.get(name.lower(), raw.get(name.capitalize())))
            return str(value).strip() if value is not None else ""

        errors.append(LedgerFault(field("Message"), field("Detail"), field("code"), field("element")))
    return errors


def _ledger_words(errors: list[LedgerFault]) -> str:
    words: list[str] = []
    for error in errors:
        if error.words and error.words not in words:
            words.append(error.words)
    return "; ".join(words)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _status(row: Mapping[str, Any]) -> RecordStatus:
    return RecordStatus.ACTIVE if row.get("Active", True) is not False else RecordStatus.ARCHIVED


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _updated(row: Mapping[str, Any]) -> datetime | None:
    return parse_qbo_datetime((row.get("MetaData") or {}).get("LastUpdatedTime"))


def _ledger_time(body: Any) -> datetime | None:
    return parse_qbo_datetime(body.get("time")) if isinstance(body, Mapping) else None


class QueryRun:
    """The rows of one or more paged queries, with the ledger's clock at the first answer."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.calls = 0
        self.started_at: datetime | None = None

    def high_water(self, since: str | None) -> str | None:
        """Where the next incremental fetch starts: when this fetch began, by the ledger's clock,
        less an overlap. The filter is inclusive, so the boundary second is never lost."""
        if self.started_at is None:
            stamps = [s for rows in self.rows.values() for s in map(_updated, rows) if s is not None]
            return max(stamps).isoformat(timespec="seconds") if stamps else since
        return (self.started_at - HIGH_WATER_OVERLAP).isoformat(timespec="seconds")


# --- the adapter ---------------------------------------------------------------------------------


class QuickBooksAdapter(LedgerAdapter):
    default_config: ClassVar[ProviderConfig] = ProviderConfig(
        name=ProviderName.QUICKBOOKS,
        authorize_url="https://appcenter.intuit.com/connect/oauth2",
        token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        revoke_url="https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
        api_base_url="https://quickbooks.api.intuit.com/v3/company",
        # The web app, for links to what we created.
        urls={"app": "https://app.qbo.intuit.com/app"},
        token_endpoint_auth_method="client_secret_basic",
        # A confidential client with a secret is the documented path; PKCE is UNCONFIRMED.
        pkce=False,
        # Company name comes from CompanyInfo, so no OpenID scopes are needed.
        scopes=(ACCOUNTING_SCOPE,),
        page_size=1000,  # MAXRESULTS may not exceed 1000
        calls_per_minute=500,  # per app and company (realm); 10 at once
    )
    capabilities: ClassVar[Capabilities] = Capabilities(
        provider=ProviderName.QUICKBOOKS,
        display_name="QuickBooks Online",
        auth_style="oauth2",
        organisation_choice=False,  # the user picks one company on Intuit's page; a consent covers one
        lists=tuple(ListType),
        # Name lists are made inactive, never deleted, and carry MetaData.LastUpdatedTime. Tax codes
        # change through their TaxRates without the code's own stamp moving: always fetched whole.
        incremental_lists=(
            ListType.CATEGORIES,
            ListType.CONTACTS,
            ListType.ITEMS,
            ListType.PROJECTS,
            ListType.BANK_ACCOUNTS,
        ),
        destinations={
            ItemType.COST: ("bill", "expense"),
            ItemType.SALES: ("sales_invoice",),
            ItemType.EXPENSE_CLAIM: ("bill_to_employee",),
        },
        default_destinations={
            ItemType.COST: "bill",
            ItemType.SALES: "sales_invoice",
            ItemType.EXPENSE_CLAIM: "bill_to_employee",
        },
        bank_match=False,
        native_expense_claims=False,
        # Sources say 10, 25 or 30 items per /batch; Intuit's own guide says 10.
        batch_size=10,
        idempotency="query_parameter",
        attachments=AttachmentRules(
            max_bytes=ATTACHMENT_MAX_BYTES, content_types=ATTACHMENT_CONTENT_TYPES, per_document=None
        ),
    )

    # --- OAuth hooks ------------------------------------------------------------------------------

    def token_extras(self, token: Mapping[str, Any], callback_params: Mapping[str, str]) -> dict[str, str]:
        # The callback's realmId is the company this consent covers; refreshes do not repeat it.
        realm = str(callback_params.get("realmId") or "").strip()
        return {REALM_EXTRA: realm} if REALM_ID.fullmatch(realm) else {}

    def refresh_tokens(self, tokens: TokenSet) -> TokenSet:
        refreshed = super().refresh_tokens(tokens)
        if refreshed.refresh_token is None:
            # A refresh that hands back no refresh token leaves the current one in force (RFC 6749 §6).
            refreshed = refreshed.model_copy(
                update={
                    "refresh_token": tokens.refresh_token,
                    "refresh_expires_at": tokens.refresh_expires_at,
                }
            )
        return refreshed

    def revoke(self, tokens: TokenSet) -> None:
        """Intuit's revocation takes a JSON body ``{"token": ...}`` with HTTP Basic client auth;
        revoking the refresh token ends the whole authorization."""
        if self.config.revoke_url is None:
            return
        token = tokens.refresh_token or tokens.access_token
        try:
            response = self._http.post(
                self.config.revoke_url,
                json={"token": token.get_secret_value()},
                auth=httpx.BasicAuth(
                    self._credentials.client_id, self._credentials.client_secret.get_secret_value()
                ),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=self.config.request_timeout_seconds,
            )
        except httpx.TransportError as error:
            raise Unavailable(
                f"QuickBooks' revocation endpoint did not answer: {type(error).__name__}",
                provider=self.provider,
            ) from error
        if response.status_code >= 400:
            logger.warning(
                "revocation refused by the ledger", provider=self.provider, status=response.status_code
            )

    def default_params(self, session: LedgerSession) -> dict[str, str]:
        return {"minorversion": MINOR_VERSION}

    def rate_limit_name(self, response: httpx.Response) -> str | None:
        errors = parse_fault(_json_or_none(response))
        return errors[0].message or None if errors else None

    def organisations(self, tokens: TokenSet) -> list[Organisation]:
        """One consent = one company: the callback's realmId, named by its CompanyInfo."""
        realm = tokens.extras.get(REALM_EXTRA)
        if not realm:
            raise LedgerError(
                "QuickBooks did not say which company was connected (no realmId in the callback); "
                "connect again",
                provider=self.provider,
            )
        session = LedgerSession("", realm, lambda _force: tokens.access_token.get_secret_value())
        response = self.request(session, "GET", self._url(session, f"companyinfo/{realm}"))
        info = (_json_or_none(response) or {}).get("CompanyInfo") or {}
        name = info.get("CompanyName") or info.get("LegalName") or realm
        return [Organisation(id=realm, name=str(name))]

    def map_error(self, response: httpx.Response) -> LedgerError:
        status = response.status_code
        errors = parse_fault(_json_or_none(response))
        words = _ledger_words(errors) or f"QuickBooks answered {status}"
        codes = {error.code for error in errors}
        if status == 401:
            return AuthRevoked(
                f"QuickBooks no longer accepts our access: {words}", provider=self.provider, status=status
            )
        if status == 403:
            # Another company than the consent's, or the accounting scope withdrawn.
            return AuthRevoked(
                f"QuickBooks refused access to this company: {words}", provider=self.provider, status=status
            )
        if status == 404 or ("610" in codes and _request_method(response) == "GET"):
            # On a read, 610 is "no such object"; on a write it is an inactive reference (Rejected).
            return NotFound(words, provider=self.provider, status=status)
        field_errors = [FieldError(message=e.words, field=e.element or None) for e in errors if e.words]
        rejected = DuplicateName if "6240" in codes else Rejected
        return rejected(words, field_errors=field_errors, provider=self.provider, status=status)

    # --- URLs and queries -------------------------------------------------------------------------

    def _url(self, session: LedgerSession, path: str) -> str:
        realm = session.organisation_id
        if not realm:
            raise LedgerError("no QuickBooks company is chosen for this connection", provider=self.provider)
        return f"{self.config.api_base_url}/{realm}/{path}"

    def _query(
        self, session: LedgerSession, run: QueryRun, entity: str, *, where: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Every row of ``SELECT * FROM entity``, inactive ones included, paged with STARTPOSITION
        until a page comes back short."""
        conditions = " AND ".join(["Active IN (true,false)", *where])
        size = self.config.page_size
        rows: list[dict[str, Any]] = []

        def fetch_page(page: int) -> tuple[list[dict[str, Any]], bool]:
            start = (page - 1) * size + 1
            # Not SQL: the entity is ours, datetimes are re-printed, names go through quote_query_literal.
            statement = f"SELECT * FROM {entity} WHERE {conditions} ORDER BY Id STARTPOSITION {start}"  # noqa: S608
            statement += f" MAXRESULTS {size}"
            response = self.request(session, "GET", self._url(session, "query"), params={"query": statement})
            run.calls += 1
            body = _json_or_none(response) or {}
            if run.started_at is None:
                run.started_at = _ledger_time(body)
            found: list[dict[str, Any]] = (body.get("QueryResponse") or {}).get(entity) or []
            return found, len(found) >= size

        for page_rows in self.pages(fetch_page):
            rows.extend(page_rows)
        run.rows.setdefault(entity, []).extend(rows)
        return rows

    @staticmethod
    def _since_condition(since: str | None) -> list[str]:
        """``MetaData.LastUpdatedTime >= since`` (inclusive); a mark we cannot read means a full fetch."""
        moment = parse_qbo_datetime(since)
        if moment is None:
            return []
        return [f"MetaData.LastUpdatedTime >= '{moment.isoformat(timespec='seconds')}'"]

    # --- lists -------------------------------------------------------------------------------------

    def fetch_list(self, session: LedgerSession, list_type: ListType, *, since: str | None) -> ListFetch:
        if list_type not in self.capabilities.incremental_lists:
            since = None
        where = self._since_condition(since)
        incremental = bool(where)
        run = QueryRun()
        records: list[ListRecord]
        if list_type in (ListType.CATEGORIES, ListType.BANK_ACCOUNTS):
            # One query for both lists: "not a bank account" cannot be said in the query language.
            accounts = self._query(session, run, "Account", where=where)
            if list_type == ListType.BANK_ACCOUNTS:
                records = [self._bank_account(session, r) for r in accounts if _is_bank(r)]
            else:
                records = [self._category(session, r) for r in accounts if not _is_bank(r)]
        elif list_type == ListType.CONTACTS:
            records = [
                self._contact(session, row, entity)
                for entity in ("Vendor", "Customer")
                for row in self._query(session, run, entity, where=where)
            ]
        elif list_type == ListType.TAX_RATES:
            rates = {r["Id"]: r for r in self._query(session, run, "TaxRate")}
            records = [self._tax_rate(session, r, rates) for r in self._query(session, run, "TaxCode")]
        elif list_type == ListType.ITEMS:
            records = [self._item(session, r) for r in self._query(session, run, "Item", where=where)]
        elif list_type == ListType.PROJECTS:
            records = self._projects(session, run, where)
        else:  # pragma: no cover - every ListType is handled above
            raise ValueError(f"unknown list type {list_type}")
        return ListFetch(
            records,
            complete=not incremental,
            high_water=run.high_water(since) if list_type in self.capabilities.incremental_lists else None,
            calls=run.calls,
        )

    def _projects(self, session: LedgerSession, run: QueryRun, where: list[str]) -> list[ListRecord]:
        names = {"Class": "Class", "Department": self._department_terminology(session, run)}
        return [
            self._project(session, row, entity, dimension, names[entity])
            for entity, dimension in PROJECT_DIMENSIONS
            for row in self._query(session, run, entity, where=where)
        ]

    def _department_terminology(self, session: LedgerSession, run: QueryRun) -> str:
        """What the company calls Departments (Location, Division, Store...), from its Preferences."""
        response = self.request(session, "GET", self._url(session, "preferences"))
        run.calls += 1
        body = _json_or_none(response) or {}
        if run.started_at is None:
            run.started_at = _ledger_time(body)
        prefs = (body.get("Preferences") or {}).get("AccountingInfoPrefs") or {}
        return str(prefs.get("DepartmentTerminology") or DEFAULT_DEPARTMENT_TERMINOLOGY)

    # --- mappings ------------------------------------------------------------------------------

    def _record(
        self, session: LedgerSession, list_type: ListType, remote_id: str, **fields: Any
    ) -> ListRecord:
        return ListRecord(
            id=record_id(session.connection_id, list_type, remote_id),
            list_type=list_type,
            remote_id=remote_id,
            **fields,
        )

    def _category(self, session: LedgerSession, row: Mapping[str, Any]) -> ListRecord:
        account_type = str(row.get("AccountType") or "")
        usable: list[ItemType] = []
        if account_type in COST_ACCOUNT_TYPES:
            usable.append(ItemType.COST)
        if account_type in SALES_ACCOUNT_TYPES:
            usable.append(ItemType.SALES)
        if account_type in EXPENSE_CLAIM_ACCOUNT_TYPES:
            usable.append(ItemType.EXPENSE_CLAIM)
        return self._record(
            session,
            ListType.CATEGORIES,
            str(row["Id"]),
            # QuickBooks refers to accounts by Id everywhere (lines, items' and accounts' defaults), so
            # the Id is the code the other lists' defaults join on; AcctNum is optional and kept in raw.
            code=str(row["Id"]),
            name=str(row.get("FullyQualifiedName") or row.get("Name") or ""),
            status=_status(row),
            remote_updated_at=_updated(row),
            account_type=account_type,
            default_tax_code=ref_value(row.get("TaxCodeRef")),
            usable_for=usable,
            currency=ref_value(row.get("CurrencyRef")),
            raw=_present(
                row,
                "AcctNum",
                "AccountSubType",
                "Classification",
                "SubAccount",
                parent=ref_value(row.get("ParentRef")),
            ),
        )

    def _bank_account(self, session: LedgerSession, row: Mapping[str, Any]) -> ListRecord:
        return self._record(
            session,
            ListType.BANK_ACCOUNTS,
            str(row["Id"]),
            code=str(row["Id"]),
            name=str(row.get("FullyQualifiedName") or row.get("Name") or ""),
            status=_status(row),
            remote_updated_at=_updated(row),
            bank_account_type=row.get("AccountType"),
            currency=ref_value(row.get("CurrencyRef")),
            # The chart's own account number: QuickBooks does not expose the bank's.
            account_number=row.get("AcctNum") or None,
            raw=_present(row, "AccountSubType"),
        )

    def _contact(self, session: LedgerSession, row: Mapping[str, Any], entity: str) -> ListRecord:
        is_vendor = entity == "Vendor"
        email = (row.get("PrimaryEmailAddr") or {}).get("Address")
        return self._record(
            session,
            ListType.CONTACTS,
            contact_remote_id(entity, str(row["Id"])),
            code=row.get("AcctNum") or None,
            name=str(row.get("DisplayName") or row.get("CompanyName") or ""),
            status=_status(row),
            remote_updated_at=_updated(row),
            is_supplier=is_vendor,
            is_customer=not is_vendor,
            # Vendors carry no default expense account in the API; customers may carry a tax code.
            default_tax_code=ref_value(row.get("DefaultTaxCodeRef")),
            currency=ref_value(row.get("CurrencyRef")),
            email=str(email) if email else None,
            raw={
                "entity": entity,
                **_present(row, "CompanyName", "IsProject", "Job", parent=ref_value(row.get("ParentRef"))),
            },
        )

    def _tax_rate(
        self, session: LedgerSession, row: Mapping[str, Any], rates: Mapping[str, Mapping[str, Any]]
    ) -> ListRecord:
        def percent(direction: str) -> float | None:
            details = (row.get(f"{direction}TaxRateList") or {}).get("TaxRateDetail") or []
            if not details:
                return None
            values = [
                _number(rates.get(ref_value(d.get("TaxRateRef")) or "", {}).get("RateValue")) for d in details
            ]
            return float(sum(Decimal(str(v)) for v in values if v is not None))

        purchase, sales = percent("Purchase"), percent("Sales")
        applies: list[ItemType] = []
        if purchase is not None:
            applies += [ItemType.COST, ItemType.EXPENSE_CLAIM]
        if sales is not None:
            applies.append(ItemType.SALES)
        return self._record(
            session,
            ListType.TAX_RATES,
            str(row["Id"]),
            code=str(row["Id"]),  # lines, accounts and items name a tax code by its Id
            name=str(row.get("Name") or row["Id"]),
            status=_status(row),
            remote_updated_at=_updated(row),
            rate=purchase if purchase is not None else sales,
            applies_to=applies,
            raw={
                **_present(row, "Description", "Taxable", "TaxGroup"),
                **({"purchase_rate": purchase} if purchase is not None else {}),
                **({"sales_rate": sales} if sales is not None else {}),
            },
        )

    def _item(self, session: LedgerSession, row: Mapping[str, Any]) -> ListRecord:
        return self._record(
            session,
            ListType.ITEMS,
            str(row["Id"]),
            code=row.get("Sku") or None,
            name=str(row.get("FullyQualifiedName") or row.get("Name") or ""),
            status=_status(row),
            remote_updated_at=_updated(row),
            purchase_category_code=ref_value(row.get("ExpenseAccountRef")),
            purchase_tax_code=ref_value(row.get("PurchaseTaxCodeRef")),
            purchase_price=_number(row.get("PurchaseCost")),
            sales_category_code=ref_value(row.get("IncomeAccountRef")),
            sales_tax_code=ref_value(row.get("SalesTaxCodeRef")),
            sales_price=_number(row.get("UnitPrice")),
            raw=_present(row, "Type", "Sku"),
        )

    def _project(
        self, session: LedgerSession, row: Mapping[str, Any], entity: str, dimension: int, dimension_name: str
    ) -> ListRecord:
        return self._record(
            session,
            ListType.PROJECTS,
            project_remote_id(entity, str(row["Id"])),
            name=str(row.get("FullyQualifiedName") or row.get("Name") or ""),
            status=_status(row),
            remote_updated_at=_updated(row),
            dimension=dimension,
            dimension_name=dimension_name,
            dimension_remote_id=entity,
            raw={"parent": ref_value(row.get("ParentRef"))} if row.get("ParentRef") else {},
        )

    # --- contacts ------------------------------------------------------------------------------

    def ensure_contact(self, session: LedgerSession, name: str, *, customer: bool, key: str) -> ListRecord:
        entity = "Customer" if customer else "Vendor"
        display = " ".join(name.split())[:500]
        if not display:
            raise Rejected(f"a {entity.lower()} needs a name", provider=self.provider)
        found = self._find_contact(session, entity, display)
        if found is not None:
            return self._contact(session, found, entity)
        base_key = f"{key}-{CONTACT_PREFIX[entity][0]}"
        try:
            row = self._create_contact(session, entity, display, request_id(base_key))
        except DuplicateName:
            # Another kind of name (a customer, an employee) already has it: QuickBooks wants
            # DisplayName unique across all three, so the vendor or customer gets a role suffix.
            row = self._create_contact(
                session, entity, f"{display[: 500 - 13]}{ROLE_SUFFIX[entity]}", request_id(f"{base_key}2")
            )
        return self._contact(session, row, entity)

    def _find_contact(self, session: LedgerSession, entity: str, name: str) -> dict[str, Any] | None:
        """The vendor or customer whose name means ``name`` (case, punctuation, legal suffix and our
        role suffix aside), active ones first. QuickBooks' LIKE is a prefix match at best, so the
        query narrows by the first word and the comparison happens here."""
        wanted = normalise_name(name)
        first_word = name.split(maxsplit=1)[0].replace("%", "")
        where = [f"DisplayName LIKE '{quote_query_literal(first_word)}%'"] if first_word else []
        rows = self._query(session, QueryRun(), entity, where=where)
        matches = [
            row
            for row in rows
            if wanted
            in {
                normalise_name(strip_role_suffix(str(row.get("DisplayName") or ""))),
                normalise_name(str(row.get("CompanyName") or "")),
            }
        ]
        matches.sort(key=lambda row: _status(row) != RecordStatus.ACTIVE)
        return matches[0] if matches else None

    def _create_contact(
        self, session: LedgerSession, entity: str, display: str, idempotency: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"DisplayName": display}
        company = strip_role_suffix(display)
        if len(company) <= 100:
            body["CompanyName"] = company
        response = self.request(
            session,
            "POST",
            self._url(session, entity.lower()),
            params={"requestid": idempotency},
            json=body,
            retry_safe=True,  # the requestid makes a resend a replay
        )
        return self._created(response, entity)

    def _created(self, response: httpx.Response, entity: str) -> dict[str, Any]:
        body = _json_or_none(response) or {}
        errors = parse_fault(body)
        if errors:
            raise self.map_error(httpx.Response(400, json=body))
        created = body.get(entity)
        if not isinstance(created, dict) or not created.get("Id"):
            raise Unavailable(f"QuickBooks answered without the {entity} it created", provider=self.provider)
        return created

    def _contact_id(self, session: LedgerSession, plan: PublishPlan, entity: str, warnings: list[str]) -> str:
        """The Id of the plan's contact as the entity the document needs (a vendor for bills)."""
        known_entity, entity_id = split_contact_remote_id(plan.contact.remote_id)
        if entity_id and known_entity in (None, entity):
            return entity_id
        name = plan.contact.name or ""
        if not name.strip():
            raise Rejected(
                f"the item has no {'customer' if entity == 'Customer' else 'supplier'}",
                field_errors=[FieldError("no contact", "contact")],
                provider=self.provider,
            )
        # Unknown to the ledger, or a record of the other kind (a customer with the supplier's name):
        # find or create the right kind, once.
        record = self.ensure_contact(
            session, name, customer=entity == "Customer", key=f"{plan.idempotency_key}-{entity[0].lower()}"
        )
        if known_entity is not None:
            warnings.append(
                f"{name} is a {known_entity.lower()} in QuickBooks; used the "
                f"{entity.lower()} record {record.name}"
            )
        if record.status == RecordStatus.ARCHIVED:
            raise Rejected(
                f"The {entity.lower()} {record.name} is inactive in QuickBooks; make it active again",
                field_errors=[FieldError(f"{record.name} is inactive", "contact")],
                provider=self.provider,
            )
        _, found_id = split_contact_remote_id(record.remote_id)
        assert found_id is not None
        return found_id

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        prepared = self._prepare(session, plan)
        if plan.may_exist:
            found = self._existing_documents(session, [prepared]).get(plan.idempotency_key)
            if found is not None:
                return self._result(prepared, found)
        response = self.request(
            session,
            "POST",
            self._url(session, prepared.destination.path),
            params={"requestid": request_id(plan.idempotency_key)},
            json=prepared.body,
            retry_safe=True,  # a resend with the same requestid is a replay, not a second document
        )
        return self._result(prepared, self._created(response, prepared.destination.entity))

    def publish_batch(
        self, session: LedgerSession, plans: list[PublishPlan]
    ) -> list[PublishResult | LedgerError]:
        """Up to ``batch_size`` documents per ``POST /batch``, each answered on its own (a Fault is
        that plan's refusal). Bodies are built first, with any vendor or customer they need created
        beforehand: a batch item cannot see what an earlier item of the same batch created. The
        batch's ``requestid`` is derived from the plans' keys, so a resent batch is replayed; plans
        marked ``may_exist`` are looked up by the key in their private note first."""
        results: list[PublishResult | LedgerError | None] = [None] * len(plans)
        prepared: list[tuple[int, PreparedDocument]] = []
        first_of: dict[str, int] = {}
        for index, plan in enumerate(plans):
            if first_of.setdefault(plan.idempotency_key, index) != index:
                continue  # the same plan twice (a message delivered twice): sent once, answered twice
            try:
                prepared.append((index, self._prepare(session, plan)))
            except (Rejected, NotFound) as refused:
                results[index] = refused
        found = self._existing_documents(session, [p for _, p in prepared if p.plan.may_exist])
        to_send: list[tuple[int, PreparedDocument]] = []
        for index, document in prepared:
            existing = found.get(document.plan.idempotency_key)
            if existing is not None:
                results[index] = self._result(document, existing)
            else:
                to_send.append((index, document))
        size = self.capabilities.batch_size
        for start in range(0, len(to_send), size):
            chunk = to_send[start : start + size]
            if len(chunk) == 1:  # the same request a single publish makes, so either replays the other
                index, document = chunk[0]
                try:
                    results[index] = self.publish(
                        session, document.plan.model_copy(update={"may_exist": False})
                    )
                except (Rejected, NotFound) as refused:
                    results[index] = refused
                continue
            for (index, _), outcome in zip(
                chunk, self._send_batch(session, [d for _, d in chunk]), strict=True
            ):
                results[index] = outcome
        for index, plan in enumerate(plans):
            results[index] = results[first_of[plan.idempotency_key]]
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    def _send_batch(
        self, session: LedgerSession, documents: list[PreparedDocument]
    ) -> list[PublishResult | LedgerError]:
        items = [
            {"bId": str(number), "operation": "create", document.destination.entity: document.body}
            for number, document in enumerate(documents, start=1)  # bIds of 1-2 characters (≤10 allowed)
        ]
        response = self.request(
            session,
            "POST",
            self._url(session, "batch"),
            params={"requestid": batch_request_id([d.plan.idempotency_key for d in documents])},
            json={"BatchItemRequest": items},
            retry_safe=True,  # the requestid makes a resend a replay of the whole batch
        )
        body = _json_or_none(response) or {}
        if parse_fault(body):  # the batch as a whole refused (too many items, a bad bId)
            raise self.map_error(httpx.Response(400, json=body))
        answers = {
            str(answer.get("bId")): answer
            for answer in body.get("BatchItemResponse") or []
            if isinstance(answer, Mapping)
        }
        outcomes: list[PublishResult | LedgerError] = []
        for number, document in enumerate(documents, start=1):
            answer = answers.get(str(number))
            if answer is None:
                # Unknown outcome: the whole batch is retried, and the requestid replays it.
                raise Unavailable(f"QuickBooks did not answer batch item {number}", provider=self.provider)
            if answer.get("Fault"):
                outcomes.append(self.map_error(httpx.Response(400, json={"Fault": answer["Fault"]})))
                continue
            created = answer.get(document.destination.entity)
            if not isinstance(created, dict) or not created.get("Id"):
                raise Unavailable(
                    f"QuickBooks answered batch item {number} without the {document.destination.entity}",
                    provider=self.provider,
                )
            outcomes.append(self._result(document, created))
        return outcomes

    def _prepare(self, session: LedgerSession, plan: PublishPlan) -> PreparedDocument:
        """The body a plan is sent as, with its vendor or customer (found or created) and whatever
        lookups the body needs; refusals are raised before anything is created."""
        destination = DESTINATIONS.get(plan.destination)
        if destination is None or plan.destination not in self.capabilities.destinations.get(
            plan.item_type, ()
        ):
            choices = ", ".join(self.capabilities.destinations.get(plan.item_type, ()))
            raise Rejected(
                f"QuickBooks Online has no destination {plan.destination!r} for {plan.item_type.value} "
                f"items; choose one of: {choices}",
                field_errors=[FieldError(f"unknown destination {plan.destination!r}", "destination")],
                provider=self.provider,
            )
        warnings: list[str] = []
        contact_id = self._contact_id(session, plan, destination.contact_entity, warnings)
        body = self._document_body(session, plan, destination, contact_id, warnings)
        return PreparedDocument(plan, destination, body, tuple(warnings))

    def _result(self, document: PreparedDocument, created: Mapping[str, Any]) -> PublishResult:
        remote_id = str(created["Id"])
        return PublishResult(
            remote_id=remote_id,
            url=f"{self.config.urls['app']}/{document.destination.app_page}?txnId={remote_id}",
            warnings=[*document.warnings, *self._tax_warnings(document.plan, created)],
        )

    def _existing_documents(
        self, session: LedgerSession, documents: list[PreparedDocument]
    ) -> dict[str, dict[str, Any]]:
        """What an earlier attempt created, by the key in the private note, for documents whose
        ``requestid`` may no longer replay (a retry after the retention window, or the plan sent in
        another batch): one query per entity over the documents' dates."""
        found: dict[str, dict[str, Any]] = {}
        by_entity: dict[str, list[PreparedDocument]] = {}
        for document in documents:
            by_entity.setdefault(document.destination.entity, []).append(document)
        for entity, group in by_entity.items():
            dates = sorted(str(d.body["TxnDate"]) for d in group)
            rows = self._query_transactions(
                session, entity, [f"TxnDate >= '{dates[0]}'", f"TxnDate <= '{dates[-1]}'"]
            )
            for row in rows:
                note = str(row.get("PrivateNote") or "")
                for document in group:
                    if note_marker(document.plan.idempotency_key) in note:
                        found.setdefault(document.plan.idempotency_key, row)
        return found

    def _query_transactions(
        self, session: LedgerSession, entity: str, where: list[str]
    ) -> list[dict[str, Any]]:
        """Every row of a transaction query (transactions have no Active flag to widen)."""
        size = self.config.page_size
        rows: list[dict[str, Any]] = []

        def fetch_page(page: int) -> tuple[list[dict[str, Any]], bool]:
            start = (page - 1) * size + 1
            # Not SQL: the entity is ours and the conditions are dates we printed.
            statement = f"SELECT * FROM {entity} WHERE {' AND '.join(where)} ORDER BY Id"  # noqa: S608
            statement += f" STARTPOSITION {start} MAXRESULTS {size}"
            response = self.request(session, "GET", self._url(session, "query"), params={"query": statement})
            found: list[dict[str, Any]] = ((_json_or_none(response) or {}).get("QueryResponse") or {}).get(
                entity
            ) or []
            return found, len(found) >= size

        for page_rows in self.pages(fetch_page):
            rows.extend(page_rows)
        return rows

    def _document_body(
        self,
        session: LedgerSession,
        plan: PublishPlan,
        destination: Destination,
        contact_id: str,
        warnings: list[str],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "TxnDate": plan.date.isoformat(),
            "CurrencyRef": {"value": plan.currency},
            # Our lines carry net amounts and their own tax code; QuickBooks adds the tax.
            "GlobalTaxCalculation": "TaxExcluded",
        }
        department = self._department(plan)
        if department is not None:
            body["DepartmentRef"] = {"value": department}
        body.update(self._reference_fields(plan, warnings))
        if destination.entity == "Invoice":
            body["CustomerRef"] = {"value": contact_id}
            body["Line"] = self._sales_lines(session, plan, warnings)
        else:
            body["Line"] = [self._expense_line(line) for line in plan.lines]
            if destination.entity == "Bill":
                body["VendorRef"] = {"value": contact_id}
            else:
                body.update(self._payment(session, plan))
                body["EntityRef"] = {"value": contact_id, "type": "Vendor"}
        if plan.due_date and destination.entity != "Purchase":
            body["DueDate"] = plan.due_date.isoformat()
        return body

    def _reference_fields(self, plan: PublishPlan, warnings: list[str]) -> dict[str, Any]:
        """The supplier's (or our own invoice's) number goes in DocNumber, at most 21 characters;
        a longer one is kept whole in the private note."""
        # The key in the note is how a retry finds the document once the requestid no longer replays.
        mark = f"item {plan.item_id}, {note_marker(plan.idempotency_key)}"
        fields: dict[str, Any] = {"PrivateNote": f"Published by ledgerlink ({mark})"}
        reference = (plan.reference or "").strip()
        if not reference:
            return fields
        if len(reference) > DOC_NUMBER_MAX_LENGTH:
            warnings.append(
                f"QuickBooks keeps 21 characters of a document number: {reference!r} was shortened "
                "(the whole reference is in the private note)"
            )
            fields["PrivateNote"] = f"Reference {reference}; published by ledgerlink ({mark})"
        fields["DocNumber"] = reference[:DOC_NUMBER_MAX_LENGTH]
        return fields

    def _department(self, plan: PublishPlan) -> str | None:
        """A Department (Location) tags a whole transaction in QuickBooks, not a line."""
        chosen: set[str] = set()
        for line in plan.lines:
            for ref in (line.project, line.project_2):
                entity, entity_id = _tracking(ref)
                if entity == "Department" and entity_id:
                    chosen.add(entity_id)
        if len(chosen) > 1:
            raise Rejected(
                "QuickBooks records one location (Department) per document, and the lines name "
                f"{len(chosen)} different ones",
                field_errors=[FieldError("more than one location on one document", "lines")],
                provider=self.provider,
            )
        return chosen.pop() if chosen else None

    @staticmethod
    def _line_tracking(line: PlannedLine) -> dict[str, Any]:
        detail: dict[str, Any] = {}
        for ref in (line.project, line.project_2):
            entity, entity_id = _tracking(ref)
            if entity == "Class" and entity_id:
                detail["ClassRef"] = {"value": entity_id}
        return detail

    def _expense_line(self, line: PlannedLine) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "AccountRef": {"value": _ref_id(line.category)},
            "BillableStatus": "NotBillable",
            **self._line_tracking(line),
        }
        tax_code = _ref_id(line.tax_rate)
        if tax_code:
            detail["TaxCodeRef"] = {"value": tax_code}
        return {
            "DetailType": "AccountBasedExpenseLineDetail",
            "Amount": float(line.amount),
            "Description": line.description,
            "AccountBasedExpenseLineDetail": detail,
        }

    def _sales_lines(
        self, session: LedgerSession, plan: PublishPlan, warnings: list[str]
    ) -> list[dict[str, Any]]:
        """Invoice lines name a product or service (ItemRef); the income account comes from it. A line
        without one takes an active item whose income account is the line's category."""
        items_by_income: dict[str, dict[str, Any]] | None = None
        lines = []
        for number, line in enumerate(plan.lines, start=1):
            item_id = _ref_id(line.product) if line.product is not None else None
            if not item_id:
                if items_by_income is None:
                    items_by_income = self._items_by_income_account(session)
                item = items_by_income.get(_ref_id(line.category) or "")
                if item is None:
                    raise Rejected(
                        f"Line {number}: QuickBooks invoice lines need a product or service, and none "
                        f"sells into {line.category.name or 'the chosen category'}; choose a product",
                        field_errors=[
                            FieldError("a product or service is needed", f"lines[{number - 1}].product")
                        ],
                        provider=self.provider,
                    )
                item_id = str(item["Id"])
                warnings.append(f"Line {number}: used the QuickBooks product {item.get('Name')}")
            lines.append(self._sales_line(line, item_id))
        return lines

    def _sales_line(self, line: PlannedLine, item_id: str) -> dict[str, Any]:
        quantity = Decimal(str(line.quantity))
        detail: dict[str, Any] = {
            "ItemRef": {"value": item_id},
            "Qty": float(quantity),
            "UnitPrice": float((line.amount / quantity).quantize(Decimal("0.000001"))),
            **self._line_tracking(line),
        }
        tax_code = _ref_id(line.tax_rate)
        if tax_code:
            detail["TaxCodeRef"] = {"value": tax_code}
        return {
            "DetailType": "SalesItemLineDetail",
            "Amount": float(line.amount),
            "Description": line.description,
            "SalesItemLineDetail": detail,
        }

    def _items_by_income_account(self, session: LedgerSession) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        for row in self._query(session, QueryRun(), "Item"):
            income = ref_value(row.get("IncomeAccountRef"))
            if income and row.get("Active", True) is not False and row.get("Type") != "Category":
                items.setdefault(income, row)
        return items

    def _payment(self, session: LedgerSession, plan: PublishPlan) -> dict[str, Any]:
        """An Expense (Purchase) names the bank or card account it was paid from, and how."""
        account_id = _ref_id(plan.bank_account) if plan.bank_account is not None else None
        if not account_id:
            raise Rejected(
                "An expense in QuickBooks needs the bank or card account it was paid from",
                field_errors=[FieldError("no bank account", "paid.bank_account")],
                provider=self.provider,
            )
        try:
            response = self.request(session, "GET", self._url(session, f"account/{account_id}"))
        except NotFound as error:
            # Publishing shows refusals to the user; a vanished account is one, not a crash.
            raise Rejected(
                f"The bank account {plan.bank_account.name if plan.bank_account else account_id} no longer "
                "exists in QuickBooks; refresh the lists and choose another",
                field_errors=[FieldError(error.message, "paid.bank_account")],
                provider=self.provider,
                status=error.status,
            ) from error
        account = (_json_or_none(response) or {}).get("Account") or {}
        payment_type = PAYMENT_TYPE_BY_ACCOUNT_TYPE.get(str(account.get("AccountType")))
        if payment_type is None:
            raise Rejected(
                f"{account.get('Name') or account_id} is not a bank or credit card account in QuickBooks",
                field_errors=[FieldError("not a bank or card account", "paid.bank_account")],
                provider=self.provider,
            )
        return {"PaymentType": payment_type, "AccountRef": {"value": account_id}}

    @staticmethod
    def _tax_warnings(plan: PublishPlan, created: Mapping[str, Any]) -> list[str]:
        total_tax = _number((created.get("TxnTaxDetail") or {}).get("TotalTax"))
        if total_tax is None:
            return []
        tolerance = Decimal("0.01") * max(1, len(plan.lines))
        if abs(Decimal(str(total_tax)) - plan.tax) > tolerance:
            return [f"QuickBooks calculated tax of {total_tax:.2f}; the captured tax was {plan.tax}"]
        return []

    # --- attachments ---------------------------------------------------------------------------

    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        """Upload the document linked to what ``publish`` created (AttachableRef); never recreates it."""
        rules = self.capabilities.attachments
        content_type = document.content_type.split(";")[0].strip().lower()
        if len(document.content) > rules.max_bytes:
            raise Rejected(
                f"QuickBooks takes attachments up to {rules.max_bytes // 1_000_000} MB; this one is "
                f"{len(document.content) / 1_000_000:.1f} MB",
                field_errors=[FieldError("file too large", "document")],
                provider=self.provider,
            )
        if rules.content_types and content_type not in rules.content_types:
            raise Rejected(
                f"QuickBooks does not take {content_type} files as attachments",
                field_errors=[FieldError(f"unsupported file type {content_type}", "document")],
                provider=self.provider,
            )
        destination = DESTINATIONS.get(plan.destination, BILL)
        file_name = _safe_file_name(document.file_name)
        metadata = {
            "AttachableRef": [{"EntityRef": {"type": destination.entity, "value": result.remote_id}}],
            "FileName": file_name,
            "ContentType": content_type,
        }
        body, multipart_type = multipart_upload(metadata, file_name, content_type, document.content)
        response = self.request(
            session,
            "POST",
            self._url(session, "upload"),
            params={"requestid": request_id(f"{plan.idempotency_key}-doc")},
            content=body,
            headers={"Content-Type": multipart_type},
            retry_safe=True,
        )
        payload = _json_or_none(response) or {}
        answers = payload.get("AttachableResponse") or [{}]
        first = answers[0] if isinstance(answers[0], dict) else {}
        errors = parse_fault(first)
        if errors:
            raise self.map_error(httpx.Response(400, json=first))
        attachable = first.get("Attachable") or {}
        if not attachable.get("Id"):
            raise Unavailable("QuickBooks answered the upload without an attachment", provider=self.provider)
        return str(attachable["Id"])


# --- helpers -------------------------------------------------------------------------------------


def _is_bank(row: Mapping[str, Any]) -> bool:
    return row.get("AccountType") in BANK_ACCOUNT_TYPES


def _present(row: Mapping[str, Any], *keys: str, **extra: Any) -> dict[str, Any]:
    """The ledger's extras worth keeping in ``raw``, without empty ones."""
    kept = {key: row[key] for key in keys if row.get(key) not in (None, "")}
    kept.update({key: value for key, value in extra.items() if value not in (None, "")})
    return kept


def _ref_id(ref: Resolved | None) -> str | None:
    if ref is None:
        return None
    return ref.remote_id or ref.code


def _tracking(ref: Resolved | None) -> tuple[str | None, str | None]:
    if ref is None or not ref.remote_id:
        return None, None
    return split_project_remote_id(ref.remote_id, ref.dimension_remote_id)


def _request_method(response: httpx.Response) -> str | None:
    try:
        return response.request.method
    except RuntimeError:  # a response built without a request (tests, re-mapped bodies)
        return None


_UNSAFE_FILE_NAME_CHARACTERS = re.compile(r'["\\\r\n]')


def _safe_file_name(file_name: str) -> str:
    return _UNSAFE_FILE_NAME_CHARACTERS.sub("_", file_name).strip() or "document"


def multipart_upload(
    metadata: Mapping[str, Any],
    file_name: str,
    content_type: str,
    content: bytes,
    *,
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """The ``/upload`` body: ``file_metadata_01`` (JSON) and ``file_content_01`` (the file's bytes)."""
    boundary = boundary or f"ledgerlink-{uuid.uuid4().hex}"
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file_metadata_01"\r\n'
            "Content-Type: application/json; charset=UTF-8\r\n\r\n"
        ).encode()
        + json.dumps(metadata).encode()
        + b"\r\n",
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file_content_01"; '
            f'filename="{file_name}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        + content
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


__all__: list[str] = [
    "DESTINATIONS",
    "DuplicateName",
    "QuickBooksAdapter",
    "multipart_upload",
    "parse_fault",
    "parse_qbo_datetime",
]
