"""Xero (Accounting API 2.0): OAuth2 with PKCE, tenants via /connections, the six lists; bills,
sales invoices and bills to employees (batched, up to 50 per call), Spend Money and classic expense
claims, each with an Idempotency-Key; bank match by paying the bill from the bank account;
attachments as raw bytes. Facts: reference/providers.md §1."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from ledgerlink.errors import AuthRevoked, FieldError, LedgerError, NotFound, Rejected, Unavailable
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.connection import Organisation
from ledgerlink.models.lists import LINE_CODABLE, ListRecord, RecordStatus, normalise_name, record_id
from ledgerlink.models.publishing import PublishPlan, PublishResult
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import logger
from ledgerlink.providers.base import (
    Attachment,
    BankLine,
    LedgerAdapter,
    LedgerSession,
    ListFetch,
    ListFetchInterrupted,
    stopped_short,
)
from ledgerlink.providers.config import AttachmentRules, Capabilities, ProviderConfig

# Account types a cost, a sale or an expense claim can be coded to.
COST_ACCOUNT_TYPES = frozenset(
    {"EXPENSE", "DIRECTCOSTS", "OVERHEADS", "FIXED", "INVENTORY", "PREPAYMENT", "CURRENT", "NONCURRENT"}
)
SALES_ACCOUNT_TYPES = frozenset({"REVENUE", "SALES", "OTHERINCOME"})
# System accounts Xero keeps for itself (receivables, payables, VAT, retained earnings...): a line
# coded to one is refused, so coding never offers them.
NON_POSTABLE_SYSTEM_ACCOUNTS = frozenset(
    {"DEBTORS", "CREDITORS", "GST", "RETAINEDEARNINGS", "UNPAIDEXPCLM", "HISTORICAL", "TRACKINGTRANSFERS"}
)
MS_JSON_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
FORBIDDEN_FILENAME_CHARACTERS = re.compile(r'[<>:"/\\|?*]')

SPEND_MONEY = "spend_money"
CLASSIC_EXPENSE_CLAIM = "classic_expense_claim"
BILL_TO_EMPLOYEE = "bill_to_employee"
# Our destination names -> Xero invoice Status for what goes to /Invoices.
INVOICE_STATUS_BY_DESTINATION = {
    "bill_draft": "DRAFT",
    "bill_awaiting_approval": "SUBMITTED",
    "bill_awaiting_payment": "AUTHORISED",
    "invoice_draft": "DRAFT",
    "invoice_awaiting_approval": "SUBMITTED",
    "invoice_awaiting_payment": "AUTHORISED",
    # What the business owes the claimant until it repays them.
    BILL_TO_EMPLOYEE: "AUTHORISED",
}
GONE_STATUSES = frozenset({"DELETED", "VOIDED"})
# Xero Projects API: either scope reads projects; a page holds at most 500 of them.
PROJECTS_SCOPES = frozenset({"projects", "projects.read"})
PROJECTS_PAGE_SIZE = 500
PROJECTS_DIMENSION_NAME = "Xero Projects"
CENT = Decimal("0.01")
# The Url Xero shows as "Go to ledgerlink" on a document: the captured item, with our key (the one
# field we choose that Xero keeps on every invoice and bank transaction). A deployment may point it
# elsewhere with config.urls["source_link"].
SOURCE_LINK = "https://ledgerlink.app/items/{item_id}?ledgerlink_key={key}"


def parse_xero_datetime(value: str | None) -> datetime | None:
    """Xero's MS-JSON dates, ``/Date(1552262400000+0000)/``, and plain ISO strings."""
    if not value:
        return None
    match = MS_JSON_DATE.fullmatch(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _jwt_claims(token: str) -> dict[str, Any]:
    """Read (not verify: we did not issue it) the claims of Xero's JWT access token."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims


def _status(value: str | None) -> RecordStatus:
    return RecordStatus.ACTIVE if (value or "ACTIVE") == "ACTIVE" else RecordStatus.ARCHIVED


class XeroAdapter(LedgerAdapter):
    default_config: ClassVar[ProviderConfig] = ProviderConfig(
        name=ProviderName.XERO,
        authorize_url="https://login.xero.com/identity/connect/authorize",
        token_url="https://identity.xero.com/connect/token",
        revoke_url="https://identity.xero.com/connect/revocation",
        api_base_url="https://api.xero.com/api.xro/2.0",
        urls={
            "connections": "https://api.xero.com/connections",
            "projects": "https://api.xero.com/projects.xro/2.0",
        },
        token_endpoint_auth_method="client_secret_basic",
        pkce=True,
        # Granular scopes (apps created after March 2026 may use no others) plus offline_access,
        # without which Xero issues no refresh token.
        scopes=(
            "openid",
            "profile",
            "email",
            "offline_access",
            "accounting.settings.read",
            "accounting.contacts",
            "accounting.invoices",
            "accounting.payments",
            "accounting.banktransactions",
            "accounting.classicexpenses",  # Receipts and ExpenseClaims (classic_expense_claim)
            "accounting.attachments",
            "projects.read",  # Projects API projects, listed beside the tracking options
        ),
        page_size=1000,
        refresh_token_lifetime_seconds=60 * 24 * 3600,  # "expires after 60 days unused"
        calls_per_minute=60,  # per app and organisation (also 5 at once and 5,000 a day)
    )
    capabilities: ClassVar[Capabilities] = Capabilities(
        provider=ProviderName.XERO,
        display_name="Xero",
        auth_style="oauth2_pkce",
        organisation_choice=True,
        lists=tuple(ListType),
        # Items support If-Modified-Since, but deleted items just vanish: only a full fetch sees that.
        incremental_lists=(ListType.CATEGORIES, ListType.CONTACTS, ListType.BANK_ACCOUNTS),
        destinations={
            ItemType.COST: ("bill_draft", "bill_awaiting_approval", "bill_awaiting_payment", "spend_money"),
            ItemType.SALES: ("invoice_draft", "invoice_awaiting_approval", "invoice_awaiting_payment"),
            ItemType.EXPENSE_CLAIM: ("classic_expense_claim", "bill_to_employee"),
        },
        default_destinations={
            ItemType.COST: "bill_awaiting_payment",
            ItemType.SALES: "invoice_draft",
            ItemType.EXPENSE_CLAIM: "bill_to_employee",
        },
        bank_match=True,
        native_expense_claims=True,
        batch_size=50,
        idempotency="header",
        attachments=AttachmentRules(max_bytes=10 * 1024 * 1024, per_document=10),
    )

    # --- OAuth hooks ------------------------------------------------------------------------------

    def token_extras(self, token: Mapping[str, Any], callback_params: Mapping[str, str]) -> dict[str, str]:
        event = _jwt_claims(str(token["access_token"])).get("authentication_event_id")
        return {"authentication_event_id": str(event)} if event else {}

    def organisations(self, tokens: TokenSet) -> list[Organisation]:
        """The tenants this consent covers (``authEventId`` limits them to the ones just picked)."""
        params = {}
        if "authentication_event_id" in tokens.extras:
            params["authEventId"] = tokens.extras["authentication_event_id"]
        session = LedgerSession("", None, lambda _force: tokens.access_token.get_secret_value())
        response = self.request(session, "GET", self.config.urls["connections"], params=params)
        return [
            Organisation(
                id=tenant["tenantId"],
                name=tenant.get("tenantName") or tenant["tenantId"],
                kind=tenant.get("tenantType"),
            )
            for tenant in response.json()
        ]

    def release_organisation(self, tokens: TokenSet, organisation_id: str | None) -> None:
        """Remove just this tenant's connection: revoking the refresh token would drop every
        organisation the user connected to our app, including one a Change connection just added."""
        session = LedgerSession("", None, lambda _force: tokens.access_token.get_secret_value())
        connections = self.request(session, "GET", self.config.urls["connections"]).json()
        for connection in connections:
            if connection.get("tenantId") == organisation_id:
                self.request(
                    session,
                    "DELETE",
                    f"{self.config.urls['connections']}/{connection['id']}",
                    retry_safe=True,
                )

    def session_headers(self, session: LedgerSession) -> dict[str, str]:
        # Every Accounting API call names its organisation; without it Xero answers 403.
        return {"xero-tenant-id": session.organisation_id} if session.organisation_id else {}

    def rate_limit_name(self, response: httpx.Response) -> str | None:
        problem = response.headers.get("X-Rate-Limit-Problem")
        return str(problem) if problem else None

    def map_error(self, response: httpx.Response) -> LedgerError:
        status = response.status_code
        body = _json_or_none(response)
        if status == 403:
            return AuthRevoked(
                "Xero refused access to this organisation (the connection was removed in Xero)",
                provider=self.provider,
                status=status,
            )
        if status == 401:
            return AuthRevoked(
                "Xero no longer accepts our access token", provider=self.provider, status=status
            )
        if status == 404:
            return NotFound("Xero could not find that object", provider=self.provider, status=status)
        if isinstance(body, dict) and body.get("Type") == "ValidationException":
            errors = [
                FieldError(message=error.get("Message", ""))
                for element in body.get("Elements", [])
                for error in element.get("ValidationErrors", [])
            ]
            message = "; ".join(e.message for e in errors) or body.get("Message", "validation failed")
            return Rejected(message, field_errors=errors, provider=self.provider, status=status)
        message = body.get("Message") or body.get("Detail") if isinstance(body, dict) else None
        return Rejected(message or f"Xero answered {status}", provider=self.provider, status=status)

    # --- lists -------------------------------------------------------------------------------------

    def fetch_list(self, session: LedgerSession, list_type: ListType, *, since: str | None) -> ListFetch:
        if list_type == ListType.CONTACTS:
            return self._fetch_contacts(session, since)
        if list_type in (ListType.CATEGORIES, ListType.BANK_ACCOUNTS):
            return self._fetch_accounts(session, list_type, since)
        if list_type == ListType.TAX_RATES:
            rows = self._get(session, "/TaxRates", "TaxRates")
            return ListFetch([self._tax_rate(session, row) for row in rows], complete=True, calls=1)
        if list_type == ListType.ITEMS:
            # Deleted items simply vanish from /Items, so only a full fetch can see deletions.
            rows = self._get(session, "/Items", "Items")
            records = [self._item(session, row) for row in rows]
            return ListFetch(records, complete=True, high_water=_high_water(records), calls=1)
        if list_type == ListType.PROJECTS:
            rows = self._get(
                session, "/TrackingCategories", "TrackingCategories", params={"includeArchived": "true"}
            )
            projects, calls = self._projects_api_projects(session)
            return ListFetch(self._tracking_options(session, rows) + projects, complete=True, calls=1 + calls)
        raise ValueError(f"unknown list type {list_type}")

    def _get(
        self,
        session: LedgerSession,
        path: str,
        collection: str,
        *,
        params: Mapping[str, str] | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        headers = {"If-Modified-Since": since} if since else None
        response = self.request(
            session, "GET", self.config.api_base_url + path, params=params, headers=headers
        )
        if response.status_code == 304:
            return []
        rows: list[dict[str, Any]] = response.json().get(collection, [])
        return rows

    def _fetch_accounts(self, session: LedgerSession, list_type: ListType, since: str | None) -> ListFetch:
        where = 'Type=="BANK"' if list_type == ListType.BANK_ACCOUNTS else 'Type!="BANK"'
        rows = self._get(session, "/Accounts", "Accounts", params={"where": where}, since=since)
        rows = [row for row in rows if row.get("Status") != "DELETED"]
        mapper = self._bank_account if list_type == ListType.BANK_ACCOUNTS else self._category
        records = [mapper(session, row) for row in rows]
        return ListFetch(records, complete=since is None, high_water=_high_water(records) or since, calls=1)

    def resume_list(
        self, session: LedgerSession, list_type: ListType, *, since: str | None, resume_at: Mapping[str, Any]
    ) -> ListFetch:
        page = resume_at.get("page")
        if list_type == ListType.CONTACTS and isinstance(page, int) and page > 1:
            high_water = resume_at.get("high_water")
            return self._fetch_contacts(
                session,
                since,
                first_page=page,
                high_water_so_far=high_water if isinstance(high_water, str) else None,
            )
        return super().resume_list(session, list_type, since=since, resume_at=resume_at)

    def _fetch_contacts(
        self,
        session: LedgerSession,
        since: str | None,
        *,
        first_page: int = 1,
        high_water_so_far: str | None = None,
    ) -> ListFetch:
        """Contacts page by page; a fetch stopped part-way resumes at the page it stopped on
        (``resume_list``), carrying the newest change stamp of the pages before it."""

        def fetch_page(page: int) -> tuple[list[ListRecord], bool]:
            headers = {"If-Modified-Since": since} if since else None
            response = self.request(
                session,
                "GET",
                self.config.api_base_url + "/Contacts",
                params={"page": str(page), "pageSize": str(self.config.page_size), "includeArchived": "true"},
                headers=headers,
            )
            body = response.json()
            rows: list[dict[str, Any]] = body.get("Contacts", [])
            page_count = (body.get("pagination") or {}).get("pageCount")
            # Trust the page count when Xero gives one; otherwise an empty page ends the list.
            more = page < page_count if isinstance(page_count, int) else bool(rows)
            return [self._contact(session, row) for row in rows], more

        try:
            records, calls = self.resumable_pages(fetch_page, first_page=first_page, session=session)
        except ListFetchInterrupted as stopped:
            stopped.resume_at["high_water"] = _later(high_water_so_far, _high_water(stopped.fetched.records))
            raise
        return ListFetch(
            records,
            complete=since is None and first_page == 1,
            high_water=_later(high_water_so_far, _high_water(records)) or since,
            calls=calls,
        )

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

    def _category(self, session: LedgerSession, row: dict[str, Any]) -> ListRecord:
        account_type = row.get("Type", "")
        usable: list[ItemType] = []
        postable = row.get("SystemAccount") not in NON_POSTABLE_SYSTEM_ACCOUNTS
        if postable and account_type in COST_ACCOUNT_TYPES:
            usable.append(ItemType.COST)
        if postable and account_type in SALES_ACCOUNT_TYPES:
            usable.append(ItemType.SALES)
        if postable and (
            row.get("ShowInExpenseClaims")
            or (account_type in COST_ACCOUNT_TYPES and "ShowInExpenseClaims" not in row)
        ):
            usable.append(ItemType.EXPENSE_CLAIM)
        return self._record(
            session,
            ListType.CATEGORIES,
            row["AccountID"],
            code=row.get("Code"),
            name=row.get("Name", ""),
            status=_status(row.get("Status")),
            remote_updated_at=parse_xero_datetime(row.get("UpdatedDateUTC")),
            account_type=account_type,
            default_tax_code=row.get("TaxType"),
            usable_for=usable,
            currency=row.get("CurrencyCode"),
            raw={k: row[k] for k in ("Class", "EnablePaymentsToAccount", "SystemAccount") if k in row},
        )

    def _bank_account(self, session: LedgerSession, row: dict[str, Any]) -> ListRecord:
        return self._record(
            session,
            ListType.BANK_ACCOUNTS,
            row["AccountID"],
            code=row.get("Code"),
            name=row.get("Name", ""),
            status=_status(row.get("Status")),
            remote_updated_at=parse_xero_datetime(row.get("UpdatedDateUTC")),
            bank_account_type=row.get("BankAccountType"),
            currency=row.get("CurrencyCode"),
            account_number=row.get("BankAccountNumber"),
        )

    def _contact(self, session: LedgerSession, row: dict[str, Any]) -> ListRecord:
        return self._record(
            session,
            ListType.CONTACTS,
            row["ContactID"],
            code=row.get("AccountNumber") or row.get("ContactNumber"),
            name=row.get("Name", ""),
            status=_status(row.get("ContactStatus")),
            remote_updated_at=parse_xero_datetime(row.get("UpdatedDateUTC")),
            is_supplier=bool(row.get("IsSupplier")),
            is_customer=bool(row.get("IsCustomer")),
            default_category_code=row.get("PurchasesDefaultAccountCode"),
            default_tax_code=row.get("AccountsPayableTaxType"),
            currency=row.get("DefaultCurrency"),
            email=row.get("EmailAddress"),
        )

    def _tax_rate(self, session: LedgerSession, row: dict[str, Any]) -> ListRecord:
        applies: list[ItemType] = []
        if row.get("CanApplyToExpenses"):
            applies += [ItemType.COST, ItemType.EXPENSE_CLAIM]
        if row.get("CanApplyToRevenue"):
            applies.append(ItemType.SALES)
        rate = row.get("EffectiveRate", row.get("DisplayTaxRate"))
        return self._record(
            session,
            ListType.TAX_RATES,
            row["TaxType"],  # the code Xero wants on lines is the tax rate's identity
            code=row["TaxType"],
            name=row.get("Name", row["TaxType"]),
            status=_status(row.get("Status")),
            rate=float(rate) if rate is not None else None,
            applies_to=applies,
            raw={"ReportTaxType": row.get("ReportTaxType")} if row.get("ReportTaxType") else {},
        )

    def _item(self, session: LedgerSession, row: dict[str, Any]) -> ListRecord:
        purchase = row.get("PurchaseDetails") or {}
        sales = row.get("SalesDetails") or {}
        return self._record(
            session,
            ListType.ITEMS,
            row["ItemID"],
            code=row.get("Code"),
            name=row.get("Name") or row.get("Code", ""),
            remote_updated_at=parse_xero_datetime(row.get("UpdatedDateUTC")),
            purchase_category_code=purchase.get("AccountCode"),
            purchase_tax_code=purchase.get("TaxType"),
            purchase_price=purchase.get("UnitPrice"),
            sales_category_code=sales.get("AccountCode"),
            sales_tax_code=sales.get("TaxType"),
            sales_price=sales.get("UnitPrice"),
            raw={"IsSold": row.get("IsSold"), "IsPurchased": row.get("IsPurchased")},
        )

    def _tracking_options(self, session: LedgerSession, categories: list[dict[str, Any]]) -> list[ListRecord]:
        # Xero allows two active tracking categories: they are our project dimensions 1 and 2.
        active = [c for c in categories if c.get("Status", "ACTIVE") == "ACTIVE"]
        dimension_of = {c["TrackingCategoryID"]: index + 1 for index, c in enumerate(active[:2])}
        records = []
        for category in categories:
            category_active = category.get("Status", "ACTIVE") == "ACTIVE"
            for option in category.get("Options", []):
                records.append(
                    self._record(
                        session,
                        ListType.PROJECTS,
                        option["TrackingOptionID"],
                        name=option.get("Name", ""),
                        status=_status(option.get("Status")) if category_active else RecordStatus.ARCHIVED,
                        dimension=dimension_of.get(category["TrackingCategoryID"]),
                        dimension_name=category.get("Name"),
                        dimension_remote_id=category["TrackingCategoryID"],
                    )
                )
        return records

    def _projects_api_projects(self, session: LedgerSession) -> tuple[list[ListRecord], int]:
        """The organisation's Projects API projects (in progress: active; closed: archived), and the
        calls it took. They sit outside tracking dimensions 1 and 2 and cannot code a line: Xero's
        bills, receipts and spend money carry tracking options only. None without the scope (a
        connection made before we asked for it, until it is reconnected) or where Xero refuses the
        Projects API for the organisation."""
        granted = session.granted_scope()
        if granted is not None and not PROJECTS_SCOPES & set(granted.split()):
            return [], 0
        calls = 0

        def fetch_page(page: int) -> tuple[list[dict[str, Any]], bool]:
            nonlocal calls
            calls += 1
            response = self.request(
                session,
                "GET",
                self.config.urls["projects"] + "/Projects",
                params={
                    "states": "INPROGRESS,CLOSED",
                    "page": str(page),
                    "pageSize": str(PROJECTS_PAGE_SIZE),
                },
            )
            body = response.json()
            rows: list[dict[str, Any]] = body.get("items") or []
            page_count = (body.get("pagination") or {}).get("pageCount")
            return rows, page < page_count if isinstance(page_count, int) else len(rows) >= PROJECTS_PAGE_SIZE

        try:
            rows = [row for page_rows in self.pages(fetch_page) for row in page_rows]
        except AuthRevoked as refused:
            # The API's own refusal (not a refused refresh token, which has no status): Projects is
            # not enabled for this organisation, or its grant lacks the scope.
            if refused.status not in (401, 403):
                raise
            logger.info("xero projects api not available", provider=self.provider, status=refused.status)
            return [], calls
        return [self._project(session, row) for row in rows], calls

    def _project(self, session: LedgerSession, row: dict[str, Any]) -> ListRecord:
        return self._record(
            session,
            ListType.PROJECTS,
            row["projectId"],
            name=row.get("name", ""),
            status=RecordStatus.ARCHIVED if row.get("status") == "CLOSED" else RecordStatus.ACTIVE,
            dimension=None,
            dimension_name=PROJECTS_DIMENSION_NAME,
            currency=row.get("currencyCode"),
            raw={LINE_CODABLE: False, "contact_id": row.get("contactId")},
        )

    # --- publishing ----------------------------------------------------------------------------

    def ensure_contact(self, session: LedgerSession, name: str, *, customer: bool, key: str) -> ListRecord:
        wanted = normalise_name(name)
        response = self.request(
            session, "GET", self.config.api_base_url + "/Contacts", params={"searchTerm": name, "page": "1"}
        )
        for row in response.json().get("Contacts", []):
            if (
                normalise_name(row.get("Name", "")) == wanted
                and row.get("ContactStatus", "ACTIVE") == "ACTIVE"
            ):
                return self._contact(session, row)
        created = self.request(
            session,
            "PUT",
            self.config.api_base_url + "/Contacts",
            json={"Contacts": [{"Name": name}]},
            headers={"Idempotency-Key": key},
            retry_safe=True,
        )
        element = (created.json().get("Contacts") or [{}])[0]
        if element.get("ValidationErrors"):
            errors = [FieldError(message=e.get("Message", "")) for e in element["ValidationErrors"]]
            raise Rejected("; ".join(e.message for e in errors), field_errors=errors, provider=self.provider)
        return self._contact(session, element)

    def route(self, plan: PublishPlan) -> Route:
        """Where a plan lands in Xero. With bank match on, the document must be able to take a
        payment: Xero pays only an approved (AUTHORISED) bill, and bank match never creates a bank
        transaction, so Spend Money and classic claims become bills awaiting payment."""
        choices = self.capabilities.destinations.get(plan.item_type, ())
        if plan.destination not in choices:
            raise Rejected(
                f"Xero has no destination {plan.destination!r} for {plan.item_type.value} items; "
                f"choose one of: {', '.join(choices)}",
                field_errors=[FieldError(f"unknown destination {plan.destination!r}", "destination")],
                provider=self.provider,
            )
        destination = plan.destination
        warnings: list[str] = []
        if plan.bank_match:
            if destination == SPEND_MONEY:
                destination = "bill_awaiting_payment"
                warnings.append(
                    "Bank match is on: published as a bill awaiting payment and paid from the bank line, "
                    "not as Spend Money (bank match never creates a bank transaction)"
                )
            elif destination == CLASSIC_EXPENSE_CLAIM:
                destination = BILL_TO_EMPLOYEE
                warnings.append(
                    "Bank match is on: published as a bill to the claimant and paid from the bank line "
                    "(a classic expense claim cannot take a payment through Xero's API)"
                )
            elif INVOICE_STATUS_BY_DESTINATION.get(destination, "AUTHORISED") != "AUTHORISED":
                warnings.append(
                    "Bank match is on: published as Awaiting Payment, because Xero takes a payment "
                    "only on an approved document"
                )
        if destination in INVOICE_STATUS_BY_DESTINATION:
            status = "AUTHORISED" if plan.bank_match else INVOICE_STATUS_BY_DESTINATION[destination]
            return Route("Invoices", destination, status, tuple(warnings))
        if destination == SPEND_MONEY:
            return Route("BankTransactions", destination, None, tuple(warnings))
        return Route("Receipts", destination, None, tuple(warnings))

    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        route = self.route(plan)
        if route.endpoint == "BankTransactions":
            return self._publish_spend_money(session, plan, route)
        if route.endpoint == "Receipts":
            return self._publish_classic_claim(session, plan, route)
        outcome = self._publish_invoices(session, [self._invoice_entry(session, plan, route)])[0]
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    def publish_batch(
        self, session: LedgerSession, plans: list[PublishPlan]
    ) -> list[PublishResult | LedgerError]:
        """Bills and invoices go up to ``batch_size`` (50) at a time in one ``PUT /Invoices`` with
        ``summarizeErrors=false``, each element answered on its own; Spend Money and classic claims
        take one call each. The batch's Idempotency-Key is derived from the plans' keys, so a
        resent batch is replayed by Xero for ~6 minutes; plans marked ``may_exist`` are looked up
        by the key kept in their ``Url`` first, which covers a retry after that window."""
        results: list[PublishResult | LedgerError | None] = [None] * len(plans)
        entries: list[tuple[int, InvoiceEntry]] = []
        for index, plan in enumerate(plans):
            try:
                route = self.route(plan)
                if route.endpoint == "Invoices":
                    entries.append((index, self._invoice_entry(session, plan, route)))
                else:
                    results[index] = self.publish(session, plan)
            except (Rejected, NotFound) as refused:
                results[index] = refused
            except LedgerError as stopped:
                # One call per Spend Money or claim: keep those that went through (see stopped_short).
                done = [result for result in results if result is not None]
                stopped_short(done, stopped, 0)  # raises when nothing went through yet
                return [stopped if result is None else result for result in results]
        outcomes = self._publish_invoices(session, [entry for _, entry in entries])
        for (index, _), outcome in zip(entries, outcomes, strict=True):
            results[index] = outcome
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    # invoices (bills, sales invoices, bills to employees) ----------------------------------------

    def _invoice_entry(self, session: LedgerSession, plan: PublishPlan, route: Route) -> InvoiceEntry:
        contact = (
            self._claimant_contact(session, plan)
            if route.destination == BILL_TO_EMPLOYEE
            else self._contact_ref(plan)
        )
        return InvoiceEntry(plan, route, self.invoice_body(plan, route, contact))

    def invoice_body(self, plan: PublishPlan, route: Route, contact: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Type": "ACCREC" if plan.item_type == ItemType.SALES else "ACCPAY",
            "Contact": contact,
            "Date": plan.date.isoformat(),
            "LineAmountTypes": "Exclusive",  # our lines carry net amounts and their own tax
            "Status": route.status,
            "CurrencyCode": plan.currency,
            "LineItems": [self._line(line) for line in plan.lines],
            # Shown as "Go to ledgerlink" in Xero, and where our key survives Xero's idempotency window.
            "Url": self.source_link(plan),
        }
        if plan.due_date:
            body["DueDate"] = plan.due_date.isoformat()
        if plan.reference:
            # On a bill InvoiceNumber holds the supplier's reference; Reference is ACCREC-only.
            body["InvoiceNumber" if plan.item_type != ItemType.SALES else "Reference"] = plan.reference
        return body

    def _publish_invoices(
        self, session: LedgerSession, entries: list[InvoiceEntry]
    ) -> list[PublishResult | LedgerError]:
        """Every entry answered in order: found from an earlier attempt, created, or refused. A plan
        present twice (one message delivered twice) is sent once and answered twice."""
        outcomes: list[PublishResult | LedgerError | None] = [None] * len(entries)
        first_of: dict[str, int] = {}
        for index, entry in enumerate(entries):
            first_of.setdefault(entry.plan.idempotency_key, index)
        found = self._existing_invoices(session, [e for e in entries if e.plan.may_exist])
        to_send: list[tuple[int, InvoiceEntry]] = []
        for index, entry in enumerate(entries):
            if first_of[entry.plan.idempotency_key] != index:
                continue
            row = found.get(entry.plan.idempotency_key)
            if row is not None:
                logger.info("bill found in Xero from an earlier attempt", provider=self.provider)
                outcomes[index] = self._invoice_result(entry, row)
            else:
                to_send.append((index, entry))
        size = self.capabilities.batch_size
        for start in range(0, len(to_send), size):
            chunk = to_send[start : start + size]
            elements = self._put(
                session,
                "Invoices",
                [entry.body for _, entry in chunk],
                batch_key([entry.plan.idempotency_key for _, entry in chunk]),
            )
            for (index, entry), element in zip(chunk, elements, strict=True):
                outcomes[index] = self._invoice_result(entry, element)
        for index, entry in enumerate(entries):
            outcomes[index] = outcomes[first_of[entry.plan.idempotency_key]]
        return [outcome for outcome in outcomes if outcome is not None]

    def _put(
        self, session: LedgerSession, collection: str, elements: list[dict[str, Any]], key: str
    ) -> list[dict[str, Any]]:
        """One create call answered per element (``summarizeErrors=false``: HTTP 200 even when some
        elements fail). The Idempotency-Key makes a resend a replay, not a second document."""
        response = self.request(
            session,
            "PUT",
            f"{self.config.api_base_url}/{collection}",
            params={"summarizeErrors": "false"},
            json={collection: elements},
            headers={"Idempotency-Key": key},
            retry_safe=True,
        )
        answered = _json_or_none(response)
        rows = answered.get(collection) if isinstance(answered, dict) else None
        if not isinstance(rows, list) or len(rows) != len(elements):
            raise Unavailable(
                f"Xero answered {len(rows) if isinstance(rows, list) else 'no'} {collection} for "
                f"{len(elements)} sent",
                provider=self.provider,
            )
        return rows

    def _invoice_result(self, entry: InvoiceEntry, element: dict[str, Any]) -> PublishResult | LedgerError:
        refused = self._refusal(element, "InvoiceID", "Xero refused the document")
        if refused is not None:
            return refused
        invoice_id = str(element["InvoiceID"])
        return PublishResult(
            remote_id=invoice_id,
            url=self.document_url(entry.plan, invoice_id),
            warnings=[*entry.route.warnings, *_warnings(element)],
        )

    def _refusal(self, element: dict[str, Any], id_field: str, fallback: str) -> Rejected | None:
        if (
            element.get("StatusAttributeString") != "ERROR"
            and not element.get("HasErrors")
            and element.get(id_field)
        ):
            return None
        errors = [FieldError(message=e.get("Message", "")) for e in element.get("ValidationErrors") or []]
        return Rejected(
            "; ".join(e.message for e in errors) or fallback, field_errors=errors, provider=self.provider
        )

    def _existing_invoices(
        self, session: LedgerSession, entries: list[InvoiceEntry]
    ) -> dict[str, dict[str, Any]]:
        """Documents an earlier attempt created, by our key (kept in the Url, which Xero stores on
        every invoice): narrowed to what this app created, for these contacts, on these dates."""
        if not entries:
            return {}
        params = {"createdByMyApp": "true", "where": _date_range(e.plan.date for e in entries)}
        contact_ids = {e.body["Contact"].get("ContactID") for e in entries}
        if None not in contact_ids:
            params["ContactIDs"] = ",".join(sorted(str(c) for c in contact_ids))
        numbers = {e.body.get("InvoiceNumber") for e in entries}
        if None not in numbers:
            params["InvoiceNumbers"] = ",".join(sorted(str(n) for n in numbers))
        rows = self._get_paged(session, "/Invoices", "Invoices", params)
        return self._by_key(rows, [e.plan for e in entries])

    @staticmethod
    def _by_key(rows: list[dict[str, Any]], plans: list[PublishPlan]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.get("Status") in GONE_STATUSES:
                continue
            link = str(row.get("Url") or "")
            for plan in plans:
                if key_marker(plan.idempotency_key) in link:
                    found.setdefault(plan.idempotency_key, row)
        return found

    def _get_paged(
        self, session: LedgerSession, path: str, collection: str, params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []

        def fetch_page(page: int) -> tuple[list[dict[str, Any]], bool]:
            response = self.request(
                session,
                "GET",
                self.config.api_base_url + path,
                params={**params, "page": str(page), "pageSize": str(self.config.page_size)},
            )
            body = response.json()
            found: list[dict[str, Any]] = body.get(collection, [])
            page_count = (body.get("pagination") or {}).get("pageCount")
            return found, page < page_count if isinstance(page_count, int) else len(
                found
            ) >= self.config.page_size

        for page_rows in self.pages(fetch_page):
            rows.extend(page_rows)
        return rows

    @staticmethod
    def document_url(plan: PublishPlan, invoice_id: str) -> str:
        area = "AccountsReceivable" if plan.item_type == ItemType.SALES else "AccountsPayable"
        return f"https://go.xero.com/{area}/View.aspx?InvoiceID={invoice_id}"

    def source_link(self, plan: PublishPlan) -> str:
        """The document's link back to the captured item, carrying our key."""
        template = self.config.urls.get("source_link", SOURCE_LINK)
        return template.format(item_id=quote(plan.item_id, safe=""), key=plan.idempotency_key)

    def _contact_ref(self, plan: PublishPlan) -> dict[str, str]:
        if plan.contact.remote_id:
            return {"ContactID": plan.contact.remote_id}
        return {"Name": plan.contact.name or ""}

    def _claimant_contact(self, session: LedgerSession, plan: PublishPlan) -> dict[str, str]:
        """The contact standing for the claimant: the imported one, or found or created once (the
        service leaves claimants of ledgers with native claims to the adapter)."""
        if plan.contact.remote_id:
            return {"ContactID": plan.contact.remote_id}
        if not plan.contact.name:
            raise Rejected(
                "the expense claim names no claimant",
                field_errors=[FieldError("no claimant", "claimant")],
                provider=self.provider,
            )
        record = self.ensure_contact(
            session, plan.contact.name, customer=False, key=f"{plan.idempotency_key}-claimant"
        )
        return {"ContactID": record.remote_id}

    @staticmethod
    def _line(line: Any) -> dict[str, Any]:
        quantity = Decimal(str(line.quantity))
        body: dict[str, Any] = {
            "Description": line.description,
            "Quantity": float(quantity),
            "UnitAmount": float((line.amount / quantity).quantize(Decimal("0.0001"))),
            "LineAmount": float(line.amount),
            "AccountCode": line.category.code,
            "TaxType": line.tax_rate.code,
            "TaxAmount": float(line.tax_amount),
        }
        tracking = [
            {"TrackingCategoryID": ref.dimension_remote_id, "TrackingOptionID": ref.remote_id}
            for ref in (line.project, line.project_2)
            if ref is not None and ref.remote_id
        ]
        if tracking:
            body["Tracking"] = tracking
        if line.product is not None and line.product.code:
            body["ItemCode"] = line.product.code
        return body

    # spend money -------------------------------------------------------------------------------------

    def spend_money_body(self, plan: PublishPlan) -> dict[str, Any]:
        bank_id = plan.bank_account.remote_id if plan.bank_account is not None else None
        if not bank_id:
            raise Rejected(
                "Spend Money needs the bank account the item was paid from",
                field_errors=[FieldError("choose the bank account", "paid.bank_account")],
                provider=self.provider,
            )
        body: dict[str, Any] = {
            "Type": "SPEND",
            "Contact": self._contact_ref(plan),
            "BankAccount": {"AccountID": bank_id},
            "Date": (plan.paid_on or plan.date).isoformat(),
            "LineAmountTypes": "Exclusive",
            "CurrencyCode": plan.currency,
            "LineItems": [self._line(line) for line in plan.lines],
            "Url": self.source_link(plan),
        }
        if plan.reference:
            body["Reference"] = plan.reference
        return body

    def _publish_spend_money(self, session: LedgerSession, plan: PublishPlan, route: Route) -> PublishResult:
        body = self.spend_money_body(plan)
        element: dict[str, Any] | None = None
        if plan.may_exist:
            where = (
                f'Type=="SPEND" AND BankAccount.AccountID==Guid("{body["BankAccount"]["AccountID"]}") '
                f"AND {_date_range([plan.paid_on or plan.date])}"
            )
            rows = self._get_paged(session, "/BankTransactions", "BankTransactions", {"where": where})
            element = self._by_key(rows, [plan]).get(plan.idempotency_key)
        if element is None:
            element = self._put(session, "BankTransactions", [body], plan.idempotency_key)[0]
        refused = self._refusal(element, "BankTransactionID", "Xero refused the spend money")
        if refused is not None:
            raise refused
        transaction_id = str(element["BankTransactionID"])
        return PublishResult(
            remote_id=transaction_id,
            url=f"https://go.xero.com/Bank/ViewTransaction.aspx?bankTransactionID={transaction_id}",
            warnings=[*route.warnings, *_warnings(element)],
        )

    # classic expense claims ------------------------------------------------------------------------

    def receipt_body(self, plan: PublishPlan, user_id: str, contact: dict[str, str]) -> dict[str, Any]:
        # Receipt.Url is read-only in Xero's schema: our reference (or the item id) identifies it.
        return {
            "Date": plan.date.isoformat(),
            "Contact": contact,
            "User": {"UserID": user_id},
            "Reference": plan.reference or plan.item_id,
            "LineAmountTypes": "Exclusive",
            "LineItems": [self._line(line) for line in plan.lines],
            "Status": "DRAFT",
        }

    def _publish_classic_claim(
        self, session: LedgerSession, plan: PublishPlan, route: Route
    ) -> PublishResult:
        """A draft Receipt for the claimant (a Xero user), then an ExpenseClaim submitting it. Each
        call has its own key; a receipt already claimed is never claimed again."""
        user_id = self._claimant_user(session, plan)
        body = self.receipt_body(plan, user_id, self._claimant_contact(session, plan))
        receipt: dict[str, Any] | None = None
        if plan.may_exist:
            receipt = self._existing_receipt(session, plan, body)
        if receipt is None:
            receipt = self._put(session, "Receipts", [body], f"{plan.idempotency_key}-receipt")[0]
            refused = self._refusal(receipt, "ReceiptID", "Xero refused the receipt")
            if refused is not None:
                raise refused
        receipt_id = str(receipt["ReceiptID"])
        warnings = [*route.warnings, *_warnings(receipt)]
        if receipt.get("Status", "DRAFT") == "DRAFT":
            claim = {
                "Status": "SUBMITTED",
                "User": {"UserID": user_id},
                "Receipts": [{"ReceiptID": receipt_id}],
            }
            element = self._put(session, "ExpenseClaims", [claim], f"{plan.idempotency_key}-claim")[0]
            refused = self._refusal(element, "ExpenseClaimID", "Xero refused the expense claim")
            if refused is not None:
                raise refused
        return PublishResult(remote_id=receipt_id, url=None, warnings=warnings)

    def _claimant_user(self, session: LedgerSession, plan: PublishPlan) -> str:
        wanted = normalise_name(plan.contact.name or "")
        users = self.request(session, "GET", self.config.api_base_url + "/Users").json().get("Users", [])
        for user in users:
            full_name = f"{user.get('FirstName') or ''} {user.get('LastName') or ''}"
            if wanted and normalise_name(full_name) == wanted and user.get("UserID"):
                return str(user["UserID"])
        raise Rejected(
            f"{plan.contact.name or 'The claimant'} is not a user of this Xero organisation: classic "
            "expense claims are made by Xero users. Invite them to Xero, or publish the claim as a "
            "bill to the employee (bill_to_employee)",
            field_errors=[FieldError("the claimant is not a Xero user", "claimant")],
            provider=self.provider,
        )

    def _existing_receipt(
        self, session: LedgerSession, plan: PublishPlan, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        where = f'User.UserID==Guid("{body["User"]["UserID"]}") AND {_date_range([plan.date])}'
        rows = self._get_paged(session, "/Receipts", "Receipts", {"where": where})
        total = plan.net + plan.tax
        for row in rows:
            if (
                row.get("Status") not in GONE_STATUSES
                and row.get("Reference") == body["Reference"]
                and _money(row.get("Total")) == total
            ):
                return row
        return None

    # bank match ----------------------------------------------------------------------------------

    def find_bank_line(
        self,
        session: LedgerSession,
        *,
        bank_account_remote_id: str,
        amount: Decimal,
        earliest: date,
        latest: date,
    ) -> BankLine | None:
        """The oldest unreconciled money-out line of this amount in the window that no payment of
        ours already pairs with. Xero's statement lines are not readable through the API; what it
        shows is the account's unreconciled BankTransactions."""
        wanted = _money(amount)
        account = f'Guid("{bank_account_remote_id}")'
        rows = self._get_paged(
            session,
            "/BankTransactions",
            "BankTransactions",
            {
                "where": f'BankAccount.AccountID=={account} AND Type=="SPEND" AND Status=="AUTHORISED" '
                f"AND IsReconciled==false AND {_date_range([earliest, latest])}"
            },
        )
        candidates = sorted(
            (
                BankLine(
                    remote_id=str(row["BankTransactionID"]),
                    date=_row_date(row),
                    amount=wanted,
                    description=str(row.get("Reference") or (row.get("Contact") or {}).get("Name") or ""),
                )
                for row in rows
                if _money(row.get("Total")) == wanted and row.get("Date")
            ),
            key=lambda line: (line.date, line.remote_id),
        )
        if not candidates:
            return None
        payments = self._get_paged(
            session,
            "/Payments",
            "Payments",
            {
                "where": f'Account.AccountID=={account} AND Status=="AUTHORISED" AND {_date_range([earliest, latest])}'
            },
        )
        return _first_unpaired(candidates, [(_row_date(p), _money(p.get("Amount"))) for p in payments])

    def record_payment(
        self,
        session: LedgerSession,
        plan: PublishPlan,
        result: PublishResult,
        *,
        bank_account_remote_id: str,
        paid_on: date,
        amount: Decimal,
        key: str,
    ) -> str:
        """``PUT /Payments`` against the published bill from the bank account, dated like the bank
        line and left unreconciled, so Xero's reconciliation offers it as the line's match."""
        route = self.route(plan)
        if route.endpoint != "Invoices":
            raise Rejected(
                f"Xero takes a payment only on a bill or invoice, not on a {route.destination}",
                provider=self.provider,
            )
        element: dict[str, Any] = {
            "Invoice": {"InvoiceID": result.remote_id},
            "Account": {"AccountID": bank_account_remote_id},
            "Date": paid_on.isoformat(),
            "Amount": float(_money(amount)),
        }
        if plan.reference:
            element["Reference"] = plan.reference[:255]
        answered = self._put(session, "Payments", [element], key)[0]
        refused = self._refusal(answered, "PaymentID", "Xero refused the payment")
        if refused is None:
            return str(answered["PaymentID"])
        # Paid already (a retry after the idempotency window)? Then the payment is ours: never a second.
        existing = self._existing_payment(session, result.remote_id, bank_account_remote_id, paid_on, amount)
        if existing is not None:
            return existing
        raise refused

    def _existing_payment(
        self, session: LedgerSession, invoice_id: str, bank_account_id: str, paid_on: date, amount: Decimal
    ) -> str | None:
        rows = self._get_paged(
            session,
            "/Payments",
            "Payments",
            {"where": f'Invoice.InvoiceID==Guid("{invoice_id}") AND Status=="AUTHORISED"'},
        )
        for row in rows:
            if (
                str((row.get("Account") or {}).get("AccountID") or "").lower() == bank_account_id.lower()
                and _row_date(row) == paid_on
                and _money(row.get("Amount")) == _money(amount)
            ):
                return str(row["PaymentID"])
        return None

    # attachments ---------------------------------------------------------------------------------

    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        file_name = FORBIDDEN_FILENAME_CHARACTERS.sub("_", document.file_name)
        endpoint = self.route(plan).endpoint
        response = self.request(
            session,
            "PUT",
            f"{self.config.api_base_url}/{endpoint}/{result.remote_id}/Attachments/{quote(file_name)}",
            content=document.content,
            headers={"Content-Type": document.content_type, "Idempotency-Key": f"{plan.idempotency_key}-doc"},
            retry_safe=True,
        )
        attachments = response.json().get("Attachments") or [{}]
        return str(attachments[0].get("AttachmentID", ""))


@dataclass(frozen=True)
class Route:
    """Where a plan lands: the endpoint, the destination actually used and, for invoices, the
    status; ``warnings`` say why it differs from what was asked."""

    endpoint: str  # Invoices | BankTransactions | Receipts
    destination: str
    status: str | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvoiceEntry:
    plan: PublishPlan
    route: Route
    body: dict[str, Any]


def key_marker(key: str) -> str:
    return f"ledgerlink_key={key}"


def batch_key(keys: list[str]) -> str:
    """The Idempotency-Key of a write carrying these plans: the plan's own key for one plan (so a
    plan sent alone and then in a batch of one is the same request), else a digest of the keys in
    order (≤128 characters), so the same batch resent is replayed."""
    if len(keys) == 1:
        return keys[0]
    return "ledgerlink-batch-" + hashlib.sha256("\x1f".join(keys).encode()).hexdigest()


def _date_range(dates: Iterable[date]) -> str:
    days = sorted(dates)
    first, last = days[0], days[-1]
    return f"Date>={_xero_date(first)} AND Date<={_xero_date(last)}"


def _xero_date(day: date) -> str:
    return f"DateTime({day.year}, {day.month:02d}, {day.day:02d})"


def _row_date(row: Mapping[str, Any]) -> date:
    parsed = parse_xero_datetime(str(row.get("Date") or ""))
    if parsed is None:
        raise Unavailable("Xero answered a transaction without a date", provider="xero")
    return parsed.date()


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError):
        return Decimal("NaN")


def _warnings(element: Mapping[str, Any]) -> list[str]:
    return [str(w.get("Message", "")) for w in element.get("Warnings") or [] if isinstance(w, Mapping)]


def _first_unpaired(lines: list[BankLine], payments: list[tuple[date, Decimal]]) -> BankLine | None:
    """The first line (oldest) not already paired with a payment of the same date and amount: two
    equal bills never claim one bank line."""
    taken = Counter(payments)
    for line in lines:
        if taken[(line.date, line.amount)] > 0:
            taken[(line.date, line.amount)] -= 1
            continue
        return line
    return None


def _high_water(records: list[ListRecord]) -> str | None:
    stamps = [r.remote_updated_at for r in records if r.remote_updated_at is not None]
    return max(stamps).strftime("%Y-%m-%dT%H:%M:%S") if stamps else None


def _later(first: str | None, second: str | None) -> str | None:
    # Both are _high_water's fixed-width ISO stamps, which sort as text.
    return max((mark for mark in (first, second) if mark), default=None)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
