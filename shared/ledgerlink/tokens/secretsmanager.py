"""Token sets in Secrets Manager: one secret per connection, encrypted with the stack's KMS key."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ledgerlink.models.tokens import TokenSet
from ledgerlink.tokens.store import TokenNotFound, TokenStore, TokenStoreError


class SecretsManagerTokenStore(TokenStore):
    name = "secretsmanager"

    def __init__(self, client: Any, *, prefix: str, kms_key_id: str):
        self._client = client
        self._prefix = prefix
        self._kms_key_id = kms_key_id

    def secret_name(self, connection_id: str) -> str:
        return f"{self._prefix}connections/{connection_id}"

    def create(self, connection_id: str, tokens: TokenSet) -> None:
        try:
            self._client.create_secret(
                Name=self.secret_name(connection_id),
                SecretString=tokens.to_secret_string(),
                KmsKeyId=self._kms_key_id,
                Description="ledgerlink connection tokens (managed by ledgerlink; do not edit)",
                Tags=[{"Key": "ledgerlink:connection", "Value": connection_id}],
            )
        except ClientError as error:
            if _code(error) == "ResourceExistsException":
                # A retried connect after a partial failure: the newest token set wins.
                self.write(connection_id, tokens)
                return
            raise TokenStoreError(f"could not store tokens ({_code(error)})") from error

    def read(self, connection_id: str) -> TokenSet:
        try:
            response = self._client.get_secret_value(SecretId=self.secret_name(connection_id))
        except ClientError as error:
            if _code(error) in ("ResourceNotFoundException", "InvalidRequestException"):
                raise TokenNotFound(connection_id) from error
            raise TokenStoreError(f"could not read tokens ({_code(error)})") from error
        return TokenSet.from_secret_string(response["SecretString"])

    def write(self, connection_id: str, tokens: TokenSet) -> None:
        try:
            self._client.put_secret_value(
                SecretId=self.secret_name(connection_id), SecretString=tokens.to_secret_string()
            )
        except ClientError as error:
            if _code(error) == "ResourceNotFoundException":
                raise TokenNotFound(connection_id) from error
            raise TokenStoreError(f"could not store tokens ({_code(error)})") from error

    def delete(self, connection_id: str) -> None:
        try:
            self._client.delete_secret(
                SecretId=self.secret_name(connection_id), ForceDeleteWithoutRecovery=True
            )
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise TokenStoreError(f"could not delete tokens ({_code(error)})") from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
