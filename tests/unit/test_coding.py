"""Coding resolution: what each field becomes, where it came from, and what stops a publish."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerlink.models.connection import PublishingSettings
from ledgerlink.models.lists import normalise_name
from ledgerlink.models.publishing import ValueSource
from ledgerlink.models.rules import PartyRule
from ledgerlink.providers.xero import XeroAdapter
from ledgerlink.services.coding import ListIndex, build_publish_plan, idempotency_key
from tests.unit.factories import (
    ALL_RECORDS,
    CURRENT_ACCOUNT,
    EXPENSES,
    GONE_SUPPLIER,
    NO_VAT,
    NORTH,
    OFFICE_SUPPLIES,
    OLD_ACCOUNT,
    SALES,
    STATIONERY,
    VAT_ON_EXPENSES,
    VAT_ON_INCOME,
    cost_item,
)

LISTS = ListIndex.build(ALL_RECORDS)
CAPABILITIES = XeroAdapter.capabilities


def plan_for(item, *, rule=None, settings=None, revision=1):
    return build_publish_plan(
        business_id="biz-1",
        item=item,
        revision=revision,
        rule=rule,
        settings=settings or PublishingSettings(),
        lists=LISTS,
        capabilities=CAPABILITIES,
    )


def test_captured_category_and_tax_are_used_when_nothing_overrides_them():
    plan = plan_for(cost_item(line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id}))
    line = plan.lines[0]
    assert plan.ready
    assert (line.category.code, line.category.source) == ("429", ValueSource.CAPTURED)
    assert (line.tax_rate.code, line.tax_rate.source) == ("INPUT2", ValueSource.CAPTURED)


def test_supplier_found_by_normalised_name_supplies_the_ledger_defaults():
    plan = plan_for(cost_item(supplier={"name": "OFFICE SUPPLIES limited"}))
    assert plan.contact.remote_id == OFFICE_SUPPLIES.remote_id
    assert plan.lines[0].category.code == "461"  # the contact's default purchase account
    assert plan.lines[0].category.source == ValueSource.LEDGER_DEFAULT
    assert plan.lines[0].tax_rate.code == "INPUT2"
    assert plan.lines[0].tax_rate.source == ValueSource.LEDGER_DEFAULT


def test_a_supplier_rule_beats_the_capture_but_not_a_manual_edit():
    rule = PartyRule(name="Office Supplies Ltd", category=STATIONERY.id)
    by_rule = plan_for(cost_item(line={"category": EXPENSES.id}), rule=rule)
    assert (by_rule.lines[0].category.code, by_rule.lines[0].category.source) == (
        "461",
        ValueSource.SUPPLIER_RULE,
    )
    edited = plan_for(cost_item(line={"category": EXPENSES.id}, edited_fields=["category"]), rule=rule)
    assert (edited.lines[0].category.code, edited.lines[0].category.source) == ("429", ValueSource.MANUAL)


def test_connection_default_tax_never_overwrites_a_rule_or_a_manual_edit():
    settings = PublishingSettings(default_tax_rate=NO_VAT.id)
    assert plan_for(cost_item(), settings=settings).lines[0].tax_rate.source == ValueSource.CONNECTION_DEFAULT
    rule = PartyRule(name="Office Supplies Ltd", tax_rate=VAT_ON_EXPENSES.id)
    assert plan_for(cost_item(), rule=rule, settings=settings).lines[0].tax_rate.code == "INPUT2"
    manual = cost_item(line={"tax_rate": VAT_ON_EXPENSES.id}, edited_fields=["tax_rate"])
    assert plan_for(manual, settings=settings).lines[0].tax_rate.source == ValueSource.MANUAL


def test_unknown_supplier_is_sent_by_name_to_be_created():
    plan = plan_for(
        cost_item(
            supplier={"name": "Brand New Supplies"},
            line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id},
        )
    )
    assert plan.ready
    assert plan.contact.remote_id is None
    assert plan.contact.name == "Brand New Supplies"


@pytest.mark.parametrize(
    ("item", "code", "field"),
    [
        (cost_item(supplier={"name": "Nobody Known"}), "missing_category", "lines[0].category"),
        (
            cost_item(line={"category": OLD_ACCOUNT.id, "tax_rate": VAT_ON_EXPENSES.id}),
            "archived_category",
            "lines[0].category",
        ),
        (
            cost_item(line={"category": SALES.id, "tax_rate": VAT_ON_EXPENSES.id}),
            "category_not_allowed",
            "lines[0].category",
        ),
        (
            cost_item(line={"category": EXPENSES.id, "tax_rate": VAT_ON_INCOME.id}),
            "tax_rate_not_allowed",
            "lines[0].tax_rate",
        ),
        (
            cost_item(line={"category": "cat_doesnotexist", "tax_rate": VAT_ON_EXPENSES.id}),
            "unknown_reference",
            "lines[0].category",
        ),
        (
            cost_item(
                supplier={"name": GONE_SUPPLIER.name},
                line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id},
            ),
            "archived_contact",
            "supplier",
        ),
        (
            cost_item(
                destination="carrier_pigeon", line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id}
            ),
            "unsupported_destination",
            "destination",
        ),
    ],
)
def test_problems_are_found_before_anything_is_sent(item, code, field):
    plan = plan_for(item)
    assert not plan.ready
    assert (plan.problems[0].code, plan.problems[0].field) == (code, field)
    assert plan.problems[0].hint


def test_paid_item_with_bank_match_needs_a_bank_account():
    item = cost_item(
        line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id}, paid={"date": "2026-11-03"}
    )
    plan = plan_for(item, settings=PublishingSettings(bank_match=True))
    assert [p.code for p in plan.problems] == ["missing_bank_account"]
    paid = cost_item(
        line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id},
        paid={"date": "2026-11-03", "bank_account": CURRENT_ACCOUNT.id},
    )
    assert plan_for(paid, settings=PublishingSettings(bank_match=True)).bank_account.remote_id == "bank-1"


def test_tracking_option_resolves_with_its_dimension():
    plan = plan_for(
        cost_item(line={"category": EXPENSES.id, "tax_rate": VAT_ON_EXPENSES.id, "project": NORTH.id})
    )
    assert plan.lines[0].project.remote_id == "opt-n"
    assert plan.lines[0].project.dimension_remote_id == "tc-1"


def test_idempotency_key_is_stable_per_revision_and_fits_every_ledger():
    first = idempotency_key("biz", "cap-001", 1)
    assert first == idempotency_key("biz", "cap-001", 1)
    assert first != idempotency_key("biz", "cap-001", 2)
    assert first != idempotency_key("other-biz", "cap-001", 1)
    assert len(first) == 32 and int(first, 16) >= 0


def test_normalise_name_ignores_case_punctuation_and_legal_suffix():
    assert (
        normalise_name("Office Supplies Ltd.")
        == normalise_name("office supplies limited")
        == "office supplies"
    )


SOURCES_IN_ORDER = [
    ValueSource.MANUAL,
    ValueSource.SUPPLIER_RULE,
    ValueSource.CAPTURED,
    ValueSource.CONNECTION_DEFAULT,
]


@given(manual=st.booleans(), rule=st.booleans(), captured=st.booleans(), default=st.booleans())
def test_tax_rate_source_is_always_the_highest_precedence_present(manual, rule, captured, default):
    line = {"category": EXPENSES.id}
    edited = []
    if manual or captured:
        line["tax_rate"] = VAT_ON_EXPENSES.id
    if manual:
        edited.append("tax_rate")
    item = cost_item(supplier={"name": "Nobody Known"}, line=line, edited_fields=edited)
    plan = plan_for(
        item,
        rule=PartyRule(name="Nobody Known", tax_rate=NO_VAT.id) if rule else None,
        settings=PublishingSettings(default_tax_rate=NO_VAT.id if default else None),
    )
    present = [s for s, on in zip(SOURCES_IN_ORDER, (manual, rule, captured, default), strict=True) if on]
    expected = present[0] if present else ValueSource.LEDGER_DEFAULT  # the category's default tax
    assert plan.lines[0].tax_rate.source == expected
