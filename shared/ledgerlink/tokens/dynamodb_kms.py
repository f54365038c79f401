"""Token sets encrypted with KMS under the stack key and kept on the table, one item per
connection, written only forwards (a version condition on the token generation).

Why this back end exists (DESIGN §5): Secrets Manager keeps about 100 versions of a secret per
rolling 24 h, asks for no more than one write per 10 minutes and shares 50 writes/s per Region.
Sage rotates its refresh token every five minutes of use and has no grace window, so a throttled
write after Sage rotated would lose the only valid token. A conditional DynamoDB write has none of
those limits; KMS binds each ciphertext to its connection through the encryption context.
"""

from __future__ import annotations

import base64
from typing import Any

from botocore.exceptions import ClientError

from ledgerlink.models.tokens import TokenSet
from ledgerlink.storage.dynamo import ConditionFailed, Table
from ledgerlink.storage.schema import PARTITION_KEY, SORT_KEY, TOKENS_SK, connection_pk
from ledgerlink.tokens.store import TokenNotFound, TokenStore, TokenStoreError

KMS_PLAINTEXT_LIMIT = 4096  # KMS Encrypt takes at most 4 KB; token sets are well under it


class StaleTokenWrite(TokenStoreError):
    """A newer token set is already stored: this write would have gone backwards."""


class DynamoDbKmsTokenStore(TokenStore):
    name = "dynamodb-kms"

    def __init__(self, table: Table, kms: Any, *, key_id: str):
        self._table = table
        self._kms = kms
        self._key_id = key_id

    def create(self, connection_id: str, tokens: TokenSet) -> None:
        self._put(connection_id, tokens, must_exist=False)

    def write(self, connection_id: str, tokens: TokenSet) -> None:
        self._put(connection_id, tokens, must_exist=True)

    def read(self, connection_id: str) -> TokenSet:
        raw = self._table.get(connection_pk(connection_id), TOKENS_SK)
        if raw is None:
            raise TokenNotFound(connection_id)
        try:
            plaintext = self._kms.decrypt(
                CiphertextBlob=base64.b64decode(raw["ciphertext"]),
                KeyId=self._key_id,
                EncryptionContext=_context(connection_id),
            )["Plaintext"]
        except ClientError as error:
            raise TokenStoreError(f"could not decrypt tokens ({_code(error)})") from error
        return TokenSet.from_secret_string(plaintext.decode())

    def delete(self, connection_id: str) -> None:
        self._table.delete(connection_pk(connection_id), TOKENS_SK)

    def _put(self, connection_id: str, tokens: TokenSet, *, must_exist: bool) -> None:
        plaintext = tokens.to_secret_string().encode()
        if len(plaintext) > KMS_PLAINTEXT_LIMIT:
            raise TokenStoreError("the token set is larger than KMS can encrypt directly")
        try:
            ciphertext = self._kms.encrypt(
                KeyId=self._key_id, Plaintext=plaintext, EncryptionContext=_context(connection_id)
            )["CiphertextBlob"]
        except ClientError as error:
            raise TokenStoreError(f"could not encrypt tokens ({_code(error)})") from error
        try:
            self._table.put(
                {
                    PARTITION_KEY: connection_pk(connection_id),
                    SORT_KEY: TOKENS_SK,
                    "ciphertext": base64.b64encode(ciphertext).decode(),
                    "generation": tokens.generation,
                },
                # Only forwards: a slow writer can never put back an older, already-rotated token set.
                condition=("attribute_exists(pk) AND " if must_exist else "attribute_not_exists(pk) OR ")
                + "generation <= :generation",
                values={":generation": tokens.generation},
            )
        except ConditionFailed as error:
            if must_exist and not self._exists(connection_id):
                raise TokenNotFound(connection_id) from error
            raise StaleTokenWrite(f"a newer token set is stored for {connection_id}") from error

    def _exists(self, connection_id: str) -> bool:
        return self._table.get(connection_pk(connection_id), TOKENS_SK) is not None


def _context(connection_id: str) -> dict[str, str]:
    # Binds the ciphertext to its connection: a blob copied to another connection will not decrypt.
    return {"ledgerlink:connection": connection_id}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
