"""Messages ledgerlink sends to its own queues."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledgerlink.clock import Clock
from ledgerlink.models.common import ListType
from ledgerlink.models.items import CapturedItem, ItemStatus
from ledgerlink.storage.items import ItemRepository


class RefreshRequest(BaseModel):
    """Refresh the lists of one connection (all six unless ``lists`` says otherwise)."""

    model_config = ConfigDict(extra="forbid")

    business_id: str
    connection_id: str
    reason: str  # initial_import | scheduled | requested | resume
    lists: list[ListType] | None = None
    full: bool = False  # ignore high-water marks (a naive full import)


class PublishMessage(BaseModel):
    """The capture product's message on the FIFO publish queue (and what POST /v1/items sends)."""

    model_config = ConfigDict(extra="forbid")

    business_id: str
    action: str  # capture | publish
    item: CapturedItem


class RefreshQueue:
    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self._queue_url = queue_url

    def request(self, request: RefreshRequest, *, delay_seconds: int = 0) -> None:
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=request.model_dump_json(),
            DelaySeconds=min(delay_seconds, 900),
        )


class PublishQueue:
    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self._queue_url = queue_url

    def send(self, message: PublishMessage, *, revision: int, attempt: str = "") -> None:
        """``attempt`` distinguishes a deliberate resend (releasing a held item) from a duplicate."""
        body = message.model_dump(mode="json")
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(body),
            # One business = one ledger organisation: its items are worked on one batch at a time.
            MessageGroupId=message.business_id,
            # A resend of the same revision within SQS's 5-minute window is dropped by SQS itself.
            MessageDeduplicationId=f"{message.item.id}-{revision}-{message.action}{attempt}"[:128],
        )

    def redeliver_after(self, receipt_handle: str, seconds: float) -> None:
        """Hold a received message back for ``seconds`` (a ledger's Retry-After) before SQS redelivers it."""
        self._client.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=min(int(seconds) + 1, 43200),
        )


class HeldItems:
    """Items held while the connection needed a reconnect go back on the publish queue."""

    def __init__(self, items: ItemRepository, queue: PublishQueue, clock: Clock):
        self._items = items
        self._queue = queue
        self._clock = clock

    def release(self, business_id: str) -> int:
        released = 0
        attempt = f"-release-{int(self._clock.now().timestamp())}"
        for stored in self._items.list(business_id, ItemStatus.HELD):
            self._queue.send(
                PublishMessage(business_id=business_id, action="publish", item=stored.item),
                revision=stored.revision,
                attempt=attempt,
            )
            released += 1
        return released
