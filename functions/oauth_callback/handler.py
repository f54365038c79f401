"""Connection lifecycle API: connect, OAuth callback, organisation choice, status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from ledgerlink.api.http import ERROR_RESPONSES, build_resolver, current_caller
from ledgerlink.api.schemas import (
    CallbackResult,
    ChooseOrganisationRequest,
    ConnectionView,
    ConnectRequest,
    ConnectStarted,
    OrganisationsView,
    ProvidersView,
)
from ledgerlink.observability import logger, metrics, tracer
from ledgerlink.wiring import connection_service

app = build_resolver()


@app.get("/v1/providers", responses=ERROR_RESPONSES)
def list_providers() -> ProvidersView:
    current_caller(app)
    return connection_service().providers()


@app.post("/v1/connection", status_code=201, responses=ERROR_RESPONSES)
def start_connect(request: ConnectRequest) -> ConnectStarted:
    return connection_service().start_connect(current_caller(app), request)


@app.get("/v1/oauth/callback", responses=ERROR_RESPONSES)
def oauth_callback() -> Response[CallbackResult | None]:
    result = connection_service().complete_oauth(app.current_event.query_string_parameters or {})
    if result.redirect_to:  # back to the capture product's page, which asked for it
        return Response(status_code=302, headers={"Location": result.redirect_to}, body=None)
    return Response(status_code=200, content_type="application/json", body=result)


@app.get("/v1/connection", responses=ERROR_RESPONSES)
def get_connection() -> ConnectionView:
    return connection_service().view(current_caller(app))


@app.get("/v1/connection/organisations", responses=ERROR_RESPONSES)
def list_organisations() -> OrganisationsView:
    return connection_service().organisations(current_caller(app))


@app.post("/v1/connection/organisation", responses=ERROR_RESPONSES)
def choose_organisation(request: ChooseOrganisationRequest) -> ConnectionView:
    return connection_service().choose_organisation(current_caller(app), request)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # responses can carry authorize URLs
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    return app.resolve(event, context)
