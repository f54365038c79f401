"""The DynamoDB layer's batch read: many keys in calls of a hundred, and the keys DynamoDB leaves
unprocessed asked for again."""

from __future__ import annotations

from typing import Any

import boto3
from moto import mock_aws

from ledgerlink.storage.dynamo import Table
from sandbox.aws_resources import REGION, create_resources


class _LeavesKeysUnprocessed:
    """The real (moto) client, except that the first BatchGetItem answers only half its keys and
    hands the rest back as unprocessed, as DynamoDB does under load."""

    def __init__(self, client: Any):
        self._client = client
        self.batch_calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.batch_calls += 1
        if self.batch_calls > 1:
            return self._client.batch_get_item(RequestItems=RequestItems)
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        half = len(keys) // 2
        answered = self._client.batch_get_item(RequestItems={table: {**request, "Keys": keys[:half]}})
        return {**answered, "UnprocessedKeys": {table: {**request, "Keys": keys[half:]}}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_batch_get_reads_every_stored_key_across_calls_and_unprocessed_keys():
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        resources = create_resources(session)
        client = _LeavesKeysUnprocessed(session.client("dynamodb"))
        table = Table(client, resources.table_name)
        table.batch_write([{"pk": "P", "sk": f"R{n:03d}", "n": n} for n in range(0, 250, 2)])

        found = table.batch_get([("P", f"R{n:03d}") for n in range(250)])

        assert sorted(item["n"] for item in found) == list(range(0, 250, 2))  # absent keys: no item
        assert client.batch_calls == 4  # 100 + 100 + 50 keys, and the unprocessed half once more
