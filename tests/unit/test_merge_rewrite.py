"""Merge Lists, the pure parts around matching: which old entries are referenced, the proposal for a
list, and rewriting rules and captured items through the chosen mapping."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlink.models.common import ItemType, ListType
from ledgerlink.models.items import ItemStatus, StoredItem
from ledgerlink.models.lists import ListRecord, record_id
from ledgerlink.models.merge import MatchReason
from ledgerlink.models.rules import PartyRule, RuleKind, StoredRule
from ledgerlink.services.merge import collect_references, propose_list, rewrite_item, rewrite_rule
from tests.unit.factories import (
    CURRENT_ACCOUNT,
    EXPENSES,
    NO_VAT,
    NORTH,
    OFFICE_SUPPLIES,
    VAT_ON_EXPENSES,
    VAT_ON_INCOME,
    cost_item,
)

OLD = "conn-1"  # the factories' connection
NEW = "conn-2"
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def new_record(list_type: ListType, remote_id: str, name: str, **fields) -> ListRecord:
    return ListRecord(
        id=record_id(NEW, list_type, remote_id), list_type=list_type, remote_id=remote_id, name=name, **fields
    )


QB_EXPENSES = new_record(ListType.CATEGORIES, "20", "General Expenses", code="20")
QB_VAT = new_record(ListType.TAX_RATES, "1", "20.0% S", code="1", rate=20.0)
QB_NO_VAT = new_record(ListType.TAX_RATES, "5", "No VAT", code="5", rate=0.0)
QB_SUPPLIER = new_record(ListType.CONTACTS, "vendor:7", "Office Supplies Limited", is_supplier=True)
QB_NORTH = new_record(ListType.PROJECTS, "class:3", "North", dimension=1)
QB_BANK = new_record(ListType.BANK_ACCOUNTS, "35", "Business Current Account", code="35")
MAPPING = {
    EXPENSES.id: QB_EXPENSES,
    VAT_ON_EXPENSES.id: QB_VAT,
    OFFICE_SUPPLIES.id: QB_SUPPLIER,
    NORTH.id: QB_NORTH,
    CURRENT_ACCOUNT.id: QB_BANK,
}


def stored_rule(key: str = "office", **fields) -> StoredRule:
    return StoredRule(
        kind=RuleKind.SUPPLIER,
        key=key,
        rule=PartyRule(name="Office Supplies Ltd", **fields),
        updated_at=NOW,
        updated_by="admin",
    )


def stored_item(item) -> StoredItem:
    return StoredItem(
        business_id="biz-1", item=item, status=ItemStatus.WAITING, created_at=NOW, updated_at=NOW
    )


def test_an_item_is_rewritten_line_by_line_with_the_party_and_its_new_remote_id():
    item = cost_item(
        supplier={"name": "Office Supplies Ltd", "id": OFFICE_SUPPLIES.id, "remote_id": "c-1"},
        line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id, "project": NORTH.id},
        paid={"date": "2026-11-02", "bank_account": CURRENT_ACCOUNT.id},
        destination="bill_draft",
    )
    rewritten, cleared = rewrite_item(item, MAPPING, OLD, ("bill", "expense"))
    line = rewritten.lines[0]
    assert (line.category, line.tax_rate, line.project) == (QB_EXPENSES.id, QB_VAT.id, QB_NORTH.id)
    assert rewritten.supplier is not None
    assert (rewritten.supplier.id, rewritten.supplier.remote_id) == (QB_SUPPLIER.id, "vendor:7")
    assert rewritten.supplier.name == "Office Supplies Ltd"  # what was captured stays as captured
    assert rewritten.paid is not None and rewritten.paid.bank_account == QB_BANK.id
    assert cleared and rewritten.destination is None  # QuickBooks has no bill_draft
    assert rewritten.totals == item.totals and rewritten.lines[0].amount == item.lines[0].amount


def test_a_party_known_only_by_the_old_ledgers_id_is_found_and_rewritten():
    item = cost_item(supplier={"name": "Office Supplies Ltd", "remote_id": "c-1"})
    rewritten, _ = rewrite_item(item, MAPPING, OLD, ("bill",))
    assert rewritten.supplier is not None and rewritten.supplier.id == QB_SUPPLIER.id


def test_unmapped_references_stay_as_they_are():
    item = cost_item(line={"category": EXPENSES.id, "tax_rate": VAT_ON_INCOME.id})
    rewritten, _ = rewrite_item(item, MAPPING, OLD, ("bill",))
    assert rewritten.lines[0].tax_rate == VAT_ON_INCOME.id
    assert rewrite_item(item, {}, OLD, ("bill",))[0] == item


def test_a_rule_is_rewritten_and_a_name_only_rule_linked():
    rule = stored_rule(category=EXPENSES.id, tax_rate=VAT_ON_EXPENSES.id, destination="bill_draft")
    rewritten, linked, cleared = rewrite_rule(rule, MAPPING, {"rule:supplier:office": QB_SUPPLIER}, ("bill",))
    assert (rewritten.category, rewritten.tax_rate, rewritten.contact) == (
        QB_EXPENSES.id,
        QB_VAT.id,
        QB_SUPPLIER.id,
    )
    assert linked and cleared and rewritten.destination is None
    linked_already = stored_rule(contact=OFFICE_SUPPLIES.id)
    assert (
        rewrite_rule(linked_already, MAPPING, {"rule:supplier:office": QB_SUPPLIER}, ())[0].contact
        == QB_SUPPLIER.id
    )


def test_references_count_rules_and_items_and_name_only_rules():
    rules = [stored_rule(category=EXPENSES.id), stored_rule("named-only")]
    items = [
        stored_item(cost_item(id=f"cap-{n}", line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id}))
        for n in range(3)
    ]
    found = collect_references(rules, items, {EXPENSES.id, VAT_ON_EXPENSES.id}, OLD)
    assert found.rules == {EXPENSES.id: 1}
    assert found.items == {EXPENSES.id: 3, VAT_ON_EXPENSES.id: 3}
    assert set(found.name_only_rules) == {"rule:supplier:office", "rule:supplier:named-only"}
    assert (found.rules_referring, found.items_referring) == (2, 3)


def test_xero_tax_rates_onto_quickbooks_by_percentage():
    """Codes are not compared across ledgers; both Xero 20% rates land on QuickBooks' one 20%
    code, each saying it shares it."""
    rules = [stored_rule(tax_rate=VAT_ON_EXPENSES.id), stored_rule("customer-ish", tax_rate=VAT_ON_INCOME.id)]
    old = {r.id: r for r in (VAT_ON_EXPENSES, VAT_ON_INCOME, NO_VAT)}
    references = collect_references(rules, [], set(old), OLD)
    proposal = propose_list(ListType.TAX_RATES, old, [QB_VAT, QB_NO_VAT], references, same_ledger=False)
    by_old = {entry.old_id: entry for entry in proposal.entries}
    assert set(by_old) == {VAT_ON_EXPENSES.id, VAT_ON_INCOME.id}  # only what is referenced
    assert {e.reason for e in by_old.values()} == {MatchReason.SAME_RATE}
    assert by_old[VAT_ON_EXPENSES.id].shared_with == [VAT_ON_INCOME.id]
    assert (proposal.totals.entries, proposal.totals.same_rate, proposal.totals.shared) == (2, 2, 2)


def test_a_tracking_option_never_lands_on_a_project_no_line_can_carry():
    """Xero Projects API projects sit beside the tracking options in the new list: a same-named
    one is not where a rule's tracking option goes."""
    rules = [stored_rule(project=NORTH.id)]
    references = collect_references(rules, [], {NORTH.id}, OLD)
    xero_project = new_record(
        ListType.PROJECTS, "p-1", "North", dimension_name="Xero Projects", raw={"line_codable": False}
    )
    option = new_record(ListType.PROJECTS, "opt-2", "North", dimension=1, dimension_name="Region")
    alone = propose_list(ListType.PROJECTS, {NORTH.id: NORTH}, [xero_project], references, same_ledger=True)
    assert alone.entries[0].new_id is None
    both = propose_list(
        ListType.PROJECTS, {NORTH.id: NORTH}, [xero_project, option], references, same_ledger=True
    )
    assert both.entries[0].new_id == option.id


REFERENCE_FIELDS = st.sampled_from(["category", "tax_rate", "project", "product"])


@given(st.lists(st.tuples(REFERENCE_FIELDS, st.booleans()), min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_rewriting_is_idempotent_and_never_touches_money(lines_spec):
    """The roll forward may re-apply a mapping to a row already rewritten: it must change nothing."""
    values = {"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id, "project": NORTH.id, "product": None}
    lines = [
        {
            "description": f"line {n}",
            "amount": 10.0,
            "tax_amount": 2.0,
            **({name: values[name]} if mapped else {}),
        }
        for n, (name, mapped) in enumerate(lines_spec)
    ]
    total = 10.0 * len(lines)
    item = cost_item(lines=lines, totals={"net": total, "tax": 2.0 * len(lines), "gross": total * 1.2})
    once, _ = rewrite_item(item, MAPPING, OLD, ("bill",))
    twice, _ = rewrite_item(once, MAPPING, OLD, ("bill",))
    assert once == twice
    assert [line.amount for line in once.lines] == [line.amount for line in item.lines]
    assert once.type == ItemType.COST and once.totals == item.totals
