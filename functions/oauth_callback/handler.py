"""Connection lifecycle API: providers, connect, OAuth callback, organisation choice, status,
settings, reconnect, change, disconnect, licences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from ledgerlink.api.http import (
    ERROR_RESPONSES,
    OAUTH_REDIRECT,
    build_resolver,
    bundled_openapi,
    current_caller,
)
from ledgerlink.api.schemas import (
    CallbackResult,
    ChooseOrganisationRequest,
    ConnectionView,
    ConnectRequest,
    ConnectStarted,
    DisconnectResult,
    LicenceAssignment,
    LicencesView,
    OrganisationsView,
    ProvidersView,
    ReconnectRequest,
)
from ledgerlink.models.connection import PublishingSettings
from ledgerlink.models.licences import Licence
from ledgerlink.observability import logger, metrics, tracer
from ledgerlink.wiring import connection_service, licence_service, settings_service

app = build_resolver()


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_document() -> dict[str, Any]:
    return bundled_openapi()


@app.get("/v1/providers", responses=ERROR_RESPONSES)
def list_providers() -> ProvidersView:
    current_caller(app)
    return connection_service().providers()


@app.post("/v1/connection", status_code=201, responses=ERROR_RESPONSES)
def start_connect(request: ConnectRequest) -> ConnectStarted:
    return connection_service().start_connect(current_caller(app), request)


@app.get("/v1/oauth/callback", responses={**ERROR_RESPONSES, 302: OAUTH_REDIRECT})
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


@app.post("/v1/connection/reconnect", responses=ERROR_RESPONSES)
def start_reconnect(request: ReconnectRequest) -> ConnectStarted:
    return connection_service().start_reconnect(current_caller(app), request)


@app.post("/v1/connection/change", responses=ERROR_RESPONSES)
def start_change(request: ReconnectRequest) -> ConnectStarted:
    return connection_service().start_change(current_caller(app), request)


@app.delete("/v1/connection", responses=ERROR_RESPONSES)
def disconnect(keep_lists: Annotated[bool, Query()] = True) -> DisconnectResult:
    return connection_service().disconnect(current_caller(app), keep_lists=keep_lists)


@app.get("/v1/connection/settings", responses=ERROR_RESPONSES)
def get_settings() -> PublishingSettings:
    return settings_service().get(current_caller(app))


@app.put("/v1/connection/settings", responses=ERROR_RESPONSES)
def put_settings(settings: PublishingSettings) -> PublishingSettings:
    return settings_service().update(current_caller(app), settings)


@app.get("/v1/licences", responses=ERROR_RESPONSES)
def list_licences() -> LicencesView:
    return licence_service().view(current_caller(app))


@app.put("/v1/licences/<feature>", responses=ERROR_RESPONSES)
def assign_licence(feature: str, assignment: LicenceAssignment) -> Licence:
    return licence_service().assign(current_caller(app), feature, assignment)


@app.delete("/v1/licences/<feature>", responses=ERROR_RESPONSES)
def unassign_licence(feature: str) -> LicencesView:
    return licence_service().unassign(current_caller(app), feature)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # responses can carry authorize URLs
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    return app.resolve(event, context)
