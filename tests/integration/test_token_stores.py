"""One contract for both token back ends (Secrets Manager, KMS-encrypted DynamoDB)."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from ledgerlink.models.tokens import TokenSet
from ledgerlink.storage.dynamo import Table
from ledgerlink.storage.schema import TOKENS_SK, connection_pk
from ledgerlink.tokens.dynamodb_kms import DynamoDbKmsTokenStore, StaleTokenWrite
from ledgerlink.tokens.secretsmanager import SecretsManagerTokenStore
from ledgerlink.tokens.store import TokenNotFound, TokenStore
from sandbox.aws_resources import REGION, create_resources

EXPIRY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def tokens(generation: int, refresh: str = "refresh-secret-value") -> TokenSet:
    return TokenSet(
        access_token=f"access-{generation}", refresh_token=refresh, expires_at=EXPIRY, generation=generation
    )


@pytest.fixture(params=["secretsmanager", "dynamodb-kms"])
def store(request: pytest.FixtureRequest):
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        resources = create_resources(session)
        table = Table(session.client("dynamodb"), resources.table_name)
        if request.param == "secretsmanager":
            yield SecretsManagerTokenStore(
                session.client("secretsmanager"), prefix="ledgerlink/", kms_key_id=resources.token_key_id
            )
        else:
            yield DynamoDbKmsTokenStore(table, session.client("kms"), key_id=resources.token_key_id)


def test_a_stored_token_set_reads_back_whole(store: TokenStore):
    store.create("conn-1", tokens(1))
    read = store.read("conn-1")
    assert read.refresh_token.get_secret_value() == "refresh-secret-value"
    assert (read.access_token.get_secret_value(), read.generation, read.expires_at) == ("access-1", 1, EXPIRY)


def test_a_write_replaces_and_connections_are_separate(store: TokenStore):
    store.create("conn-1", tokens(1))
    store.create("conn-2", tokens(7, refresh="other"))
    store.write("conn-1", tokens(2, refresh="rotated"))
    assert store.read("conn-1").refresh_token.get_secret_value() == "rotated"
    assert store.read("conn-2").refresh_token.get_secret_value() == "other"


def test_missing_and_deleted_tokens_are_not_found(store: TokenStore):
    with pytest.raises(TokenNotFound):
        store.read("never")
    with pytest.raises(TokenNotFound):
        store.write("never", tokens(1))
    store.create("conn-1", tokens(1))
    store.delete("conn-1")
    store.delete("conn-1")  # deleting twice is fine: disconnect may be retried
    with pytest.raises(TokenNotFound):
        store.read("conn-1")


def test_dynamodb_kms_never_goes_backwards_and_binds_ciphertext_to_its_connection():
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        resources = create_resources(session)
        table = Table(session.client("dynamodb"), resources.table_name)
        store = DynamoDbKmsTokenStore(table, session.client("kms"), key_id=resources.token_key_id)
        store.create("conn-1", tokens(3))
        with pytest.raises(StaleTokenWrite):
            store.write("conn-1", tokens(2, refresh="older"))  # a slow writer with a superseded set
        assert store.read("conn-1").generation == 3

        raw = table.get(connection_pk("conn-1"), TOKENS_SK)
        assert "refresh-secret-value" not in str(raw)  # only ciphertext at rest
        table.put({**raw, "pk": connection_pk("conn-2")})  # the blob copied onto another connection
        with pytest.raises(Exception, match="decrypt"):
            store.read("conn-2")
