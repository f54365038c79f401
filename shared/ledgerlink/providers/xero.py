"""Xero (Accounting API 2.0): OAuth2 with PKCE, tenants via /connections, the six lists, bills with
an Idempotency-Key, attachments as raw bytes. Facts: reference/providers.md §1."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from ledgerlink.errors import AuthRevoked, FieldError, LedgerError, NotFound, Rejected
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.connection import Organisation
from ledgerlink.models.lists import ListRecord, RecordStatus, normalise_name, record_id
from ledgerlink.models.publishing import PublishPlan, PublishResult
from ledgerlink.models.tokens import TokenSet
from ledgerlink.providers.base import Attachment, LedgerAdapter, LedgerSession, ListFetch
from ledgerlink.providers.config import AttachmentRules, Capabilities, ProviderConfig

# Account types a cost, a sale or an expense claim can be coded to.
COST_ACCOUNT_TYPES = frozenset(
    {"EXPENSE", "DIRECTCOSTS", "OVERHEADS", "FIXED", "INVENTORY", "PREPAYMENT", "CURRENT", "NONCURRENT"}
)
SALES_ACCOUNT_TYPES = frozenset({"REVENUE", "SALES", "OTHERINCOME"})
MS_JSON_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")
FORBIDDEN_FILENAME_CHARACTERS = re.compile(r'[<>:"/\\|?*]')

# Our destination names -> Xero invoice Status for bills and sales invoices.
INVOICE_STATUS_BY_DESTINATION = {
    "bill_draft": "DRAFT",
    "bill_awaiting_approval": "SUBMITTED",
    "bill_awaiting_payment": "AUTHORISED",
    "invoice_draft": "DRAFT",
    "invoice_awaiting_approval": "SUBMITTED",
    "invoice_awaiting_payment": "AUTHORISED",
}


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
        urls={"connections": "https://api.xero.com/connections"},
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
            "accounting.attachments",
        ),
        page_size=1000,
        refresh_token_lifetime_seconds=60 * 24 * 3600,  # "expires after 60 days unused"
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
            return ListFetch(self._tracking_options(session, rows), complete=True, calls=1)
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

    def _fetch_contacts(self, session: LedgerSession, since: str | None) -> ListFetch:
        records: list[ListRecord] = []
        calls = 0

        def fetch_page(page: int) -> tuple[list[dict[str, Any]], bool]:
            nonlocal calls
            calls += 1
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
            return rows, more

        for rows in self.pages(fetch_page):
            records.extend(self._contact(session, row) for row in rows)
        return ListFetch(
            records, complete=since is None, high_water=_high_water(records) or since, calls=calls
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
        if account_type in COST_ACCOUNT_TYPES:
            usable.append(ItemType.COST)
        if account_type in SALES_ACCOUNT_TYPES:
            usable.append(ItemType.SALES)
        if row.get("ShowInExpenseClaims") or (
            account_type in COST_ACCOUNT_TYPES and "ShowInExpenseClaims" not in row
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

    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        if plan.destination not in INVOICE_STATUS_BY_DESTINATION:
            raise Rejected(
                f"publishing to {plan.destination} is not available for Xero yet", provider=self.provider
            )
        response = self.request(
            session,
            "PUT",
            self.config.api_base_url + "/Invoices",
            params={"summarizeErrors": "false"},
            json={"Invoices": [self._invoice_body(plan)]},
            headers={"Idempotency-Key": plan.idempotency_key},
            retry_safe=True,  # the Idempotency-Key makes a resend a replay, not a second bill
        )
        element = (response.json().get("Invoices") or [{}])[0]
        if element.get("StatusAttributeString") == "ERROR" or element.get("HasErrors"):
            errors = [FieldError(message=e.get("Message", "")) for e in element.get("ValidationErrors", [])]
            raise Rejected(
                "; ".join(e.message for e in errors) or "Xero refused the bill",
                field_errors=errors,
                provider=self.provider,
            )
        invoice_id = element["InvoiceID"]
        warnings = [w.get("Message", "") for w in element.get("Warnings") or []]
        return PublishResult(remote_id=invoice_id, url=self.document_url(plan, invoice_id), warnings=warnings)

    @staticmethod
    def document_url(plan: PublishPlan, invoice_id: str) -> str:
        area = "AccountsReceivable" if plan.item_type == ItemType.SALES else "AccountsPayable"
        return f"https://go.xero.com/{area}/View.aspx?InvoiceID={invoice_id}"

    def _invoice_body(self, plan: PublishPlan) -> dict[str, Any]:
        contact: dict[str, str] = (
            {"ContactID": plan.contact.remote_id}
            if plan.contact.remote_id
            else {"Name": plan.contact.name or ""}
        )
        body: dict[str, Any] = {
            "Type": "ACCREC" if plan.item_type == ItemType.SALES else "ACCPAY",
            "Contact": contact,
            "Date": plan.date.isoformat(),
            "LineAmountTypes": "Exclusive",  # our lines carry net amounts and their own tax
            "Status": INVOICE_STATUS_BY_DESTINATION[plan.destination],
            "CurrencyCode": plan.currency,
            "LineItems": [self._line(line) for line in plan.lines],
        }
        if plan.due_date:
            body["DueDate"] = plan.due_date.isoformat()
        if plan.reference:
            # On a bill InvoiceNumber holds the supplier's reference; Reference is ACCREC-only.
            body["InvoiceNumber" if plan.item_type != ItemType.SALES else "Reference"] = plan.reference
        return body

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

    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        file_name = FORBIDDEN_FILENAME_CHARACTERS.sub("_", document.file_name)
        endpoint = "Invoices"
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


def _high_water(records: list[ListRecord]) -> str | None:
    stamps = [r.remote_updated_at for r in records if r.remote_updated_at is not None]
    return max(stamps).strftime("%Y-%m-%dT%H:%M:%S") if stamps else None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
