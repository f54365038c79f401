"""Every ledger adapter against its simulator, through the same contract: one parametrised suite.

A ledger joins by adding a module in ``tests/contract/ledgers/`` that registers its harness."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from tests.contract import ledgers
from tests.contract.harness import HARNESSES, LedgerHarness

for module in pkgutil.iter_modules(ledgers.__path__):
    importlib.import_module(f"{ledgers.__name__}.{module.name}")


@pytest.fixture(params=sorted(HARNESSES), ids=str)
def ledger(request: pytest.FixtureRequest) -> LedgerHarness:
    return HARNESSES[request.param]()
