"""The one DynamoDB table (from ``ledgerlink.storage.schema``) and the captured-documents bucket."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ledgerlink.storage import schema

# The schema module speaks DynamoDB's attribute type letters; only strings are used today.
_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[schema.KEY_ATTRIBUTES[name]])


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.table = self._table(key)
        self.documents_bucket = self._documents_bucket()

    def _table(self, key: kms.IKey) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "Table",
            partition_key=_attribute(schema.PARTITION_KEY),
            sort_key=_attribute(schema.SORT_KEY),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=schema.TTL_ATTRIBUTE,
            # Connections, rules and publish history are the customers' data: never dropped with the stack.
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )
        for index_name, (partition_key, sort_key) in schema.GLOBAL_SECONDARY_INDEXES.items():
            table.add_global_secondary_index(
                index_name=index_name,
                partition_key=_attribute(partition_key),
                sort_key=_attribute(sort_key),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table

    def _documents_bucket(self) -> s3.Bucket:
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # Server access logs can only be delivered to an SSE-S3 bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(access_logs.node.default_child).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket of the documents bucket; logging it into itself "
                "would log its own log deliveries without end.",
            )
        )
        return s3.Bucket(
            self,
            "Documents",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # SSE-S3 rather than the stack key: the capture product writes here with its own role, which
            # must not need the key that also protects connection tokens.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="documents/",
            removal_policy=RemovalPolicy.RETAIN,
        )
