"""Sage Business Cloud Accounting (API v3.1): OAuth2 with PKCE and the client credentials in the form
body, one token for every business of the user with ``X-Business`` choosing one on every call, the six
lists paged with ``$next``, documents created once through ``idempotency_id`` inside the resource
object (and found by the key in their notes when a retry comes later), bank match through contact
payments, attachments as base64 JSON. Facts: reference/providers.md §3 and §6.4."""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from ledgerlink.errors import AuthRevoked, FieldError, LedgerError, NotFound, Rejected, Unavailable
from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.connection import Organisation
from ledgerlink.models.lists import ListRecord, RecordStatus, normalise_name, record_id
from ledgerlink.models.publishing import PlannedLine, PublishPlan, PublishResult, Resolved
from ledgerlink.models.tokens import TokenSet
from ledgerlink.observability import logger
from ledgerlink.providers.base import Attachment, BankLine, LedgerAdapter, LedgerSession, ListFetch
from ledgerlink.providers.config import AttachmentRules, Capabilities, ProviderConfig

Row = dict[str, Any]

SUPPLIER = "VENDOR"
CUSTOMER = "CUSTOMER"
# Fallbacks by ledger account type, for rows that do not carry Sage's visible_in_* flags.
COST_ACCOUNT_TYPES = frozenset(
    {"DIRECT_EXPENSES", "OVERHEADS", "DEPRECIATION", "CURRENT_ASSETS", "FIXED_ASSETS"}
)
SALES_ACCOUNT_TYPES = frozenset({"SALES", "OTHER_INCOME"})
# The same areas under their visible_scopes spelling.
COST_SCOPES = frozenset({"purchasing", "expenses"})
SALES_SCOPES = frozenset({"sales"})

IDEMPOTENCY_ID = re.compile(r"^[0-9a-fA-F]{32}$")
MONEY = Decimal("0.01")
UNIT_PRICE_PLACES = Decimal("0.0001")  # q x unit price must land on the net within a penny
OTHER_PAYMENT_REFERENCE_LIMIT = 25
# Ids imported at exactly the high-water second, kept so the inclusive filter does not report them
# again. A bulk import can stamp thousands of rows in one second: past this many we keep none and
# let them come back (the list service then finds them unchanged).
MAX_BOUNDARY_IDS = 100
# A $next that never ends (a page past the end is the last page again) must not loop forever.
MAX_PAGES = 10_000

ATTACHMENT_MAX_BYTES = 10 * 1000 * 1000
ATTACHMENT_CONTENT_TYPES = (
    "application/pdf",
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/tiff",
    "text/plain",
    "text/csv",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
)


@dataclass(frozen=True)
class Destination:
    """Where a plan's document goes: the collection, the body's wrapper key, and the attachment
    context type that points back at it."""

    resource: str
    wrapper: str
    attachment_context: str


DESTINATIONS: dict[str, Destination] = {
    "purchase_invoice": Destination("purchase_invoices", "purchase_invoice", "PURCHASE_INVOICE"),
    "purchase_quick_entry": Destination(
        "purchase_quick_entries", "purchase_quick_entry", "PURCHASE_QUICK_ENTRY"
    ),
    "other_payment": Destination("other_payments", "other_payment", "OTHER_PAYMENT"),
    "sales_invoice": Destination("sales_invoices", "sales_invoice", "SALES_INVOICE"),
}

# Destinations whose documents keep notes, where our key lets a late retry find them.
NOTED_DESTINATIONS = frozenset({"purchase_invoice", "sales_invoice"})
# Artefacts a contact payment is allocated to, by destination, and the payment's type.
PAYMENT_TYPE_BY_DESTINATION = {
    "purchase_invoice": "VENDOR_PAYMENT",
    "purchase_quick_entry": "VENDOR_PAYMENT",
    "sales_invoice": "CUSTOMER_RECEIPT",
}
# Our payment methods (as the capture product names them) -> Sage's payment_method_id.
PAYMENT_METHODS = {
    "card": "CREDIT_DEBIT",
    "credit_card": "CREDIT_DEBIT",
    "debit_card": "CREDIT_DEBIT",
    "credit_debit": "CREDIT_DEBIT",
    "bank_transfer": "BANK_TRANSFER",
    "transfer": "BANK_TRANSFER",
    "direct_debit": "BANK_TRANSFER",
    "cash": "CASH",
    "cheque": "CHEQUE",
    "check": "CHEQUE",
}
PAYMENT_REFERENCE_LIMIT = 25
# Not in the published v3.1 definitions (Sage keeps bank-feed lines in its Banking Service); served
# by the simulator. A 404 from a real Sage means "no line to match".
BANK_LINES_PATH = "/bank_transactions"

# Lists with a true incremental filter: every endpoint behind them takes updated_or_created_since
# AND deleted_since. Ledger accounts, tax rates and analysis categories have no deleted_since, so
# only a full fetch notices a deletion there.
INCREMENTAL_ENDPOINTS: dict[ListType, tuple[str, ...]] = {
    ListType.CONTACTS: ("contacts",),
    ListType.ITEMS: ("products", "services"),
    ListType.BANK_ACCOUNTS: ("bank_accounts",),
}


class NotOnSubscription(Rejected):
    """The business's Sage subscription (Start, Micro) lacks the feature, e.g. analysis types."""


# --- timestamps and the high-water mark ---------------------------------------------------------------


def parse_sage_datetime(value: Any) -> datetime | None:
    """Sage's ``created_at``/``updated_at``/``deleted_at``: ISO-8601, UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_sage_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class StreamMark:
    """Where one endpoint's next incremental fetch starts.

    ``changed`` feeds ``updated_or_created_since``, which is INCLUSIVE: rows stamped exactly then come
    back, so ``seen`` holds the ids already imported at that stamp and they are not reported again.
    ``deleted`` feeds ``deleted_since`` (exclusive)."""

    changed: datetime
    seen: tuple[str, ...] = ()
    deleted: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"changed": format_sage_datetime(self.changed)}
        if self.seen:
            body["seen"] = list(self.seen)
        if self.deleted is not None:
            body["deleted"] = format_sage_datetime(self.deleted)
        return body

    @classmethod
    def from_json(cls, value: Any) -> StreamMark | None:
        if not isinstance(value, dict):
            return None
        changed = parse_sage_datetime(value.get("changed"))
        if changed is None:
            return None
        seen = value.get("seen") or []
        return cls(
            changed=changed,
            seen=tuple(str(i) for i in seen) if isinstance(seen, list) else (),
            deleted=parse_sage_datetime(value.get("deleted")),
        )


def _row_stamp(row: Row) -> datetime | None:
    return parse_sage_datetime(row.get("updated_at") or row.get("created_at"))


def _advance(mark: StreamMark | None, rows: list[Row], deleted_rows: list[Row]) -> StreamMark | None:
    changed, seen = (mark.changed, set(mark.seen)) if mark else (None, set())
    stamped = [(stamp, str(row["id"])) for row in rows if "id" in row and (stamp := _row_stamp(row))]
    if stamped:
        top = max(stamp for stamp, _ in stamped)
        at_top = {row_id for stamp, row_id in stamped if stamp == top}
        if changed is None or top > changed:
            changed, seen = top, at_top
        elif top == changed:
            seen |= at_top
    if changed is None:
        return None  # nothing stamped yet: the next fetch of this endpoint is a full one
    # Right after a full fetch deletions are looked for from the newest change seen: anything
    # deleted later is deleted after it.
    deleted = mark.deleted if mark and mark.deleted else changed
    for row in deleted_rows:
        when = parse_sage_datetime(row.get("deleted_at"))
        if when is not None and when > deleted:
            deleted = when
    boundary = tuple(sorted(seen)) if len(seen) <= MAX_BOUNDARY_IDS else ()
    return StreamMark(changed=changed, seen=boundary, deleted=deleted)


def encode_high_water(marks: Mapping[str, StreamMark | None]) -> str | None:
    """One list's marks (one per endpoint) as the opaque string the list service stores."""
    present = {endpoint: mark.to_json() for endpoint, mark in marks.items() if mark is not None}
    return json.dumps(present, sort_keys=True, separators=(",", ":")) if present else None


def decode_high_water(value: str | None, endpoints: Iterable[str]) -> dict[str, StreamMark | None] | None:
    """The marks in a stored high-water string; None means "fetch everything" (no mark, or one we
    cannot read: a full fetch heals it). A bare timestamp applies to every endpoint."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("{"):
        try:
            stored = json.loads(text)
        except ValueError:
            return None
        if not isinstance(stored, dict):
            return None
        return {endpoint: StreamMark.from_json(stored.get(endpoint)) for endpoint in endpoints}
    moment = parse_sage_datetime(text)  # a date alone is its midnight, UTC
    if moment is None:
        return None
    return {endpoint: StreamMark(changed=moment, deleted=moment) for endpoint in endpoints}


# --- small readers -------------------------------------------------------------------------------------


def _ref_id(value: Any) -> str | None:
    """The id of a Sage link object ``{"id", "displayed_as", "$path"}``."""
    if isinstance(value, dict) and value.get("id") not in (None, ""):
        return str(value["id"])
    return None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def idempotency_id(key: str, purpose: str | None = None) -> str:
    """Sage's ``idempotency_id``: exactly 32 hex characters, no hyphens. Our keys already are; a key
    that is not (or one derived for a second write of the same item) is hashed into that shape."""
    if purpose is None and IDEMPOTENCY_ID.match(key):
        return key.lower()
    material = key if purpose is None else f"{key}\x1f{purpose}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def note_marker(key: str) -> str:
    return f"ledgerlink key {key}"


def published_note(plan: PublishPlan) -> str:
    """The invoice's notes: where it came from, and the key a retry finds it by."""
    return f"Published by ledgerlink (item {plan.item_id}, {note_marker(plan.idempotency_key)})"


def parse_diagnoses(response: httpx.Response) -> list[Row]:
    """Sage's error body: a JSON array of ``{"$severity","$dataCode","$message","$source"}``
    (tolerating a single object or an ``{"errors": [...]}`` wrapper)."""
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, dict):
        body = body.get("errors", body.get("$diagnoses", [body]))
    if not isinstance(body, list):
        return []
    return [d for d in body if isinstance(d, dict) and ("$message" in d or "$dataCode" in d)]


def _money(value: Decimal) -> Decimal:
    return value.quantize(MONEY, rounding=ROUND_HALF_UP)


class SageAdapter(LedgerAdapter):
    default_config: ClassVar[ProviderConfig] = ProviderConfig(
        name=ProviderName.SAGE,
        authorize_url="https://www.sageone.com/oauth2/auth/central",
        token_url="https://oauth.accounting.sage.com/token",
        revoke_url="https://oauth.accounting.sage.com/revoke",
        api_base_url="https://api.accounting.sage.com/v3.1",
        urls={"businesses": "https://api.accounting.sage.com/v3.1/businesses"},
        # Sage reads the client credentials from the form body only.
        token_endpoint_auth_method="client_secret_post",
        pkce=True,
        # full_access: we create invoices and contacts; readonly would fail every write with 403.
        scopes=("full_access",),
        page_size=200,  # Sage's maximum items_per_page
        calls_per_minute=100,  # per business: UNCONFIRMED for v3.1 (v3.0 documented 200)
    )
    capabilities: ClassVar[Capabilities] = Capabilities(
        provider=ProviderName.SAGE,
        display_name="Sage Accounting",
        auth_style="oauth2_pkce",
        organisation_choice=True,  # one token sees every business of the user
        lists=tuple(ListType),
        incremental_lists=tuple(INCREMENTAL_ENDPOINTS),
        destinations={
            ItemType.COST: ("purchase_invoice", "purchase_quick_entry", "other_payment"),
            ItemType.SALES: ("sales_invoice",),
            # No native expense claims: a purchase invoice to a contact for the claimant (owed to
            # them until repaid), or an other payment when it was paid out of a bank account.
            ItemType.EXPENSE_CLAIM: ("purchase_invoice", "other_payment"),
        },
        default_destinations={
            ItemType.COST: "purchase_invoice",
            ItemType.SALES: "sales_invoice",
            ItemType.EXPENSE_CLAIM: "purchase_invoice",
        },
        bank_match=True,  # POST /contact_payments (VENDOR_PAYMENT) allocated to the invoice
        native_expense_claims=False,
        batch_size=1,  # no batch endpoint: one object per POST
        idempotency="body_field",
        attachments=AttachmentRules(max_bytes=ATTACHMENT_MAX_BYTES, content_types=ATTACHMENT_CONTENT_TYPES),
    )

    # --- OAuth hooks ------------------------------------------------------------------------------

    def authorization_parameters(self) -> dict[str, str]:
        # Sage's sign-in wants filter=apiv3.1 to offer the businesses API v3.1 serves (§3.1).
        return {"filter": "apiv3.1"}

    def token_extras(self, token: Mapping[str, Any], callback_params: Mapping[str, str]) -> dict[str, str]:
        extras: dict[str, str] = {}
        if callback_params.get("country"):
            extras["country"] = str(callback_params["country"])  # which Sage region signed in
        if token.get("requested_by_id"):
            extras["requested_by_id"] = str(token["requested_by_id"])  # the Sage user
        return extras

    def session_headers(self, session: LedgerSession) -> dict[str, str]:
        # Absent, Sage silently uses the user's lead business, which the user can change at any time.
        return {"X-Business": session.organisation_id} if session.organisation_id else {}

    def organisations(self, tokens: TokenSet) -> list[Organisation]:
        """Every business the user can open (one token covers them all)."""
        session = LedgerSession("", None, lambda _force: tokens.access_token.get_secret_value())
        rows, _calls = self._collect(session, self.config.urls["businesses"], {"attributes": "all"})
        organisations = []
        for row in rows:
            active = [s for s in row.get("subscriptions") or [] if isinstance(s, dict) and s.get("active")]
            organisations.append(
                Organisation(
                    id=str(row["id"]),
                    name=row.get("name") or row.get("displayed_as") or str(row["id"]),
                    kind=_text(active[0].get("id")) if active else None,  # the tier: START lacks analysis
                )
            )
        return organisations

    def map_error(self, response: httpx.Response) -> LedgerError:
        status = response.status_code
        diagnoses = parse_diagnoses(response)
        codes = {str(d.get("$dataCode") or "") for d in diagnoses}
        field_errors = [
            FieldError(
                message=str(d.get("$message") or d.get("$dataCode") or ""), field=_text(d.get("$source"))
            )
            for d in diagnoses
        ]
        said = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in field_errors)
        if "BusinessNotFound" in codes:  # 403 or 404: the user lost access to the business
            return AuthRevoked(
                f"Sage no longer gives this user access to the business ({said})",
                provider=self.provider,
                status=status,
            )
        if status == 401:
            return AuthRevoked(
                f"Sage no longer accepts our access token ({said or 'unauthorised'})",
                provider=self.provider,
                status=status,
            )
        if status == 403:
            if "NotAvailableForSubscription" in codes:
                return NotOnSubscription(
                    said or "not available on this Sage subscription",
                    field_errors=field_errors,
                    provider=self.provider,
                    status=status,
                )
            if "MultiUserAccessDenied" in codes:
                # The consent stands; the Sage user lacks rights to this area. Not a reconnect.
                return Rejected(
                    said or "the Sage user may not make changes here",
                    field_errors=field_errors,
                    provider=self.provider,
                    status=status,
                )
            return AuthRevoked(
                f"Sage refused access to this business ({said or 'forbidden'})",
                provider=self.provider,
                status=status,
            )
        if status == 404:
            return NotFound(said or "Sage could not find that object", provider=self.provider, status=status)
        return Rejected(
            said or f"Sage answered {status}",
            field_errors=field_errors,
            provider=self.provider,
            status=status,
        )

    # --- calls -------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.config.api_base_url + path

    def _next_page(self, link: str, query: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """Where ``$next`` points, keeping our own parameters should the link drop any of them."""
        parts = urlsplit(link)
        if parts.scheme:
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        else:
            base = urlsplit(self.config.api_base_url)
            # Relative to the API version root ("/contacts?...") or to the host ("/v3.1/contacts?...").
            path = parts.path if parts.path.startswith(base.path + "/") else base.path + parts.path
            url = urlunsplit((base.scheme, base.netloc, path, "", ""))
        return url, {**query, **dict(parse_qsl(parts.query, keep_blank_values=True))}

    def _collect(self, session: LedgerSession, path: str, params: Mapping[str, str]) -> tuple[list[Row], int]:
        """Every row of a list: first page with our parameters, then ``$next`` until it is null."""
        url = self._url(path)
        query = {"items_per_page": str(self.config.page_size), **params}
        rows: list[Row] = []
        pages_seen: set[Any] = set()
        calls = 0
        while calls < MAX_PAGES:
            body = self.request(session, "GET", url, params=query).json()
            calls += 1
            if not isinstance(body, dict):
                break
            page = body.get("$page")
            if page is not None and page in pages_seen:
                break  # a page past the end is the last page again: its rows are in already
            pages_seen.add(page)
            rows.extend(row for row in body.get("$items") or [] if isinstance(row, dict))
            link = body.get("$next")
            if not link:
                return rows, calls
            url, query = self._next_page(str(link), query)
        else:
            # Never hand back part of a list as if it were whole: stored rows would look deleted.
            raise Unavailable(f"Sage kept answering further pages of {path}", provider=self.provider)
        return rows, calls

    def _require_business(self, session: LedgerSession) -> None:
        if not session.organisation_id:
            # Never fall back to the lead business: it can change without anyone noticing.
            raise AuthRevoked(
                "no Sage business is chosen for this connection; reconnect and choose one",
                provider=self.provider,
            )

    def _create(self, session: LedgerSession, resource: str, wrapper: str, body: Row) -> Row:
        """POST one object; its ``idempotency_id`` makes a resend a replay, so it is retry-safe."""
        response = self.request(
            session, "POST", f"{self.config.api_base_url}/{resource}", json={wrapper: body}, retry_safe=True
        )
        created = response.json()
        if not isinstance(created, dict) or not created.get("id"):
            raise LedgerError(f"Sage created a {wrapper} but returned no id", provider=self.provider)
        return created

    # --- lists -------------------------------------------------------------------------------------

    def fetch_list(self, session: LedgerSession, list_type: ListType, *, since: str | None) -> ListFetch:
        self._require_business(session)
        if list_type == ListType.CATEGORIES:
            rows, calls = self._collect(session, "/ledger_accounts", {"attributes": "all"})
            return ListFetch([self._category(session, row) for row in rows], complete=True, calls=calls)
        if list_type == ListType.TAX_RATES:
            rows, calls = self._collect(session, "/tax_rates", {"attributes": "all"})
            return ListFetch([self._tax_rate(session, row) for row in rows], complete=True, calls=calls)
        if list_type == ListType.PROJECTS:
            return self._fetch_projects(session)
        if list_type in INCREMENTAL_ENDPOINTS:
            return self._fetch_incremental(session, list_type, since)
        raise ValueError(f"unknown list type {list_type}")

    def _fetch_incremental(self, session: LedgerSession, list_type: ListType, since: str | None) -> ListFetch:
        endpoints = INCREMENTAL_ENDPOINTS[list_type]
        marks = decode_high_water(since, endpoints)
        records: list[ListRecord] = []
        deleted_ids: list[str] = []
        next_marks: dict[str, StreamMark | None] = {}
        calls = 0
        for endpoint in endpoints:
            mark = marks.get(endpoint) if marks is not None else None
            params = {"attributes": "all"}
            if mark is not None:
                params["updated_or_created_since"] = format_sage_datetime(mark.changed)
            rows, used = self._collect(session, f"/{endpoint}", params)
            calls += used
            deleted_rows: list[Row] = []
            if mark is not None:
                # Inclusive filter: rows at exactly the mark that were imported already are no change.
                rows = [
                    r for r in rows if not (str(r.get("id")) in mark.seen and _row_stamp(r) == mark.changed)
                ]
                deleted_rows, used = self._collect(
                    session,
                    f"/{endpoint}",
                    {"deleted_since": format_sage_datetime(mark.deleted or mark.changed)},
                )
                calls += used
                deleted_ids += [str(r["id"]) for r in deleted_rows if r.get("id")]
            next_marks[endpoint] = _advance(mark, rows, deleted_rows)
            mapped, used = self._map_rows(session, list_type, endpoint, rows)
            records += mapped
            calls += used
        return ListFetch(
            records,
            complete=marks is None,
            high_water=encode_high_water(next_marks),
            deleted_remote_ids=deleted_ids,
            calls=calls,
        )

    def _map_rows(
        self, session: LedgerSession, list_type: ListType, endpoint: str, rows: list[Row]
    ) -> tuple[list[ListRecord], int]:
        if list_type == ListType.BANK_ACCOUNTS:
            return [self._bank_account(session, row) for row in rows], 0
        ledger_refs = (
            ("default_purchase_ledger_account", "default_sales_ledger_account")
            if list_type == ListType.CONTACTS
            else ("purchase_ledger_account", "sales_ledger_account")
        )
        codes, calls = self._nominal_codes(session, rows, ledger_refs)
        if list_type == ListType.CONTACTS:
            return [self._contact(session, row, codes) for row in rows], calls
        kind = "service" if endpoint == "services" else "product"
        return [self._item(session, row, codes, kind) for row in rows], calls

    def _nominal_codes(
        self, session: LedgerSession, rows: list[Row], ref_fields: Iterable[str]
    ) -> tuple[dict[str, str], int]:
        """Ledger account id -> nominal code, for rows that refer to ledger accounts by link only
        (our categories are matched by code). One call, and only when some row needs it."""
        fields = tuple(ref_fields)
        if not any(_ref_id(row.get(name)) for row in rows for name in fields):
            return {}, 0
        accounts, calls = self._collect(session, "/ledger_accounts", {"attributes": "nominal_code"})
        return {
            str(a["id"]): str(a["nominal_code"]) for a in accounts if a.get("nominal_code") is not None
        }, calls

    def _fetch_projects(self, session: LedgerSession) -> ListFetch:
        try:
            types, calls = self._collect(session, "/analysis_types", {"attributes": "all"})
        except NotOnSubscription:
            # Start and Micro subscriptions have no analysis types: the list is empty, not broken.
            return ListFetch([], complete=True, calls=1)
        categories: list[Row] = []
        if types[:2]:
            categories, used = self._collect(session, "/analysis_type_categories", {"attributes": "all"})
            calls += used
        return ListFetch(self._projects(session, types, categories), complete=True, calls=calls)

    # --- mappings ------------------------------------------------------------------------------

    def _record(self, session: LedgerSession, list_type: ListType, row: Row, **fields: Any) -> ListRecord:
        remote_id = str(row["id"])
        return ListRecord(
            id=record_id(session.connection_id, list_type, remote_id),
            list_type=list_type,
            remote_id=remote_id,
            remote_updated_at=_row_stamp(row),
            **fields,
        )

    def _category(self, session: LedgerSession, row: Row) -> ListRecord:
        account_type = _ref_id(row.get("ledger_account_type"))
        return self._record(
            session,
            ListType.CATEGORIES,
            row,
            code=_text(row.get("nominal_code")),
            name=row.get("name") or row.get("display_name") or row.get("displayed_as") or "",
            # Hidden accounts (included_in_chart false) cannot be posted to, but rules may name them.
            status=RecordStatus.ARCHIVED if row.get("included_in_chart") is False else RecordStatus.ACTIVE,
            account_type=account_type,
            default_tax_code=_ref_id(row.get("tax_rate")),
            usable_for=category_usable_for(row),
            raw={
                k: row[k]
                for k in ("visible_in_other_payments", "fixed_tax_rate", "is_control_account", "control_name")
                if row.get(k) is not None
            },
        )

    def _contact(self, session: LedgerSession, row: Row, nominal_codes: Mapping[str, str]) -> ListRecord:
        types = {_ref_id(t) for t in row.get("contact_types") or []}
        supplier, customer = SUPPLIER in types, CUSTOMER in types
        # One default category per contact: the purchase one for suppliers, else the sales one.
        default_account = _ref_id(
            row.get("default_purchase_ledger_account")
            if supplier
            else row.get("default_sales_ledger_account")
        )
        default_tax = _ref_id(row.get("default_purchase_tax_rate")) if supplier else None
        if not supplier and customer:
            default_tax = _ref_id(row.get("default_sales_tax_rate"))
        person = row.get("main_contact_person")
        person = person if isinstance(person, dict) else {}
        # Sage keeps no "archived" contact; a deleted one or one obfuscated under GDPR takes no
        # new documents, and Sage may add an active flag: all three count as archived here.
        archived = (
            bool(row.get("deleted_at")) or row.get("active") is False or bool(row.get("gdpr_obfuscated"))
        )
        return self._record(
            session,
            ListType.CONTACTS,
            row,
            code=_text(row.get("reference")),
            name=row.get("name") or row.get("displayed_as") or "",
            status=RecordStatus.ARCHIVED if archived else RecordStatus.ACTIVE,
            is_supplier=supplier,
            is_customer=customer,
            default_category_code=nominal_codes.get(default_account) if default_account else None,
            default_tax_code=default_tax,
            currency=_ref_id(row.get("currency")),
            email=_text(row.get("email")) or _text(person.get("email")),
            raw={"system": True} if row.get("system") else {},
        )

    def _tax_rate(self, session: LedgerSession, row: Row) -> ListRecord:
        return self._record(
            session,
            ListType.TAX_RATES,
            row,
            code=str(row["id"]),  # the id (GB_STANDARD) is what lines carry as tax_rate_id
            name=row.get("name") or row.get("displayed_as") or str(row["id"]),
            status=RecordStatus.ARCHIVED if row.get("is_visible") is False else RecordStatus.ACTIVE,
            rate=_number(row.get("percentage")),
            # Sage tax rates carry no purchase/sales restriction: every rate serves both sides.
            applies_to=[ItemType.COST, ItemType.SALES, ItemType.EXPENSE_CLAIM],
            raw={k: row[k] for k in ("is_combined_rate", "retailer") if row.get(k)},
        )

    def _item(
        self, session: LedgerSession, row: Row, nominal_codes: Mapping[str, str], kind: str
    ) -> ListRecord:
        purchase_account = _ref_id(row.get("purchase_ledger_account"))
        sales_account = _ref_id(row.get("sales_ledger_account"))
        archived = row.get("active") is False or bool(row.get("deleted_at"))
        return self._record(
            session,
            ListType.ITEMS,
            row,
            code=_text(row.get("item_code")),
            name=row.get("description") or row.get("displayed_as") or row.get("item_code") or "",
            status=RecordStatus.ARCHIVED if archived else RecordStatus.ACTIVE,
            purchase_category_code=nominal_codes.get(purchase_account) if purchase_account else None,
            purchase_tax_code=_ref_id(row.get("purchase_tax_rate")),
            purchase_price=_number(row.get("cost_price")),
            sales_category_code=nominal_codes.get(sales_account) if sales_account else None,
            sales_tax_code=_ref_id(row.get("sales_tax_rate")),
            sales_price=_sales_price(row),
            # Products and services share the list; lines name them as product_id or service_id.
            raw={"item_type": kind},
        )

    def _bank_account(self, session: LedgerSession, row: Row) -> ListRecord:
        details = row.get("bank_account_details")
        details = details if isinstance(details, dict) else {}
        return self._record(
            session,
            ListType.BANK_ACCOUNTS,
            row,
            code=_text(row.get("nominal_code")),
            name=details.get("account_name") or row.get("displayed_as") or "",
            status=RecordStatus.ARCHIVED if row.get("deleted_at") else RecordStatus.ACTIVE,
            bank_account_type=_ref_id(row.get("bank_account_type")),
            currency=_ref_id(row.get("currency")),
            account_number=_text(details.get("account_number")) or _text(details.get("iban")),
            raw={
                k: v
                for k, v in (
                    ("ledger_account_id", _ref_id(row.get("ledger_account"))),
                    ("default_payment_method_id", _ref_id(row.get("default_payment_method"))),
                )
                if v
            },
        )

    def _projects(self, session: LedgerSession, types: list[Row], categories: list[Row]) -> list[ListRecord]:
        # The first two analysis types, in Sage's order, are our dimensions 1 and 2.
        dimensions = {str(t["id"]): (index + 1, t) for index, t in enumerate(types[:2]) if t.get("id")}
        # A category names its type; the type's own list of category links is the fallback.
        type_of_category = {
            str(link["id"]): type_id
            for type_id, (_, t) in dimensions.items()
            for link in t.get("analysis_type_categories") or []
            if isinstance(link, dict) and link.get("id")
        }
        records = []
        for category in categories:
            type_id = _ref_id(category.get("analysis_type")) or type_of_category.get(str(category.get("id")))
            if type_id not in dimensions:
                continue
            dimension, analysis_type = dimensions[type_id]
            active = category.get("active") is not False and analysis_type.get("active") is not False
            records.append(
                self._record(
                    session,
                    ListType.PROJECTS,
                    category,
                    code=_text(category.get("code")),
                    name=category.get("name") or category.get("displayed_as") or "",
                    status=RecordStatus.ACTIVE if active else RecordStatus.ARCHIVED,
                    dimension=dimension,
                    dimension_name=analysis_type.get("name") or analysis_type.get("displayed_as"),
                    dimension_remote_id=type_id,
                )
            )
        return records

    # --- contacts ------------------------------------------------------------------------------

    def ensure_contact(self, session: LedgerSession, name: str, *, customer: bool, key: str) -> ListRecord:
        self._require_business(session)
        wanted_type = CUSTOMER if customer else SUPPLIER
        wanted = normalise_name(name)
        # Sage's search matches a substring of name or reference; the longest word of the
        # normalised name finds "ACME Limited" for "Acme Ltd" too, then names are compared whole.
        term = max(wanted.split(), key=len) if wanted else name
        rows, _ = self._collect(session, "/contacts", {"search": term, "attributes": "all"})
        matches = [
            row
            for row in rows
            if normalise_name(str(row.get("name") or "")) == wanted
            and wanted_type in {_ref_id(t) for t in row.get("contact_types") or []}
            and not row.get("deleted_at")
            and not row.get("gdpr_obfuscated")
        ]
        if matches:
            return self._contact_record(session, matches[0])
        # A same-named contact of the other type is not reused: Sage would refuse it on the
        # document ("must be a supplier contact"). The key is derived per type, so a supplier and
        # a customer of one name are two creations, each replayed on retry.
        created = self._create(
            session,
            "contacts",
            "contact",
            {
                "name": name,
                "contact_type_ids": [wanted_type],
                "idempotency_id": idempotency_id(key, wanted_type),
            },
        )
        return self._contact_record(session, created)

    def _contact_record(self, session: LedgerSession, row: Row) -> ListRecord:
        codes, _ = self._nominal_codes(
            session, [row], ("default_purchase_ledger_account", "default_sales_ledger_account")
        )
        return self._contact(session, row, codes)

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        self._require_business(session)
        destination_name, route_warnings = self.route(plan)
        destination = DESTINATIONS[destination_name]
        builders: dict[str, Callable[[PublishPlan], tuple[Row, list[str]]]] = {
            "purchase_invoice": self.purchase_invoice_body,
            "purchase_quick_entry": self.purchase_quick_entry_body,
            "other_payment": self.other_payment_body,
            "sales_invoice": self.sales_invoice_body,
        }
        body, warnings = builders[destination_name](plan)
        warnings = [*route_warnings, *warnings]
        if plan.may_exist and destination_name in NOTED_DESTINATIONS:
            found = self._existing_document(session, plan, destination, body)
            if found is not None:
                return PublishResult(remote_id=str(found["id"]), url=None, warnings=warnings)
        body["idempotency_id"] = idempotency_id(plan.idempotency_key)
        created = self._create(session, destination.resource, destination.wrapper, body)
        # No web link: Sage's app URLs for a document are not documented, and an API URL needs a token.
        return PublishResult(remote_id=str(created["id"]), url=None, warnings=warnings)

    def route(self, plan: PublishPlan) -> tuple[str, list[str]]:
        """The destination a plan is published to. With bank match on, the document must take the
        payment and no bank transaction of our own is made: an other payment becomes a purchase
        invoice, paid from the matched line."""
        if plan.destination not in DESTINATIONS:
            raise Rejected(
                f"publishing to {plan.destination!r} is not available for Sage yet; "
                f"choose one of: {', '.join(sorted(DESTINATIONS))}",
                provider=self.provider,
            )
        if plan.destination not in self.capabilities.destinations.get(plan.item_type, ()):
            raise Rejected(
                f"a {plan.item_type.value} item cannot be published to Sage as a {plan.destination}",
                provider=self.provider,
            )
        if plan.bank_match and plan.destination == "other_payment":
            return "purchase_invoice", [
                "Bank match is on: published as a purchase invoice and paid from the bank line, not as "
                "an other payment (bank match never creates a bank transaction)"
            ]
        return plan.destination, []

    def _existing_document(
        self, session: LedgerSession, plan: PublishPlan, destination: Destination, body: Row
    ) -> Row | None:
        """What an earlier attempt created, found by the key in the invoice's notes (for a retry
        after Sage stopped replaying the idempotency_id)."""
        params = {"from_date": str(body["date"]), "to_date": str(body["date"]), "attributes": "all"}
        if body.get("contact_id"):
            params["contact_id"] = str(body["contact_id"])
        rows, _ = self._collect(session, f"/{destination.resource}", params)
        marker = note_marker(plan.idempotency_key)
        return next((row for row in rows if marker in str(row.get("notes") or "") and row.get("id")), None)

    def _contact_id(self, plan: PublishPlan, *, required: bool = True) -> str | None:
        if plan.contact.remote_id is None and required:
            raise Rejected(
                f"{plan.contact.name or 'the contact'} is not a Sage contact yet",
                field_errors=[FieldError("the supplier or customer must exist in Sage", "contact_id")],
                provider=self.provider,
            )
        return plan.contact.remote_id

    def _checked_lines(self, plan: PublishPlan) -> None:
        problems = []
        for index, line in enumerate(plan.lines):
            if not line.category.remote_id:
                problems.append(
                    FieldError(f"line {index + 1} has no ledger account", f"lines[{index}].category")
                )
            if not _tax_rate_id(line.tax_rate):
                problems.append(FieldError(f"line {index + 1} has no tax rate", f"lines[{index}].tax_rate"))
        if problems:
            raise Rejected(
                "; ".join(p.message for p in problems), field_errors=problems, provider=self.provider
            )

    def _line_amounts(self, line: PlannedLine) -> Row:
        net, tax = _money(line.amount), _money(line.tax_amount)
        body: Row = {
            "ledger_account_id": line.category.remote_id,
            "tax_rate_id": _tax_rate_id(line.tax_rate),
            "net_amount": float(net),
            # Mandatory in v3.1 for any non-zero rate: Sage does not work tax out itself.
            "tax_amount": float(tax),
            "total_amount": float(net + tax),
        }
        analysis = [
            ref.remote_id for ref in (line.project, line.project_2) if ref is not None and ref.remote_id
        ]
        if analysis:
            body["analysis_type_categories"] = analysis
        return body

    def _invoice_lines(self, plan: PublishPlan) -> list[Row]:
        self._checked_lines(plan)
        lines = []
        for line in plan.lines:
            quantity = Decimal(str(line.quantity))
            unit_price = (_money(line.amount) / quantity).quantize(UNIT_PRICE_PLACES, rounding=ROUND_HALF_UP)
            lines.append(
                {
                    "description": line.description,
                    "quantity": float(quantity),
                    "unit_price": float(unit_price),
                    "unit_price_includes_tax": False,  # our amounts are net, tax given per line
                    **self._line_amounts(line),
                }
            )
        return lines

    @staticmethod
    def _totals(lines: list[Row]) -> Row:
        # The header totals are the sums of what we send, so Sage's own check always agrees.
        net = sum((Decimal(str(line["net_amount"])) for line in lines), Decimal("0"))
        tax = sum((Decimal(str(line["tax_amount"])) for line in lines), Decimal("0"))
        return {"net_amount": float(net), "tax_amount": float(tax), "total_amount": float(net + tax)}

    def purchase_invoice_body(self, plan: PublishPlan) -> tuple[Row, list[str]]:
        lines = self._invoice_lines(plan)
        body: Row = {
            "contact_id": self._contact_id(plan),
            "date": plan.date.isoformat(),
            "due_date": (plan.due_date or plan.date).isoformat(),  # required on purchases
            "currency_id": plan.currency,
            "invoice_lines": lines,
            **self._totals(lines),
        }
        if plan.reference:
            body["vendor_reference"] = plan.reference  # the supplier's invoice number
        body["notes"] = published_note(plan)
        warnings = [] if plan.due_date else ["no due date was captured: it is due on the invoice date"]
        return body, warnings

    def sales_invoice_body(self, plan: PublishPlan) -> tuple[Row, list[str]]:
        lines = self._invoice_lines(plan)
        body: Row = {
            "contact_id": self._contact_id(plan),
            "date": plan.date.isoformat(),
            "currency_id": plan.currency,
            "invoice_lines": lines,
            **self._totals(lines),
        }
        if plan.due_date:
            body["due_date"] = plan.due_date.isoformat()
        if plan.reference:
            body["reference"] = plan.reference
        body["notes"] = published_note(plan)
        return body, []

    def purchase_quick_entry_body(self, plan: PublishPlan) -> tuple[Row, list[str]]:
        if len(plan.lines) != 1:
            raise Rejected(
                f"a Sage purchase quick entry takes one line, this item has {len(plan.lines)}: "
                "publish it as a purchase_invoice instead",
                field_errors=[FieldError("one line only", "lines")],
                provider=self.provider,
            )
        self._checked_lines(plan)
        line = plan.lines[0]
        warnings = []
        reference = plan.reference
        if not reference:
            reference = plan.item_id  # Sage requires a reference on quick entries
            warnings.append("no reference was captured: the item id was used as the reference")
        body: Row = {
            "quick_entry_type_id": "INVOICE",
            "contact_id": self._contact_id(plan),
            "date": plan.date.isoformat(),
            "reference": reference,
            "details": line.description,
            "currency_id": plan.currency,
            **self._line_amounts(line),
        }
        body.pop("analysis_type_categories", None)  # quick entries carry no analysis
        if plan.due_date:
            body["due_date"] = plan.due_date.isoformat()
        return body, warnings

    def other_payment_body(self, plan: PublishPlan) -> tuple[Row, list[str]]:
        if plan.bank_account is None or not plan.bank_account.remote_id:
            raise Rejected(
                "an other payment needs the bank account it was paid from",
                field_errors=[FieldError("choose the bank account", "paid.bank_account")],
                provider=self.provider,
            )
        self._checked_lines(plan)
        lines = [{**self._line_amounts(line), "details": line.description} for line in plan.lines]
        body: Row = {
            "transaction_type_id": "OTHER_PAYMENT",
            "date": plan.date.isoformat(),
            "bank_account_id": plan.bank_account.remote_id,
            "payment_lines": lines,
            **self._totals(lines),
        }
        contact_id = self._contact_id(plan, required=False)
        if contact_id:
            body["contact_id"] = contact_id
        warnings = []
        if plan.reference:
            body["reference"] = plan.reference[:OTHER_PAYMENT_REFERENCE_LIMIT]
            if len(plan.reference) > OTHER_PAYMENT_REFERENCE_LIMIT:
                warnings.append(f"the reference was cut to Sage's {OTHER_PAYMENT_REFERENCE_LIMIT} characters")
        return body, warnings

    # --- bank match ----------------------------------------------------------------------------

    def find_bank_line(
        self,
        session: LedgerSession,
        *,
        bank_account_remote_id: str,
        amount: Decimal,
        earliest: date,
        latest: date,
    ) -> BankLine | None:
        """The oldest unreconciled money-out line of this amount on the account in the window that
        no contact payment on the account already pairs with (same date and amount)."""
        self._require_business(session)
        window = {"from_date": earliest.isoformat(), "to_date": latest.isoformat(), "attributes": "all"}
        try:
            rows, _ = self._collect(
                session, BANK_LINES_PATH, {**window, "bank_account_id": bank_account_remote_id}
            )
        except NotFound:
            logger.warning("Sage shows no bank lines to match", provider=self.provider)
            return None
        wanted = _money(amount)
        candidates = sorted(
            (
                BankLine(
                    remote_id=str(row["id"]),
                    date=date.fromisoformat(str(row["date"])[:10]),
                    amount=wanted,
                    description=str(row.get("reference") or row.get("payee_name") or ""),
                )
                for row in rows
                if row.get("id")
                and row.get("date")
                and not row.get("is_reconciled")
                and _ref_id(row.get("transaction_type")) in (None, "MONEY_OUT")
                and _decimal(row.get("total_amount")) == wanted
            ),
            key=lambda line: (line.date, line.remote_id),
        )
        if not candidates:
            return None
        payments, _ = self._collect(
            session, "/contact_payments", {**window, "bank_account_id": bank_account_remote_id}
        )
        taken = Counter(
            (date.fromisoformat(str(p["date"])[:10]), _decimal(p.get("total_amount")))
            for p in payments
            if p.get("date") and not p.get("deleted_at")
        )
        for line in candidates:
            if taken[(line.date, line.amount)] > 0:
                taken[(line.date, line.amount)] -= 1
                continue
            return line
        return None

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
        """``POST /contact_payments`` allocated whole to the published invoice, from the bank
        account, dated like the bank line; ``idempotency_id`` (from ``key``) makes a resend a
        replay, and an invoice found paid by this very payment answers a late retry."""
        self._require_business(session)
        body = self.contact_payment_body(
            plan, result, bank_account_remote_id=bank_account_remote_id, paid_on=paid_on, amount=amount
        )
        body["idempotency_id"] = idempotency_id(key)
        try:
            created = self._create(session, "contact_payments", "contact_payment", body)
        except Rejected as refused:
            existing = self._existing_payment(session, body, result.remote_id)
            if existing is None:
                raise
            logger.info(
                "payment found in Sage from an earlier attempt", provider=self.provider, status=refused.status
            )
            return existing
        return str(created["id"])

    def contact_payment_body(
        self,
        plan: PublishPlan,
        result: PublishResult,
        *,
        bank_account_remote_id: str,
        paid_on: date,
        amount: Decimal,
    ) -> Row:
        destination, _ = self.route(plan)
        payment_type = PAYMENT_TYPE_BY_DESTINATION.get(destination)
        if payment_type is None:
            raise Rejected(
                f"Sage takes a contact payment only on an invoice, not on a {destination}",
                provider=self.provider,
            )
        total = float(_money(amount))
        body: Row = {
            "transaction_type_id": payment_type,
            "contact_id": self._contact_id(plan),
            "bank_account_id": bank_account_remote_id,
            "date": paid_on.isoformat(),
            "total_amount": total,
            "allocated_artefacts": [{"artefact_id": result.remote_id, "amount": total}],
        }
        method = PAYMENT_METHODS.get(
            (plan.payment_method or "").strip().lower().replace(" ", "_").replace("-", "_")
        )
        if method:
            body["payment_method_id"] = method
        if plan.reference:
            body["reference"] = plan.reference[:PAYMENT_REFERENCE_LIMIT]
        return body

    def _existing_payment(self, session: LedgerSession, body: Row, artefact_id: str) -> str | None:
        rows, _ = self._collect(
            session,
            "/contact_payments",
            {
                "bank_account_id": str(body["bank_account_id"]),
                "from_date": str(body["date"]),
                "to_date": str(body["date"]),
                "attributes": "all",
            },
        )
        for row in rows:
            allocated = {
                _ref_id(a.get("artefact"))
                for a in row.get("allocated_artefacts") or []
                if isinstance(a, dict)
            }
            if artefact_id in allocated and _decimal(row.get("total_amount")) == _money(
                Decimal(str(body["total_amount"]))
            ):
                return str(row["id"])
        return None

    # --- attachments ---------------------------------------------------------------------------

    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        self._require_business(session)
        destination = DESTINATIONS[self.route(plan)[0]]
        rules = self.capabilities.attachments
        content_type = document.content_type.split(";")[0].strip().lower()
        if rules.content_types and content_type not in rules.content_types:
            raise Rejected(
                f"Sage does not take {content_type} attachments",
                field_errors=[FieldError("not an allowed file type", "mime_type")],
                provider=self.provider,
            )
        if len(document.content) > rules.max_bytes:
            raise Rejected(
                f"the document is {len(document.content)} bytes; Sage takes at most {rules.max_bytes}",
                field_errors=[FieldError("file too large", "file")],
                provider=self.provider,
            )
        file_name = document.file_name.replace("\\", "/").rsplit("/", 1)[-1] or "document"
        context = {
            "attachment_context_type_id": destination.attachment_context,
            "attachment_context_id": result.remote_id,
        }
        # Already there (a retry after the idempotency window, or a lost response)? Never add a copy.
        existing, _ = self._collect(session, "/attachments", {**context, "attributes": "all"})
        for row in existing:
            same_size = row.get("file_size") in (None, len(document.content))
            if row.get("file_name") == file_name and same_size and row.get("id"):
                return str(row["id"])
        extension = (
            "." + file_name.rsplit(".", 1)[-1]
            if "." in file_name
            else mimetypes.guess_extension(content_type)
        )
        body: Row = {
            "file": base64.b64encode(document.content).decode("ascii"),
            "file_name": file_name,
            "mime_type": content_type,
            **context,
            "idempotency_id": idempotency_id(plan.idempotency_key, "attachment"),
        }
        if extension:
            body["file_extension"] = extension
        return str(self._create(session, "attachments", "attachment", body)["id"])


def category_usable_for(row: Row) -> list[ItemType]:
    """The item types a ledger account can be coded to, from Sage's own visibility flags (the areas of
    the app that offer it), falling back to visible_scopes and then to the account type."""
    if row.get("is_control_account") or row.get("included_in_chart") is False:
        return []
    flags = {k: row[k] for k in ("visible_in_expenses", "visible_in_sales") if isinstance(row.get(k), bool)}
    scopes = row.get("visible_scopes")
    if flags:
        cost, sales = bool(flags.get("visible_in_expenses")), bool(flags.get("visible_in_sales"))
    elif isinstance(scopes, list):
        cost, sales = bool(COST_SCOPES & set(scopes)), bool(SALES_SCOPES & set(scopes))
    else:
        account_type = _ref_id(row.get("ledger_account_type"))
        cost, sales = account_type in COST_ACCOUNT_TYPES, account_type in SALES_ACCOUNT_TYPES
    usable = []
    if cost:
        # Expense claims are published as purchase invoices to the claimant: the same accounts.
        usable += [ItemType.COST, ItemType.EXPENSE_CLAIM]
    if sales:
        usable.append(ItemType.SALES)
    return usable


def _sales_price(row: Row) -> float | None:
    """The first selling price: products list ``sales_prices[].price``, services ``sales_rates[].rate``."""
    for entry in (row.get("sales_prices") or []) + (row.get("sales_rates") or []):
        if isinstance(entry, dict):
            price = _number(entry.get("price", entry.get("rate")))
            if price is not None:
                return price
    return None


def _decimal(value: Any) -> Decimal:
    try:
        return _money(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return Decimal("NaN")


def _tax_rate_id(tax_rate: Resolved) -> str | None:
    return tax_rate.remote_id or tax_rate.code
