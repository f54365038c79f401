"""What the adapter contract suite needs from each ledger: its simulator, an adapter wired to it
through an httpx transport, a signed-in session, and a few ledger-specific facts and levers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from ledgerlink.models.common import ItemType, ListType, ProviderName
from ledgerlink.models.connection import PublishingSettings
from ledgerlink.models.items import CapturedItem
from ledgerlink.models.lists import ListRecord, RecordStatus
from ledgerlink.models.publishing import PublishPlan
from ledgerlink.models.tokens import AppCredentials, TokenSet
from ledgerlink.providers.base import LedgerAdapter, LedgerSession
from ledgerlink.providers.registry import build_adapter
from ledgerlink.services.coding import ListIndex, build_publish_plan
from sandbox.simulators.harness import LedgerSimulator, SimClock

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CONNECTION_ID = "contract-connection"
ORIGIN = "https://ledger.contract.test"
DEV_CREDENTIALS = AppCredentials(client_id="ledgerlink-dev", client_secret="ledgerlink-dev-secret")


@dataclass
class SignedIn:
    """A session whose access token is refreshed when it expires or the ledger says 401, as the
    token manager does in production (minus the lease, which the integration suite covers)."""

    adapter: LedgerAdapter
    tokens: TokenSet
    organisation_id: str | None
    clock: SimClock
    refreshes: int = 0

    def access_token(self, force_refresh: bool) -> str:
        if force_refresh or self.tokens.expires_at <= self.clock.now():
            self.tokens = self.adapter.refresh_tokens(self.tokens)
            self.refreshes += 1
        return self.tokens.access_token.get_secret_value()

    def session(self) -> LedgerSession:
        return LedgerSession(CONNECTION_ID, self.organisation_id, self.access_token)


@dataclass
class LedgerHarness(ABC):
    provider: ProviderName
    clock: SimClock = field(default_factory=lambda: SimClock(START))
    simulator: LedgerSimulator = field(init=False)
    adapter: LedgerAdapter = field(init=False)
    signed_in: SignedIn = field(init=False)

    def __post_init__(self) -> None:
        self.simulator = self.make_simulator()
        self.adapter = build_adapter(
            self.provider,
            credentials=DEV_CREDENTIALS,
            clock=self.clock,
            sleep=self.clock.sleep,
            origin=ORIGIN,
            http_transport=self.simulator.transport(),
        )
        tokens, organisation_id = self.sign_in()
        self.signed_in = SignedIn(self.adapter, tokens, organisation_id, self.clock)

    @property
    def session(self) -> LedgerSession:
        return self.signed_in.session()

    # --- what each ledger provides ------------------------------------------------------------

    @abstractmethod
    def make_simulator(self) -> LedgerSimulator: ...

    @abstractmethod
    def sign_in(self) -> tuple[TokenSet, str | None]:
        """Tokens for the seeded user (minted without the browser) and the organisation to use."""

    @abstractmethod
    def remote_count(self, list_type: ListType) -> int | None:
        """How many records the simulator holds for the list (None: not comparable)."""

    @abstractmethod
    def touch(self, list_type: ListType) -> str:
        """Change one record of the list at the simulator; returns its remote id."""

    @abstractmethod
    def documents(self) -> list[dict[str, Any]]:
        """Purchase documents (bills or their equivalent) created at the simulator."""

    @abstractmethod
    def attachments(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def publish_path(self) -> tuple[str, str]:
        """Method and path glob of the call that creates a bill (for fault injection)."""

    @abstractmethod
    def list_path(self, list_type: ListType) -> str:
        """Path glob of the call that reads a list (for fault injection)."""

    lists_with_archived_rows: tuple[ListType, ...] = ()

    def batch_path(self) -> tuple[str, str]:
        """Method and path glob of the call a batch of bills goes out in: the ledger's batch write,
        or the bill call itself where there is none (one call per plan)."""
        return self.publish_path()

    # --- bank match (ledgers whose capabilities.bank_match is true) ---------------------------

    def add_bank_line(self, bank_account_remote_id: str, amount: Decimal, on: date) -> str:
        """Put an unreconciled money-out line on the bank account, as a bank feed would; returns
        the line's remote id."""
        raise NotImplementedError(f"{self.provider} has no bank match")

    def is_paid(self, remote_id: str) -> bool:
        """Whether the bill ``publish`` created is fully paid at the ledger."""
        raise NotImplementedError(f"{self.provider} has no bank match")

    def payments(self) -> list[dict[str, Any]]:
        """Payments created at the simulator."""
        raise NotImplementedError(f"{self.provider} has no bank match")

    def bank_transactions_created(self) -> list[dict[str, Any]]:
        """Bank transactions of our own making (bank match must never create one)."""
        raise NotImplementedError(f"{self.provider} has no bank match")

    # --- shared helpers -------------------------------------------------------------------------

    def fetch_all(self) -> dict[ListType, list[ListRecord]]:
        return {
            t: self.adapter.fetch_list(self.session, t, since=None).records
            for t in self.adapter.capabilities.lists
        }

    @staticmethod
    def bank_account(lists: dict[ListType, list[ListRecord]]) -> ListRecord:
        """The first live bank account of the imported lists."""
        return next(r for r in lists[ListType.BANK_ACCOUNTS] if r.status == RecordStatus.ACTIVE)

    def cost_plan(
        self,
        item_id: str = "contract-1",
        *,
        lists: dict[ListType, list[ListRecord]] | None = None,
        revision: int = 1,
        category_code: str | None = None,
        net: Decimal = Decimal("100.00"),
        paid_on: date | None = None,
        bank_account: ListRecord | None = None,
        bank_match: bool = False,
    ) -> PublishPlan:
        """A bill for a seeded supplier, coded with the first usable category and purchase tax rate;
        paid from ``bank_account`` on ``paid_on`` when given (with Bank match on if asked)."""
        lists = lists or self.fetch_all()
        index = ListIndex.build(r for records in lists.values() for r in records)
        active = [r for records in lists.values() for r in records if r.status == RecordStatus.ACTIVE]
        category = next(
            r
            for r in active
            if r.list_type == ListType.CATEGORIES
            and ItemType.COST in r.usable_for
            and (category_code is None or r.code == category_code)
        )
        tax = next(
            (
                r
                for r in active
                if r.list_type == ListType.TAX_RATES and ItemType.COST in r.applies_to and (r.rate or 0) > 0
            ),
            None,
        )
        supplier = next(r for r in active if r.list_type == ListType.CONTACTS and r.is_supplier)
        tax_amount = (net * Decimal(str(tax.rate if tax else 0)) / 100).quantize(Decimal("0.01"))
        line: dict[str, Any] = {
            "description": "Contract test paper",
            "amount": net,
            "tax_amount": tax_amount,
            "category": category.id,
        }
        if tax is not None:
            line["tax_rate"] = tax.id
        item = CapturedItem.model_validate(
            {
                "id": item_id,
                "type": "cost",
                "supplier": {"name": supplier.name, "id": supplier.id},
                "date": "2026-11-02",
                "due_date": "2026-12-02",
                "reference": f"REF-{item_id}",
                "currency": "GBP",
                "totals": {"net": net, "tax": tax_amount, "gross": net + tax_amount},
                "lines": [line],
                "paid": {"date": paid_on.isoformat(), "bank_account": bank_account.id}
                if paid_on is not None and bank_account is not None
                else None,
            }
        )
        return build_publish_plan(
            business_id="contract-business",
            item=item,
            revision=revision,
            rule=None,
            settings=PublishingSettings(bank_match=bank_match),
            lists=index,
            capabilities=self.adapter.capabilities,
        )

    def destination_plan(
        self, lists: dict[ListType, list[ListRecord]], item_type: ItemType, destination: str, item_id: str
    ) -> PublishPlan:
        """A paid item of ``item_type`` for ``destination``, coded from the imported lists; its
        supplier or customer (not a claimant of a native claim) resolved as the publishing service
        does, found or created at the ledger first."""
        active = [r for records in lists.values() for r in records if r.status == RecordStatus.ACTIVE]
        category = next(r for r in active if r.list_type == ListType.CATEGORIES and item_type in r.usable_for)
        tax = next(
            (
                r
                for r in active
                if r.list_type == ListType.TAX_RATES and item_type in r.applies_to and (r.rate or 0) > 0
            ),
            None,
        )
        net = Decimal("50.00")
        tax_amount = (net * Decimal(str(tax.rate if tax else 0)) / 100).quantize(Decimal("0.01"))
        line: dict[str, Any] = {"description": "Contract test", "amount": net, "tax_amount": tax_amount}
        line["category"] = category.id
        if tax is not None:
            line["tax_rate"] = tax.id
        fields: dict[str, Any] = {
            "id": item_id,
            "type": item_type.value,
            "date": "2026-11-02",
            "due_date": "2026-12-02",
            "reference": f"REF-{item_id}",
            "currency": "GBP",
            "totals": {"net": net, "tax": tax_amount, "gross": net + tax_amount},
            "lines": [line],
            "paid": {"date": "2026-11-02", "bank_account": self.bank_account(lists).id},
            "destination": destination,
        }
        if item_type == ItemType.EXPENSE_CLAIM:
            fields["claimant"] = {"name": "Priya Shah"}  # a seeded person (a Xero user)
        else:
            role = "customer" if item_type == ItemType.SALES else "supplier"
            party = next(
                r
                for r in active
                if r.list_type == ListType.CONTACTS
                and (r.is_customer if role == "customer" else r.is_supplier)
            )
            fields[role] = {"name": party.name, "id": party.id}
        plan = build_publish_plan(
            business_id="contract-business",
            item=CapturedItem.model_validate(fields),
            revision=1,
            rule=None,
            settings=PublishingSettings(),
            lists=ListIndex.build(r for records in lists.values() for r in records),
            capabilities=self.adapter.capabilities,
        )
        native_claim = item_type == ItemType.EXPENSE_CLAIM and self.adapter.capabilities.native_expense_claims
        if plan.contact.remote_id is None and not native_claim:
            record = self.adapter.ensure_contact(
                self.session,
                plan.contact.name or "",
                customer=item_type == ItemType.SALES,
                key=f"{item_id}-c",
            )
            contact = plan.contact.model_copy(update={"remote_id": record.remote_id, "code": record.code})
            plan = plan.model_copy(update={"contact": contact})
        return plan


HARNESSES: dict[ProviderName, Callable[[], LedgerHarness]] = {}


def register(provider: ProviderName) -> Callable[[type[LedgerHarness]], type[LedgerHarness]]:
    def add(cls: type[LedgerHarness]) -> type[LedgerHarness]:
        HARNESSES[provider] = lambda: cls(provider)
        return cls

    return add
