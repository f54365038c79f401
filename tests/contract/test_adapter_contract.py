"""The contract every ledger adapter keeps (reference/providers.md §6.7), checked against the
ledger's simulator: lists imported whole with stable ids and archived rows kept, incremental
fetches, a bill published once even when a response is lost, batches answered per plan and never
duplicated (also when retried after the ledger stopped replaying its idempotency key), the ledger's
refusals surfaced, rate limits honoured, expired access refreshed, and bank match (where the ledger
has it) paying the bill from an unreconciled bank line without a bank transaction of its own."""

from __future__ import annotations

import contextlib
from datetime import date
from decimal import Decimal

import pytest

from ledgerlink.errors import Rejected, Unavailable
from ledgerlink.models.lists import RecordStatus, record_id
from ledgerlink.models.publishing import PublishPlan, PublishResult
from ledgerlink.providers.base import Attachment
from tests.contract.harness import CONNECTION_ID, LedgerHarness

# Longer than every simulated replay window (Xero ~6 minutes, QuickBooks and Sage an hour).
PAST_EVERY_REPLAY_WINDOW_SECONDS = 2 * 3600


def broken(plan: PublishPlan) -> PublishPlan:
    """The plan coded to a category the ledger does not have: the ledger refuses it."""
    line = plan.lines[0].model_copy(
        update={
            "category": plan.lines[0].category.model_copy(
                update={"code": "99999", "remote_id": "00000000-0000-0000-0000-000000000000"}
            )
        }
    )
    return plan.model_copy(update={"lines": [line]})


def published_ids(results: list[PublishResult | Exception]) -> list[str]:
    assert all(isinstance(r, PublishResult) for r in results), results
    return [r.remote_id for r in results if isinstance(r, PublishResult)]


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
    with pytest.raises(Rejected) as refused:
        ledger.adapter.publish(ledger.session, broken(plan))
    assert refused.value.message
    assert ledger.documents() == []


def test_every_destination_the_ledger_offers_publishes(ledger: LedgerHarness):
    lists = ledger.fetch_all()
    for number, (item_type, destination) in enumerate(
        (t, d) for t, choices in ledger.adapter.capabilities.destinations.items() for d in choices
    ):
        plan = ledger.destination_plan(lists, item_type, destination, f"contract-dest-{number}")
        assert plan.ready, (destination, plan.problems)
        result = ledger.adapter.publish(ledger.session, plan)
        assert result.remote_id, destination
        again = ledger.adapter.publish(ledger.session, plan)  # a redelivered message
        assert again.remote_id == result.remote_id, destination


def test_a_batch_answers_each_plan_in_order_and_creates_the_good_ones_once(ledger: LedgerHarness):
    lists = ledger.fetch_all()
    first, second = (ledger.cost_plan(f"contract-batch-{n}", lists=lists) for n in (1, 2))
    refused = broken(ledger.cost_plan("contract-batch-bad", lists=lists))
    plans = [first, refused, second]

    results = ledger.adapter.publish_batch(ledger.session, plans)

    assert len(results) == 3
    assert isinstance(results[0], PublishResult) and isinstance(results[2], PublishResult)
    assert isinstance(results[1], Rejected) and results[1].message
    assert results[0].remote_id != results[2].remote_id
    assert len(ledger.documents()) == 2
    again = ledger.adapter.publish_batch(ledger.session, plans)  # the same messages delivered again
    assert isinstance(again[1], Rejected)
    assert published_ids([again[0], again[2]]) == [results[0].remote_id, results[2].remote_id]
    assert len(ledger.documents()) == 2


def test_a_plan_twice_in_one_batch_is_created_once(ledger: LedgerHarness):
    plan = ledger.cost_plan("contract-twice")
    ids = published_ids(ledger.adapter.publish_batch(ledger.session, [plan, plan]))
    assert ids[0] == ids[1]
    assert len(ledger.documents()) == 1


def test_a_batch_whose_response_is_lost_creates_nothing_twice(ledger: LedgerHarness):
    lists = ledger.fetch_all()
    plans = [ledger.cost_plan(f"contract-lost-{n}", lists=lists) for n in (1, 2)]
    method, path = ledger.batch_path()
    ledger.simulator.inject_fault("lost_response", path, method=method, count=1)

    ids = published_ids(ledger.adapter.publish_batch(ledger.session, plans))

    assert len(set(ids)) == 2
    assert len(ledger.documents()) == 2
    assert published_ids(ledger.adapter.publish_batch(ledger.session, plans)) == ids
    assert len(ledger.documents()) == 2


def test_a_batch_retried_after_the_replay_window_finds_what_already_landed(ledger: LedgerHarness):
    lists = ledger.fetch_all()
    plans = [ledger.cost_plan(f"contract-late-{n}", lists=lists) for n in (1, 2)]
    method, path = ledger.batch_path()
    # Every answer of the first delivery is lost, retries included: the write landed, unseen.
    ledger.simulator.inject_fault(
        "lost_response", path, method=method, count=ledger.adapter.config.max_attempts
    )
    with contextlib.suppress(Unavailable):  # the message goes back to the queue
        ledger.adapter.publish_batch(ledger.session, plans)
    assert 1 <= len(ledger.documents()) <= 2
    # The queue redelivers the message after the ledger has forgotten the key.
    ledger.clock.advance(PAST_EVERY_REPLAY_WINDOW_SECONDS)

    retried = [plan.model_copy(update={"may_exist": True}) for plan in plans]
    ids = published_ids(ledger.adapter.publish_batch(ledger.session, retried))

    assert len(set(ids)) == 2
    assert len(ledger.documents()) == 2
    assert sorted(ids) == sorted(w["id"] for w in ledger.documents())


def test_bank_match_pays_the_bill_from_the_unreconciled_bank_line(ledger: LedgerHarness):
    if not ledger.adapter.capabilities.bank_match:
        pytest.skip(f"{ledger.provider} has no bank match")
    lists = ledger.fetch_all()
    bank = ledger.bank_account(lists)
    plan = ledger.cost_plan(
        "contract-bank",
        lists=lists,
        net=Decimal("187.35"),
        paid_on=date(2026, 11, 1),
        bank_account=bank,
        bank_match=True,
    )
    assert plan.ready and plan.bank_match, plan.problems
    line_id = ledger.add_bank_line(bank.remote_id, plan.gross, date(2026, 10, 30))
    ledger.add_bank_line(bank.remote_id, plan.gross, date(2026, 4, 20))  # the same amount, outside the window
    ledger.add_bank_line(bank.remote_id, plan.gross + 1, date(2026, 10, 31))  # another amount, inside it
    window = {"bank_account_remote_id": bank.remote_id, "amount": plan.gross}
    earliest, latest = date(2026, 10, 3), date(2026, 12, 12)

    line = ledger.adapter.find_bank_line(ledger.session, **window, earliest=earliest, latest=latest)

    assert line is not None
    assert (line.remote_id.lower(), line.date, line.amount) == (
        line_id.lower(),
        date(2026, 10, 30),
        plan.gross,
    )
    result = ledger.adapter.publish(ledger.session, plan)
    payment = {"bank_account_remote_id": bank.remote_id, "paid_on": line.date, "amount": plan.gross}
    key = f"{plan.idempotency_key}-payment"
    payment_id = ledger.adapter.record_payment(ledger.session, plan, result, **payment, key=key)
    assert payment_id
    assert ledger.is_paid(result.remote_id)
    assert ledger.bank_transactions_created() == []
    # A redelivered message pays nothing twice, and the line is taken: the next equal bill finds none.
    assert ledger.adapter.record_payment(ledger.session, plan, result, **payment, key=key) == payment_id
    assert len(ledger.payments()) == 1
    assert ledger.adapter.find_bank_line(ledger.session, **window, earliest=earliest, latest=latest) is None


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
