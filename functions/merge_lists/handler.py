"""Supplier and customer rules, and Merge Lists (preview, apply, undo)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from ledgerlink.api.http import ERROR_RESPONSES, build_resolver, current_caller
from ledgerlink.models.merge import (
    ApplyMergeRequest,
    MergeProposal,
    MergeResult,
    UndoMergeRequest,
    UndoResult,
)
from ledgerlink.models.rules import PartyRule, RuleKind, RuleSaved, RulesView, StoredRule
from ledgerlink.observability import logger, metrics, tracer
from ledgerlink.wiring import merge_service, rule_service

app = build_resolver()


# --- supplier rules ----------------------------------------------------------------------------------


@app.get("/v1/rules/suppliers", responses=ERROR_RESPONSES)
def list_supplier_rules() -> RulesView:
    return rule_service().all(current_caller(app), RuleKind.SUPPLIER)


@app.get("/v1/rules/suppliers/<key>", responses=ERROR_RESPONSES)
def get_supplier_rule(key: str) -> StoredRule:
    return rule_service().get(current_caller(app), RuleKind.SUPPLIER, key)


@app.put("/v1/rules/suppliers/<key>", responses=ERROR_RESPONSES)
def put_supplier_rule(key: str, rule: PartyRule) -> RuleSaved:
    return rule_service().put(current_caller(app), RuleKind.SUPPLIER, key, rule)


@app.delete("/v1/rules/suppliers/<key>", status_code=204, responses=ERROR_RESPONSES)
def delete_supplier_rule(key: str) -> Response[None]:
    rule_service().delete(current_caller(app), RuleKind.SUPPLIER, key)
    return Response(status_code=204, body=None)


# --- customer rules ----------------------------------------------------------------------------------


@app.get("/v1/rules/customers", responses=ERROR_RESPONSES)
def list_customer_rules() -> RulesView:
    return rule_service().all(current_caller(app), RuleKind.CUSTOMER)


@app.get("/v1/rules/customers/<key>", responses=ERROR_RESPONSES)
def get_customer_rule(key: str) -> StoredRule:
    return rule_service().get(current_caller(app), RuleKind.CUSTOMER, key)


@app.put("/v1/rules/customers/<key>", responses=ERROR_RESPONSES)
def put_customer_rule(key: str, rule: PartyRule) -> RuleSaved:
    return rule_service().put(current_caller(app), RuleKind.CUSTOMER, key, rule)


@app.delete("/v1/rules/customers/<key>", status_code=204, responses=ERROR_RESPONSES)
def delete_customer_rule(key: str) -> Response[None]:
    rule_service().delete(current_caller(app), RuleKind.CUSTOMER, key)
    return Response(status_code=204, body=None)


# --- Merge Lists -------------------------------------------------------------------------------------


@app.post("/v1/connection/merge-lists/preview", responses=ERROR_RESPONSES)
def preview_merge() -> MergeProposal:
    return merge_service().preview(current_caller(app))


@app.post("/v1/connection/merge-lists/apply", responses=ERROR_RESPONSES)
def apply_merge(request: ApplyMergeRequest) -> MergeResult:
    return merge_service().apply(current_caller(app), request)


@app.post("/v1/connection/merge-lists/undo", responses=ERROR_RESPONSES)
def undo_merge(request: UndoMergeRequest) -> UndoResult:
    return merge_service().undo(current_caller(app), request)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    return app.resolve(event, context)
