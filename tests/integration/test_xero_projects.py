"""Xero has two kinds of project: options of its two tracking categories (dimensions 1 and 2, which
code document lines) and, where the organisation has Xero Projects, the Projects API's projects.
Those are imported beside the tracking options so the capture product can show them, but no bill,
receipt or spend money line can carry one: rules and items that choose one are refused, saying to
use a tracking option."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Service
from tests.integration.helpers import cost_item, records

SUPPLIER = "Avon Security & Sons"


@pytest.fixture
def connected(service: Service) -> Service:
    service.connect_xero()
    return service


def _xero_projects(api: Any) -> list[dict[str, Any]]:
    return [p for p in records(api, "projects", status="all") if p["dimension"] is None]


def test_projects_api_projects_are_imported_beside_the_tracking_options(connected: Service):
    api = connected.client()
    organisation = connected.xero.org(api.get("/v1/connection").json()["organisation"]["name"])
    projects = _xero_projects(api)
    in_ledger = {p["projectId"]: p for p in organisation.projects.values()}
    assert {p["remote_id"] for p in projects} == set(in_ledger) and len(projects) == 5
    for project in projects:
        assert project["name"] == in_ledger[project["remote_id"]]["name"]
        assert project["dimension_name"] == "Xero Projects"
        assert project["raw"]["line_codable"] is False
        closed = in_ledger[project["remote_id"]]["status"] == "CLOSED"
        assert project["status"] == ("archived" if closed else "active")
    tracking = [p for p in records(api, "projects", status="all") if p["dimension"] is not None]
    assert {p["dimension_name"] for p in tracking} == {"Department", "Region"}
    assert {p["dimension"] for p in tracking} == {1, 2}
    calls = connected.xero.requests(path_glob="/projects.xro/2.0/Projects*")
    assert len(calls) == 1 and "states=INPROGRESS%2CCLOSED" in calls[0]["query"], calls


def test_an_organisation_without_xero_projects_has_tracking_options_only(connected: Service):
    api = connected.client()
    organisation = connected.xero.org(api.get("/v1/connection").json()["organisation"]["name"])
    with connected.xero.lock:
        organisation.projects_enabled = False  # Xero answers the Projects API 403 from now on
    assert api.post("/v1/connection/refresh").status_code == 202
    connected.drain()
    status = api.get("/v1/connection").json()
    assert status["status"] == "connected", status  # Xero's 403 here is no lost connection
    assert _xero_projects(api) == []  # the projects imported before are deleted
    assert len(records(api, "projects", status="all")) == status["lists"]["projects"]["record_count"] == 10


def test_a_rule_that_chooses_a_xero_projects_project_is_refused(connected: Service):
    api = connected.client()
    project = next(p for p in _xero_projects(api) if p["status"] == "active")
    for field_name in ("project", "project_2"):
        refused = api.put("/v1/rules/suppliers/avon", json={"name": SUPPLIER, field_name: project["id"]})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["field"] == field_name
        assert "use a tracking option" in error["message"] and project["name"] in error["message"]
    assert api.get("/v1/rules/suppliers").json()["rules"] == []


def test_an_item_coded_to_a_xero_projects_project_says_why_and_sends_nothing(connected: Service):
    api = connected.client()
    project = next(p for p in _xero_projects(api) if p["status"] == "active")
    item = cost_item(api, "cap-project", supplier=SUPPLIER)
    item["lines"][0]["project"] = project["id"]
    assert api.post("/v1/items", json={"item": item, "publish": False}).status_code == 201
    preview = api.post("/v1/items/cap-project/preview").json()
    assert preview["ready"] is False
    problem = preview["plan"]["problems"][0]
    assert (problem["code"], problem["field"]) == ("project_not_on_lines", "lines[0].project")
    assert "tracking option" in problem["hint"]

    assert api.post("/v1/items/cap-project/publish").status_code == 202
    connected.drain()
    rejected = api.get("/v1/items/cap-project").json()
    assert rejected["status"] == "rejected"
    assert rejected["last_error"]["code"] == "project_not_on_lines"
    assert connected.xero.writes(kind="Invoice") == []

    # Coded to a tracking option instead, it publishes with that option on its line.
    option = next(p for p in records(api, "projects") if p["dimension"] == 1)
    lines = [{**rejected["item"]["lines"][0], "project": option["id"]}]
    assert api.patch("/v1/items/cap-project", json={"lines": lines}).status_code == 200
    assert api.post("/v1/items/cap-project/publish").status_code == 202
    connected.drain()
    assert api.get("/v1/items/cap-project").json()["status"] == "published"
    [bill] = connected.xero.writes(kind="Invoice")
    [tracking] = bill["body"]["LineItems"][0]["Tracking"]
    assert (tracking["TrackingCategoryID"], tracking["TrackingOptionID"]) == (
        option["dimension_remote_id"],
        option["remote_id"],
    )
