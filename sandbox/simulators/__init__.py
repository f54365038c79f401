"""Ledger simulators: faithful local stand-ins for Xero, QuickBooks, Sage, FreeAgent and KashFlow.

Each simulator is a class built on :mod:`sandbox.simulators.harness`; ``SIMULATORS`` maps the
provider name to it. ``PROVIDER_ORDER`` is the canonical order (and port order when served
together by :func:`sandbox.simulators.serve.run_sandbox`).
"""

from __future__ import annotations

from sandbox.simulators.freeagent import FreeAgentSimulator
from sandbox.simulators.harness import LedgerSimulator
from sandbox.simulators.kashflow import KashFlowSimulator
from sandbox.simulators.quickbooks import QuickBooksSimulator
from sandbox.simulators.sage import SageSimulator
from sandbox.simulators.xero import XeroSimulator

PROVIDER_ORDER: tuple[str, ...] = ("xero", "quickbooks", "sage", "freeagent", "kashflow")

SIMULATORS: dict[str, type[LedgerSimulator]] = {
    "xero": XeroSimulator,
    "quickbooks": QuickBooksSimulator,
    "sage": SageSimulator,
    "freeagent": FreeAgentSimulator,
    "kashflow": KashFlowSimulator,
}

__all__ = ["PROVIDER_ORDER", "SIMULATORS", "FreeAgentSimulator", "KashFlowSimulator", "LedgerSimulator", "QuickBooksSimulator", "SageSimulator", "XeroSimulator"]
