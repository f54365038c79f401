"""Domain models: what a captured item must satisfy, and what never leaks from a token set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ledgerlink.models.common import ListType
from ledgerlink.models.connection import Connection, ConnectionStatus, IllegalTransition
from ledgerlink.models.lists import list_type_of, record_id
from ledgerlink.models.tokens import TokenSet
from tests.unit.factories import cost_item

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_the_documented_example_item_is_valid():
    item = cost_item()
    assert item.totals.gross == 120
    assert item.party is not None and item.party.name == "Office Supplies Ltd"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"totals": {"net": 100.0, "tax": 20.0, "gross": 125.0}}, "must equal net + tax"),
        ({"supplier": None}, "a cost item needs a supplier"),
        ({"due_date": "2026-10-01"}, "due_date cannot be before date"),
        ({"edited_fields": ["colour"]}, "unknown names"),
        ({"totals": {"net": 90.0, "tax": 18.0, "gross": 108.0}}, "add up to 100"),
        ({"currency": "pounds"}, "currency"),
        ({"lines": []}, "lines"),
    ],
)
def test_invalid_items_are_refused_with_a_reason(overrides, message):
    with pytest.raises(ValidationError) as error:
        cost_item(**overrides)
    assert message in str(error.value)


def test_token_values_never_appear_in_repr_or_json():
    tokens = TokenSet(access_token="access-SECRET", refresh_token="refresh-SECRET", expires_at=NOW)
    assert "SECRET" not in repr(tokens)
    assert "SECRET" not in tokens.model_dump_json()
    assert "refresh-SECRET" in tokens.to_secret_string()  # only the store's payload holds them
    assert (
        TokenSet.from_secret_string(tokens.to_secret_string()).refresh_token.get_secret_value()
        == "refresh-SECRET"
    )


def test_token_expiry_margin():
    tokens = TokenSet(access_token="a", expires_at=NOW + timedelta(seconds=100))
    assert tokens.expires_within(NOW, timedelta(seconds=120))
    assert not tokens.expires_within(NOW, timedelta(seconds=60))


def _connection(status: ConnectionStatus) -> Connection:
    return Connection(
        connection_id="c",
        business_id="b",
        provider="xero",
        status=status,
        status_reason="x",
        status_since=NOW,
        token_store="secretsmanager",
        created_at=NOW,
        created_by="u",
    )


def test_status_machine_allows_the_documented_paths():
    connected = _connection(ConnectionStatus.PENDING_ORGANISATION).moved_to(
        ConnectionStatus.CONNECTED, "chosen", NOW
    )
    failing = connected.moved_to(
        ConnectionStatus.REFRESH_FAILING, "500 from ledger", NOW + timedelta(minutes=1)
    )
    assert failing.status_since == NOW + timedelta(minutes=1)
    broken = failing.moved_to(ConnectionStatus.NEEDS_RECONNECT, "invalid_grant", NOW)
    assert (
        broken.moved_to(ConnectionStatus.CONNECTED, "reconnected", NOW).status == ConnectionStatus.CONNECTED
    )


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (ConnectionStatus.DISCONNECTED, ConnectionStatus.CONNECTED),
        (ConnectionStatus.PENDING_ORGANISATION, ConnectionStatus.NEEDS_RECONNECT),
        (ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.REFRESH_FAILING),
    ],
)
def test_status_machine_refuses_other_paths(start, target):
    with pytest.raises(IllegalTransition):
        _connection(start).moved_to(target, "no", NOW)


def test_record_ids_are_stable_and_say_their_list():
    first = record_id("conn", ListType.TAX_RATES, "INPUT2")
    assert first == record_id("conn", ListType.TAX_RATES, "INPUT2")
    assert first != record_id("other-conn", ListType.TAX_RATES, "INPUT2")
    assert first.startswith("tax_") and list_type_of(first) == ListType.TAX_RATES
    assert list_type_of("zzz_123") is None
