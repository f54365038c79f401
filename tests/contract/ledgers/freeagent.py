"""FreeAgent in the adapter contract suite."""

from __future__ import annotations

from typing import Any

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.tokens import TokenSet
from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.freeagent_ledger import (
    FreeAgentCompany,
    Record,
    whole_seconds,
)
from tests.contract.harness import ORIGIN, LedgerHarness, register


@register(ProviderName.FREEAGENT)
class FreeAgentHarness(LedgerHarness):
    # Hidden contacts and completed projects are in the seed; FreeAgent has no archived
    # categories (the simulator leaves archived accounts out), and the seed hides no bank account.
    lists_with_archived_rows = (ListType.CONTACTS, ListType.PROJECTS)

    def make_simulator(self) -> FreeAgentSimulator:
        return FreeAgentSimulator(self.clock)

    @property
    def freeagent(self) -> FreeAgentSimulator:
        assert isinstance(self.simulator, FreeAgentSimulator)
        return self.simulator

    def sign_in(self) -> tuple[TokenSet, str | None]:
        minted = self.freeagent.mint_tokens()
        tokens = self.adapter.token_set_from(minted, callback_params={})
        return tokens, f"{ORIGIN}/v2/company"  # the company's url is its identity

    def _company(self) -> FreeAgentCompany:
        return next(iter(self.freeagent.companies.values()))

    def remote_count(self, list_type: ListType) -> int | None:
        company = self._company()
        collections: dict[ListType, dict[Any, Record]] = {
            ListType.CATEGORIES: company.categories,
            ListType.CONTACTS: company.contacts,
            ListType.ITEMS: company.price_list_items,
            ListType.PROJECTS: company.projects,
            ListType.BANK_ACCOUNTS: company.bank_accounts,
        }
        collection = collections.get(list_type)  # tax rates are synthesised: nothing to compare
        return len(collection) if collection is not None else None

    def touch(self, list_type: ListType) -> str:
        company = self._company()
        collection, field = {
            ListType.CONTACTS: (company.contacts, "organisation_name"),
            ListType.ITEMS: (company.price_list_items, "description"),
            ListType.PROJECTS: (company.projects, "name"),
            ListType.BANK_ACCOUNTS: (company.bank_accounts, "name"),
        }[list_type]
        with self.freeagent.lock:
            record = next(iter(collection.values()))
            record[field] = f"{record[field]} (renamed)"
            record["updated_at"] = whole_seconds(self.clock.now())
        return f"{ORIGIN}{record['url']}"

    def documents(self) -> list[dict[str, Any]]:
        return [w for w in self.freeagent.writes(kind="Bill") if w["action"] == "create"]

    def attachments(self) -> list[dict[str, Any]]:
        return self.freeagent.writes(kind="Attachment")

    def publish_path(self) -> tuple[str, str]:
        return "POST", "/v2/bills"

    def list_path(self, list_type: ListType) -> str:
        return {
            ListType.CATEGORIES: "/v2/categories",
            ListType.CONTACTS: "/v2/contacts",
            ListType.TAX_RATES: "/v2/company",
            ListType.ITEMS: "/v2/price_list_items",
            ListType.PROJECTS: "/v2/projects",
            ListType.BANK_ACCOUNTS: "/v2/bank_accounts",
        }[list_type]
