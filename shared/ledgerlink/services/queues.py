"""Messages ledgerlink sends to its own queues."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ledgerlink.clock import Clock
from ledgerlink.models.common import ListType
from ledgerlink.models.items import CapturedItem, ItemStatus
from ledgerlink.storage.items import ItemRepository, StaleItem

# SendMessageBatch takes at most ten messages.
SEND_BATCH_LIMIT = 10


class RefreshRequest(BaseModel):
    """Refresh the lists of one connection (all six unless ``lists`` says otherwise)."""

    model_config = ConfigDict(extra="forbid")

    business_id: str
    connection_id: str
    reason: str  # initial_import | scheduled | requested | resume
    lists: list[ListType] | None = None
    full: bool = False  # ignore high-water marks (a naive full import)
    # The refresh record this message carries out (POST refresh, the schedule); messages without
    # one (the first import) use their SQS message id, which stays the same across redeliveries.
    refresh_id: str | None = None
    requested_at: datetime | None = None


class PublishMessage(BaseModel):
    """The capture product's message on the FIFO publish queue (and what POST /v1/items sends).

    ``capture`` stores the item; ``publish`` stores it and publishes it. ``drain`` (ledgerlink's
    own, with no item) tells the business's publisher to carry on with what is still queued."""

    model_config = ConfigDict(extra="forbid")

    business_id: str = Field(min_length=1, max_length=128)
    action: Literal["capture", "publish", "drain"]
    item: CapturedItem | None = None

    @model_validator(mode="after")
    def _item_unless_drain(self) -> PublishMessage:
        if self.action != "drain" and self.item is None:
            raise ValueError(f"a {self.action} message needs the item")
        return self


class RefreshQueue:
    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self._queue_url = queue_url

    def request(self, request: RefreshRequest, *, delay_seconds: int = 0) -> None:
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=request.model_dump_json(exclude_none=True),
            DelaySeconds=min(delay_seconds, 900),
        )

    def request_batch(self, requests: Sequence[RefreshRequest]) -> list[RefreshRequest]:
        """Send requests ten to a SendMessageBatch call (SQS's most; the refresh queue is a standard
        queue, so no group or deduplication ids), one call for ten connections where the schedule's
        fan-out would otherwise make ten. Returns the requests SQS did not take."""
        refused: list[RefreshRequest] = []
        for start in range(0, len(requests), SEND_BATCH_LIMIT):
            chunk = requests[start : start + SEND_BATCH_LIMIT]
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(index), "MessageBody": request.model_dump_json(exclude_none=True)}
                    for index, request in enumerate(chunk)
                ],
            )
            refused += [chunk[int(failure["Id"])] for failure in response.get("Failed", [])]
        return refused

    def redeliver_after(self, receipt_handle: str, seconds: float) -> None:
        """Hold a received refresh back for ``seconds`` (a ledger's Retry-After, or a backoff after a
        5xx) before SQS redelivers it; the redelivery carries on from the refresh's checkpoint."""
        self._client.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=min(int(seconds) + 1, 43200),
        )


class PublishQueue:
    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self._queue_url = queue_url

    def send(self, message: PublishMessage, *, revision: int, attempt: str = "") -> None:
        """``attempt`` distinguishes a deliberate resend (releasing a held item) from a duplicate."""
        body = message.model_dump(mode="json", exclude_none=True)
        subject = message.item.id if message.item else "all"
        # Unique per business: SQS deduplicates across the whole queue unless the queue scopes it
        # per message group, and two businesses may well both capture an item called "cap-001".
        dedup = f"{message.business_id}|{subject}|{revision}|{message.action}{attempt}"
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(body),
            # One business = one ledger organisation: its items are worked on one batch at a time.
            MessageGroupId=message.business_id,
            # A resend of the same revision within SQS's 5-minute window is dropped by SQS itself.
            MessageDeduplicationId=hashlib.sha256(dedup.encode()).hexdigest(),
        )

    def redeliver_after(self, receipt_handle: str, seconds: float) -> None:
        """Hold a received message back for ``seconds`` (a ledger's Retry-After) before SQS redelivers it."""
        self._client.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=min(int(seconds) + 1, 43200),
        )


class HeldItems:
    """Items held while the connection needed a reconnect go back to the publisher."""

    def __init__(self, items: ItemRepository, queue: PublishQueue, clock: Clock):
        self._items = items
        self._queue = queue
        self._clock = clock

    def release(self, business_id: str) -> int:
        now = self._clock.now()
        released = 0
        for held in self._items.list(business_id, ItemStatus.HELD):
            found = self._items.get(business_id, held.item.id)
            if found is None or found[0].status != ItemStatus.HELD:
                continue
            stored, version = found
            try:
                self._items.save(
                    stored.model_copy(
                        update={"status": ItemStatus.QUEUED, "queued_at": now, "updated_at": now}
                    ),
                    version,
                )
            except StaleItem:
                continue  # someone changed it meanwhile: it is not held any more
            released += 1
        # Published items whose document or payment waited for the reconnect are not held (they
        # are in the ledger) but still on the business's publishing queue: wake the publisher too.
        if released or self._items.pending(business_id, limit=1):
            self._queue.send(
                PublishMessage(business_id=business_id, action="drain"),
                revision=0,
                attempt=f"-release-{int(now.timestamp())}",
            )
        return released
