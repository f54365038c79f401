"""Value helpers the ledger models share: money rounding, strict decimals, UTC timestamps, ids.

Each ``*_ledger`` module keeps its own wire format (MS-JSON dates, FreeAgent's decimal strings,
QBO's server-local offsets); what is the same rule in every ledger lives here once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sandbox.simulators.seed import stable_uuid

MONEY = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """Round to the penny, half up, as every simulated ledger rounds amounts."""
    return value.quantize(MONEY, rounding=ROUND_HALF_UP)


def to_decimal(value: Any) -> Decimal:
    """A number from a request body: a JSON number or a numeric string.

    Raises ``ValueError`` (carrying the value) for booleans, ``None``, blank strings, text that
    is not a number, NaN and infinities — JSON's ``true`` is not ``1`` to a ledger.
    """
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as error:
        raise ValueError(value) from error
    if not number.is_finite():
        raise ValueError(value)
    return number


def assume_utc(moment: datetime) -> datetime:
    """A timestamp sent without an offset is read as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_iso_timestamp(text: str) -> datetime:
    """ISO 8601 (``Z`` accepted; a date alone is its midnight; no offset means UTC).

    Raises ``ValueError``.
    """
    return assume_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def utc_timestamp(moment: datetime) -> str:
    """``2026-11-02T09:00:00Z``: UTC to the second, as Sage and FreeAgent print timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whole_seconds(moment: datetime) -> datetime:
    """Ledgers that print timestamps to the second stamp records to the second, so what a
    client reads back is exactly what an ``updated_since`` filter compares against."""
    return moment.replace(microsecond=0)


def numeric_company_id(provider: str, key: str) -> str:
    """A stable six-digit company id for ledgers whose company ids are integers."""
    return str(int(stable_uuid(provider, "company", key)[:8], 16) % 900_000 + 100_000)


__all__ = [
    "MONEY",
    "assume_utc",
    "money",
    "numeric_company_id",
    "parse_iso_timestamp",
    "to_decimal",
    "utc_timestamp",
    "whole_seconds",
]
