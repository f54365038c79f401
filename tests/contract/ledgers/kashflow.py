"""KashFlow in the adapter contract suite.

KashFlow has no OAuth: the harness signs in through the adapter's own two-step memorable-word
login against the simulator (the seeded ``demo`` user), so the suite exercises that flow too.
There is no incremental filter, so ``incremental_lists`` is empty and the incremental contract
test has nothing to check; ``touch`` is still implemented for completeness.
"""

from __future__ import annotations

from typing import Any

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.tokens import TokenSet
from ledgerlink.providers.kashflow import KashFlowAdapter
from sandbox.simulators.kashflow import SEEDED_MEMORABLE_WORD, SEEDED_PASSWORD, KashFlowSimulator
from sandbox.simulators.kashflow_ledger import KashFlowCompany
from tests.contract.harness import LedgerHarness, register

SEEDED_USER = "demo"


@register(ProviderName.KASHFLOW)
class KashFlowHarness(LedgerHarness):
    # Nominals (one archived), suppliers/customers (IsArchived) and projects (Completed).
    lists_with_archived_rows = (ListType.CATEGORIES, ListType.CONTACTS, ListType.PROJECTS)

    def make_simulator(self) -> KashFlowSimulator:
        return KashFlowSimulator(self.clock)

    @property
    def kashflow(self) -> KashFlowSimulator:
        assert isinstance(self.simulator, KashFlowSimulator)
        return self.simulator

    def sign_in(self) -> tuple[TokenSet, str | None]:
        assert isinstance(self.adapter, KashFlowAdapter)
        tokens = self.adapter.login(SEEDED_USER, SEEDED_PASSWORD, SEEDED_MEMORABLE_WORD)
        organisation = self.adapter.organisations(tokens)[0]
        return tokens, organisation.id

    def _company(self) -> KashFlowCompany:
        return self.kashflow.company(SEEDED_USER)

    def remote_count(self, list_type: ListType) -> int | None:
        company = self._company()
        counts = {
            # Bank nominals are imported as bank accounts, not categories.
            ListType.CATEGORIES: sum(1 for n in company.nominals.values() if n["Classification"] != "Bank"),
            ListType.CONTACTS: len(company.suppliers) + len(company.customers),
            ListType.TAX_RATES: len(company.vat_rates),
            ListType.ITEMS: len(company.products),
            ListType.PROJECTS: len(company.projects),
            ListType.BANK_ACCOUNTS: len(company.bank_accounts),
        }
        return counts[list_type]

    def touch(self, list_type: ListType) -> str:
        company = self._company()
        with self.kashflow.lock:
            if list_type == ListType.CONTACTS:
                code, supplier = next(iter(company.suppliers.items()))
                supplier["Name"] += " (renamed)"
                supplier["LastUpdatedDate"] = self.clock.now()
                return f"supplier:{code}"
            if list_type == ListType.BANK_ACCOUNTS:
                bank_id, account = next(iter(company.bank_accounts.items()))
                account["AccountName"] += " (renamed)"
                account["LastUpdatedDate"] = self.clock.now()
                return str(bank_id)
            if list_type == ListType.ITEMS:
                product = next(iter(company.products.values()))
                product["Name"] += " (renamed)"
                product["LastUpdatedDate"] = self.clock.now()
                return str(product["Id"])
            if list_type == ListType.PROJECTS:
                number, project = next(iter(company.projects.items()))
                project["Name"] += " (renamed)"
                return str(number)
            nominal = next(n for n in company.nominals.values() if n["Classification"] != "Bank")
            nominal["Name"] += " (renamed)"
            return str(nominal["Id"])

    def documents(self) -> list[dict[str, Any]]:
        return [w for w in self.kashflow.writes(kind="Purchase") if w["action"] == "create"]

    def attachments(self) -> list[dict[str, Any]]:
        return self.kashflow.writes(kind="File")

    def publish_path(self) -> tuple[str, str]:
        return "POST", "/v2/purchases"

    def list_path(self, list_type: ListType) -> str:
        return {
            ListType.CATEGORIES: "/v2/nominals",
            ListType.CONTACTS: "/v2/suppliers",
            ListType.TAX_RATES: "/v2/vat/settings/vatrates",
            ListType.ITEMS: "/v2/products",
            ListType.PROJECTS: "/v2/projects",
            ListType.BANK_ACCOUNTS: "/v2/bankaccounts",
        }[list_type]
