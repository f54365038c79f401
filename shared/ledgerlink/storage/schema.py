"""The single DynamoDB table: attribute names, index names and key builders.

Both the CDK stack and the test fixtures import this module, so the table that is deployed, the one
moto creates and the keys the repositories write can never drift apart. Keep it free of boto3.
"""

from __future__ import annotations

PARTITION_KEY = "pk"
SORT_KEY = "sk"
# GSI1: connections by refresh shard, sorted by when their next scheduled refresh is due.
GSI1_NAME = "gsi1"
GSI1_PARTITION_KEY = "gsi1pk"
GSI1_SORT_KEY = "gsi1sk"
# Items with a TTL attribute (OAuth state, idempotency records, undo records) expire by themselves.
TTL_ATTRIBUTE = "expires_at"

# Connections are spread over this many GSI1 partitions so a scheduled fan-out never reads one hot key.
REFRESH_SHARDS = 16

# Table definition in a neutral form: CDK and the moto fixtures each translate it.
KEY_ATTRIBUTES: dict[str, str] = {
    PARTITION_KEY: "S",
    SORT_KEY: "S",
    GSI1_PARTITION_KEY: "S",
    GSI1_SORT_KEY: "S",
}
GLOBAL_SECONDARY_INDEXES: dict[str, tuple[str, str]] = {
    GSI1_NAME: (GSI1_PARTITION_KEY, GSI1_SORT_KEY),
}


def business_pk(business_id: str) -> str:
    return f"BIZ#{business_id}"


# A business has at most one bookkeeping connection; this item holds it (create-once).
CONNECTION_SK = "CONNECTION"
# The connection a business had before (after Change connection or Disconnect), for Merge Lists.
PREVIOUS_CONNECTION_SK = "PREVIOUS_CONNECTION"
LICENCE_SK_PREFIX = "LICENCE#"
ITEM_SK_PREFIX = "ITEM#"


def connection_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def item_sk(item_id: str) -> str:
    return f"{ITEM_SK_PREFIX}{item_id}"


def list_pk(connection_id: str, list_type: str) -> str:
    """One partition per list of one connection: a list is read with a single Query."""
    return f"CONN#{connection_id}#LIST#{list_type}"


# The dynamodb-kms token store keeps a connection's encrypted token set here.
TOKENS_SK = "TOKENS"


def licence_sk(feature: str) -> str:
    return f"{LICENCE_SK_PREFIX}{feature}"


LIST_STATE_SK_PREFIX = "LISTSTATE#"


def list_state_sk(list_type: str) -> str:
    """Per-list refresh state (high-water mark, checkpoint, counts) lives beside the connection."""
    return f"{LIST_STATE_SK_PREFIX}{list_type}"


def call_budget_sk(window: int) -> str:
    """One counter item per connection and budget window (its number since the epoch), expiring by TTL."""
    return f"BUDGET#{window}"


def oauth_state_pk(state: str) -> str:
    return f"OAUTHSTATE#{state}"


OAUTH_STATE_SK = "STATE"


def publish_queue_pk(business_id: str) -> str:
    """GSI1 partition of a business's items waiting to be published."""
    return f"QUEUE#{business_id}"


def refresh_shard_pk(shard: int) -> str:
    return f"REFRESH#{shard:02d}"


# --- Supplier and customer rules, Merge Lists (issue 7) ----------------------------------------------
# One item per rule beside the business; GSI1 also finds a business's rules by normalised name (the
# refresh schedule's partitions are REFRESH#nn, so the two uses never meet in one GSI1 partition).
RULE_SK_PREFIX = "RULE#"


def rule_sk_prefix(kind: str) -> str:
    return f"{RULE_SK_PREFIX}{kind}#"


def rule_sk(kind: str, key: str) -> str:
    return f"{rule_sk_prefix(kind)}{key}"


def rule_name_gsi1pk(business_id: str, kind: str) -> str:
    return f"RULENAME#{business_id}#{kind}"


def rule_name_gsi1sk(normalised_name: str, key: str) -> str:
    return f"{normalised_name}#{key}"


# A merge proposal: its header item (state, result), then its body, undo record and the state of a
# staged write, each under the header's sort key so one Query reads a merge whole.
MERGE_SK_PREFIX = "MERGE#"


def merge_sk(proposal_id: str) -> str:
    return f"{MERGE_SK_PREFIX}{proposal_id}"


def merge_part_sk(proposal_id: str, part: str, number: int) -> str:
    """``part``: P (the proposal body) or U (the undo record); both are split into numbered chunks."""
    return f"{merge_sk(proposal_id)}#{part}#{number:04d}"


def merge_operation_sk(operation_id: str) -> str:
    """The state of one staged write (apply or undo): readers of staged rows look here."""
    return f"MERGEOP#{operation_id}"
