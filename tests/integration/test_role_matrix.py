"""Every route by {admin, standard, no sign-in, another business}: only Admins change anything,
nobody signed out gets in, and one business never sees another's resources (404, not 403)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.api_routes import ROUTES
from tests.integration.conftest import API_URL, Service

ADMIN_ONLY = {
    ("POST", "/v1/connection"),
    ("POST", "/v1/connection/organisation"),
    ("POST", "/v1/connection/reconnect"),
    ("POST", "/v1/connection/change"),
    ("DELETE", "/v1/connection"),
    ("PUT", "/v1/connection/settings"),
    ("PUT", "/v1/licences/{feature}"),
    ("DELETE", "/v1/licences/{feature}"),
    ("POST", "/v1/connection/merge-lists/preview"),
    ("POST", "/v1/connection/refresh"),
    ("POST", "/v1/connection/merge-lists/apply"),
    ("POST", "/v1/connection/merge-lists/undo"),
    ("PUT", "/v1/rules/suppliers/{key}"),
    ("DELETE", "/v1/rules/suppliers/{key}"),
    ("PUT", "/v1/rules/customers/{key}"),
    ("DELETE", "/v1/rules/customers/{key}"),
}
# Routes whose resource belongs to a business: another business gets 404 for them.
BUSINESS_RESOURCES = {
    ("GET", "/v1/connection"),
    ("GET", "/v1/connection/organisations"),
    ("GET", "/v1/connection/settings"),
    ("GET", "/v1/lists/{list_type}"),
    ("POST", "/v1/connection/refresh"),
    ("GET", "/v1/items/{item_id}"),
    ("GET", "/v1/rules/suppliers/{key}"),
    ("GET", "/v1/rules/customers/{key}"),
}
PATHS = {
    "{list_type}": "categories",
    "{item_id}": "cap-matrix",
    "{feature}": "commerce",
    "{key}": "matrix-key",
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/connection"): {"provider": "xero"},
    ("POST", "/v1/connection/organisation"): {"organisation_id": "x"},
    ("POST", "/v1/connection/reconnect"): {},
    ("POST", "/v1/connection/change"): {},
    ("PUT", "/v1/connection/settings"): {},
    ("PUT", "/v1/licences/{feature}"): {"provider": "xero"},
    ("PATCH", "/v1/items/{item_id}"): {"reference": "edited"},
    ("POST", "/v1/connection/merge-lists/apply"): {"proposal_id": "matrix"},
    ("POST", "/v1/connection/merge-lists/undo"): {"proposal_id": "matrix"},
    ("PUT", "/v1/rules/suppliers/{key}"): {"name": "Matrix Supplier"},
    ("PUT", "/v1/rules/customers/{key}"): {"name": "Matrix Customer"},
}


def _path(template: str) -> str:
    for placeholder, value in PATHS.items():
        template = template.replace(placeholder, value)
    return template


@pytest.fixture(scope="module")
def matrix_routes() -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in ROUTES if not r.public]


def test_the_matrix_covers_every_route(matrix_routes):
    assert set(matrix_routes) >= ADMIN_ONLY and set(matrix_routes) >= BUSINESS_RESOURCES


def test_every_route_by_role(service: Service, matrix_routes):
    service.connect_xero()
    admin = service.client()
    from tests.integration.helpers import cost_item

    item = cost_item(admin, "cap-matrix", supplier="Avon Security & Sons")
    admin.post("/v1/items", json={"item": item, "publish": False})
    BODIES[("POST", "/v1/items")] = {"item": item, "publish": False}
    for kind in ("suppliers", "customers"):  # so a standard user can read one
        assert admin.put(f"/v1/rules/{kind}/matrix-key", json={"name": "Matrix Party"}).status_code == 200
    standard = service.client(role="standard")
    other_business = service.client(business="biz-other")
    anonymous = service.browser()
    for method, template in matrix_routes:
        path, body = _path(template), BODIES.get((method, template))
        label = f"{method} {template}"

        signed_out = anonymous.request(method, f"{API_URL}{path}", json=body)
        assert signed_out.status_code == 401, label

        as_standard = standard.request(method, path, json=body)
        if (method, template) in ADMIN_ONLY:
            assert as_standard.status_code == 403, f"{label}: {as_standard.status_code}"
            assert as_standard.json()["error"]["code"] == "forbidden"
        else:
            assert as_standard.status_code < 400, (
                f"{label}: {as_standard.status_code} {as_standard.text[:200]}"
            )

        if (method, template) in BUSINESS_RESOURCES:
            foreign = other_business.request(method, path, json=body)
            assert foreign.status_code == 404, f"{label}: another business got {foreign.status_code}"
