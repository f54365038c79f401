"""A connection's credentials at its ledger. Secret values never leave as plain strings by accident:
they are ``SecretStr`` so logs, reprs and API models show ``**********``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr


class TokenSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: datetime  # when the access token stops working
    refresh_expires_at: datetime | None = None
    scope: str | None = None
    # Ledger specifics kept with the token (Xero's authentication event, QuickBooks' realmId).
    extras: dict[str, str] = {}
    # Bumped on every refresh; waiters watch the connection's copy of it to know a sibling refreshed.
    generation: int = 0

    def expires_within(self, now: datetime, margin: timedelta) -> bool:
        return self.expires_at - margin <= now

    def to_secret_string(self) -> str:
        """The one place the secret values are revealed: for the token store's encrypted payload."""
        payload: dict[str, Any] = self.model_dump(mode="json")
        payload["access_token"] = self.access_token.get_secret_value()
        payload["refresh_token"] = self.refresh_token.get_secret_value() if self.refresh_token else None
        return json.dumps(payload)

    @classmethod
    def from_secret_string(cls, value: str) -> TokenSet:
        return cls.model_validate_json(value)


class AppCredentials(BaseModel):
    """The ledger app's registered client (from Secrets Manager, never from code or environment)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: SecretStr
