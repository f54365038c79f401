"""Ledger config records, the capability catalogue and the function settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ledgerlink.errors import InvalidRequest
from ledgerlink.models.common import ProviderName
from ledgerlink.providers import registry
from ledgerlink.providers.config import ProviderConfig
from ledgerlink.providers.xero import XeroAdapter
from ledgerlink.settings import ConnectionSettings, SettingsError, settings_from_environment


def test_with_origin_keeps_every_path_and_moves_every_host():
    moved = XeroAdapter.default_config.with_origin("http://127.0.0.1:9101")
    assert moved.authorize_url == "http://127.0.0.1:9101/identity/connect/authorize"
    assert moved.token_url == "http://127.0.0.1:9101/connect/token"
    assert moved.api_base_url == "http://127.0.0.1:9101/api.xro/2.0"
    assert moved.urls["connections"] == "http://127.0.0.1:9101/connections"


def test_config_records_are_validated_when_loaded():
    with pytest.raises(ValidationError, match="absolute"):
        ProviderConfig(name=ProviderName.XERO, api_base_url="api.xero.com", page_size=100)
    with pytest.raises(ValidationError, match="OAuth ledger needs"):
        ProviderConfig(
            name=ProviderName.XERO, api_base_url="https://x", token_url="https://x/t", page_size=100
        )


def test_xero_asks_for_offline_access_and_uses_pkce():
    config = XeroAdapter.default_config
    assert "offline_access" in config.scopes and config.pkce
    assert config.token_endpoint_auth_method == "client_secret_basic"


def test_unsupported_ledger_is_refused_naming_the_supported_ones(monkeypatch):
    monkeypatch.setattr(registry, "ADAPTERS", {ProviderName.XERO: registry.ADAPTERS[ProviderName.XERO]})
    with pytest.raises(InvalidRequest) as error:
        registry.adapter_class(ProviderName.KASHFLOW)
    assert error.value.field == "provider"
    assert "xero" in error.value.message


def test_missing_settings_name_the_environment_variables():
    with pytest.raises(SettingsError) as error:
        settings_from_environment(ConnectionSettings, {"LEDGERLINK_TABLE_NAME": "t"})
    assert "LEDGERLINK_API_URL" in str(error.value)
    assert "LEDGERLINK_EVENT_BUS_NAME" in str(error.value)


def test_settings_parse_origins_and_lists():
    settings = settings_from_environment(
        ConnectionSettings,
        {
            "LEDGERLINK_TABLE_NAME": "t",
            "LEDGERLINK_EVENT_BUS_NAME": "b",
            "LEDGERLINK_TOKEN_KEY_ID": "k",
            "LEDGERLINK_API_URL": "https://api",
            "LEDGERLINK_REFRESH_QUEUE_URL": "https://q",
            "LEDGERLINK_PUBLISH_QUEUE_URL": "https://p",
            "LEDGERLINK_LEDGER_ORIGINS": '{"xero": "http://127.0.0.1:9101"}',
            "LEDGERLINK_ALLOWED_RETURN_ORIGINS": "https://app.example, http://127.0.0.1:8000",
        },
    )
    assert settings.ledger_origins == {"xero": "http://127.0.0.1:9101"}
    assert settings.allowed_return_origins == ["https://app.example", "http://127.0.0.1:8000"]
