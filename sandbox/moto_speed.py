"""Make in-process moto DynamoDB usable with large lists (tests, the benchmark, the local runtime).

moto answers every Query page by sorting every item of the table and comparing key values through
``DynamoType``'s generic comparison (a type check and a cast per comparison): with the large
seeded organisation (10,000 contacts) one list read takes minutes. Our keys are all strings
(``storage.schema.KEY_ATTRIBUTES``), so string keys are compared as plain strings here; every other
type keeps moto's own comparison. The results are the same, only faster.
"""

from __future__ import annotations

from typing import Any

_applied = False


def speed_up_moto_dynamodb() -> None:
    """Patch moto's DynamoDB key comparisons for string keys (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    generic_eq, generic_ne, generic_lt = DynamoType.__eq__, DynamoType.__ne__, DynamoType.__lt__

    def eq(self: DynamoType, other: Any) -> bool:
        if self.type == "S" and isinstance(other, DynamoType) and other.type == "S":
            return bool(self.value == other.value)
        return generic_eq(self, other)

    def ne(self: DynamoType, other: Any) -> bool:
        if self.type == "S" and isinstance(other, DynamoType) and other.type == "S":
            return bool(self.value != other.value)
        return generic_ne(self, other)

    def lt(self: DynamoType, other: Any) -> bool:
        if self.type == "S" and isinstance(other, DynamoType) and other.type == "S":
            return bool(self.value < other.value)
        return generic_lt(self, other)

    def sort_key(value: Any) -> Any:
        return (0, value.value) if value.type == "S" else (1, value.cast_value)

    def all_items(self: Table) -> list[Any]:
        items: list[Any] = []
        for hash_set in self.items.values():
            if self.range_key_attr:
                items.extend(hash_set.values())
            else:
                items.append(hash_set)
        return sorted(
            items,
            key=lambda x: (
                (sort_key(x.hash_key), sort_key(x.range_key)) if x.range_key else (sort_key(x.hash_key),)
            ),
        )

    DynamoType.__eq__ = eq  # type: ignore[method-assign,assignment]
    DynamoType.__ne__ = ne  # type: ignore[method-assign,assignment]
    DynamoType.__lt__ = lt  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    _applied = True
