"""KashFlow (REST v2): no OAuth, a two-step memorable-word login whose session token travels as
``Authorization: KfToken``, the six lists (bare arrays and ``{Data, MetaData}`` pages), purchases
and sales invoices created exactly once by looking them up (KashFlow has no idempotency), files
as base64 JSON. Facts: reference/providers.md §5 and §6.6.

Exactly once without idempotency keys: every document carries our key in a field KashFlow keeps
and returns (the first line's ``Description`` ends with ``[ledgerlink:<key>]``). Before a create,
and before any retry after a transient failure, the supplier's (customer's) documents are listed
and the ones with our reference (or our date and total) are read in detail to find that marker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from ledgerlink.errors import (
    AuthRevoked,
    FieldError,
    InvalidRequest,
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
from ledgerlink.observability import LEDGER_RATE_LIMITED, count, logger
from ledgerlink.providers.base import (
    USER_AGENT,
    Attachment,
    LedgerAdapter,
    LedgerSession,
    ListFetch,
    ListFetchInterrupted,
    _retry_after_seconds,
)
from ledgerlink.providers.config import AttachmentRules, Capabilities, ProviderConfig

T = TypeVar("T")

# KashFlow does not publish the session lifetime; one long-running client logs in again every
# 45 minutes, and the simulator ends sessions 45 minutes after login, not extended by use.
SESSION_LIFETIME = timedelta(minutes=45)
# Log in again a little early so no call starts with a session about to end.
SESSION_MARGIN = timedelta(minutes=5)

# Nominal classifications a purchase line or a sales line may use (the ledger refuses others).
PURCHASES_CLASSIFICATION = "Purchases"
SALES_CLASSIFICATION = "Sales"
BANK_CLASSIFICATION = "Bank"

# Projects are KashFlow's one analysis dimension.
PROJECT_DIMENSION = 1
PROJECT_DIMENSION_NAME = "Project"
PROJECT_DIMENSION_ID = "projects"
ACTIVE_PROJECT_STATUS = "active"

MARKER_PREFIX = "ledgerlink:"
MARKER = re.compile(r"\[ledgerlink:([0-9A-Za-z_-]+)\]")
# A cap on paging, far beyond any real list, so a ledger that never ends a list cannot loop us.
MAX_PAGES = 1000

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")

CONTENT_TYPE_EXTENSIONS = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
}


class ContactKind:
    """Suppliers and customers are separate KashFlow lists with separate code spaces: the same
    code (``ASHD01``) can name an unrelated supplier and customer. Our remote id says which."""

    SUPPLIER = "supplier"
    CUSTOMER = "customer"


# The contacts list is these two paged lists, in this order (a checkpoint names the path).
CONTACT_LISTS = ((ContactKind.SUPPLIER, "/suppliers"), (ContactKind.CUSTOMER, "/customers"))


@dataclass(frozen=True)
class DocumentKind:
    """A purchase or a sales invoice: KashFlow gives both the same shape."""

    path: str
    party_field: str
    reference_field: str
    contact_kind: str

    @property
    def contact_path(self) -> str:
        return "suppliers" if self.contact_kind == ContactKind.SUPPLIER else "customers"


PURCHASE = DocumentKind("purchases", "SupplierCode", "SupplierReference", ContactKind.SUPPLIER)
SALES_INVOICE = DocumentKind("invoices", "CustomerCode", "CustomerReference", ContactKind.CUSTOMER)

# Our destination names -> the KashFlow document they create.
DESTINATION_DOCUMENTS: dict[str, DocumentKind] = {
    "purchase_invoice": PURCHASE,  # an unpaid purchase (supplier bill)
    "paid_purchase": PURCHASE,  # a purchase paid at once from a bank account (PaymentLines)
    "purchase_from_claimant": PURCHASE,  # an expense claim as a purchase from the claimant
    "sales_invoice": SALES_INVOICE,
}
PAID_DESTINATIONS = frozenset({"paid_purchase"})
# Due on the day: a receipt already paid, and an expense claim owed to the claimant now.
DUE_ON_DATE_DESTINATIONS = frozenset({"paid_purchase", "purchase_from_claimant"})


# --- formats -----------------------------------------------------------------------------------


def parse_kf_datetime(value: Any) -> datetime | None:
    """KashFlow prints ``2026-11-02T09:00:00`` (UTC, usually without an offset) or
    ``2026-11-02 09:00:00``; some responses add an offset."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def kf_date(value: date) -> str:
    """Dates go in as ``YYYY-MM-DD HH:mm:ss``."""
    return f"{value.isoformat()} 00:00:00"


def vat_code(value: Any) -> str | None:
    """A VAT rate's identity on lines is its percentage (``VATLevel``): ``20``, ``5``, ``17.5``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return format(number.normalize(), "f") if number else "0"


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def contact_remote_id(kind: str, code: str) -> str:
    return f"{kind}:{code}"


def split_contact_remote_id(remote_id: str | None) -> tuple[str, str] | None:
    """``supplier:ABBE01`` -> (``supplier``, ``ABBE01``); None for anything else."""
    if not remote_id:
        return None
    kind, separator, code = remote_id.partition(":")
    if not separator or not code or kind not in (ContactKind.SUPPLIER, ContactKind.CUSTOMER):
        return None
    return kind, code


def organisation_id_for(company_name: str) -> str:
    """KashFlow names no company id to an API client: one login is one company, and the login
    answer carries only ``CompanyName``. The id is derived from that name (case and spacing do not
    count), so every user of the same company maps to the same organisation."""
    canonical = " ".join(company_name.casefold().split())
    return "kf-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def document_marker(idempotency_key: str) -> str:
    return f"[{MARKER_PREFIX}{idempotency_key}]"


def markers_in(document: Mapping[str, Any]) -> set[str]:
    """The idempotency keys our marker left in a document's line descriptions."""
    found: set[str] = set()
    for line in document.get("LineItems") or []:
        if isinstance(line, Mapping):
            found.update(MARKER.findall(str(line.get("Description") or "")))
    return found


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def ledger_message(response: httpx.Response) -> tuple[str | None, list[FieldError]]:
    """KashFlow is ASP.NET Web API: ``{"Message"}``, for validation ``{"Message": "The request is
    invalid.", "ModelState": {"LineItems[0].NominalCode": ["..."]}}``, or plain text."""
    body = _json_or_none(response)
    if isinstance(body, dict):
        field_errors: list[FieldError] = []
        model_state = body.get("ModelState") or body.get("modelState")
        if isinstance(model_state, dict):
            for field_path, messages in model_state.items():
                for message in messages if isinstance(messages, list) else [messages]:
                    if message:
                        field_errors.append(FieldError(message=str(message), field=str(field_path) or None))
        message = body.get("Message") or body.get("message") or body.get("Error")
        return (str(message) if message else None), field_errors
    if isinstance(body, str) and body.strip():
        return body.strip(), []
    text = response.text.strip() if response.content else ""
    return (text[:500] or None), []


# --- list mappings -------------------------------------------------------------------------------


def _record(connection_id: str, list_type: ListType, remote_id: str, **fields: Any) -> ListRecord:
    return ListRecord(
        id=record_id(connection_id, list_type, remote_id),
        list_type=list_type,
        remote_id=remote_id,
        **fields,
    )


def _archived(flag: Any) -> RecordStatus:
    return RecordStatus.ARCHIVED if flag else RecordStatus.ACTIVE


def category_record(connection_id: str, row: Mapping[str, Any]) -> ListRecord:
    """A nominal. What it can be used for comes from KashFlow's own classification: purchase
    lines take ``Purchases`` nominals, sales lines ``Sales`` ones."""
    classification = str(row.get("Classification") or "")
    usable: list[ItemType] = []
    default_tax: str | None = None
    if classification == PURCHASES_CLASSIFICATION:
        usable = [ItemType.COST, ItemType.EXPENSE_CLAIM]  # expense claims are published as purchases
    elif classification == SALES_CLASSIFICATION:
        usable = [ItemType.SALES]
    if usable:
        default_tax = vat_code(row.get("VATRate"))
    return _record(
        connection_id,
        ListType.CATEGORIES,
        str(row["Id"]),
        code=str(row["Code"]),
        name=str(row.get("Name") or row["Code"]),
        status=_archived(row.get("Archived")),
        account_type=_text(row.get("Type")),
        default_tax_code=default_tax,
        usable_for=usable,
        raw={
            key: row[key]
            for key in (
                "Classification",
                "NomType",
                "VATExempt",
                "Disallowed",
                "ControlAccountClassification",
            )
            if row.get(key) is not None
        },
    )


def contact_record(connection_id: str, kind: str, row: Mapping[str, Any]) -> ListRecord:
    code = str(row["Code"])
    currency = row.get("Currency")
    default_nominal = row.get("DefaultNominalCode")
    return _record(
        connection_id,
        ListType.CONTACTS,
        contact_remote_id(kind, code),
        code=code,
        name=str(row.get("Name") or code),
        status=_archived(row.get("IsArchived")),
        remote_updated_at=parse_kf_datetime(row.get("LastUpdatedDate")),
        is_supplier=kind == ContactKind.SUPPLIER,
        is_customer=kind == ContactKind.CUSTOMER,
        default_category_code=str(default_nominal) if default_nominal not in (None, "", 0) else None,
        currency=_text(currency.get("Code")) if isinstance(currency, Mapping) else _text(currency),
        email=_text(row.get("Email")),
        raw={key: row[key] for key in ("Id", "VatNumber", "PaymentTerms") if row.get(key) not in (None, "")},
    )


def tax_rate_record(connection_id: str, row: Mapping[str, Any]) -> ListRecord:
    code = vat_code(row.get("VATRate")) or "0"
    rate = _decimal(row.get("VATRate"))
    return _record(
        connection_id,
        ListType.TAX_RATES,
        str(row.get("VATId", code)),
        code=code,
        name=_text(row.get("VATText")) or f"{code}%",
        rate=float(rate) if rate is not None else None,
        # KashFlow's VAT rates are one list for purchases and sales alike.
        applies_to=[ItemType.COST, ItemType.SALES, ItemType.EXPENSE_CLAIM],
    )


def item_record(
    connection_id: str, row: Mapping[str, Any], classification_of: Mapping[str, str]
) -> ListRecord:
    """A product. It has one ``NominalCode``; the nominal's classification says whether that is
    where its purchases or its sales go. Prices of 0 mean "not set" on that side."""
    nominal = str(row["NominalCode"]) if row.get("NominalCode") not in (None, "", 0) else None
    classification = classification_of.get(nominal or "")
    tax = vat_code(row.get("VATRate"))
    price = _decimal(row.get("Price"))
    purchase_price = _decimal(row.get("PurchasePrice"))
    return _record(
        connection_id,
        ListType.ITEMS,
        str(row["Id"]),
        code=_text(row.get("Code")),
        name=str(row.get("Name") or row.get("Code") or row["Id"]),
        status=_archived(row.get("IsArchived")),
        remote_updated_at=parse_kf_datetime(row.get("LastUpdatedDate")),
        purchase_category_code=nominal if classification == PURCHASES_CLASSIFICATION else None,
        purchase_tax_code=tax,
        purchase_price=float(purchase_price) if purchase_price else None,
        sales_category_code=nominal if classification == SALES_CLASSIFICATION else None,
        sales_tax_code=tax,
        sales_price=float(price) if price else None,
        raw={key: row[key] for key in ("Type", "VATExempt", "NominalCode") if row.get(key) is not None},
    )


def project_record(connection_id: str, row: Mapping[str, Any]) -> ListRecord:
    status = str(row.get("Status") or "Active")
    return _record(
        connection_id,
        ListType.PROJECTS,
        str(row["Number"]),  # purchase lines refer to projects by Number
        code=_text(row.get("Reference")),
        name=str(row.get("Name") or row["Number"]),
        # Completed (or any other non-active) projects are kept, archived: nothing new goes there.
        status=RecordStatus.ACTIVE if status.lower() == ACTIVE_PROJECT_STATUS else RecordStatus.ARCHIVED,
        dimension=PROJECT_DIMENSION,
        dimension_name=PROJECT_DIMENSION_NAME,
        dimension_remote_id=PROJECT_DIMENSION_ID,
        raw={key: row[key] for key in ("Id", "Status", "CustomerCode") if row.get(key) is not None},
    )


def bank_account_record(connection_id: str, row: Mapping[str, Any]) -> ListRecord:
    return _record(
        connection_id,
        ListType.BANK_ACCOUNTS,
        str(row["Id"]),  # payment lines name the bank account by Id
        code=str(row["Code"]) if row.get("Code") is not None else None,
        name=str(row.get("AccountName") or row["Id"]),
        status=_archived(row.get("IsArchived")),
        remote_updated_at=parse_kf_datetime(row.get("LastUpdatedDate")),
        bank_account_type=_text(row.get("AccountType")),
        currency=_text(row.get("CurrencyCode")),
        account_number=_text(row.get("AccountNumber")),
        raw={key: row[key] for key in ("SortCode", "IsDefaultAccount") if row.get(key) is not None},
    )


# --- publishing bodies ---------------------------------------------------------------------------


def line_body(line: PlannedLine, index: int, *, marker: str | None) -> dict[str, Any]:
    """One ``LineItems`` entry. ``Rate`` is the net unit price; when the net amount does not
    divide into a unit price KashFlow would multiply back to the same pennies, the line goes in
    as one unit of the whole amount, so the ledger's total is exactly ours."""
    code = line.category.code
    if not code or not code.strip().isdigit():
        message = f"Line {index + 1}: category {code or '(none)'} is not a KashFlow nominal code"
        raise Rejected(message, field_errors=[FieldError(message, field=f"lines[{index}].category")])
    quantity = Decimal(str(line.quantity))
    rate = (line.amount / quantity).quantize(RATE_PLACES)
    if (rate * quantity).quantize(CENT) != line.amount:
        quantity, rate = Decimal("1"), line.amount
    description = line.description
    if marker:
        description = f"{description} {marker}"
    body: dict[str, Any] = {
        "Description": description,
        "Quantity": _json_number(quantity),
        "Rate": _json_number(rate),
        "NominalCode": int(code),
        "VATAmount": _json_number(line.tax_amount),
    }
    level = _decimal(line.tax_rate.code)
    if level is not None:
        body["VATLevel"] = _json_number(level)  # a configured rate's percentage
    project = line.project
    if project is not None and project.remote_id and project.remote_id.isdigit():
        body["ProjectNumber"] = int(project.remote_id)
    if line.product is not None and line.product.code:
        body["ProductCode"] = line.product.code
    return body


def _same_money(value: Any, wanted: Decimal) -> bool:
    number = _decimal(value)
    return number is not None and number.quantize(CENT) == wanted.quantize(CENT)


def _same_reference(value: Any, wanted: str | None) -> bool:
    return (_text(value) or "").casefold() == (wanted or "").strip().casefold()


# --- the adapter ---------------------------------------------------------------------------------


class KashFlowAdapter(LedgerAdapter):
    default_config: ClassVar[ProviderConfig] = ProviderConfig(
        name=ProviderName.KASHFLOW,
        # No OAuth: authorize/token/revoke URLs stay unset; the session login lives under the API.
        api_base_url="https://api.kashflow.com/v2",
        # KashFlow's default is 50; larger pages mean fewer calls against its (unpublished) limit.
        page_size=100,
        calls_per_minute=60,  # unpublished: the conservative figure clients assume
    )
    capabilities: ClassVar[Capabilities] = Capabilities(
        provider=ProviderName.KASHFLOW,
        display_name="KashFlow",
        auth_style="session_login",
        organisation_choice=False,  # one login is one company
        lists=tuple(ListType),
        # KashFlow's REST API has no modified-since filter: every refresh is a full list, diffed.
        incremental_lists=(),
        destinations={
            ItemType.COST: ("purchase_invoice", "paid_purchase"),
            ItemType.SALES: ("sales_invoice",),
            ItemType.EXPENSE_CLAIM: ("purchase_from_claimant",),
        },
        default_destinations={
            ItemType.COST: "purchase_invoice",
            ItemType.SALES: "sales_invoice",
            ItemType.EXPENSE_CLAIM: "purchase_from_claimant",
        },
        bank_match=False,
        native_expense_claims=False,
        batch_size=1,
        idempotency="lookup_by_reference",
        attachments=AttachmentRules(
            max_bytes=5_000_000,
            content_types=("application/pdf", "image/png", "image/jpeg", "image/gif"),
        ),
    )

    # --- the session login (KashFlow has no OAuth) -------------------------------------------

    def authorization_url(self, *, redirect_uri: str, state: str, code_verifier: str | None) -> str:
        raise InvalidRequest(
            "KashFlow has no OAuth sign-in: connect with the KashFlow user name, password and "
            "memorable word instead",
            field="provider",
        )

    def exchange_code(
        self, *, code: str, redirect_uri: str, code_verifier: str | None, callback_params: Mapping[str, str]
    ) -> TokenSet:
        raise InvalidRequest(
            "KashFlow has no OAuth sign-in, so there is no code to exchange: connect with the "
            "KashFlow user name, password and memorable word instead",
            field="provider",
        )

    def connect_directly(self, credentials: Mapping[str, str]) -> TokenSet:
        """KashFlow's way in: the Admin's login (username, password, memorable word)."""
        return self.login(credentials["username"], credentials["password"], credentials["memorable_word"])

    def login(self, username: str, password: str, memorable_word: str) -> TokenSet:
        """The two-step login: ``POST /sessiontoken`` (user name and password) names three
        positions of the memorable word; ``PUT /sessiontoken`` with those letters returns the
        session token. The credentials are kept in the token set's ``refresh_token`` (which lives
        only in the encrypted token store) because a session is renewed by logging in again."""
        for attempt in range(1, self.config.max_attempts + 1):
            last_attempt = attempt == self.config.max_attempts
            try:
                started = self._session_call("POST", {"UserName": username, "Password": password})
                if started.status_code >= 400:
                    raise self._login_refused(started, "the user name or password")
                temporary, positions = self._challenge(started)
                letters = [
                    {"Position": position, "Value": self._letter(memorable_word, position)}
                    for position in positions
                ]
                # A temporary token answers once, right or wrong: a failure restarts from step one.
                finished = self._session_call(
                    "PUT", {"TemporaryToken": temporary, "MemorableWordList": letters}
                )
                if finished.status_code >= 400:
                    raise self._login_refused(finished, "the memorable word letters")
            except (Unavailable, RateLimited) as error:
                wait = error.retry_after if isinstance(error, RateLimited) else None
                if last_attempt or (wait is not None and wait > self.config.max_inline_wait_seconds):
                    raise
                if wait is None:
                    self._backoff(attempt, reason=error.message)
                else:
                    self._sleep(wait)
                continue
            return self._token_set(finished, username, password, memorable_word)
        raise Unavailable("KashFlow's login kept failing", provider=self.provider)  # pragma: no cover

    def refresh_tokens(self, tokens: TokenSet) -> TokenSet:
        """A session cannot be extended: log in again with the stored credentials."""
        username, password, memorable_word = self._stored_credentials(tokens)
        renewed = self.login(username, password, memorable_word)
        return renewed.model_copy(update={"extras": {**tokens.extras, **renewed.extras}})

    def revoke(self, tokens: TokenSet) -> None:
        """Log the session out (``DELETE /sessiontoken/{token}``). Nothing else to withdraw: the
        credentials go when the token store deletes the token set."""
        token = tokens.access_token.get_secret_value()
        try:
            response = self._http.request(
                "DELETE",
                f"{self.config.api_base_url}/sessiontoken/{quote(token, safe='')}",
                headers={**self.authorization_headers(token), **self._plain_headers()},
                timeout=self.config.request_timeout_seconds,
            )
        except httpx.TransportError as error:
            logger.warning("KashFlow logout failed", provider=self.provider, reason=type(error).__name__)
            return
        # 401: the session had already ended, which is what a logout wants.
        if response.status_code >= 400 and response.status_code != 401:
            logger.warning("KashFlow logout refused", provider=self.provider, status=response.status_code)

    def authorization_headers(self, access_token: str) -> dict[str, str]:
        return {"Authorization": f"KfToken {access_token}"}

    def organisations(self, tokens: TokenSet) -> list[Organisation]:
        """One login is one company: the company the login answered with."""
        name = tokens.extras.get("company_name")
        if not name:
            name = self.refresh_tokens(tokens).extras.get("company_name")
        if not name:
            raise LedgerError("KashFlow's login did not name the company", provider=self.provider)
        return [Organisation(id=organisation_id_for(name), name=name, kind="company")]

    def _plain_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": USER_AGENT}

    def _session_call(self, method: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self._http.request(
                method,
                f"{self.config.api_base_url}/sessiontoken",
                json=body,
                headers=self._plain_headers(),
                timeout=self.config.request_timeout_seconds,
            )
        except httpx.TransportError as error:
            raise Unavailable(
                f"KashFlow's login did not answer: {type(error).__name__}", provider=self.provider
            ) from error
        if response.status_code == 429:
            count(LEDGER_RATE_LIMITED)
            raise RateLimited(
                "KashFlow's login is rate limiting",
                retry_after=_retry_after_seconds(response, self._clock) or 60.0,
                provider=self.provider,
            )
        if response.status_code >= 500:
            raise Unavailable(
                f"KashFlow's login answered {response.status_code}",
                provider=self.provider,
                status=response.status_code,
            )
        return response

    def _login_refused(self, response: httpx.Response, what: str) -> AuthRevoked:
        message, _ = ledger_message(response)
        return AuthRevoked(
            f"KashFlow refused {what}: {message or response.status_code}",
            provider=self.provider,
            status=response.status_code,
        )

    def _challenge(self, response: httpx.Response) -> tuple[str, list[int]]:
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise Unavailable("KashFlow's login answered without a body", provider=self.provider)
        if body.get("IsLockedOut"):
            # A locked login answers 201 with no temporary token: only the account owner can unlock.
            raise AuthRevoked(
                "KashFlow has locked this login after too many failed attempts; unlock it in "
                "KashFlow, then reconnect",
                provider=self.provider,
            )
        temporary = body.get("TemporaryToken")
        positions = [
            int(entry["Position"])
            for entry in body.get("MemorableWordList") or []
            if isinstance(entry, dict) and str(entry.get("Position", "")).isdigit()
        ]
        if not temporary or not positions:
            raise LedgerError("KashFlow's login asked for no memorable word letters", provider=self.provider)
        return str(temporary), positions

    def _letter(self, memorable_word: str, position: int) -> str:
        # Positions are 1-based.
        if not 1 <= position <= len(memorable_word):
            raise AuthRevoked(
                f"KashFlow asked for letter {position} of the memorable word, which is shorter; "
                "reconnect with the right memorable word",
                provider=self.provider,
            )
        return memorable_word[position - 1]

    def _token_set(
        self, response: httpx.Response, username: str, password: str, memorable_word: str
    ) -> TokenSet:
        body = _json_or_none(response)
        token = body.get("SessionToken") if isinstance(body, dict) else None
        if not token:
            raise LedgerError("KashFlow's login returned no session token", provider=self.provider)
        assert isinstance(body, dict)
        if body.get("SubscriptionExpired"):
            logger.warning("the KashFlow subscription has expired", provider=self.provider)
        credentials = json.dumps(
            {"username": username, "password": password, "memorable_word": memorable_word}
        )
        extras = {"company_name": str(body["CompanyName"])} if body.get("CompanyName") else {}
        return TokenSet(
            access_token=SecretStr(str(token)),
            refresh_token=SecretStr(credentials),
            expires_at=self._clock.now() + SESSION_LIFETIME - SESSION_MARGIN,
            extras=extras,
        )

    def _stored_credentials(self, tokens: TokenSet) -> tuple[str, str, str]:
        if tokens.refresh_token is None:
            raise AuthRevoked("no KashFlow credentials are stored; reconnect", provider=self.provider)
        try:
            stored = json.loads(tokens.refresh_token.get_secret_value())
            return str(stored["username"]), str(stored["password"]), str(stored["memorable_word"])
        except (ValueError, KeyError, TypeError) as error:
            raise AuthRevoked(
                "the stored KashFlow credentials are unreadable; reconnect", provider=self.provider
            ) from error

    # --- errors ----------------------------------------------------------------------------------

    def map_error(self, response: httpx.Response) -> LedgerError:
        status = response.status_code
        message, field_errors = ledger_message(response)
        if status in (401, 403):
            return AuthRevoked(
                f"KashFlow no longer accepts our access: {message or status}",
                provider=self.provider,
                status=status,
            )
        if status == 404:
            return NotFound(
                message or "KashFlow could not find that object", provider=self.provider, status=status
            )
        if field_errors:
            # "The request is invalid." says nothing; the ModelState messages say what.
            text = "; ".join(e.message for e in field_errors)
        else:
            text = message or f"KashFlow answered {status}"
        return Rejected(text, field_errors=field_errors, provider=self.provider, status=status)

    # --- lists -------------------------------------------------------------------------------------

    def fetch_list(self, session: LedgerSession, list_type: ListType, *, since: str | None) -> ListFetch:
        # No incremental filter exists, so ``since`` is ignored: each fetch is the whole list.
        connection_id = session.connection_id
        if list_type == ListType.CATEGORIES:
            rows = self._bare(session, "/nominals")
            records = [
                category_record(connection_id, row)
                for row in rows
                if row.get("Classification") != BANK_CLASSIFICATION  # those are the bank accounts list
            ]
            return ListFetch(records, complete=True, calls=1)
        if list_type == ListType.CONTACTS:
            return self._fetch_contacts(session, {})
        if list_type == ListType.TAX_RATES:
            rows = self._bare(session, "/vat/settings/vatrates")
            return ListFetch([tax_rate_record(connection_id, row) for row in rows], complete=True, calls=1)
        if list_type == ListType.ITEMS:
            rows, calls = self._all_pages(session, "/products", {})
            classification_of = {
                str(n.get("Code")): str(n.get("Classification") or "")
                for n in self._bare(session, "/nominals")
            }
            records = [item_record(connection_id, row, classification_of) for row in rows]
            return ListFetch(records, complete=True, calls=calls + 1)
        if list_type == ListType.PROJECTS:
            rows, calls = self._all_pages(session, "/projects", {})
            return ListFetch([project_record(connection_id, row) for row in rows], complete=True, calls=calls)
        if list_type == ListType.BANK_ACCOUNTS:
            rows = self._bare(session, "/bankaccounts", {"includeArchivedAccounts": "true"})
            return ListFetch(
                [bank_account_record(connection_id, row) for row in rows], complete=True, calls=1
            )
        raise ValueError(f"unknown list type {list_type}")

    def resume_list(
        self, session: LedgerSession, list_type: ListType, *, since: str | None, resume_at: Mapping[str, Any]
    ) -> ListFetch:
        if list_type == ListType.CONTACTS:
            return self._fetch_contacts(session, resume_at)
        return super().resume_list(session, list_type, since=since, resume_at=resume_at)

    def _fetch_contacts(self, session: LedgerSession, resume_at: Mapping[str, Any]) -> ListFetch:
        """Suppliers, then customers, page by page: the bulk of a KashFlow refresh (~100 pages for
        10,000 contacts). A fetch stopped part-way (a 429, a 5xx, the call budget) raises
        ``ListFetchInterrupted`` naming the list and page to carry on from; the rest fetched from
        there is still the end of a whole-list fetch (``complete``), so the refresh, which keeps
        the ids it saw before the stop, finds deletions all the same."""
        paths = [path for _kind, path in CONTACT_LISTS]
        start, first_page = resume_at.get("path"), resume_at.get("page")
        if start not in paths or not isinstance(first_page, int) or first_page < 1:
            start, first_page = paths[0], 1
        records: list[ListRecord] = []
        calls = 0
        for kind, path in CONTACT_LISTS[paths.index(start) :]:
            first = first_page if path == start else 1

            def fetch_page(page: int, kind: str = kind, path: str = path) -> tuple[list[ListRecord], bool]:
                rows, more = self._page(session, path, {"filterarchived": "false"}, page)
                return [contact_record(session.connection_id, kind, row) for row in rows], more

            try:
                rows, pages = self.resumable_pages(
                    fetch_page, first_page=first, session=session, held=bool(records)
                )
            except ListFetchInterrupted as stopped:
                stopped.fetched.records[:0] = records
                stopped.fetched.calls += calls
                stopped.resume_at["path"] = path
                raise
            except (RateLimited, Unavailable) as error:
                if not records:
                    raise  # nothing fetched yet: a plain retry starts where this one did
                raise ListFetchInterrupted(
                    ListFetch(records, complete=False, calls=calls), {"path": path, "page": first}, error
                ) from error
            records += rows
            calls += pages
        return ListFetch(records, complete=True, calls=calls)

    def _page(
        self, session: LedgerSession, path: str, params: Mapping[str, str], page: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a paged list, and whether another follows (an empty page ends it, whatever
        ``NextPageUrl`` says)."""
        if page > MAX_PAGES:
            raise Unavailable(f"KashFlow's paging of {path} did not come to an end", provider=self.provider)
        query = {**params, "page": str(page), "perpage": str(self.config.page_size)}
        body = self.request(session, "GET", self._url(path), params=query).json()
        if isinstance(body, list):  # a bare array is the whole list in one call
            return [row for row in body if isinstance(row, dict)], False
        rows = [row for row in body.get("Data") or [] if isinstance(row, dict)]
        return rows, bool(rows) and bool((body.get("MetaData") or {}).get("NextPageUrl"))

    def _url(self, path: str) -> str:
        return self.config.api_base_url + path

    def _bare(
        self, session: LedgerSession, path: str, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        body = self.request(session, "GET", self._url(path), params=params).json()
        if isinstance(body, dict):  # tolerate the paged shape on a list usually bare
            body = body.get("Data")
        return [row for row in body or [] if isinstance(row, dict)]

    def _all_pages(
        self, session: LedgerSession, path: str, params: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], int]:
        """Every page of a paged list (``_page`` until one says it is the last), and the calls made.
        A list that comes back as a bare array (projects, in some accounts) is whole in one call."""
        pages = list(self.pages(lambda page: self._page(session, path, params, page)))
        return [row for rows in pages for row in rows], len(pages)

    # --- contacts ------------------------------------------------------------------------------------

    def ensure_contact(self, session: LedgerSession, name: str, *, customer: bool, key: str) -> ListRecord:
        """Find the supplier (customer) by name, else create it once. KashFlow has no idempotency,
        so ``key`` is not sent: a create whose answer was lost is found by name before any retry."""
        kind = ContactKind.CUSTOMER if customer else ContactKind.SUPPLIER
        path = "/customers" if customer else "/suppliers"
        wanted = normalise_name(name)
        archived: list[ListRecord] = []

        def find() -> ListRecord | None:
            archived.clear()
            rows, _ = self._all_pages(session, path, {"filterarchived": "false"})
            for row in rows:
                if normalise_name(str(row.get("Name") or "")) != wanted:
                    continue
                record = contact_record(session.connection_id, kind, row)
                if record.status == RecordStatus.ACTIVE:
                    return record
                archived.append(record)
            return None

        def create() -> ListRecord:
            response = self.request(session, "POST", self._url(path), json={"Name": name}, retry_safe=False)
            return contact_record(session.connection_id, kind, response.json())

        found = find()
        if found is not None:
            return found
        if archived:
            raise Rejected(
                f"The {kind} {archived[0].name} ({archived[0].code}) is archived in KashFlow; restore it "
                f"or choose another {kind}",
                provider=self.provider,
            )
        return self._create_once(f"{kind} {name}", find, create, look_first=False)

    # --- publishing ------------------------------------------------------------------------------------

    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        kind = DESTINATION_DOCUMENTS.get(plan.destination)
        if kind is None:
            raise Rejected(
                f"publishing to {plan.destination!r} is not available for KashFlow; choose one of "
                f"{', '.join(DESTINATION_DOCUMENTS)}",
                provider=self.provider,
            )
        if not plan.lines:
            raise Rejected("KashFlow needs at least one line", provider=self.provider)
        warnings: list[str] = []
        party_code = self._party_code(session, plan, kind)
        body = self._document_body(session, plan, kind, party_code, warnings)

        def find() -> PublishResult | None:
            return self._find_document(session, plan, kind, party_code)

        def create() -> PublishResult:
            response = self.request(session, "POST", self._url(f"/{kind.path}"), json=body, retry_safe=False)
            return self._result(response.json(), kind)

        result = self._create_once(f"{kind.path[:-1]} {plan.reference or plan.item_id}", find, create)
        return result.model_copy(update={"warnings": [*warnings, *result.warnings]})

    def _party_code(self, session: LedgerSession, plan: PublishPlan, kind: DocumentKind) -> str:
        """The supplier's (customer's) code. A name matching a contact of the other kind (the same
        company can be a KashFlow supplier and, separately, a customer) finds or creates the right one."""
        parsed = split_contact_remote_id(plan.contact.remote_id)
        if parsed is not None and parsed[0] == kind.contact_kind:
            return parsed[1]
        name = plan.contact.name
        if not name:
            raise Rejected(f"the item names no {kind.contact_kind}", provider=self.provider)
        record = self.ensure_contact(
            session,
            name,
            customer=kind.contact_kind == ContactKind.CUSTOMER,
            key=f"{plan.idempotency_key}-contact",
        )
        assert record.code is not None
        return record.code

    def _document_body(
        self,
        session: LedgerSession,
        plan: PublishPlan,
        kind: DocumentKind,
        party_code: str,
        warnings: list[str],
    ) -> dict[str, Any]:
        marker = document_marker(plan.idempotency_key)
        lines = [line_body(line, i, marker=marker if i == 0 else None) for i, line in enumerate(plan.lines)]
        if any(line.project_2 is not None for line in plan.lines):
            warnings.append("KashFlow has one project dimension; the second project was left out")
        body: dict[str, Any] = {
            kind.party_field: party_code,
            kind.reference_field: plan.reference or "",
            "IssuedDate": kf_date(plan.date),
            "DueDate": kf_date(self._due_date(session, plan, kind, party_code)),
            "Currency": {"Code": plan.currency},
            "LineItems": lines,
        }
        if plan.destination in PAID_DESTINATIONS:
            account_id = self._paying_account(session, plan, warnings)
            body["PaymentLines"] = [
                {"AccountId": account_id, "Amount": _json_number(plan.gross), "Date": kf_date(plan.date)}
            ]
        return body

    def _due_date(
        self, session: LedgerSession, plan: PublishPlan, kind: DocumentKind, party_code: str
    ) -> date:
        """KashFlow wants a due date; without one, the contact's payment terms decide, as in KashFlow."""
        if plan.due_date is not None:
            return plan.due_date
        if plan.destination in DUE_ON_DATE_DESTINATIONS:
            return plan.date
        response = self.request(
            session, "GET", self._url(f"/{kind.contact_path}/{quote(party_code, safe='')}")
        )
        terms = response.json().get("PaymentTerms")
        days = int(terms) if str(terms or "").isdigit() else 0
        return plan.date + timedelta(days=days)

    def _paying_account(self, session: LedgerSession, plan: PublishPlan, warnings: list[str]) -> int:
        chosen = plan.bank_account.remote_id if plan.bank_account else None
        if chosen and chosen.isdigit():
            return int(chosen)
        accounts = self._bare(session, "/bankaccounts")
        default = next((a for a in accounts if a.get("IsDefaultAccount") and not a.get("IsArchived")), None)
        if default is None:
            raise Rejected(
                "This purchase is paid but no bank account was chosen and KashFlow has no default "
                "bank account; choose the bank account it was paid from",
                provider=self.provider,
            )
        warnings.append(f"paid from KashFlow's default bank account, {default.get('AccountName')}")
        return int(default["Id"])

    def _find_document(
        self, session: LedgerSession, plan: PublishPlan, kind: DocumentKind, party_code: str
    ) -> PublishResult | None:
        """Our document, if it exists: among the contact's documents with our reference (or our
        date and total), newest first, the one whose lines carry our idempotency key."""
        rows, _ = self._all_pages(
            session,
            f"/{kind.path}",
            {kind.party_field.lower(): party_code, "sortby": "Number", "order": "Desc"},
        )
        for row in rows:
            same_reference = _same_reference(row.get(kind.reference_field), plan.reference)
            same_total = _same_money(row.get("GrossAmount"), plan.gross)
            same_date = (parse_kf_datetime(row.get("IssuedDate")) or datetime.min).date() == plan.date
            if plan.reference and not same_reference and not (same_total and same_date):
                continue
            if not plan.reference and not (same_reference and same_total):
                continue
            number = row.get("Number")
            if number is None:
                continue
            detail = self.request(session, "GET", self._url(f"/{kind.path}/{number}")).json()
            if plan.idempotency_key not in markers_in(detail):
                continue
            result = self._result(detail, kind)
            logger.info("found the document already in KashFlow", provider=self.provider, number=number)
            if _same_money(detail.get("GrossAmount"), plan.gross):
                return result
            # Our key makes it ours; a different total is worth telling, not a reason to post again.
            mismatch = (
                f"KashFlow's total for {kind.path[:-1]} {number} is {detail.get('GrossAmount')}, "
                f"not {plan.gross}"
            )
            return result.model_copy(update={"warnings": [*result.warnings, mismatch]})
        return None

    def _result(self, document: Mapping[str, Any], kind: DocumentKind) -> PublishResult:
        number = document.get("Number")
        if number is None:
            raise LedgerError(f"KashFlow created a {kind.path[:-1]} without a number", provider=self.provider)
        link = document.get("Permalink")
        return PublishResult(remote_id=str(number), url=str(link) if link else None)

    def _create_once(
        self, what: str, find: Callable[[], T | None], create: Callable[[], T], *, look_first: bool = True
    ) -> T:
        """Create something KashFlow cannot deduplicate, at most once: look it up before creating
        and again after any transient failure (the create may have committed before its answer
        was lost); only when it is not there is the create sent again."""
        if look_first:
            found = find()
            if found is not None:
                return found
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                return create()
            except (Unavailable, RateLimited) as error:
                found = find()
                if found is not None:
                    logger.info("a lost create had committed", provider=self.provider, what=what)
                    return found
                wait = error.retry_after if isinstance(error, RateLimited) else None
                if attempt == self.config.max_attempts or (
                    wait is not None and wait > self.config.max_inline_wait_seconds
                ):
                    raise
                if wait is None:
                    self._backoff(attempt, reason=error.message)
                else:
                    self._sleep(wait)
        raise Unavailable(f"creating {what} kept failing", provider=self.provider)  # pragma: no cover

    # --- attachments --------------------------------------------------------------------------------

    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        """Upload the document to the purchase (invoice) with ``POST /{objectType}/{number}/files``
        as base64 JSON — the fields of KashFlow's one documented attachment call. Never recreates
        the document; a file with the same name and size already there is not sent again."""
        kind = DESTINATION_DOCUMENTS.get(plan.destination, PURCHASE)
        rules = self.capabilities.attachments
        content_type = document.content_type.split(";")[0].strip().lower()
        if rules.content_types and content_type not in rules.content_types:
            raise Rejected(
                f"KashFlow does not take {content_type or 'this kind of'} files; attach one of "
                f"{', '.join(rules.content_types)}",
                provider=self.provider,
            )
        if len(document.content) > rules.max_bytes:
            raise Rejected(
                f"The document is {len(document.content)} bytes; KashFlow takes at most {rules.max_bytes}",
                provider=self.provider,
            )
        file_name = self._file_name(document.file_name, content_type)
        url = self._url(f"/{kind.path}/{quote(result.remote_id, safe='')}/files")
        body: dict[str, Any] = {
            "Filename": file_name,
            "ContentType": content_type,
            "Base64String": base64.b64encode(document.content).decode("ascii"),
            "FileSize": len(document.content),
        }
        extension = PurePosixPath(file_name).suffix.lstrip(".")
        if extension:
            body["FileExtension"] = extension

        def find() -> str | None:
            files = self.request(session, "GET", url).json()
            for stored in files if isinstance(files, list) else []:
                same_size = stored.get("Size") in (None, len(document.content))
                if stored.get("FileName") == file_name and same_size:
                    return str(stored.get("Id"))
            return None

        def create() -> str:
            response = self.request(session, "POST", url, json=body, retry_safe=False)
            return str(response.json().get("Id", ""))

        return self._create_once(f"file {file_name}", find, create)

    @staticmethod
    def _file_name(name: str, content_type: str) -> str:
        base = PurePosixPath(name.replace("\\", "/")).name.strip() or "document"
        if not PurePosixPath(base).suffix and content_type in CONTENT_TYPE_EXTENSIONS:
            base = f"{base}.{CONTENT_TYPE_EXTENSIONS[content_type]}"
        return base
