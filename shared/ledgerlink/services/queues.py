"""Messages ledgerlink sends to its own queues."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledgerlink.models.common import ListType
from ledgerlink.models.items import CapturedItem


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

    def send(self, message: PublishMessage, *, revision: int) -> None:
        body = message.model_dump(mode="json")
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(body),
            # One business = one ledger organisation: its items are worked on one batch at a time.
            MessageGroupId=message.business_id,
            # A resend of the same revision within SQS's 5-minute window is dropped by SQS itself.
            MessageDeduplicationId=f"{message.item.id}-{revision}-{message.action}"[:128],
        )

    def redeliver_after(self, receipt_handle: str, seconds: float) -> None:
        """Hold a received message back for ``seconds`` (a ledger's Retry-After) before SQS redelivers it."""
        self._client.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=min(int(seconds) + 1, 43200),
        )
