"""The contract every ledger adapter keeps (reference/providers.md §6.7), checked against the
ledger's simulator: lists imported whole with stable ids and archived rows kept, incremental
fetches, a bill published once even when a response is lost, the ledger's refusals surfaced,
rate limits honoured, expired access refreshed."""

from __future__ import annotations

import pytest

from ledgerlink.errors import Rejected
from ledgerlink.models.lists import RecordStatus, record_id
from ledgerlink.providers.base import Attachment
from tests.contract.harness import CONNECTION_ID, LedgerHarness


def test_the_consent_lists_its_organisations(ledger: LedgerHarness):
    organisations = ledger.adapter.organisations(ledger.signed_in.tokens)
    assert organisations
    assert len({o.id for o in organisations}) == len(organisations)
    assert all(o.name for o in organisations)


def test_every_declared_list_imports_whole_with_stable_ids(ledger: LedgerHarness):
    first = ledger.fetch_all()
    for list_type, records in first.items():
        assert records, f"{list_type} came back empty"
        assert all(
            r.list_type == list_type and r.id == record_id(CONNECTION_ID, list_type, r.remote_id)
            for r in records
        )
        assert len({r.id for r in records}) == len(records), f"{list_type} has duplicate ids"
        expected = ledger.remote_count(list_type)
        if expected is not None:
            assert len(records) == expected, f"{list_type}: paged to {len(records)} of {expected}"
    again = ledger.fetch_all()
    assert {t: {r.id for r in rs} for t, rs in again.items()} == {
        t: {r.id for r in rs} for t, rs in first.items()
    }


def test_archived_rows_are_imported_with_their_flag(ledger: LedgerHarness):
    lists = ledger.fetch_all()
    for list_type in ledger.lists_with_archived_rows:
        assert any(r.status == RecordStatus.ARCHIVED for r in lists[list_type]), (
            f"{list_type} lost its archived rows"
        )


def test_an_incremental_fetch_returns_what_changed(ledger: LedgerHarness):
    for list_type in ledger.adapter.capabilities.incremental_lists:
        full = ledger.adapter.fetch_list(ledger.session, list_type, since=None)
        assert full.complete and full.high_water, f"{list_type} gave no high-water mark"
        ledger.clock.advance(60)
        changed = ledger.touch(list_type)
        delta = ledger.adapter.fetch_list(ledger.session, list_type, since=full.high_water)
        assert not delta.complete
        assert changed in {r.remote_id for r in delta.records}, f"{list_type}: the change was missed"
        assert len(delta.records) < len(full.records), (
            f"{list_type}: the incremental fetch returned everything"
        )


def test_a_bill_is_created_once_even_when_the_response_is_lost(ledger: LedgerHarness):
    plan = ledger.cost_plan()
    assert plan.ready, plan.problems
    method, path = ledger.publish_path()
    ledger.simulator.inject_fault("lost_response", path, method=method, count=1)
    result = ledger.adapter.publish(ledger.session, plan)
    assert result.remote_id
    assert len(ledger.documents()) == 1
    again = ledger.adapter.publish(ledger.session, plan)  # a redelivered message
    assert again.remote_id == result.remote_id
    assert len(ledger.documents()) == 1


def test_the_document_is_attached_to_the_bill(ledger: LedgerHarness):
    plan = ledger.cost_plan("contract-doc")
    result = ledger.adapter.publish(ledger.session, plan)
    attachment_id = ledger.adapter.attach(
        ledger.session, plan, result, Attachment("receipt.pdf", "application/pdf", b"%PDF-1.4 contract")
    )
    assert attachment_id
    assert len(ledger.attachments()) == 1


def test_a_refusal_carries_the_ledgers_own_words(ledger: LedgerHarness):
    plan = ledger.cost_plan("contract-bad")
    broken_line = plan.lines[0].model_copy(
        update={
            "category": plan.lines[0].category.model_copy(
                update={"code": "99999", "remote_id": "00000000-0000-0000-0000-000000000000"}
            )
        }
    )
    with pytest.raises(Rejected) as refused:
        ledger.adapter.publish(ledger.session, plan.model_copy(update={"lines": [broken_line]}))
    assert refused.value.message
    assert ledger.documents() == []


def test_a_rate_limit_is_waited_out_as_the_ledger_asks(ledger: LedgerHarness):
    list_type = ledger.adapter.capabilities.lists[0]
    ledger.simulator.inject_fault("429", ledger.list_path(list_type), method="GET", count=1, retry_after=3)
    before = ledger.clock.now()
    assert ledger.adapter.fetch_list(ledger.session, list_type, since=None).records
    assert (ledger.clock.now() - before).total_seconds() >= 3


def test_an_expired_access_token_is_refreshed_and_work_goes_on(ledger: LedgerHarness):
    ledger.clock.advance(24 * 3600)  # past every ledger's access-token life, inside every refresh-token life
    assert ledger.adapter.fetch_list(ledger.session, ledger.adapter.capabilities.lists[0], since=None).records
    assert ledger.signed_in.refreshes >= 1
