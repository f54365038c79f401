"""Publishing: the capture queue's consumer (SQS FIFO) and the items API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from ledgerlink.api.http import ERROR_RESPONSES, build_resolver, current_caller
from ledgerlink.api.schemas import ItemPage, PublishPreview, SubmitItemRequest
from ledgerlink.models.items import ItemPatch, StoredItem
from ledgerlink.observability import logger, metrics, tracer
from ledgerlink.wiring import item_service, publish_consumer

app = build_resolver()


@app.post("/v1/items", status_code=201, responses=ERROR_RESPONSES)
def submit_item(request: SubmitItemRequest) -> StoredItem:
    return item_service().submit(current_caller(app), request)


@app.get("/v1/items", responses=ERROR_RESPONSES)
def list_items(
    status: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ItemPage:
    return item_service().page(current_caller(app), status=status, cursor=cursor, limit=limit)


@app.get("/v1/items/<item_id>", responses=ERROR_RESPONSES)
def get_item(item_id: str) -> StoredItem:
    return item_service().get(current_caller(app), item_id)


@app.patch("/v1/items/<item_id>", responses=ERROR_RESPONSES)
def edit_item(item_id: str, patch: ItemPatch) -> StoredItem:
    return item_service().edit(current_caller(app), item_id, patch)


@app.post("/v1/items/<item_id>/preview", responses=ERROR_RESPONSES)
def preview_item(item_id: str) -> PublishPreview:
    return item_service().preview(current_caller(app), item_id)


@app.post("/v1/items/<item_id>/publish", status_code=202, responses=ERROR_RESPONSES)
def publish_item(item_id: str) -> StoredItem:
    return item_service().request_publish(current_caller(app), item_id)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    if "Records" in event:
        return publish_consumer().handle(event, context)
    return app.resolve(event, context)
