"""Supplier rules and Merge Lists (not built yet: answers 501 with a clear body)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ledgerlink.api.auth import require_admin
from ledgerlink.api.http import ERROR_RESPONSES, build_resolver, current_caller
from ledgerlink.errors import NotYetAvailable
from ledgerlink.observability import logger, metrics, tracer

app = build_resolver()


@app.post("/v1/connection/merge-lists/preview", responses=ERROR_RESPONSES)
def preview_merge() -> dict[str, Any]:
    require_admin(current_caller(app), "merge lists")
    raise NotYetAvailable("Merge Lists is not available yet in this version of ledgerlink")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    return app.resolve(event, context)
