"""QuickBooks Online in the adapter contract suite.

The adapter here pages with a small MAXRESULTS so that "imports whole" walks several pages of
STARTPOSITION paging (the seeded companies have fewer rows than the production page of 1,000)."""

from __future__ import annotations

from typing import Any

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.tokens import TokenSet
from ledgerlink.providers.quickbooks import QuickBooksAdapter, contact_remote_id, project_remote_id
from sandbox.simulators.harness import truncate_to_millis
from sandbox.simulators.quickbooks import QuickBooksSimulator
from sandbox.simulators.quickbooks_ledger import QboCompany
from tests.contract.harness import DEV_CREDENTIALS, LedgerHarness, register

CONTRACT_PAGE_SIZE = 20
BANK_TYPES = ("Bank", "Credit Card")


@register(ProviderName.QUICKBOOKS)
class QuickBooksHarness(LedgerHarness):
    lists_with_archived_rows = (ListType.CATEGORIES, ListType.CONTACTS, ListType.TAX_RATES, ListType.PROJECTS)

    def __post_init__(self) -> None:
        super().__post_init__()
        paging = QuickBooksAdapter(
            config=self.adapter.config.model_copy(update={"page_size": CONTRACT_PAGE_SIZE}),
            credentials=DEV_CREDENTIALS,
            clock=self.clock,
            sleep=self.clock.sleep,
            http_transport=self.simulator.transport(),
        )
        self.adapter = paging
        self.signed_in.adapter = paging

    def make_simulator(self) -> QuickBooksSimulator:
        return QuickBooksSimulator(self.clock)

    @property
    def qbo(self) -> QuickBooksSimulator:
        assert isinstance(self.simulator, QuickBooksSimulator)
        return self.simulator

    def sign_in(self) -> tuple[TokenSet, str | None]:
        minted = self.qbo.mint_tokens()
        # What the OAuth callback carries besides the code: the company the user picked.
        tokens = self.adapter.token_set_from(minted, callback_params={"realmId": minted["realmId"]})
        return tokens, minted["realmId"]

    def _company(self) -> QboCompany:
        return self.qbo.companies[self.signed_in.organisation_id or ""]

    def remote_count(self, list_type: ListType) -> int | None:
        entities = self._company().entities
        accounts = entities["Account"].values()
        return {
            ListType.CATEGORIES: sum(1 for a in accounts if a["AccountType"] not in BANK_TYPES),
            ListType.BANK_ACCOUNTS: sum(1 for a in accounts if a["AccountType"] in BANK_TYPES),
            ListType.CONTACTS: len(entities["Vendor"]) + len(entities["Customer"]),
            ListType.TAX_RATES: len(entities["TaxCode"]),
            ListType.ITEMS: len(entities["Item"]),
            ListType.PROJECTS: len(entities["Class"]) + len(entities["Department"]),
        }[list_type]

    def touch(self, list_type: ListType) -> str:
        entities = self._company().entities
        now = truncate_to_millis(self.clock.now())
        with self.qbo.lock:
            if list_type in (ListType.CATEGORIES, ListType.BANK_ACCOUNTS):
                wanted_bank = list_type == ListType.BANK_ACCOUNTS
                record = next(
                    a for a in entities["Account"].values() if (a["AccountType"] in BANK_TYPES) == wanted_bank
                )
                remote_id = str(record["Id"])
            elif list_type == ListType.CONTACTS:
                record = next(iter(entities["Vendor"].values()))
                remote_id = contact_remote_id("Vendor", str(record["Id"]))
            elif list_type == ListType.ITEMS:
                record = next(iter(entities["Item"].values()))
                remote_id = str(record["Id"])
            else:
                record = next(iter(entities["Class"].values()))
                remote_id = project_remote_id("Class", str(record["Id"]))
            name_field = "DisplayName" if list_type == ListType.CONTACTS else "Name"
            record[name_field] = f"{record[name_field]} (renamed)"
            record["SyncToken"] = str(int(record["SyncToken"]) + 1)
            record["MetaData"]["LastUpdatedTime"] = now
        return remote_id

    def documents(self) -> list[dict[str, Any]]:
        return [w for w in self.qbo.writes(kind="Bill") if w["action"] == "create"]

    def attachments(self) -> list[dict[str, Any]]:
        return self.qbo.writes(kind="Attachable")

    def publish_path(self) -> tuple[str, str]:
        return "POST", "/v3/company/*/bill"

    def batch_path(self) -> tuple[str, str]:
        return "POST", "/v3/company/*/batch"

    def list_path(self, list_type: ListType) -> str:
        return "/v3/company/*/query"
