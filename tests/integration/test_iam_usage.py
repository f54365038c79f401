"""The IAM grants in infra/permissions.py against the AWS calls the handlers really make: a
handler must never need an action its role lacks (it would fail only once deployed)."""

from __future__ import annotations

from infra.api_routes import FunctionName
from infra.permissions import handler_actions
from sandbox.simulators.harness import truncate_to_millis
from tests.integration.conftest import AWS_CALLS, Service
from tests.integration.helpers import cost_item

# Granted for what the flow below cannot show: disconnect (wipes lists, deletes the token secret)
# and reconnect (rewrites it) arrive with the connection lifecycle; CreateSecret with tags needs
# TagResource without calling it.
NOT_YET_EXERCISED = {
    FunctionName.OAUTH_CALLBACK: {
        "dynamodb:BatchWriteItem",
        "dynamodb:Query",
        "secretsmanager:DeleteSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:TagResource",
    },
    # PutItem: a Sage token (dynamodb-kms store) rotated during a refresh; this flow is Xero's.
    FunctionName.REFRESH_LISTS: {"dynamodb:DeleteItem", "dynamodb:PutItem"},
    FunctionName.PUBLISH_ITEM: {"dynamodb:DeleteItem"},
    FunctionName.MERGE_LISTS: set(),
}


def test_every_call_a_handler_makes_is_granted_to_its_role(service: Service):
    AWS_CALLS.clear()
    service.connect_xero()
    api = service.client()
    service.session.client("s3").put_object(
        Bucket=service.resources.documents_bucket, Key="docs/cap-iam.pdf", Body=b"%PDF"
    )
    service.clock.advance(31 * 60)  # the publish refreshes the token under the lease
    # A long Retry-After puts the message back with a visibility timeout...
    service.xero.inject_fault("429", "/api.xro/2.0/Invoices", method="PUT", count=1, retry_after=120)
    api.post(
        "/v1/items",
        json={"item": cost_item(api, "cap-later", supplier="Avon Security & Sons"), "publish": True},
    )
    service.drain()
    service.session.client("sqs").purge_queue(QueueUrl=service.resources.publish_queue_url)
    # ...and an item with a document goes all the way.
    api.post(
        "/v1/items",
        json={
            "item": cost_item(api, "cap-iam", supplier="Avon Security & Sons", document=True),
            "publish": True,
        },
    )
    service.drain()
    assert api.get("/v1/items/cap-iam").json()["status"] == "published"
    service.clock.advance(3 * 3600)
    # A contact renamed in Xero: the incremental refresh looks up only that record's fingerprint.
    organisation = service.xero.org(api.get("/v1/connection").json()["organisation"]["name"])
    with service.xero.lock:
        contact = next(iter(organisation.contacts.values()))
        contact["Name"] += " (renamed)"
        contact["UpdatedDateUTC"] = truncate_to_millis(service.clock.now())
    assert api.post("/v1/connection/refresh").status_code == 202
    service.drain()
    # A refresh stopped by a 5xx holds its message back before carrying on.
    service.xero.inject_fault("500", "/api.xro/2.0/Accounts", count=4)
    service.host.invoke(FunctionName.REFRESH_LISTS, {"source": "ledgerlink.schedule", "action": "fan_out"})
    service.drain()
    _rules_and_a_merge(service)

    for function in FunctionName:
        used = AWS_CALLS.get(function, set())
        # KMS is called by Secrets Manager and DynamoDB on the handler's behalf, never by the handler.
        granted = {action for action in handler_actions(function) if not action.startswith("kms:")}
        assert used <= granted, f"{function}: calls not granted: {sorted(used - granted)}"
        unused = granted - used - NOT_YET_EXERCISED[function]
        assert not unused, f"{function}: granted but never used: {sorted(unused)}"
    assert "sqs:ChangeMessageVisibility" in AWS_CALLS[FunctionName.PUBLISH_ITEM]
    assert "sqs:ChangeMessageVisibility" in AWS_CALLS[FunctionName.REFRESH_LISTS]
    assert "secretsmanager:PutSecretValue" in AWS_CALLS[FunctionName.PUBLISH_ITEM]
    assert "dynamodb:UpdateItem" in AWS_CALLS[FunctionName.MERGE_LISTS]  # inside TransactWriteItems


def _rules_and_a_merge(service: Service) -> None:
    """merge_lists: a rule that auto-publishes a waiting item (SQS), one deleted, then Change
    connection, a merge applied (a transaction, an event) and undone."""
    api = service.client()
    api.put("/v1/connection/settings", json={"auto_publish": True})
    api.post(
        "/v1/items",
        json={"item": cost_item(api, "cap-rule", supplier="Avon Security & Sons"), "publish": False},
    )
    saved = api.put("/v1/rules/suppliers/avon", json={"name": "Avon Security & Sons", "auto_publish": True})
    assert saved.json()["queued_items"] == ["cap-rule"]
    api.put("/v1/rules/suppliers/gone", json={"name": "Gone Ltd"})
    assert api.delete("/v1/rules/suppliers/gone").status_code == 204
    api.post("/v1/items", json={"item": cost_item(api, "cap-merge", supplier="Avon Security & Sons")})
    current = api.get("/v1/connection").json()["organisation"]["id"]
    started = api.post("/v1/connection/change", json={})
    service.consent(started.json()["authorize_url"], [t for t in service.xero.orgs if t != current][:1])
    service.drain()
    proposal = api.post("/v1/connection/merge-lists/preview").json()
    assert (
        api.post(
            "/v1/connection/merge-lists/apply", json={"proposal_id": proposal["proposal_id"]}
        ).status_code
        == 200
    )
    assert (
        api.post("/v1/connection/merge-lists/undo", json={"proposal_id": proposal["proposal_id"]}).status_code
        == 200
    )
