"""Publishing: the capture queue consumer (SQS FIFO) and the items API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ledgerlink.api.http import ERROR_RESPONSES, build_resolver, current_caller
from ledgerlink.api.schemas import SubmitItemRequest
from ledgerlink.models.items import StoredItem
from ledgerlink.observability import logger, metrics, tracer
from ledgerlink.wiring import publishing_service

app = build_resolver()
# Report failures per message, even when all fail: SQS redelivers exactly those.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@app.post("/v1/items", status_code=201, responses=ERROR_RESPONSES)
def submit_item(request: SubmitItemRequest) -> StoredItem:
    return publishing_service().submit(current_caller(app), request)


@app.get("/v1/items/<item_id>", responses=ERROR_RESPONSES)
def get_item(item_id: str) -> StoredItem:
    return publishing_service().get(current_caller(app), item_id)


def publish_record(record: SQSRecord) -> None:
    publishing_service().handle_record(
        record.body, record.receipt_handle, int(record.attributes.approximate_receive_count)
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=publish_record, processor=processor, context=context
        )
    return app.resolve(event, context)
