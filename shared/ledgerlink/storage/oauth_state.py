"""OAuth ``state`` records: single use (consumed by a conditional delete), ten-minute life."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, SecretStr

from ledgerlink.models.common import ProviderName
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.schema import OAUTH_STATE_SK, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, oauth_state_pk


class OAuthState(BaseModel):
    state: str
    business_id: str
    user_id: str
    provider: ProviderName
    purpose: str  # connect | reconnect | change
    connection_id: str | None = None  # reconnect and change: the connection it must still be
    redirect_uri: str
    return_url: str | None = None
    code_verifier: SecretStr | None = None
    created_at: datetime
    expires_at: datetime


class OAuthStateRepository:
    def __init__(self, table: Table):
        self._table = table

    def put(self, record: OAuthState) -> None:
        self._table.put(
            {
                PARTITION_KEY: oauth_state_pk(record.state),
                SORT_KEY: OAUTH_STATE_SK,
                "data": record.model_dump_json(exclude={"code_verifier"}),
                # The PKCE verifier is the one secret here; the table is KMS-encrypted.
                "verifier": record.code_verifier.get_secret_value() if record.code_verifier else None,
                TTL_ATTRIBUTE: int(record.expires_at.timestamp()),
            },
            condition="attribute_not_exists(pk)",
        )

    def consume(self, state: str) -> OAuthState | None:
        """Delete and return the record; None if it never existed or was already used."""
        try:
            raw = self._table.delete(
                oauth_state_pk(state), OAUTH_STATE_SK, condition="attribute_exists(pk)", return_old=True
            )
        except ConditionFailed:
            return None
        if raw is None:
            return None
        record = OAuthState.model_validate_json(raw["data"])
        verifier = raw.get("verifier")
        return record.model_copy(update={"code_verifier": SecretStr(verifier) if verifier else None})
