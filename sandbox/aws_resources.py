"""The AWS resources of one ledgerlink deployment, created against moto (in-process for tests, or
moto's server for `ledgerlink local`) from the same schema constants the CDK stack uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ledgerlink.models.common import ProviderName
from ledgerlink.settings import ENV_PREFIX
from ledgerlink.storage import schema

# The simulators' registered app (see sandbox/simulators): the same for all five ledgers.
DEV_CLIENT_ID = "ledgerlink-dev"
DEV_CLIENT_SECRET = "ledgerlink-dev-secret"
REGION = "eu-west-2"
# Matches the publish queue's maxReceiveCount in the CDK stack.
MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class LocalResources:
    table_name: str
    event_bus_name: str
    publish_queue_url: str
    publish_dlq_url: str
    refresh_queue_url: str
    refresh_dlq_url: str
    documents_bucket: str
    token_key_id: str
    events_queue_url: str  # every bus event lands here, so tests and the demo can read them

    def environment(
        self, *, api_url: str, ledger_origins: dict[str, str], return_origins: list[str]
    ) -> dict[str, str]:
        values = {
            "table_name": self.table_name,
            "event_bus_name": self.event_bus_name,
            "token_key_id": self.token_key_id,
            "secrets_prefix": "ledgerlink/",
            "ledger_origins": json.dumps(ledger_origins),
            "api_url": api_url,
            "refresh_queue_url": self.refresh_queue_url,
            "publish_queue_url": self.publish_queue_url,
            "documents_bucket": self.documents_bucket,
            "allowed_return_origins": ",".join(return_origins),
        }
        return {ENV_PREFIX + name.upper(): value for name, value in values.items()}


def create_table(dynamodb: Any, table_name: str) -> None:
    dynamodb.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": kind} for name, kind in schema.KEY_ATTRIBUTES.items()
        ],
        KeySchema=[
            {"AttributeName": schema.PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": schema.SORT_KEY, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index_name,
                "KeySchema": [
                    {"AttributeName": partition, "KeyType": "HASH"},
                    {"AttributeName": sort, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index_name, (partition, sort) in schema.GLOBAL_SECONDARY_INDEXES.items()
        ],
    )
    dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE}
    )


def _queue_with_dlq(sqs: Any, name: str, *, fifo: bool) -> tuple[str, str]:
    suffix = ".fifo" if fifo else ""
    fifo_attributes = {"FifoQueue": "true"} if fifo else {}
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=fifo_attributes)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {
        **fifo_attributes,
        "VisibilityTimeout": "60",
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
        ),
    }
    url = sqs.create_queue(QueueName=f"{name}{suffix}", Attributes=attributes)["QueueUrl"]
    return url, dlq_url


def create_resources(session: Any, *, prefix: str = "ledgerlink") -> LocalResources:
    """Create everything in the account ``session`` points at (moto) and return the names."""
    dynamodb = session.client("dynamodb")
    sqs = session.client("sqs")
    events = session.client("events")
    kms = session.client("kms")
    s3 = session.client("s3")
    secrets = session.client("secretsmanager")

    table_name = prefix
    create_table(dynamodb, table_name)
    publish_url, publish_dlq = _queue_with_dlq(sqs, f"{prefix}-publish", fifo=True)
    refresh_url, refresh_dlq = _queue_with_dlq(sqs, f"{prefix}-refresh", fifo=False)

    bus_name = prefix
    events.create_event_bus(Name=bus_name)
    events_queue = sqs.create_queue(QueueName=f"{prefix}-events")["QueueUrl"]
    events_queue_arn = sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name=f"{prefix}-all", EventBusName=bus_name, EventPattern=json.dumps({"source": ["ledgerlink"]})
    )
    events.put_targets(
        Rule=f"{prefix}-all", EventBusName=bus_name, Targets=[{"Id": "capture", "Arn": events_queue_arn}]
    )

    key_id = kms.create_key(Description="ledgerlink tokens and data")["KeyMetadata"]["Arn"]
    bucket = f"{prefix}-documents"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": session.region_name})

    for provider in ProviderName:
        secrets.create_secret(
            Name=f"ledgerlink/apps/{provider.value}",
            SecretString=json.dumps({"client_id": DEV_CLIENT_ID, "client_secret": DEV_CLIENT_SECRET}),
            KmsKeyId=key_id,
        )
    return LocalResources(
        table_name=table_name,
        event_bus_name=bus_name,
        publish_queue_url=publish_url,
        publish_dlq_url=publish_dlq,
        refresh_queue_url=refresh_url,
        refresh_dlq_url=refresh_dlq,
        documents_bucket=bucket,
        token_key_id=key_id,
        events_queue_url=events_queue,
    )
