"""FreeAgent in the adapter contract suite."""

from __future__ import annotations

from typing import Any

from flask import Response

from ledgerlink.models.common import ListType, ProviderName
from ledgerlink.models.tokens import TokenSet
from sandbox.simulators.freeagent import ApiCall, ApiRoute, FreeAgentSimulator
from sandbox.simulators.freeagent_ledger import (
    FreeAgentCompany,
    Record,
    _attachment,
    _Errors,
    bill_view,
    render,
    store_attachment,
    whole_seconds,
)
from sandbox.simulators.harness import json_response, request_json
from tests.contract.harness import ORIGIN, LedgerHarness, register


class FreeAgentWithDocumentUpdates(FreeAgentSimulator):
    """The FreeAgent simulator plus the document updates FreeAgent documents and the simulator
    does not serve yet: ``PUT /v2/bills/:id`` and ``PUT /v2/expenses/:id`` ("Payload must have a
    root element containing the attributes that should be updated", 200 OK). Only the
    ``attachment`` attribute is taken — what the adapter's attach step sends — validated by the
    simulator's own attachment rules. Proposed for the simulator itself (see the adapter report)."""

    def _api_routes(self) -> list[ApiRoute]:
        return [
            *super()._api_routes(),
            ApiRoute("PUT", ("bills", "{id}"), "bills", self._put_bill),
            ApiRoute("PUT", ("expenses", "{id}"), "expenses", self._put_expense),
        ]

    def _put_bill(self, call: ApiCall) -> Response:
        return self._put_attachment(
            call, call.company.bills, "bill", lambda b: bill_view(b, self.clock.today())
        )

    def _put_expense(self, call: ApiCall) -> Response:
        return self._put_attachment(call, call.company.expenses, "expense", lambda e: e)

    def _put_attachment(self, call: ApiCall, store: dict[int, Record], root: str, view: Any) -> Response:
        record = self._record(store, call.params["id"])
        if record is None:
            return self._error(404, "Resource not found")
        payload = request_json()
        changes = payload.get(root) if isinstance(payload, dict) else None
        if not isinstance(changes, dict):
            return self._error(422, f"The request must be JSON with a root {root} element")
        if set(changes) != {"attachment"}:
            return self._error(422, "This sandbox update takes only the attachment attribute")
        errors = _Errors()
        upload = _attachment(self._write_context(call), changes["attachment"], errors)
        if errors or upload is None:
            return self._error(422, *(errors or ["Attachment can't be blank"]))
        now = whole_seconds(self.clock.now())
        stored = store_attachment(call.company, upload, now)
        assert stored is not None
        record["attachment"] = stored
        record["updated_at"] = now
        wire = render(stored, call.origin)
        self.write_log.record(
            org=call.company.company_id, kind="Attachment", object_id=wire["url"], body=wire
        )
        self.write_log.record(
            org=call.company.company_id,
            kind=root.capitalize(),
            object_id=render(record, call.origin)["url"],
            body={"attachment": wire},
            action="update",
        )
        return json_response({root: render(view(record), call.origin)}, 200)


@register(ProviderName.FREEAGENT)
class FreeAgentHarness(LedgerHarness):
    # Hidden contacts and completed projects are in the seed; FreeAgent has no archived
    # categories (the simulator leaves archived accounts out), and the seed hides no bank account.
    lists_with_archived_rows = (ListType.CONTACTS, ListType.PROJECTS)

    def make_simulator(self) -> FreeAgentWithDocumentUpdates:
        return FreeAgentWithDocumentUpdates(self.clock)

    @property
    def freeagent(self) -> FreeAgentWithDocumentUpdates:
        assert isinstance(self.simulator, FreeAgentWithDocumentUpdates)
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
