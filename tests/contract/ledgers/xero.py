"""Xero in the adapter contract suite."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.tokens import TokenSet
from sandbox.simulators.xero import XeroSimulator
from tests.contract.harness import LedgerHarness, register


@register(ProviderName.XERO)
class XeroHarness(LedgerHarness):
    lists_with_archived_rows = (ListType.CATEGORIES, ListType.CONTACTS, ListType.TAX_RATES, ListType.PROJECTS)

    def make_simulator(self) -> XeroSimulator:
        return XeroSimulator(self.clock)

    @property
    def xero(self) -> XeroSimulator:
        assert isinstance(self.simulator, XeroSimulator)
        return self.simulator

    def sign_in(self) -> tuple[TokenSet, str | None]:
        minted = self.xero.mint_tokens()
        tokens = self.adapter.token_set_from(minted, callback_params={})
        return tokens, minted["tenants"][0]["tenantId"]

    def _org(self) -> Any:
        return self.xero.org(self.signed_in.organisation_id or "")

    def remote_count(self, list_type: ListType) -> int | None:
        if list_type == ListType.CONTACTS:
            return len(self._org().contacts)
        return None

    def touch(self, list_type: ListType) -> str:
        org = self._org()
        collection = org.contacts if list_type == ListType.CONTACTS else org.accounts
        wanted_bank = list_type == ListType.BANK_ACCOUNTS
        with self.xero.lock:
            key, record = next(
                (k, r) for k, r in collection.items() if (r.get("Type") == "BANK") == wanted_bank
            )
            record["Name"] = record["Name"] + " (renamed)"
            record["UpdatedDateUTC"] = self.clock.now()
        return str(key)

    def documents(self) -> list[dict[str, Any]]:
        return [
            w
            for w in self.xero.writes(kind="Invoice")
            if w["action"] == "create" and w["body"]["Type"] == "ACCPAY"
        ]

    def attachments(self) -> list[dict[str, Any]]:
        return self.xero.writes(kind="Attachment")

    def publish_path(self) -> tuple[str, str]:
        return "PUT", "/api.xro/2.0/Invoices"

    def batch_path(self) -> tuple[str, str]:
        return "PUT", "/api.xro/2.0/Invoices"  # arrays of up to 50 with summarizeErrors=false

    def add_bank_line(self, bank_account_remote_id: str, amount: Decimal, on: date) -> str:
        return self.xero.add_bank_line(
            self.signed_in.organisation_id or "", bank_account_remote_id, on, amount
        )

    def is_paid(self, remote_id: str) -> bool:
        return bool(self._org().invoices[remote_id.lower()]["Status"] == "PAID")

    def payments(self) -> list[dict[str, Any]]:
        return [w for w in self.xero.writes(kind="Payment") if w["action"] == "create"]

    def bank_transactions_created(self) -> list[dict[str, Any]]:
        return self.xero.writes(kind="BankTransaction")

    def list_path(self, list_type: ListType) -> str:
        return {ListType.CONTACTS: "/api.xro/2.0/Contacts", ListType.TAX_RATES: "/api.xro/2.0/TaxRates"}.get(
            list_type, "/api.xro/2.0/Accounts"
        )
