"""A thin layer over the DynamoDB client: marshalling, paging, batching, and boto3 errors mapped to
our own exceptions in one place (``raise ... from``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ledgerlink.storage.schema import PARTITION_KEY, SORT_KEY

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
MAX_UNPROCESSED_ROUNDS = 8
# TransactWriteItems: at most 100 actions and 4 MB in one request.
TRANSACTION_LIMIT = 100
TRANSACTION_BYTES = 4_000_000


class StorageError(RuntimeError):
    """DynamoDB refused or failed a request in a way the caller cannot fix."""


class ConditionFailed(StorageError):
    """A conditional write found the item in another state (exists already, other version...)."""


def _to_dynamo_value(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo_value(v) for v in value]
    return value


def marshal(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_to_dynamo_value(v)) for k, v in item.items() if v is not None}


def unmarshal(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo_value(_deserializer.deserialize(v)) for k, v in item.items()}


def _from_dynamo_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_dynamo_value(v) for v in value]
    return value


def _raise_mapped(error: ClientError) -> None:
    code = error.response.get("Error", {}).get("Code", "")
    if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
        raise ConditionFailed(code) from error
    raise StorageError(f"DynamoDB error {code}") from error


class Table:
    def __init__(self, client: Any, table_name: str):
        self._client = client
        self.name = table_name

    @staticmethod
    def key(pk: str, sk: str) -> dict[str, Any]:
        return marshal({PARTITION_KEY: pk, SORT_KEY: sk})

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self.name, Key=self.key(pk, sk), ConsistentRead=consistent
            )
        except ClientError as error:
            _raise_mapped(error)
        item = response.get("Item")
        return unmarshal(item) if item else None

    def put(
        self,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        request: dict[str, Any] = {"TableName": self.name, "Item": marshal(item)}
        _add_expression(request, condition, names, values)
        try:
            self._client.put_item(**request)
        except ClientError as error:
            _raise_mapped(error)

    def update(
        self,
        pk: str,
        sk: str,
        *,
        update: str,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_new: bool = False,
    ) -> dict[str, Any] | None:
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": self.key(pk, sk),
            "UpdateExpression": update,
        }
        _add_expression(request, condition, names, values)
        if return_new:
            request["ReturnValues"] = "ALL_NEW"
        try:
            response = self._client.update_item(**request)
        except ClientError as error:
            _raise_mapped(error)
        attributes = response.get("Attributes")
        return unmarshal(attributes) if attributes else None

    def delete(
        self,
        pk: str,
        sk: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_old: bool = False,
    ) -> dict[str, Any] | None:
        request: dict[str, Any] = {"TableName": self.name, "Key": self.key(pk, sk)}
        _add_expression(request, condition, names, values)
        if return_old:
            request["ReturnValues"] = "ALL_OLD"
        try:
            response = self._client.delete_item(**request)
        except ClientError as error:
            _raise_mapped(error)
        attributes = response.get("Attributes")
        return unmarshal(attributes) if attributes else None

    def query(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        index: str | None = None,
        pk_name: str = PARTITION_KEY,
        sk_name: str = SORT_KEY,
        sk_at_most: str | None = None,
        limit: int | None = None,
        start_key: dict[str, Any] | None = None,
        consistent: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a partition (optionally with a sort-key prefix or upper bound), paging to the end."""
        condition = "#pk = :pk"
        names = {"#pk": pk_name}
        values: dict[str, Any] = {":pk": pk}
        if sk_prefix is not None:
            condition += " AND begins_with(#sk, :sk)"
            names["#sk"] = sk_name
            values[":sk"] = sk_prefix
        elif sk_at_most is not None:
            condition += " AND #sk <= :sk"
            names["#sk"] = sk_name
            values[":sk"] = sk_at_most
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": marshal(values),
        }
        if index:
            request["IndexName"] = index
        elif consistent:
            request["ConsistentRead"] = True
        if limit:
            request["Limit"] = limit
        if start_key:
            request["ExclusiveStartKey"] = start_key
        returned = 0
        while True:
            try:
                response = self._client.query(**request)
            except ClientError as error:
                _raise_mapped(error)
            for raw in response.get("Items", []):
                yield unmarshal(raw)
                returned += 1
            last = response.get("LastEvaluatedKey")
            if not last or (limit and returned >= limit):
                return
            request["ExclusiveStartKey"] = last

    def query_page(
        self,
        pk: str,
        *,
        limit: int,
        start_key: dict[str, Any] | None = None,
        sk_prefix: str | None = None,
        index: str | None = None,
        pk_name: str = PARTITION_KEY,
        sk_name: str = SORT_KEY,
        attribute_equals: tuple[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of a partition (for API pagination): the items and the key to continue from.
        ``attribute_equals`` filters on a non-key attribute (the page may then hold fewer items)."""
        condition = "#pk = :pk"
        names = {"#pk": pk_name}
        values: dict[str, Any] = {":pk": pk}
        if sk_prefix is not None:
            condition += " AND begins_with(#sk, :sk)"
            names["#sk"] = sk_name
            values[":sk"] = sk_prefix
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": condition,
            "Limit": limit,
        }
        if attribute_equals is not None:
            names["#filter"] = attribute_equals[0]
            values[":filter"] = attribute_equals[1]
            request["FilterExpression"] = "#filter = :filter"
        request["ExpressionAttributeNames"] = names
        request["ExpressionAttributeValues"] = marshal(values)
        if index:
            request["IndexName"] = index
        if start_key:
            request["ExclusiveStartKey"] = start_key
        try:
            response = self._client.query(**request)
        except ClientError as error:
            _raise_mapped(error)
        return [unmarshal(raw) for raw in response.get("Items", [])], response.get("LastEvaluatedKey")

    # --- transactions: build the actions, then write them all or none ---------------------------------

    def put_action(
        self,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        action: dict[str, Any] = {"TableName": self.name, "Item": marshal(item)}
        _add_expression(action, condition, names, values)
        return {"Put": action}

    def update_action(
        self,
        pk: str,
        sk: str,
        *,
        update: str,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        action: dict[str, Any] = {"TableName": self.name, "Key": self.key(pk, sk), "UpdateExpression": update}
        _add_expression(action, condition, names, values)
        return {"Update": action}

    def transact_write(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """All of ``actions`` or none; any failed condition (or a conflicting transaction) raises
        ConditionFailed."""
        if not actions:
            return
        if len(actions) > TRANSACTION_LIMIT:
            raise StorageError(f"a transaction takes at most {TRANSACTION_LIMIT} actions, not {len(actions)}")
        try:
            self._client.transact_write_items(TransactItems=list(actions))
        except ClientError as error:
            _raise_mapped(error)

    def batch_get(self, keys: Sequence[tuple[str, str]], *, consistent: bool = True) -> list[dict[str, Any]]:
        """The items found under ``keys`` (in no particular order), 100 keys to a BatchGetItem,
        retrying what DynamoDB leaves unprocessed."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            pending = [self.key(pk, sk) for pk, sk in keys[start : start + BATCH_GET_LIMIT]]
            for _round in range(MAX_UNPROCESSED_ROUNDS):
                try:
                    response = self._client.batch_get_item(
                        RequestItems={self.name: {"Keys": pending, "ConsistentRead": consistent}}
                    )
                except ClientError as error:
                    _raise_mapped(error)
                found += [unmarshal(item) for item in response.get("Responses", {}).get(self.name, [])]
                pending = response.get("UnprocessedKeys", {}).get(self.name, {}).get("Keys", [])
                if not pending:
                    break
                time.sleep(0.05 * 2**_round)  # DynamoDB asks for backoff before asking again
            else:
                raise StorageError(f"DynamoDB left {len(pending)} reads unprocessed after retries")
        return found

    def batch_write(self, puts: Sequence[Mapping[str, Any]], deletes: Sequence[tuple[str, str]] = ()) -> int:
        """Write and delete in batches of 25, retrying what DynamoDB leaves unprocessed. Returns
        the number of write requests sent (the count the refresh reports)."""
        requests: list[dict[str, Any]] = [{"PutRequest": {"Item": marshal(item)}} for item in puts]
        requests += [{"DeleteRequest": {"Key": self.key(pk, sk)}} for pk, sk in deletes]
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending = requests[start : start + BATCH_WRITE_LIMIT]
            for _round in range(MAX_UNPROCESSED_ROUNDS):
                try:
                    response = self._client.batch_write_item(RequestItems={self.name: pending})
                except ClientError as error:
                    _raise_mapped(error)
                pending = response.get("UnprocessedItems", {}).get(self.name, [])
                if not pending:
                    break
                time.sleep(0.05 * 2**_round)  # DynamoDB asks for backoff before resending
            else:
                raise StorageError(f"DynamoDB left {len(pending)} writes unprocessed after retries")
        return len(requests)


def _add_expression(
    request: dict[str, Any],
    condition: str | None,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> None:
    if condition:
        request["ConditionExpression"] = condition
    if names:
        request["ExpressionAttributeNames"] = dict(names)
    if values:
        request["ExpressionAttributeValues"] = marshal(values)
