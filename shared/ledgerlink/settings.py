"""Typed configuration, read once per container from the environment.

This is the only module that reads ``os.environ``. Each function has its own settings model with
exactly the values it needs, so a missing variable fails loudly at the first request with the
variable's name instead of somewhere deep in a service.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "LEDGERLINK_"

TokenStoreChoice = Literal["per-ledger", "secretsmanager", "dynamodb-kms"]


class SettingsError(RuntimeError):
    """A required setting is missing or malformed (a deployment mistake, not a user error)."""


class CommonSettings(BaseModel):
    """What every function needs: the table, the event bus, and where tokens live."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    table_name: str
    event_bus_name: str
    # KMS key for connection secrets and for the dynamodb-kms token store.
    token_key_id: str
    secrets_prefix: str = "ledgerlink/"
    # "per-ledger" follows each ledger's default back end (Sage on dynamodb-kms, the rest on
    # Secrets Manager); the other two values put every ledger on one back end.
    token_store: TokenStoreChoice = "per-ledger"
    # Local runtime only: provider name -> simulator origin (scheme://host:port). Every URL of that
    # ledger keeps its path and is sent to this origin instead.
    ledger_origins: dict[str, str] = Field(default_factory=dict)

    @field_validator("ledger_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


class ConnectionSettings(CommonSettings):
    """oauth_callback: the connection lifecycle API."""

    api_url: str  # public base URL of the API; the OAuth redirect URI is {api_url}/v1/oauth/callback
    refresh_queue_url: str  # the first import is queued right after connecting
    publish_queue_url: str  # items held while a connection needed a reconnect are queued again
    # return_url must start with one of these (no open redirects after the OAuth dance).
    allowed_return_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_return_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class RefreshSettings(CommonSettings):
    """refresh_lists: schedule fan-out, refresh worker and the lists API."""

    refresh_queue_url: str


class PublishSettings(CommonSettings):
    """publish_item: the capture queue consumer and the items API."""

    publish_queue_url: str
    documents_bucket: str


class MergeSettings(CommonSettings):
    """merge_lists: supplier rules and Merge Lists."""

    publish_queue_url: str  # a saved auto-publish rule queues the party's waiting items


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def settings_from_environment(model: type[SettingsT], environ: dict[str, str] | None = None) -> SettingsT:
    env = os.environ if environ is None else environ
    values = {
        name: env[ENV_PREFIX + name.upper()]
        for name in model.model_fields
        if ENV_PREFIX + name.upper() in env
    }
    try:
        return model.model_validate(values)
    except ValidationError as error:
        names = ", ".join(ENV_PREFIX + str(e["loc"][0]).upper() for e in error.errors())
        raise SettingsError(f"{model.__name__}: missing or invalid environment variables: {names}") from error


@cache
def load_settings(model: type[SettingsT]) -> SettingsT:
    """The settings of one function, read from the environment once per container."""
    return settings_from_environment(model)


def environment_for(settings: CommonSettings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` (used by CDK and the local runtime)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, dict):
            rendered = json.dumps(value)
        elif isinstance(value, list):
            rendered = ",".join(value)
        else:
            rendered = str(value)
        env[ENV_PREFIX + name.upper()] = rendered
    return env
