"""FreeAgent (API v2): OAuth2 with HTTP Basic client authentication and no scopes, one company per
token, URL identifiers, ``Link``-header paging, and writes with NO idempotency — every create is
preceded by a look-up of our own key, and repeated only after a look-up says it did not land.
Attachments travel inline as base64. Facts: reference/providers.md §4 and §6.5."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx

from ledgerlink.errors import (
    AuthRevoked,
    FieldError,
    LedgerError,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
)
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.connection import Organisation
from ledgerlink.models.lists import ListRecord, RecordStatus, normalise_name, record_id
from ledgerlink.models.publishing import PlannedLine, PublishPlan, PublishResult
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import logger
from ledgerlink.providers.base import Attachment, LedgerAdapter, LedgerSession, ListFetch
from ledgerlink.providers.config import AttachmentRules, Capabilities, ProviderConfig

# GET /v2/categories answers with four arrays; what each kind of category may be used for.
CATEGORY_GROUPS: dict[str, tuple[ItemType, ...]] = {
    "admin_expenses_categories": (ItemType.COST, ItemType.EXPENSE_CLAIM),
    "cost_of_sales_categories": (ItemType.COST, ItemType.EXPENSE_CLAIM),
    "income_categories": (ItemType.SALES,),
    # Balance-sheet categories: assets may be bought on a bill or claimed by an employee; a bill
    # may also settle a liability or an equity account, a claimant does not.
    "general_categories": (ItemType.COST,),
}
ASSET_GROUP_USES = (ItemType.COST, ItemType.EXPENSE_CLAIM)
ALL_ITEM_TYPES = [ItemType.COST, ItemType.SALES, ItemType.EXPENSE_CLAIM]

# Tax "codes" of the synthesised tax-rate list (FreeAgent has no tax-rate list, see _tax_rates).
AUTO_TAX = "Auto"
EXEMPT = "EXEMPT"
OUT_OF_SCOPE = "OUT_OF_SCOPE"
STATUS_CODES = frozenset({EXEMPT, OUT_OF_SCOPE})

# What FreeAgent takes as an attachment (§4.3) and what we accept and translate to it.
ATTACHMENT_MAX_BYTES = 5_000_000  # "5 MB"; the decimal reading is the stricter one
FREEAGENT_CONTENT_TYPES: dict[str, str] = {
    "image/png": "image/png",
    "image/x-png": "image/x-png",
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpg",
    "image/gif": "image/gif",
    "application/pdf": "application/x-pdf",
    "application/x-pdf": "application/x-pdf",
}
MAX_BILL_ITEMS = 40

# FreeAgent stamps updated_at to the second before its transaction commits, and (as the simulator
# reads the UNCONFIRMED semantics) ``updated_since`` is strictly-later. Asking from a little
# before the high-water mark re-reads a few records (unchanged ones cost no write) but never
# misses one stamped in the same second as, or committed just after, the last fetch.
UPDATED_SINCE_OVERLAP = timedelta(seconds=60)
MAX_PAGES = 1000

# Our key on the documents we create, in a field FreeAgent keeps and returns (see publish).
KEY_MARKER = re.compile(r"\[ledgerlink:([0-9a-f]{8,64})(?:/(\d+))?\]")
ITEM_MESSAGE = re.compile(r"^(?:Bill|Invoice) item (\d+): (.*)$", re.DOTALL)
LINE_FIELDS = {
    "category": "category",
    "sales tax": "tax_rate",
    "project": "project",
    "total value": "amount",
    "price": "amount",
}
HEADER_FIELDS = {
    "dated on": "date",
    "due on": "due_date",
    "reference": "reference",
    "currency": "currency",
    "attachment": "document",
}

# Destinations -> what publish creates there (and the attach step updates).
BILL = "bill"
BANK_EXPLANATION = "bank_transaction_explanation"
SALES_INVOICE = "sales_invoice"
EXPENSE = "expense"


def key_marker(key: str, part: int | None = None) -> str:
    """The tag that finds our document again: ``[ledgerlink:<key>]`` (``/n`` for line n of a
    plan FreeAgent stores as several objects)."""
    return f"[ledgerlink:{key}]" if part is None else f"[ledgerlink:{key}/{part}]"


def parse_timestamp(value: Any) -> datetime | None:
    """FreeAgent's ISO timestamps (``2026-11-02T09:00:00Z``); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def updated_since_parameter(since: str | None) -> str | None:
    """The ``updated_since`` to send for a stored high-water mark (None: fetch everything)."""
    moment = parse_timestamp(since)
    return format_timestamp(moment - UPDATED_SINCE_OVERLAP) if moment else None


def high_water(records: Iterable[ListRecord]) -> str | None:
    stamps = [r.remote_updated_at for r in records if r.remote_updated_at is not None]
    return format_timestamp(max(stamps)) if stamps else None


def decimal_or_none(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def float_or_none(value: Any) -> float | None:
    number = decimal_or_none(value)
    return float(number) if number is not None else None


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def last_segment(url: str | None) -> str | None:
    """``https://…/v2/categories/285`` → ``285`` (FreeAgent category URLs end in the nominal code)."""
    if not url:
        return None
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail or None


def contact_name(row: Mapping[str, Any]) -> str:
    """A contact's display name: the organisation, else the person."""
    organisation = (row.get("organisation_name") or "").strip()
    if organisation:
        return organisation
    return " ".join(str(row.get(k) or "").strip() for k in ("first_name", "last_name")).strip()


def error_messages(body: Any, text: str = "") -> list[str]:
    """Every message of FreeAgent's error envelope: ``{"errors":{"error":{"message"}}}``, the
    same with a list under ``error``, or ``{"errors":[{"message"}]}``; plain text otherwise."""
    items: list[Any] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, dict):
            inner = errors.get("error", errors.get("errors"))
            items = inner if isinstance(inner, list) else [inner]
        elif isinstance(errors, list):
            items = errors
        elif isinstance(body.get("message"), str):
            items = [body]
    messages = []
    for item in items:
        if isinstance(item, dict) and item.get("message"):
            messages.append(str(item["message"]))
        elif isinstance(item, str) and item.strip():
            messages.append(item.strip())
    if not messages and body is None and text.strip():
        messages.append(text.strip()[:500])
    return messages


def field_error(message: str) -> FieldError:
    """FreeAgent's message, with the item field it concerns when its wording says so."""
    match = ITEM_MESSAGE.match(message)
    if match:
        line = int(match.group(1)) - 1
        rest = match.group(2).lower()
        suffix = next((f".{name}" for prefix, name in LINE_FIELDS.items() if rest.startswith(prefix)), "")
        return FieldError(message=message, field=f"lines[{line}]{suffix}")
    lowered = message.lower()
    field = next((name for prefix, name in HEADER_FIELDS.items() if lowered.startswith(prefix)), None)
    return FieldError(message=message, field=field)


@dataclass(frozen=True)
class CompanyTax:
    """The company's sales tax set-up (``GET /v2/company``), which stands in for a tax-rate list."""

    tax_name: str
    rates: tuple[str, ...]  # as FreeAgent prints them ("20.0"), highest first

    @classmethod
    def from_company(cls, company: Mapping[str, Any]) -> CompanyTax:
        raw = [str(r) for r in company.get("sales_tax_rates") or [] if decimal_or_none(r) is not None]
        ordered = sorted(dict.fromkeys(raw), key=lambda r: decimal_or_none(r) or Decimal(0), reverse=True)
        return cls(tax_name=str(company.get("sales_tax_name") or "VAT"), rates=tuple(ordered))

    def _positive(self) -> list[str]:
        return [r for r in self.rates if (decimal_or_none(r) or 0) > 0]

    @property
    def standard(self) -> str | None:
        positive = self._positive()
        return positive[0] if positive else None

    @property
    def reduced(self) -> str | None:
        positive = self._positive()
        return positive[1] if len(positive) > 1 else None

    @property
    def zero(self) -> str | None:
        return next((r for r in self.rates if decimal_or_none(r) == 0), None)

    def code_for_rate(self, value: Any) -> str | None:
        """The company rate equal to ``value`` ("20", 20.0 and "20.0" are all "20.0")."""
        wanted = decimal_or_none(value)
        return (
            next((r for r in self.rates if decimal_or_none(r) == wanted), None)
            if wanted is not None
            else None
        )

    def code_for_auto_rate(self, name: str | None) -> str | None:
        """A category's ``auto_sales_tax_rate`` as one of our tax codes. FreeAgent names the rate
        ("Standard rate"); the company lists numbers, so standard = the highest, reduced = the next."""
        if not name:
            return None
        return {
            "standard rate": self.standard,
            "reduced rate": self.reduced,
            "zero rate": self.zero,
            "exempt": EXEMPT,
            "outside of the scope of vat": OUT_OF_SCOPE,
        }.get(name.strip().lower(), AUTO_TAX) or AUTO_TAX

    def code_for_vat_status(self, status: str | None) -> str | None:
        """A price list item's UK ``vat_status`` (standard/reduced/zero/out_of_scope)."""
        if not status:
            return None
        return {
            "standard": self.standard,
            "reduced": self.reduced,
            "zero": self.zero,
            "exempt": EXEMPT,
            "out_of_scope": OUT_OF_SCOPE,
        }.get(status.strip().lower())

    def label(self, rate: str) -> str:
        percent = f"{decimal_or_none(rate) or 0:f}".rstrip("0").rstrip(".") or "0"
        kind = {self.standard: "Standard rate", self.reduced: "Reduced rate", self.zero: "Zero rate"}.get(
            rate
        )
        own = f"{self.tax_name} {percent}%"
        return f"{kind} ({own})" if kind else own


def line_tax_fields(code: str | None) -> dict[str, str]:
    """How one of our tax codes travels on a FreeAgent line."""
    if not code or code == AUTO_TAX:
        return {}  # left out, FreeAgent applies the category's own rate
    if code in STATUS_CODES:
        return {"sales_tax_status": code}
    return {"sales_tax_rate": code}


class FreeAgentAdapter(LedgerAdapter):
    default_config: ClassVar[ProviderConfig] = ProviderConfig(
        name=ProviderName.FREEAGENT,
        authorize_url="https://api.freeagent.com/v2/approve_app",
        token_url="https://api.freeagent.com/v2/token_endpoint",
        revoke_url=None,  # FreeAgent documents no revocation endpoint
        api_base_url="https://api.freeagent.com/v2",
        token_endpoint_auth_method="client_secret_basic",
        pkce=False,
        scopes=(),  # no scopes: a token reaches what the approving user's permission level allows
        page_size=100,  # per_page maximum
        calls_per_minute=120,  # per user of the app (and 3,600 an hour)
    )
    capabilities: ClassVar[Capabilities] = Capabilities(
        provider=ProviderName.FREEAGENT,
        display_name="FreeAgent",
        auth_style="oauth2",
        organisation_choice=False,  # one token is one user in one company
        lists=tuple(ListType),
        # Only contacts have a real updated_since filter among the six. Projects and price list
        # items only sort by updated_at, and a deleted one simply vanishes: a full fetch (a call
        # or two for these short lists) is the only way to see deletions.
        incremental_lists=(ListType.CONTACTS,),
        destinations={
            ItemType.COST: (BILL, BANK_EXPLANATION),
            ItemType.SALES: (SALES_INVOICE,),
            ItemType.EXPENSE_CLAIM: (EXPENSE,),
        },
        default_destinations={
            ItemType.COST: BILL,
            ItemType.SALES: SALES_INVOICE,
            ItemType.EXPENSE_CLAIM: EXPENSE,
        },
        bank_match=False,
        native_expense_claims=True,
        # FreeAgent batches only expenses, and how a batch fails is undocumented (the simulator
        # creates the valid ones and answers 422): one document per call keeps exactly-once.
        batch_size=1,
        idempotency="lookup_by_reference",
        attachments=AttachmentRules(
            max_bytes=ATTACHMENT_MAX_BYTES,
            content_types=tuple(FREEAGENT_CONTENT_TYPES),
            per_document=1,  # a bill, expense or explanation has one ``attachment``
        ),
    )

    # --- OAuth ------------------------------------------------------------------------------------

    def revoke(self, tokens: TokenSet) -> None:
        """FreeAgent has no revocation endpoint: disconnecting is forgetting the tokens, which the
        connection service does. (The user can also remove the app from FreeAgent's settings.)"""
        return None

    def organisations(self, tokens: TokenSet) -> list[Organisation]:
        """The one company the token belongs to. Its ``subdomain`` is its identity: the company's
        ``url`` is the same ``/v2/company`` for every company, so it cannot tell two apart."""
        session = LedgerSession("", None, lambda _force: tokens.access_token.get_secret_value())
        company = self._company(session)
        return [
            Organisation(
                id=str(company.get("subdomain") or company["url"]),
                name=str(company.get("name") or company.get("subdomain") or company["url"]),
                kind=company.get("type"),
            )
        ]

    def map_error(self, response: httpx.Response) -> LedgerError:
        status = response.status_code
        body = _json_or_none(response)
        messages = error_messages(body, response.text if body is None else "")
        said = "; ".join(messages)
        if status == 401:
            return AuthRevoked(
                f"FreeAgent no longer accepts our access{': ' + said if said else ''}",
                provider=self.provider,
                status=status,
            )
        if status == 403:
            # The user lost access to the company, or their permission level is below what the
            # call needs (bills 5, banking 6, categories 7): either way only a reconnect by a user
            # with enough access helps.
            return AuthRevoked(
                f"FreeAgent refused access: {said or 'forbidden'} (reconnect as a FreeAgent user "
                "with Full or 'Tax, Accounting & Users' permission)",
                provider=self.provider,
                status=status,
            )
        if status == 404:
            return NotFound(
                said or "FreeAgent could not find that object", provider=self.provider, status=status
            )
        return Rejected(
            said or f"FreeAgent answered {status}",
            field_errors=[field_error(m) for m in messages],
            provider=self.provider,
            status=status,
        )

    # --- reading ------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.config.api_base_url + path

    def _company(self, session: LedgerSession) -> dict[str, Any]:
        company: dict[str, Any] = self.request(session, "GET", self._url("/company")).json()["company"]
        return company

    def _paged(
        self, session: LedgerSession, path: str, key: str, params: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], int]:
        """Every row of a list, following ``Link: rel="next"`` to the end; and the calls made."""
        url: str | None = self._url(path)
        query: dict[str, str] | None = {**params, "per_page": str(self.config.page_size)}
        rows: list[dict[str, Any]] = []
        calls = 0
        while url is not None and calls < MAX_PAGES:
            response = self.request(session, "GET", url, params=query)
            calls += 1
            rows.extend(response.json().get(key) or [])
            following = response.links.get("next")
            next_url = following.get("url") if following else None
            url = next_url if next_url and next_url != url else None
            query = None  # the next link carries the whole query
        return rows, calls

    def _record(
        self, session: LedgerSession, list_type: ListType, remote_id: str, **fields: Any
    ) -> ListRecord:
        return ListRecord(
            id=record_id(session.connection_id, list_type, remote_id),
            list_type=list_type,
            remote_id=remote_id,
            **fields,
        )

    def fetch_list(self, session: LedgerSession, list_type: ListType, *, since: str | None) -> ListFetch:
        if list_type == ListType.CATEGORIES:
            return self._fetch_categories(session)
        if list_type == ListType.CONTACTS:
            return self._fetch_contacts(session, since)
        if list_type == ListType.TAX_RATES:
            return ListFetch(
                self.tax_rates(session, CompanyTax.from_company(self._company(session))), True, calls=1
            )
        if list_type == ListType.ITEMS:
            return self._fetch_items(session)
        if list_type == ListType.PROJECTS:
            return self._fetch_projects(session)
        if list_type == ListType.BANK_ACCOUNTS:
            rows, calls = self._paged(session, "/bank_accounts", "bank_accounts", {})
            return ListFetch([self.bank_account(session, row) for row in rows], complete=True, calls=calls)
        raise ValueError(f"unknown list type {list_type}")

    def _category_rows(self, session: LedgerSession) -> list[tuple[str, dict[str, Any]]]:
        body = self.request(session, "GET", self._url("/categories"), params={"sub_accounts": "true"}).json()
        return [(group, row) for group in CATEGORY_GROUPS for row in body.get(group) or []]

    def _fetch_categories(self, session: LedgerSession) -> ListFetch:
        rows = self._category_rows(session)
        tax = CompanyTax.from_company(self._company(session))
        return ListFetch(
            [self.category(session, group, row, tax) for group, row in rows], complete=True, calls=2
        )

    def _fetch_contacts(self, session: LedgerSession, since: str | None) -> ListFetch:
        # view=all: hidden contacts come back too (the default view is active only).
        params = {"view": "all", "sort": "updated_at"}
        updated_since = updated_since_parameter(since)
        if updated_since:
            params["updated_since"] = updated_since
        rows, calls = self._paged(session, "/contacts", "contacts", params)
        suppliers: set[str] = set()
        clients: set[str] = set()
        if rows:
            # FreeAgent keeps no supplier/customer flag on a contact; its views say who is which.
            for view, found in (("suppliers", suppliers), ("clients", clients)):
                view_rows, view_calls = self._paged(
                    session, "/contacts", "contacts", {**params, "view": view}
                )
                found.update(str(row["url"]) for row in view_rows)
                calls += view_calls
        records = [
            self.contact(
                session,
                row,
                supplier=_flag(str(row["url"]) in suppliers, row, hidden_knowable=False),
                customer=_flag(str(row["url"]) in clients, row, hidden_knowable=True),
            )
            for row in rows
        ]
        return ListFetch(
            records,
            complete=updated_since is None,
            high_water=high_water(records) or since,
            calls=calls,
        )

    def _fetch_items(self, session: LedgerSession) -> ListFetch:
        rows, calls = self._paged(session, "/price_list_items", "price_list_items", {"sort": "updated_at"})
        groups = {str(row["url"]): (group, row) for group, row in self._category_rows(session)}
        tax = CompanyTax.from_company(self._company(session))
        records = [self.item(session, row, groups, tax) for row in rows]
        return ListFetch(records, complete=True, calls=calls + 2)

    def _fetch_projects(self, session: LedgerSession) -> ListFetch:
        # The documented views are one status each; the default shows active projects only.
        by_url: dict[str, dict[str, Any]] = {}
        calls = 0
        for view in ("active", "completed", "cancelled", "hidden"):
            rows, view_calls = self._paged(session, "/projects", "projects", {"view": view})
            calls += view_calls
            by_url.update((str(row["url"]), row) for row in rows)
        return ListFetch([self.project(session, row) for row in by_url.values()], complete=True, calls=calls)

    # --- mappings (public so unit tests can exercise them without a ledger) -------------------------

    def category(
        self, session: LedgerSession, group: str, row: Mapping[str, Any], tax: CompanyTax
    ) -> ListRecord:
        uses = CATEGORY_GROUPS.get(group, ())
        if group == "general_categories" and "asset" in str(row.get("group_description") or "").lower():
            uses = ASSET_GROUP_USES
        raw = {
            k: row[k]
            for k in ("group_description", "allowable_for_tax", "tax_reporting_name", "auto_sales_tax_rate")
            if row.get(k) is not None
        }
        return self._record(
            session,
            ListType.CATEGORIES,
            str(row["url"]),
            code=row.get("nominal_code") or last_segment(row.get("url")),
            name=str(row.get("description") or row.get("nominal_code") or ""),
            account_type=group.removesuffix("_categories"),
            default_tax_code=tax.code_for_auto_rate(row.get("auto_sales_tax_rate")),
            usable_for=list(uses),
            raw=raw,
        )

    def contact(
        self, session: LedgerSession, row: Mapping[str, Any], *, supplier: bool | None, customer: bool | None
    ) -> ListRecord:
        raw = {
            k: row[k]
            for k in ("charge_sales_tax", "sales_tax_registration_number", "default_payment_terms_in_days")
            if row.get(k) is not None
        }
        return self._record(
            session,
            ListType.CONTACTS,
            str(row["url"]),
            name=contact_name(row) or str(row["url"]),
            status=RecordStatus.ACTIVE if row.get("status", "Active") == "Active" else RecordStatus.ARCHIVED,
            remote_updated_at=parse_timestamp(row.get("updated_at")),
            is_supplier=supplier,
            is_customer=customer,
            # FreeAgent keeps no default category on a contact; charge_sales_tax is about invoicing
            # the contact, not about its bills, so it stays in raw rather than becoming a default.
            currency=row.get("currency"),
            email=row.get("email") or row.get("billing_email"),
            raw=raw,
        )

    def tax_rates(self, session: LedgerSession, tax: CompanyTax) -> list[ListRecord]:
        """FreeAgent has no tax-rate list: a line carries a number from ``company.sales_tax_rates``,
        "Auto" (the category's own rate) or a ``sales_tax_status``. These records are that
        vocabulary, so coding can name a rate and items and categories can point at one."""
        uses = list(ALL_ITEM_TYPES)
        records = [
            self._record(
                session,
                ListType.TAX_RATES,
                rate,
                code=rate,
                name=tax.label(rate),
                rate=float_or_none(rate),
                applies_to=uses,
                raw={"sales_tax_rate": rate},
            )
            for rate in tax.rates
        ]
        records += [
            self._record(
                session,
                ListType.TAX_RATES,
                AUTO_TAX,
                code=AUTO_TAX,
                name="Auto (the category's own rate)",
                applies_to=uses,
                raw={"sales_tax_rate": AUTO_TAX},
            ),
            self._record(
                session,
                ListType.TAX_RATES,
                EXEMPT,
                code=EXEMPT,
                name=f"Exempt from {tax.tax_name}",
                rate=0.0,
                applies_to=uses,
                raw={"sales_tax_status": EXEMPT},
            ),
            self._record(
                session,
                ListType.TAX_RATES,
                OUT_OF_SCOPE,
                code=OUT_OF_SCOPE,
                name=f"Outside the scope of {tax.tax_name}",
                rate=0.0,
                applies_to=uses,
                raw={"sales_tax_status": OUT_OF_SCOPE},
            ),
        ]
        return records

    def item(
        self,
        session: LedgerSession,
        row: Mapping[str, Any],
        categories: Mapping[str, tuple[str, Mapping[str, Any]]],
        tax: CompanyTax,
    ) -> ListRecord:
        category_url = row.get("category")
        group, category = categories.get(str(category_url), ("", {}))
        category_code = category.get("nominal_code") or last_segment(category_url)
        tax_code = tax.code_for_vat_status(row.get("vat_status")) or tax.code_for_rate(
            row.get("sales_tax_rate")
        )
        price = float_or_none(row.get("price"))
        # A price list item is FreeAgent's invoicing vocabulary; one coded to a cost category is
        # what the business buys, so its category, tax and price are the purchase side.
        side = "purchase" if group in ("admin_expenses_categories", "cost_of_sales_categories") else "sales"
        return self._record(
            session,
            ListType.ITEMS,
            str(row["url"]),
            code=row.get("code"),
            name=str(row.get("description") or row.get("code") or row["url"]),
            remote_updated_at=parse_timestamp(row.get("updated_at")),
            **{
                f"{side}_category_code": category_code,
                f"{side}_tax_code": tax_code,
                f"{side}_price": price,
            },
            raw={
                k: row[k]
                for k in ("item_type", "quantity", "category", "vat_status")
                if row.get(k) is not None
            },
        )

    def project(self, session: LedgerSession, row: Mapping[str, Any]) -> ListRecord:
        status = str(row.get("status") or "Active")
        return self._record(
            session,
            ListType.PROJECTS,
            str(row["url"]),
            name=str(row.get("name") or row["url"]),
            status=RecordStatus.ACTIVE if status == "Active" else RecordStatus.ARCHIVED,
            remote_updated_at=parse_timestamp(row.get("updated_at")),
            # FreeAgent has one analysis dimension, projects; there is no second one.
            dimension=1,
            dimension_name="Project",
            dimension_remote_id=self._url("/projects"),
            currency=row.get("currency"),
            raw={k: row[k] for k in ("status", "contact", "contact_name") if row.get(k) is not None},
        )

    def bank_account(self, session: LedgerSession, row: Mapping[str, Any]) -> ListRecord:
        return self._record(
            session,
            ListType.BANK_ACCOUNTS,
            str(row["url"]),
            name=str(row.get("name") or row["url"]),
            status=RecordStatus.ACTIVE if row.get("status", "active") == "active" else RecordStatus.ARCHIVED,
            remote_updated_at=parse_timestamp(row.get("updated_at")),
            bank_account_type=row.get("type"),
            currency=row.get("currency"),
            account_number=row.get("account_number"),
            raw={k: row[k] for k in ("bank_name", "is_primary", "is_personal") if row.get(k) is not None},
        )

    # --- contacts ------------------------------------------------------------------------------------

    def ensure_contact(self, session: LedgerSession, name: str, *, customer: bool, key: str) -> ListRecord:
        """Find an active contact by name, else create it once. FreeAgent has no contact search
        and no field for our key, so the name is the identity: looked up before the create and
        again before any resend of it."""
        wanted = normalise_name(name)

        def find() -> dict[str, Any] | None:
            rows, _calls = self._paged(session, "/contacts", "contacts", {"view": "active"})
            return next((row for row in rows if normalise_name(contact_name(row)) == wanted), None)

        row = self._create_once(session, "/contacts", "contact", {"organisation_name": name}, find)
        return self.contact(
            session, row, supplier=True if not customer else None, customer=True if customer else None
        )

    # --- publishing: exactly once without idempotency -----------------------------------------------

    def _create_once(
        self,
        session: LedgerSession,
        path: str,
        root: str,
        body: Mapping[str, Any],
        find: Callable[[], dict[str, Any] | None],
        *,
        looked_up: bool = False,
    ) -> dict[str, Any]:
        """Create one object, exactly once. FreeAgent has no idempotency: a resent POST is a second
        object. So look our object up first (a redelivered message; ``looked_up`` when the caller
        just did), send the POST without the base's blind retries, and after any failure that may
        hide a committed write (timeout, lost response, 5xx) look it up again before sending
        anything more."""
        found = None if looked_up else find()
        if found is not None:
            return found
        for attempt in range(1, self.config.max_attempts + 1):
            last_attempt = attempt == self.config.max_attempts
            try:
                response = self.request(session, "POST", self._url(path), json={root: body}, retry_safe=False)
            except Unavailable:
                if last_attempt:
                    raise
                self._backoff(attempt, reason="create outcome unknown")
                found = find()
                if found is not None:
                    logger.info("create had landed; using it", provider=self.provider, collection=path)
                    return found
                continue
            except RateLimited as limited:
                # A 429 is answered before the request is processed: nothing was created.
                if last_attempt or limited.retry_after > self.config.max_inline_wait_seconds:
                    raise
                self._sleep(limited.retry_after)
                continue
            created = (_json_or_none(response) or {}).get(root)
            if isinstance(created, dict):
                return created
            location = response.headers.get("Location")
            if location:  # 201 with an empty body: read the object back
                read: dict[str, Any] = self.request(session, "GET", location).json()[root]
                return read
            raise Unavailable(f"FreeAgent created a {root} but did not say which", provider=self.provider)
        raise Unavailable("FreeAgent kept failing", provider=self.provider)  # pragma: no cover

    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        publishers: dict[str, Callable[[LedgerSession, PublishPlan], PublishResult]] = {
            BILL: self._publish_bill,
            SALES_INVOICE: self._publish_invoice,
            EXPENSE: self._publish_expenses,
            BANK_EXPLANATION: self._publish_explanations,
        }
        publisher = publishers.get(plan.destination)
        if publisher is None:
            raise Rejected(
                f"publishing to {plan.destination!r} is not available for FreeAgent; choose one of: "
                + ", ".join(d for ds in self.capabilities.destinations.values() for d in ds),
                provider=self.provider,
            )
        return publisher(session, plan)

    def _contact_url(self, session: LedgerSession, plan: PublishPlan) -> str:
        if plan.contact.remote_id:
            return plan.contact.remote_id
        if not plan.contact.name:
            raise Rejected("the item names no supplier or customer", provider=self.provider)
        record = self.ensure_contact(
            session,
            plan.contact.name,
            customer=plan.item_type == ItemType.SALES,
            key=f"{plan.idempotency_key}:contact",
        )
        return record.remote_id

    def _category_url(self, line: PlannedLine, number: int) -> str:
        if line.category.remote_id:
            return line.category.remote_id
        if line.category.code:
            return self._url(f"/categories/{line.category.code}")
        raise Rejected(f"line {number} has no category", provider=self.provider)

    @staticmethod
    def _warnings(plan: PublishPlan) -> list[str]:
        if any(line.project_2 is not None for line in plan.lines):
            return ["FreeAgent has one project dimension: the second project on a line was not sent"]
        return []

    @staticmethod
    def _total_warning(document: Mapping[str, Any], expected: Decimal, what: str) -> list[str]:
        found = decimal_or_none(document.get("total_value"))
        if found is not None and abs(found) != abs(expected):
            return [
                f"the {what} already in FreeAgent totals {found}, the item {expected} (changed in FreeAgent?)"
            ]
        return []

    # bills ------------------------------------------------------------------------------------------

    def bill_body(self, plan: PublishPlan, contact_url: str) -> dict[str, Any]:
        if len(plan.lines) > MAX_BILL_ITEMS:
            raise Rejected(
                f"FreeAgent takes at most {MAX_BILL_ITEMS} lines on a bill; this one has {len(plan.lines)}",
                provider=self.provider,
            )
        items = []
        for number, line in enumerate(plan.lines, start=1):
            item: dict[str, Any] = {
                "category": self._category_url(line, number),
                "description": line.description,
                # Gross, so the bill totals exactly what was captured; FreeAgent works out the
                # tax inside it from the rate.
                "total_value": money(line.amount + line.tax_amount),
                **line_tax_fields(line.tax_rate.code),
            }
            if line.project is not None and line.project.remote_id:
                item["project"] = line.project.remote_id
            items.append(item)
        return {
            "contact": contact_url,
            # Required by FreeAgent; the supplier's reference when captured, else our item id.
            "reference": plan.reference or plan.item_id,
            "dated_on": plan.date.isoformat(),
            "due_on": (plan.due_date or plan.date).isoformat(),
            "currency": plan.currency,
            # Our key, where FreeAgent keeps it and returns it: bill comments are internal notes.
            "comments": f"Published by ledgerlink {key_marker(plan.idempotency_key)}",
            "bill_items": items,
        }

    def _publish_bill(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        contact_url = self._contact_url(session, plan)
        body = self.bill_body(plan, contact_url)
        marker = key_marker(plan.idempotency_key)

        def find() -> dict[str, Any] | None:
            # The supplier's reference is not unique; our key in the comments is. Contact and date
            # narrow the search to a page; the total is checked below.
            rows, _calls = self._paged(
                session,
                "/bills",
                "bills",
                {
                    "view": "all",
                    "contact": contact_url,
                    "from_date": body["dated_on"],
                    "to_date": body["dated_on"],
                },
            )
            return next((row for row in rows if marker in str(row.get("comments") or "")), None)

        bill = self._create_once(session, "/bills", "bill", body, find)
        return PublishResult(
            remote_id=str(bill["url"]),
            warnings=self._warnings(plan) + self._total_warning(bill, plan.gross, "bill"),
        )

    # sales invoices ---------------------------------------------------------------------------------

    def invoice_body(self, plan: PublishPlan, contact_url: str) -> dict[str, Any]:
        items = []
        for number, line in enumerate(plan.lines, start=1):
            quantity = Decimal(str(line.quantity))
            price = line.amount / quantity
            if quantity <= 0 or price != price.quantize(Decimal("0.01")):
                quantity, price = Decimal(1), line.amount  # keep the line total exact
            item: dict[str, Any] = {
                "item_type": "Products" if line.product is not None else "Services",
                "description": line.description,
                "quantity": str(quantity.normalize()),
                "price": money(price),
                "category": self._category_url(line, number),
                **line_tax_fields(line.tax_rate.code),
            }
            items.append(item)
        terms = (plan.due_date - plan.date).days if plan.due_date else 30
        body: dict[str, Any] = {
            "contact": contact_url,
            "dated_on": plan.date.isoformat(),
            "payment_terms_in_days": max(0, terms),
            "currency": plan.currency,
            "invoice_items": items,
        }
        projects = {line.project.remote_id for line in plan.lines if line.project and line.project.remote_id}
        if len(projects) == 1:
            body["project"] = projects.pop()  # FreeAgent puts the project on the invoice, not the line
        if plan.reference:
            body["reference"] = plan.reference
        return body

    def _publish_invoice(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        contact_url = self._contact_url(session, plan)
        body = self.invoice_body(plan, contact_url)
        descriptions = [line.description for line in plan.lines]

        def find() -> dict[str, Any] | None:
            # Every free-text field of an invoice is printed on it, so our key cannot ride along.
            # The invoice reference is unique in FreeAgent: with one, it finds our invoice. Without
            # one (FreeAgent numbers it), the customer, date, total and lines must all agree.
            rows, _calls = self._paged(
                session,
                "/invoices",
                "invoices",
                {"view": "all", "contact": contact_url, "nested_invoice_items": "true"},
            )
            for row in rows:
                if plan.reference:
                    if row.get("reference") == plan.reference:
                        return row
                    continue
                lines = [str(i.get("description") or "") for i in row.get("invoice_items") or []]
                if (
                    row.get("dated_on") == body["dated_on"]
                    and decimal_or_none(row.get("total_value")) == plan.gross
                    and lines == descriptions
                ):
                    return row
            return None

        invoice = self._create_once(session, "/invoices", "invoice", body, find)
        return PublishResult(
            remote_id=str(invoice["url"]),
            warnings=self._warnings(plan) + self._total_warning(invoice, plan.gross, "invoice"),
        )

    # expense claims ---------------------------------------------------------------------------------

    def _claimant_url(self, session: LedgerSession, plan: PublishPlan) -> str:
        """The FreeAgent user the claim is for. Expenses belong to users, not contacts."""
        remote_id = plan.contact.remote_id or ""
        if "/users/" in remote_id:
            return remote_id
        wanted = normalise_name(plan.contact.name or "")
        try:
            users, _calls = self._paged(session, "/users", "users", {"view": "all"})
        except AuthRevoked:
            # Listing users needs permission level 7; the token's own user is always readable.
            users = [self.request(session, "GET", self._url("/users/me")).json()["user"]]
        for user in users:
            full_name = f"{user.get('first_name') or ''} {user.get('last_name') or ''}"
            if wanted and normalise_name(full_name) == wanted:
                return str(user["url"])
        raise Rejected(
            f"{plan.contact.name or 'The claimant'} is not a user of this FreeAgent company; "
            "expense claims can only be made for FreeAgent users",
            field_errors=[FieldError(message="unknown claimant", field="claimant")],
            provider=self.provider,
        )

    def expense_body(
        self, plan: PublishPlan, user_url: str, line: PlannedLine, number: int
    ) -> dict[str, Any]:
        reference = f"{plan.reference} " if plan.reference else ""
        body: dict[str, Any] = {
            "user": user_url,
            "category": self._category_url(line, number),
            "dated_on": plan.date.isoformat(),
            "currency": plan.currency,
            # Negative: money the business owes the claimant; a negative line is a refund to it.
            "gross_value": money(-(line.amount + line.tax_amount)),
            "description": line.description,
            # Expenses have no comments; the receipt reference is internal and comes back on reads.
            "receipt_reference": reference + key_marker(plan.idempotency_key, number),
            **line_tax_fields(line.tax_rate.code),
        }
        if line.project is not None and line.project.remote_id:
            body["project"] = line.project.remote_id
        return body

    def _find_by_marker(
        self,
        session: LedgerSession,
        path: str,
        key: str,
        params: Mapping[str, str],
        *,
        field: str,
        idempotency_key: str,
    ) -> dict[int, dict[str, Any]]:
        """The objects tagged with our key, by line number."""
        rows, _calls = self._paged(session, path, key, params)
        found: dict[int, dict[str, Any]] = {}
        for row in rows:
            for match in KEY_MARKER.finditer(str(row.get(field) or "")):
                if match.group(1) == idempotency_key:
                    found[int(match.group(2) or 1)] = row
        return found

    def _expenses_of(self, session: LedgerSession, plan: PublishPlan) -> dict[int, dict[str, Any]]:
        day = plan.date.isoformat()
        return self._find_by_marker(
            session,
            "/expenses",
            "expenses",
            {"from_date": day, "to_date": day},
            field="receipt_reference",
            idempotency_key=plan.idempotency_key,
        )

    def _publish_expenses(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        """A FreeAgent expense has one category: a claim of several lines becomes one expense per
        line, each tagged with its line number, each created exactly once."""
        user_url = self._claimant_url(session, plan)
        existing = self._expenses_of(session, plan)  # one look-up for every line
        created: list[dict[str, Any]] = []
        for number, line in enumerate(plan.lines, start=1):
            if number in existing:
                created.append(existing[number])
                continue
            body = self.expense_body(plan, user_url, line, number)

            def find(number: int = number) -> dict[str, Any] | None:
                return self._expenses_of(session, plan).get(number)

            created.append(self._create_once(session, "/expenses", "expense", body, find, looked_up=True))
        return PublishResult(remote_id=str(created[0]["url"]), warnings=self._warnings(plan))

    # paid from a bank account -----------------------------------------------------------------------

    def _explanations_of(
        self, session: LedgerSession, plan: PublishPlan, bank_account: str
    ) -> dict[int, dict[str, Any]]:
        day = plan.date.isoformat()
        return self._find_by_marker(
            session,
            "/bank_transaction_explanations",
            "bank_transaction_explanations",
            {"bank_account": bank_account, "from_date": day, "to_date": day},
            field="description",
            idempotency_key=plan.idempotency_key,
        )

    def _publish_explanations(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        """Money paid out of a bank account, explained with a category (no bill). An explanation
        has one category, so each line is one explanation; our key rides in its description."""
        if plan.bank_account is None or not plan.bank_account.remote_id:
            raise Rejected(
                "a payment from a bank account needs the bank account it was paid from",
                field_errors=[FieldError(message="no bank account", field="paid.bank_account")],
                provider=self.provider,
            )
        bank_account = plan.bank_account.remote_id
        existing = self._explanations_of(session, plan, bank_account)
        created: list[dict[str, Any]] = []
        for number, line in enumerate(plan.lines, start=1):
            if number in existing:
                created.append(existing[number])
                continue
            body: dict[str, Any] = {
                "bank_account": bank_account,
                "dated_on": plan.date.isoformat(),
                "gross_value": money(-(line.amount + line.tax_amount)),  # negative: money out
                "category": self._category_url(line, number),
                "description": f"{line.description} {key_marker(plan.idempotency_key, number)}",
                **line_tax_fields(line.tax_rate.code),
            }

            def find(number: int = number) -> dict[str, Any] | None:
                return self._explanations_of(session, plan, bank_account).get(number)

            created.append(
                self._create_once(
                    session,
                    "/bank_transaction_explanations",
                    "bank_transaction_explanation",
                    body,
                    find,
                    looked_up=True,
                )
            )
        return PublishResult(remote_id=str(created[0]["url"]), warnings=self._warnings(plan))

    # --- attachments ---------------------------------------------------------------------------------

    def attachment_payload(self, document: Attachment) -> dict[str, str]:
        """The document as FreeAgent's inline ``attachment`` object, within its limits."""
        content_type = FREEAGENT_CONTENT_TYPES.get(document.content_type.strip().lower())
        if content_type is None:
            raise Rejected(
                f"FreeAgent cannot attach a {document.content_type} file; it takes PNG, JPEG, GIF and PDF",
                field_errors=[FieldError(message="unsupported file type", field="document")],
                provider=self.provider,
            )
        if len(document.content) > ATTACHMENT_MAX_BYTES:
            raise Rejected(
                f"the document is {len(document.content)} bytes; FreeAgent takes at most {ATTACHMENT_MAX_BYTES}",
                field_errors=[FieldError(message="document too large", field="document")],
                provider=self.provider,
            )
        return {
            "data": base64.b64encode(document.content).decode("ascii"),
            "file_name": document.file_name,
            "description": document.file_name,
            "content_type": content_type,
        }

    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        """Add the document to what ``publish`` created, by updating it (``PUT`` with only the
        ``attachment``): the document itself is never created again."""
        if plan.destination == SALES_INVOICE:
            # FreeAgent makes the sales invoice's own PDF; its invoices take no attachment.
            logger.info("FreeAgent invoices take no attachment; not attached", provider=self.provider)
            return ""
        payload = self.attachment_payload(document)
        if plan.destination == EXPENSE:
            root, targets = (
                "expense",
                [str(e["url"]) for _, e in sorted(self._expenses_of(session, plan).items())],
            )
        elif plan.destination == BANK_EXPLANATION and plan.bank_account and plan.bank_account.remote_id:
            root = "bank_transaction_explanation"
            found = self._explanations_of(session, plan, plan.bank_account.remote_id)
            targets = [str(e["url"]) for _, e in sorted(found.items())]
        else:
            root, targets = "bill", [result.remote_id]
        attachment_ids = [
            self._attach_to(session, root, target, payload, len(document.content))
            for target in targets or [result.remote_id]
        ]
        return attachment_ids[0]

    def _attach_to(
        self, session: LedgerSession, root: str, target: str, payload: Mapping[str, str], size: int
    ) -> str:
        current: dict[str, Any] = self.request(session, "GET", target).json()[root]
        existing = current.get("attachment")
        if isinstance(existing, dict) and existing.get("url"):
            same = existing.get("file_name") == payload["file_name"] and str(
                existing.get("file_size")
            ) == str(size)
            if not same:
                # Someone attached another file in FreeAgent; replacing it would lose their file.
                logger.warning("document already has an attachment; kept it", provider=self.provider)
            return str(existing["url"])
        # One attachment per document, so a resent PUT sets the same file again: safe to retry.
        response = self.request(session, "PUT", target, json={root: {"attachment": payload}}, retry_safe=True)
        updated = (_json_or_none(response) or {}).get(root)
        if not isinstance(updated, dict) or not isinstance(updated.get("attachment"), dict):
            updated = self.request(session, "GET", target).json()[
                root
            ]  # FreeAgent may answer 200 with no body
        attachment = (updated or {}).get("attachment") or {}
        return str(attachment.get("url") or "")


def _flag(in_view: bool, row: Mapping[str, Any], *, hidden_knowable: bool) -> bool | None:
    """A supplier/customer flag from view membership. The suppliers view lists active contacts
    only, so for a hidden contact absence says nothing (None); the clients view includes hidden ones."""
    if in_view:
        return True
    if row.get("status", "Active") != "Active" and not hidden_knowable:
        return None
    return False


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
