"""List refresh: the scheduled fan-out, the refresh worker (SQS), POST refresh and the lists API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from ledgerlink.api.http import ERROR_RESPONSES, build_resolver, current_caller
from ledgerlink.api.schemas import ListPage
from ledgerlink.models.refresh import RefreshStarted
from ledgerlink.observability import logger, metrics, tracer
from ledgerlink.wiring import list_service

app = build_resolver()
# Report failures per message, even when all fail: SQS redelivers exactly those.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@app.get("/v1/lists/<list_type>", responses=ERROR_RESPONSES)
def get_list(
    list_type: str,
    *,
    status: Annotated[str, Query()] = "active",
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    usable_for: Annotated[str | None, Query(max_length=40)] = None,
    role: Annotated[str | None, Query(max_length=40)] = None,
) -> ListPage:
    return list_service().page(
        current_caller(app),
        list_type,
        status=status,
        query=q,
        cursor=cursor,
        limit=limit,
        usable_for=usable_for,
        role=role,
    )


@app.post("/v1/connection/refresh", status_code=202, responses=ERROR_RESPONSES)
def request_refresh() -> RefreshStarted:
    return list_service().request_refresh(current_caller(app))


def refresh_record(record: SQSRecord) -> None:
    list_service().handle_record(
        record.body,
        message_id=record.message_id,
        receipt_handle=record.receipt_handle,
        receive_count=int(record.attributes.approximate_receive_count),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=refresh_record, processor=processor, context=context
        )
    if event.get("action") == "fan_out":
        return {"queued": list_service().fan_out()}
    return app.resolve(event, context)
