"""Sage Business Cloud Accounting (v3.1) in the adapter contract suite.

The session works on the business that is NOT the user's lead business, so every count below only
matches when the adapter really sends ``X-Business`` (the simulator falls back to the lead one)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.tokens import TokenSet
from sandbox.simulators.harness import truncate_to_millis
from sandbox.simulators.sage import SageSimulator
from sandbox.simulators.sage_ledger import SageBusiness
from tests.contract.harness import LedgerHarness, register

# The resources behind each list (items are products and services together).
RESOURCES: dict[ListType, tuple[str, ...]] = {
    ListType.CATEGORIES: ("ledger_accounts",),
    ListType.CONTACTS: ("contacts",),
    ListType.TAX_RATES: ("tax_rates",),
    ListType.ITEMS: ("products", "services"),
    ListType.BANK_ACCOUNTS: ("bank_accounts",),
}


@register(ProviderName.SAGE)
class SageHarness(LedgerHarness):
    # Sage has no archived contacts (the seed's archived ones are deleted) and every seeded item,
    # bank account and tax rate is live; hidden ledger accounts and inactive analysis categories are
    # the archived rows it has.
    lists_with_archived_rows = (ListType.CATEGORIES, ListType.PROJECTS)

    def make_simulator(self) -> SageSimulator:
        return SageSimulator(self.clock)

    @property
    def sage(self) -> SageSimulator:
        assert isinstance(self.simulator, SageSimulator)
        return self.simulator

    def sign_in(self) -> tuple[TokenSet, str | None]:
        minted = self.sage.mint_tokens()
        tokens = self.adapter.token_set_from(minted, callback_params={"country": "GB"})
        other = next(b["id"] for b in minted["businesses"] if b["id"] != minted["lead_business_id"])
        return tokens, other

    def _business(self) -> SageBusiness:
        return self.sage.business(self.signed_in.organisation_id or "")

    def _live(self, resource: str) -> list[dict[str, Any]]:
        return [r for r in self._business().resources[resource].values() if r.get("deleted_at") is None]

    def remote_count(self, list_type: ListType) -> int | None:
        if list_type == ListType.PROJECTS:
            business = self._business()
            dimensions = list(business.resources["analysis_types"])[:2]
            return sum(
                1
                for c in business.resources["analysis_type_categories"].values()
                if c["analysis_type"]["id"] in dimensions
            )
        return sum(len(self._live(resource)) for resource in RESOURCES[list_type])

    def touch(self, list_type: ListType) -> str:
        record = self._live(RESOURCES[list_type][0])[0]
        with self.sage.lock:
            if list_type == ListType.BANK_ACCOUNTS:
                record["bank_account_details"]["account_name"] += " (renamed)"
            elif list_type == ListType.ITEMS:
                record["description"] += " (renamed)"
            else:
                record["name"] += " (renamed)"
            record["updated_at"] = truncate_to_millis(self.clock.now())
        return str(record["id"])

    def documents(self) -> list[dict[str, Any]]:
        return [w for w in self.sage.writes(kind="purchase_invoices") if w["action"] == "create"]

    def attachments(self) -> list[dict[str, Any]]:
        return [w for w in self.sage.writes(kind="attachments") if w["action"] == "create"]

    def publish_path(self) -> tuple[str, str]:
        return "POST", "/v3.1/purchase_invoices"

    def add_bank_line(self, bank_account_remote_id: str, amount: Decimal, on: date) -> str:
        return self.sage.add_bank_line(
            self.signed_in.organisation_id or "", bank_account_remote_id, on, amount
        )

    def is_paid(self, remote_id: str) -> bool:
        invoice = self._business().resources["purchase_invoices"][remote_id]
        return bool(invoice["status"]["id"] == "PAID" and invoice["outstanding_amount"] == 0)

    def payments(self) -> list[dict[str, Any]]:
        return [w for w in self.sage.writes(kind="contact_payments") if w["action"] == "create"]

    def bank_transactions_created(self) -> list[dict[str, Any]]:
        # Sage's money-out of our own making would be an other payment (or a bank transfer).
        return self.sage.writes(kind="other_payments") + self.sage.writes(kind="bank_transfers")

    def list_path(self, list_type: ListType) -> str:
        if list_type == ListType.PROJECTS:
            return "/v3.1/analysis_types"
        return f"/v3.1/{RESOURCES[list_type][0]}"
