"""The publish queue's consumer: each message is captured once (Powertools idempotency: a message
delivered twice is stored once), then each business that had messages is drained by the
publisher. Malformed messages fail alone; a business the ledger asked to wait gets its messages
back after the ledger's Retry-After."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from ledgerlink.observability import logger
from ledgerlink.services.items import ItemService
from ledgerlink.services.publishing import Publisher
from ledgerlink.services.queues import PublishMessage, PublishQueue

# The most messages Lambda delivers at once from a FIFO queue.
FIFO_MAX_BATCH = 10


class MalformedMessage(ValueError):
    """A queue message that is not a valid publish message: redelivery cannot fix it, so it
    fails until SQS moves it to the dead-letter queue."""


class PublishConsumer:
    def __init__(
        self,
        *,
        items: ItemService,
        publisher: Publisher,
        queue: PublishQueue,
        capture_once: Callable[[Callable[..., Any]], Callable[..., Any]],
        bind_context: Callable[[LambdaContext], None] | None = None,
    ):
        self._items = items
        self._publisher = publisher
        self._queue = queue
        # Report failures per message, even when all fail: SQS redelivers exactly those.
        self._processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._capture = capture_once(self._capture_message)
        # The idempotency record of a capture in progress expires with the invocation that made it.
        self._bind_context = bind_context

    def handle(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if self._bind_context is not None:
            self._bind_context(context)
        woken: dict[str, list[SQSRecord]] = {}

        def record_handler(record: SQSRecord) -> None:
            message = _parse(record.body)
            captured = None
            if message.item is not None:
                captured = self._capture(message=message.model_dump(mode="json", exclude_none=True))
            # Only wake the publisher when there may be work: a redelivered copy of an item that
            # is already settled, or a plain capture, needs none.
            if captured is None or captured["status"] in ("queued", "retrying"):
                woken.setdefault(message.business_id, []).append(record)

        response: dict[str, Any] = dict(
            process_partial_response(
                event=dict(event), record_handler=record_handler, processor=self._processor, context=context
            )
        )
        failures: list[dict[str, str]] = list(response.get("batchItemFailures", []))
        # A full delivery means more messages are probably waiting behind it: let the captures
        # pile up into one batch write, and leave a wake-up behind them so nothing waits for ever.
        backlog_likely = len(event.get("Records", [])) >= FIFO_MAX_BATCH
        for business_id, records in woken.items():
            wake_up_later = PublishMessage(business_id=business_id, action="drain")
            if backlog_likely and not self._publisher.batch_ready(business_id):
                self._queue.send(wake_up_later, revision=0, attempt=f"-{records[-1].message_id}")
                continue
            outcome = self._publisher.drain(
                business_id, time_left=lambda: context.get_remaining_time_in_millis() / 1000
            )
            if outcome.retry_after is not None:
                for record in records:
                    self._queue.redeliver_after(record.receipt_handle, outcome.retry_after)
                    failures.append({"itemIdentifier": record.message_id})
            elif outcome.more:
                self._queue.send(wake_up_later, revision=0, attempt=f"-{records[-1].message_id}")
        return {"batchItemFailures": failures}

    def _capture_message(self, message: dict[str, Any]) -> dict[str, Any]:
        parsed = PublishMessage.model_validate(message)
        assert parsed.item is not None
        stored = self._items.capture(parsed.business_id, parsed.item, publish=parsed.action == "publish")
        return {"item_id": stored.item.id, "revision": stored.revision, "status": stored.status.value}


def _parse(body: str) -> PublishMessage:
    try:
        return PublishMessage.model_validate_json(body)
    except ValidationError as error:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
        logger.error("malformed publish message", reasons=reasons)
        raise MalformedMessage(reasons) from error
