"""Exactly which AWS actions each function's role may perform, on which resource, and who calls them.

Plain data with no CDK import. The functions construct turns every ``Grant`` into one IAM policy
statement; the infra tests compare the synthesised policies with this module; and a later test can
compare the ``Caller.HANDLER`` grants with the AWS calls the handlers really make (the other callers
use the role without the handler's code ever naming the action).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from infra.api_routes import FunctionName


class Resource(StrEnum):
    """What a grant is scoped to; the functions construct maps each one to concrete ARNs."""

    TABLE = "table"  # the table and its indexes
    CONNECTION_SECRETS = "connection_secrets"  # secret:ledgerlink/connections/*
    APP_SECRETS = "app_secrets"  # secret:ledgerlink/apps/*
    STACK_KEY = "stack_key"  # the one customer-managed KMS key
    EVENT_BUS = "event_bus"
    REFRESH_QUEUE = "refresh_queue"
    PUBLISH_QUEUE = "publish_queue"
    DOCUMENT_OBJECTS = "document_objects"  # objects in the documents bucket
    OWN_LOG_GROUP = "own_log_group"  # the function's own log group and its streams
    ANY = "any"  # only for actions without resource-level permissions (X-Ray)


class Caller(StrEnum):
    """Who exercises the permission with the function's role."""

    HANDLER = "handler"  # the handler's own boto3 calls
    EVENT_SOURCE_MAPPING = "event_source_mapping"  # Lambda's poller reads the queue with our role
    AWS_SERVICE = "aws_service"  # a service uses our key on our behalf (see ``via_service``)
    LAMBDA_RUNTIME = "lambda_runtime"  # log delivery and trace segments


@dataclass(frozen=True)
class Grant:
    actions: frozenset[str]
    resource: Resource
    caller: Caller = Caller.HANDLER
    # Only through this service (a ``kms:ViaService`` condition), e.g. "dynamodb".
    via_service: str | None = None


def _grant(
    resource: Resource, *actions: str, caller: Caller = Caller.HANDLER, via: str | None = None
) -> Grant:
    return Grant(frozenset(actions), resource, caller, via)


# --- Building blocks -------------------------------------------------------------------------------
_TABLE_CRUD = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
)
# Envelope use of the stack key: the dynamodb-kms token store, and the KMS-encrypted table, queues
# and secrets (DynamoDB, SQS and Secrets Manager call KMS with the caller's permissions).
_KEY_USE = _grant(Resource.STACK_KEY, "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
_READ_APP_CREDENTIALS = _grant(Resource.APP_SECRETS, "secretsmanager:GetSecretValue")
_ROTATE_CONNECTION_TOKENS = _grant(
    Resource.CONNECTION_SECRETS, "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"
)
_EMIT_EVENTS = _grant(Resource.EVENT_BUS, "events:PutEvents")
# What Lambda's SQS poller needs; deleting a handled message is done by the poller too.
_SQS_POLLER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
_RUNTIME = (
    _grant(Resource.OWN_LOG_GROUP, "logs:CreateLogStream", "logs:PutLogEvents", caller=Caller.LAMBDA_RUNTIME),
    _grant(Resource.ANY, "xray:PutTraceSegments", "xray:PutTelemetryRecords", caller=Caller.LAMBDA_RUNTIME),
)

PERMISSIONS: MappingProxyType[FunctionName, tuple[Grant, ...]] = MappingProxyType(
    {
        FunctionName.OAUTH_CALLBACK: (
            _grant(Resource.TABLE, *_TABLE_CRUD, "dynamodb:BatchWriteItem"),
            # Connecting creates the connection's secret; disconnecting deletes it.
            _grant(
                Resource.CONNECTION_SECRETS,
                "secretsmanager:CreateSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:DeleteSecret",
                "secretsmanager:TagResource",
            ),
            _READ_APP_CREDENTIALS,
            _KEY_USE,
            _EMIT_EVENTS,
            _grant(Resource.REFRESH_QUEUE, "sqs:SendMessage"),  # the first import, right after connecting
            # Reconnecting puts the items held while the connection was broken back on the publish queue.
            _grant(Resource.PUBLISH_QUEUE, "sqs:SendMessage"),
            *_RUNTIME,
        ),
        FunctionName.REFRESH_LISTS: (
            # BatchGetItem: the stored fingerprints of a fetched page, a hundred to a call.
            _grant(Resource.TABLE, *_TABLE_CRUD, "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"),
            _ROTATE_CONNECTION_TOKENS,
            _READ_APP_CREDENTIALS,
            _KEY_USE,
            _EMIT_EVENTS,
            # The schedule fan-out and POST refresh enqueue; a refresh stopped by a 429/5xx holds its
            # message back for the ledger's Retry-After (ChangeMessageVisibility) and carries on from
            # its checkpoint when it comes back (a refresh close to the DLQ is re-sent fresh instead).
            _grant(Resource.REFRESH_QUEUE, "sqs:SendMessage", "sqs:ChangeMessageVisibility"),
            _grant(Resource.REFRESH_QUEUE, *_SQS_POLLER_ACTIONS, caller=Caller.EVENT_SOURCE_MAPPING),
            *_RUNTIME,
        ),
        FunctionName.PUBLISH_ITEM: (
            _grant(Resource.TABLE, *_TABLE_CRUD),
            _ROTATE_CONNECTION_TOKENS,
            _READ_APP_CREDENTIALS,
            _KEY_USE,
            _grant(Resource.DOCUMENT_OBJECTS, "s3:GetObject"),  # the captured document, to attach it
            # POST /v1/items enqueues; the consumer holds a message back for the ledger's Retry-After
            # (ChangeMessageVisibility, DESIGN §6) instead of letting it count towards the DLQ.
            _grant(Resource.PUBLISH_QUEUE, "sqs:SendMessage", "sqs:ChangeMessageVisibility"),
            _grant(Resource.PUBLISH_QUEUE, *_SQS_POLLER_ACTIONS, caller=Caller.EVENT_SOURCE_MAPPING),
            _EMIT_EVENTS,
            *_RUNTIME,
        ),
        FunctionName.MERGE_LISTS: (
            # Rules, merge proposals, undo records; a merge is applied with TransactWriteItems, which
            # IAM checks as the PutItem/UpdateItem actions inside it (there is no action of its own).
            _grant(Resource.TABLE, *_TABLE_CRUD),
            _EMIT_EVENTS,  # lists.merged, lists.merge_undone
            # A saved auto-publish rule queues the supplier's waiting items.
            _grant(Resource.PUBLISH_QUEUE, "sqs:SendMessage"),
            # The table is encrypted with the stack key and DynamoDB decrypts the table key with the
            # caller's permission; merge_lists never uses the key itself, so only through DynamoDB...
            _grant(Resource.STACK_KEY, "kms:Decrypt", caller=Caller.AWS_SERVICE, via="dynamodb"),
            # ...and through SQS, which encrypts a message sent to the (KMS-encrypted) publish queue
            # with a data key generated under the caller's permission.
            _grant(
                Resource.STACK_KEY, "kms:GenerateDataKey", "kms:Decrypt", caller=Caller.AWS_SERVICE, via="sqs"
            ),
            *_RUNTIME,
        ),
    }
)


def grants_for(function: FunctionName, *, callers: Iterable[Caller] | None = None) -> tuple[Grant, ...]:
    """The grants of one function, optionally only those exercised by the given callers."""
    wanted = set(Caller) if callers is None else set(callers)
    return tuple(grant for grant in PERMISSIONS[function] if grant.caller in wanted)


def actions_for(function: FunctionName, *, callers: Iterable[Caller] | None = None) -> frozenset[str]:
    """Every action in one function's role (the union over its grants)."""
    return frozenset(action for grant in grants_for(function, callers=callers) for action in grant.actions)


def handler_actions(function: FunctionName) -> frozenset[str]:
    """The actions the handler's own code calls: compare these with the calls it really makes."""
    return actions_for(function, callers=(Caller.HANDLER,))
