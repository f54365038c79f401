"""Adapters and API sessions for connections: the one place that knows where app credentials
come from, which simulator origin applies locally, which token store holds a ledger's tokens, and
that a refused refresh means the connection needs a reconnect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledgerlink.models.common import ProviderName
from ledgerlink.models.connection import Connection
from ledgerlink.models.tokens import AppCredentials
from ledgerlink.providers import registry
from ledgerlink.providers.base import LedgerAdapter, LedgerSession
from ledgerlink.runtime import Runtime
from ledgerlink.services.budget import CallBudget, CallPurpose
from ledgerlink.settings import CommonSettings
from ledgerlink.storage.budget import CallBudgetRepository
from ledgerlink.storage.connections import ConnectionRepository
from ledgerlink.storage.dynamo import Table
from ledgerlink.tokens.dynamodb_kms import DynamoDbKmsTokenStore
from ledgerlink.tokens.manager import TokenManager
from ledgerlink.tokens.secretsmanager import SecretsManagerTokenStore
from ledgerlink.tokens.store import TokenStore

# Cache app credentials for five minutes: a rotated app secret is picked up without a redeploy.
CREDENTIALS_MAX_AGE_SECONDS = 300


class Ledgers:
    def __init__(
        self, settings: CommonSettings, runtime: Runtime, connections: ConnectionRepository, table: Table
    ):
        self._settings = settings
        self._runtime = runtime
        self._connections = connections
        self._table = table
        self._adapters: dict[ProviderName, LedgerAdapter] = {}
        self._secrets_provider: Any = None
        self._token_stores: dict[str, TokenStore] = {}
        self._token_managers: dict[str, TokenManager] = {}
        self._call_budget = CallBudget(CallBudgetRepository(table), runtime.clock, runtime.sleep)

    def adapter(self, provider: ProviderName) -> LedgerAdapter:
        if provider not in self._adapters:
            self._adapters[provider] = registry.build_adapter(
                provider,
                credentials=self.app_credentials(provider),
                clock=self._runtime.clock,
                sleep=self._runtime.sleep,
                origin=self._settings.ledger_origins.get(provider.value),
                http_transport=self._runtime.http_transport,
            )
        return self._adapters[provider]

    def app_credentials(self, provider: ProviderName) -> AppCredentials:
        if self._secrets_provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            self._secrets_provider = SecretsProvider(boto3_client=self._runtime.aws_client("secretsmanager"))
        value = self._secrets_provider.get(
            f"{self._settings.secrets_prefix}apps/{provider.value}",
            transform="json",
            max_age=CREDENTIALS_MAX_AGE_SECONDS,
        )
        return AppCredentials.model_validate(value)

    def token_store_name(self, provider: ProviderName) -> str:
        choice = self._settings.token_store
        if choice != "per-ledger":
            return choice
        # Sage rotates its refresh token every five minutes of use: too many versions for one secret.
        return "dynamodb-kms" if provider == ProviderName.SAGE else "secretsmanager"

    def token_store(self, name: str) -> TokenStore:
        if name not in self._token_stores:
            self._token_stores[name] = self._build_token_store(name)
        return self._token_stores[name]

    def _build_token_store(self, name: str) -> TokenStore:
        if name == SecretsManagerTokenStore.name:
            return SecretsManagerTokenStore(
                self._runtime.aws_client("secretsmanager"),
                prefix=self._settings.secrets_prefix,
                kms_key_id=self._settings.token_key_id,
            )
        if name == DynamoDbKmsTokenStore.name:
            return DynamoDbKmsTokenStore(
                self._table, self._runtime.aws_client("kms"), key_id=self._settings.token_key_id
            )
        raise ValueError(f"unknown token store {name!r}")

    def token_manager(self, connection: Connection) -> TokenManager:
        name = connection.token_store
        if name not in self._token_managers:
            self._token_managers[name] = TokenManager(
                self.token_store(name), self._connections, self._runtime.clock, self._runtime.sleep
            )
        return self._token_managers[name]

    def session(
        self,
        connection: Connection,
        *,
        purpose: CallPurpose = CallPurpose.PUBLISH,
        deadline: datetime | None = None,
        hand_back: Callable[[], bool] | None = None,
    ) -> LedgerSession:
        """A session whose access token is refreshed under the connection's lease when needed, and
        whose every call is spent from the connection's call budget, shared by list refresh and
        publishing (``RateLimited`` when it is spent; ``deadline`` bounds a refresh's waiting, and
        ``hand_back`` says when a refresh ends its delivery rather than sleep a long wait out).

        ``AuthRevoked`` escapes to the caller, which records ``needs_reconnect``."""
        adapter = self.adapter(connection.provider)
        manager = self.token_manager(connection)

        def access_token(force_refresh: bool) -> str:
            if force_refresh:
                stale = manager.current(connection)
                return manager.refresh(
                    connection, adapter.refresh_tokens, seen_generation=stale.generation
                ).access_token.get_secret_value()
            return manager.access_token(connection, adapter.refresh_tokens)

        organisation_id = connection.organisation.id if connection.organisation else None
        spend_call = self._call_budget.spender(
            connection.connection_id, adapter.config, purpose, deadline=deadline, hand_back=hand_back
        )
        return LedgerSession(
            connection.connection_id,
            organisation_id,
            access_token,
            spend_call=spend_call,
            granted_scope=lambda: manager.current(connection).scope,
        )
