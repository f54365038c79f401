"""The stack's KMS key and the ledgers' app-credential secrets."""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, SecretValue, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constants import APP_SECRETS_PREFIX
from ledgerlink.models.common import ProviderName

APP_SECRET_DESCRIPTION = (
    "ledgerlink app credentials for {ledger}. Created empty by the stack: put the JSON "
    '{{"client_id": "...", "client_secret": "..."}} of the app registered in the ledger\'s developer '
    "portal (aws secretsmanager put-secret-value). KashFlow: the partner credentials in the same shape."
)


class Security(Construct):
    """One customer-managed key for the table, the queues, the secrets and the dynamodb-kms token store,
    and one app-credential secret per ledger."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias="alias/ledgerlink",
            description="ledgerlink: table, queues, secrets and connection tokens",
            enable_key_rotation=True,
            # The retained table and every stored token set are encrypted with this key: deleting it
            # would make them unreadable.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.app_secrets = {ledger: self._app_secret(ledger) for ledger in ProviderName}

    def _app_secret(self, ledger: ProviderName) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self,
            f"AppCredentials{ledger.value.capitalize()}",
            secret_name=f"{APP_SECRETS_PREFIX}{ledger.value}",
            description=APP_SECRET_DESCRIPTION.format(ledger=ledger.value),
            encryption_key=self.key,
            # "{}" is a placeholder, not a secret (the handlers reject it with a clear message). Because
            # this literal never changes, CloudFormation never overwrites what the operator puts.
            secret_string_value=SecretValue.unsafe_plain_text("{}"),
        )
        Validations.of(secret.node.default_child).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="App client credentials are issued in each ledger's developer portal; there is no "
                "API a rotation function could call, so rotation is an operator step there.",
            )
        )
        return secret
