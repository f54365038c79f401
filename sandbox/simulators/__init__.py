"""Ledger simulators: faithful local stand-ins for Xero, QuickBooks, Sage, FreeAgent and KashFlow.

Each simulator is a class built on :mod:`sandbox.simulators.harness`; ``SIMULATORS`` maps the
provider name to it. ``PROVIDER_ORDER`` is the canonical order (and port order when served
together by :func:`sandbox.simulators.serve.run_sandbox`).
"""

from __future__ import annotations

from sandbox.simulators.harness import LedgerSimulator
from sandbox.simulators.xero import XeroSimulator

PROVIDER_ORDER: tuple[str, ...] = ("xero", "quickbooks", "sage", "freeagent", "kashflow")

SIMULATORS: dict[str, type[LedgerSimulator]] = {
    "xero": XeroSimulator,
}

__all__ = ["PROVIDER_ORDER", "SIMULATORS", "LedgerSimulator", "XeroSimulator"]
