"""Which adapter and which capability record belong to which ledger.

Capability records are plain data and cheap; adapter modules are imported only when a ledger is
actually used, so a handler's cold start loads one ledger, not five.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import httpx

from ledgerlink.clock import Clock
from ledgerlink.errors import InvalidRequest
from ledgerlink.models.common import ProviderName
from ledgerlink.models.tokens import AppCredentials
from ledgerlink.providers.base import LedgerAdapter
from ledgerlink.providers.config import Capabilities, ProviderConfig

# provider -> "module:Class"; a ledger is supported once it is listed here.
ADAPTERS: dict[ProviderName, str] = {
    ProviderName.XERO: "ledgerlink.providers.xero:XeroAdapter",
    ProviderName.SAGE: "ledgerlink.providers.sage:SageAdapter",
    ProviderName.QUICKBOOKS: "ledgerlink.providers.quickbooks:QuickBooksAdapter",
    ProviderName.KASHFLOW: "ledgerlink.providers.kashflow:KashFlowAdapter",
    ProviderName.FREEAGENT: "ledgerlink.providers.freeagent:FreeAgentAdapter",
}


def supported_providers() -> list[ProviderName]:
    return [name for name in ProviderName if name in ADAPTERS]


def adapter_class(provider: ProviderName) -> type[LedgerAdapter]:
    target = ADAPTERS.get(provider)
    if target is None:
        supported = ", ".join(supported_providers())
        raise InvalidRequest(f"{provider} is not supported yet; choose one of: {supported}", field="provider")
    module_name, _, class_name = target.partition(":")
    cls: type[LedgerAdapter] = getattr(importlib.import_module(module_name), class_name)
    return cls


def capabilities(provider: ProviderName) -> Capabilities:
    return adapter_class(provider).capabilities


def build_adapter(
    provider: ProviderName,
    *,
    credentials: AppCredentials,
    clock: Clock,
    sleep: Callable[[float], None],
    origin: str | None = None,
    http_transport: httpx.BaseTransport | None = None,
) -> LedgerAdapter:
    cls = adapter_class(provider)
    config: ProviderConfig = cls.default_config
    if origin:
        config = config.with_origin(origin)
    return cls(
        config=config, credentials=credentials, clock=clock, sleep=sleep, http_transport=http_transport
    )
