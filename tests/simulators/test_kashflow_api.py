"""KashFlow REST v2: bare and paged lists (to the end by NextPageUrl), purchase validation in
ModelState, duplicates on retry (no idempotency), invoices, suppliers, files, 429 and faults."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kashflow_sim_helpers import BASE_URL, KashFlowApi, model_state, new_simulator, purchase

from sandbox.simulators.harness import SimClock
from sandbox.simulators.kashflow import KashFlowSimulator

PDF = b"%PDF-1.4 receipt"


@pytest.fixture
def sim(clock: SimClock) -> KashFlowSimulator:
    return new_simulator(clock)


@pytest.fixture
def api(sim: KashFlowSimulator) -> Iterator[KashFlowApi]:
    with httpx.Client(transport=sim.transport(), base_url=BASE_URL) as http:
        yield KashFlowApi(http, sim.mint_tokens()["SessionToken"])


@pytest.fixture
def supplier_code(api: KashFlowApi) -> str:
    return str(api.get("suppliers", params={"filterarchived": "true"}).json()["Data"][0]["Code"])


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_bare_lists(api: KashFlowApi) -> None:
    nominals = api.get("nominals").json()
    assert isinstance(nominals, list)
    paper = next(n for n in nominals if n["Code"] == 461)
    assert (paper["Name"], paper["Classification"], paper["VATRate"], paper["Archived"]) == (
        "Printing & Stationery", "Purchases", 20.0, False)
    assert any(n["Archived"] for n in nominals)  # archived nominals are listed with their flag
    assert {n["Classification"] for n in api.get("nominals", params={"type": "sales"}).json()} == {"Sales"}
    assert [n["Code"] for n in api.get("nominals", params={"searchText": "stationery"}).json()] == [461]

    assert api.get("vat/settings/vatrates").json() == [
        {"VATId": 1, "VATRate": 20.0, "VATText": "20%"}, {"VATId": 2, "VATRate": 5.0, "VATText": "5%"},
        {"VATId": 3, "VATRate": 0.0, "VATText": "0%"}]
    banks = api.get("bankaccounts").json()
    assert [(b["AccountName"], b["IsDefaultAccount"]) for b in banks] == [
        ("Business Current Account", True), ("Business Savings Account", False), ("Company Credit Card", False)]
    assert api.get("BankAccounts").status_code == 200  # paths are case-insensitive


def test_suppliers_page_to_the_end(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    company = next(iter(sim.companies.values()))
    first = api.get("suppliers").json()
    meta = first["MetaData"]
    assert meta["TotalRecords"] == len(company.suppliers) and len(first["Data"]) == 50
    assert meta["PreviousPageUrl"] is None
    assert meta["NextPageUrl"] == f"{BASE_URL}/v2/suppliers?page=2&perpage=50"
    assert meta["LastPageUrl"] == f"{BASE_URL}/v2/suppliers?page=2&perpage=50"

    rows = api.all_pages("suppliers", perpage=20)
    assert len(rows) == len(company.suppliers) == len({r["Code"] for r in rows})
    assert [r["Code"] for r in rows] == sorted(r["Code"] for r in rows)
    assert any(r["IsArchived"] for r in rows)  # archived suppliers are included, flagged
    active = api.all_pages("suppliers", filterarchived="true")
    assert not any(r["IsArchived"] for r in active) and len(active) < len(rows)
    assert "Address" not in rows[0]  # summaries; the detail has the rest
    detail = api.get(f"suppliers/{rows[0]['Code']}").json()
    assert detail["Address"]["CountryCode"] == "GB" and detail["PaymentTerms"] == 30
    assert api.get("suppliers/NOPE99").status_code == 404

    by_name = api.get("suppliers", params={"sortby": "Name", "order": "Desc", "perpage": 5}).json()["Data"]
    assert [r["Name"] for r in by_name] == sorted((r["Name"] for r in by_name), reverse=True)
    assert api.get("suppliers", params={"sortby": "Colour"}).status_code == 400
    sim.update_settings(max_page_size=10)
    assert len(api.get("suppliers", params={"perpage": 1000}).json()["Data"]) == 10  # clamped


def test_page_urls_as_paths(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    sim.update_settings(page_url_style="path")
    meta = api.get("customers", params={"perpage": 10}).json()["MetaData"]
    assert meta["NextPageUrl"] == "/v2/customers?page=2&perpage=10"
    assert len(api.all_pages("customers", perpage=10)) == meta["TotalRecords"]


def test_projects_and_products(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    projects = api.get("projects").json()
    assert projects["MetaData"]["TotalRecords"] == 5
    assert {p["Status"] for p in projects["Data"]} == {"Active", "Completed"}
    assert [p["Name"] for p in api.get("projects", params={"status": "Completed"}).json()["Data"]] == ["CRM rollout"]
    assert api.get("projects/1").json()["Number"] == 1
    sim.update_settings(projects_list_shape="bare")
    assert isinstance(api.get("projects").json(), list)
    products = api.all_pages("products", perpage=4)
    assert len(products) == 15 and {"Code", "Price", "NominalCode", "VATRate"} <= set(products[0])


def test_create_purchase(api: KashFlowApi, sim: KashFlowSimulator, supplier_code: str) -> None:
    body = purchase(supplier_code, PaymentLines=[{"AccountId": 100, "Amount": 120, "Date": "2026-10-30 00:00:00",
                                                  "Method": 2}])
    bought = created(api.post("purchases", json=body))
    assert (bought["Number"], bought["SupplierCode"], bought["SupplierReference"]) == (1, supplier_code, "SUP-INV-881")
    assert (bought["NetAmount"], bought["VATAmount"], bought["GrossAmount"], bought["Status"]) == (
        100.0, 20.0, 120.0, "Paid")
    assert bought["IssuedDate"] == "2026-10-30T00:00:00"
    [line] = bought["LineItems"]
    assert (line["NominalName"], line["VATLevel"], line["VATAmount"]) == ("Printing & Stationery", 20.0, 20.0)
    assert api.get("bankaccounts").json()[0]["Balance"] == -120.0
    [write] = sim.writes(kind="Purchase")
    assert write["id"] == "1"

    summary = api.get("purchases").json()["Data"][0]
    assert (summary["LineItems"], summary["PaymentLines"], summary["Currency"]) == (None, None, None)
    assert api.get(summary["Permalink"]).json()["LineItems"][0]["NominalCode"] == 461
    assert api.get("purchases", params={"suppliercode": "NOPE01"}).json()["Data"] == []


def test_purchase_validation(api: KashFlowApi, sim: KashFlowSimulator, supplier_code: str) -> None:
    errors = model_state(api.post("purchases", json={"SupplierCode": "NOPE01", "LineItems": []}))
    assert errors == {"SupplierCode": ["Supplier with code 'NOPE01' does not exist."],
                      "IssuedDate": ["The IssuedDate field is required."],
                      "DueDate": ["The DueDate field is required."],
                      "LineItems": ["At least one line item is required."]}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"NominalCode": 9999}, "LineItems[0].NominalCode", "Nominal code 9999 does not exist."),
        ({"NominalCode": 200}, "LineItems[0].NominalCode",
         "Nominal code 200 (Sales) is a Sales nominal; use a Purchases nominal."),
        ({"NominalCode": 90}, "LineItems[0].NominalCode",
         "Nominal code 90 (Business Current Account) is a Bank nominal; use a Purchases nominal."),
        ({"NominalCode": 450}, "LineItems[0].NominalCode",
         "Nominal code 450 (Motor Vehicle Expenses (pre-2023 leases)) is archived."),
        ({"VATLevel": 17.5}, "LineItems[0].VATLevel", "VAT level 17.5 is not one of the configured VAT rates (20, 5, 0)."),
        ({"VATLevel": 0.2}, "LineItems[0].VATLevel", "VAT level 0.2 is not one of the configured VAT rates (20, 5, 0)."),
        ({"Rate": None}, "LineItems[0].Rate", "The Rate field is required."),
    ]
    for line, field_path, message in cases:
        assert model_state(api.post("purchases", json=purchase(supplier_code, line=line))) == {field_path: [message]}
    not_a_bank = purchase(supplier_code, PaymentLines=[{"AccountId": 2026, "Amount": 10, "Date": "2026-10-30"}])
    assert model_state(api.post("purchases", json=not_a_bank)) == {
        "PaymentLines[0].AccountId": ["AccountId 2026 is not a bank account."]}
    overpaid = purchase(supplier_code, PaymentLines=[{"AccountId": 100, "Amount": 500, "Date": "2026-10-30"}])
    assert list(model_state(api.post("purchases", json=overpaid))) == ["PaymentLines"]
    assert sim.writes() == []

    sim.update_settings(error_format="message")
    flat = api.post("purchases", json=purchase(supplier_code, line={"VATLevel": 3}))
    assert flat.json() == {"Message": "VAT level 3 is not one of the configured VAT rates (20, 5, 0)."}


def test_vat_level_defaults_to_the_nominal_and_archived_suppliers(api: KashFlowApi, sim: KashFlowSimulator,
                                                                    supplier_code: str) -> None:
    line = {"NominalCode": 445, "VATLevel": None}  # Light, Power, Heating: reduced rate
    bought = created(api.post("purchases", json=purchase(supplier_code, line=line)))
    assert (bought["LineItems"][0]["VATLevel"], bought["VATAmount"]) == (5.0, 5.0)
    archived = next(s for s in api.all_pages("suppliers") if s["IsArchived"])
    assert list(model_state(api.post("purchases", json=purchase(archived["Code"])))) == ["SupplierCode"]
    sim.update_settings(reject_archived_references=False)
    assert api.post("purchases", json=purchase(archived["Code"])).status_code == 201


def test_no_idempotency_retries_duplicate(api: KashFlowApi, sim: KashFlowSimulator, supplier_code: str) -> None:
    sim.inject_fault("lost_response", "/v2/purchases", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        api.post("purchases", json=purchase(supplier_code))
    retried = created(api.post("purchases", json=purchase(supplier_code)))
    assert retried["Number"] == 2
    assert [w["id"] for w in sim.writes(kind="Purchase")] == ["1", "2"]
    # No incremental filter: a client dedupes by re-listing and matching its own reference.
    same_reference = [p for p in api.all_pages("purchases") if p["SupplierReference"] == "SUP-INV-881"]
    assert len(same_reference) == 2


def test_sales_invoice(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    customer = api.get("customers", params={"filterarchived": "true"}).json()["Data"][0]["Code"]
    body = {"CustomerCode": customer, "IssuedDate": "2026-11-02", "DueDate": "2026-12-02T00:00:00Z",
            "LineItems": [{"Description": "Consultancy", "Quantity": 3, "Rate": 95, "VATLevel": 20, "NominalCode": 200}]}
    invoice = created(api.post("invoices", json=body))
    assert (invoice["Number"], invoice["CustomerCode"], invoice["GrossAmount"], invoice["Status"]) == (
        1, customer, 342.0, "Unpaid")
    body["LineItems"][0]["NominalCode"] = 461
    assert model_state(api.post("invoices", json=body)) == {"LineItems[0].NominalCode": [
        "Nominal code 461 (Printing & Stationery) is a Purchases nominal; use a Sales nominal."]}
    assert model_state(api.post("invoices", json={**body, "Number": 1, "CustomerCode": customer,
                                                  "LineItems": [{**body["LineItems"][0], "NominalCode": 200}]})) == {
        "Number": ["Number 1 is already in use."]}
    assert api.get("invoices/1").json()["LineItems"][0]["Rate"] == 95.0


def test_create_suppliers_and_customers(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    supplier = created(api.post("suppliers", json={"Name": "Quayside Paper Co", "Email": "ap@quayside.example",
                                                  "DefaultNominalCode": 461}))
    assert supplier["Code"] == "QUAY01" and supplier["PaymentTerms"] == 30
    assert api.get("suppliers/quay01").json()["Name"] == "Quayside Paper Co"  # codes match case-insensitively
    assert model_state(api.post("suppliers", json={"Name": "Again", "Code": "QUAY01"})) == {
        "Code": ["Supplier code 'QUAY01' is already in use."]}
    assert model_state(api.post("customers", json={"Email": "x@example.com"})) == {"Name": ["The Name field is required."]}
    assert created(api.post("customers", json={"Name": "Quayside Paper Co"}))["Code"] == "QUAY01"
    assert [w["kind"] for w in sim.writes()] == ["Supplier", "Customer"]


def test_files_on_a_purchase(api: KashFlowApi, sim: KashFlowSimulator, supplier_code: str) -> None:
    created(api.post("purchases", json=purchase(supplier_code)))
    upload = {"Filename": "receipt.pdf", "ContentType": "application/pdf", "FileExtension": "pdf",
              "FileSize": len(PDF), "Base64String": base64.b64encode(PDF).decode()}
    stored = created(api.post("purchases/1/files", json=upload))
    assert (stored["FileName"], stored["Size"]) == ("receipt.pdf", len(PDF))
    assert api.get("purchases/1").json()["FileCount"] == 1
    assert [f["Id"] for f in api.get("purchases/1/files").json()] == [stored["Id"]]
    assert api.get(f"purchases/1/files/{stored['Id']}").content == PDF
    assert [w["kind"] for w in sim.writes()] == ["Purchase", "File"]

    assert model_state(api.post("purchases/1/files", json={**upload, "FileSize": 3})) == {
        "FileSize": [f"FileSize 3 does not match the {len(PDF)} bytes sent."]}
    assert list(model_state(api.post("purchases/1/files", json={**upload, "ContentType": "text/html"}))) == [
        "ContentType"]
    assert api.post("purchases/99/files", json=upload).status_code == 404
    assert api.post("quotes/1/files", json=upload).status_code == 404

    sim.update_settings(file_upload_format="multipart")
    assert api.post("purchases/1/files", json=upload).status_code == 400
    multipart = api.post("purchases/1/files", files={"file": ("scan.png", b"\x89PNG", "image/png")})
    assert created(multipart)["ContentType"] == "image/png"
    assert api.get("purchases/1").json()["FileCount"] == 2


def test_rate_limit_with_retry_after(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    sim.update_settings(rate_limit_per_minute=3)
    assert [api.get("vat/settings/vatrates").status_code for _ in range(4)] == [200, 200, 200, 429]
    limited = api.get("vat/settings/vatrates")
    assert limited.headers["Retry-After"] == "60"
    assert limited.json() == {"Message": "Too many requests. Please slow down."}
    sim.advance_clock(60)
    assert api.get("vat/settings/vatrates").status_code == 200


def test_faults(api: KashFlowApi, sim: KashFlowSimulator, supplier_code: str) -> None:
    sim.inject_fault("429", "/v2/suppliers", retry_after=5)
    limited = api.get("suppliers")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "5")
    sim.inject_fault("500", "/v2/suppliers")
    assert api.get("suppliers").json() == {"Message": "An error has occurred."}
    sim.inject_fault("503", "/v2/suppliers")
    assert api.get("suppliers").status_code == 503
    sim.inject_fault("timeout", "/v2/purchases", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        api.post("purchases", json=purchase(supplier_code))
    assert sim.writes() == []
    assert api.get("suppliers").status_code == 200
    assert api.request("PATCH", "suppliers").status_code == 405
    assert api.get("widgets").status_code == 404


def test_large_preset(api: KashFlowApi, sim: KashFlowSimulator) -> None:
    sim.seed("large")
    sim.update_settings(rate_limits_enabled=False)
    meta = api.get("suppliers", params={"perpage": 100}).json()["MetaData"]
    assert meta["TotalRecords"] == 5600
    last = api.get(meta["LastPageUrl"]).json()
    assert len(last["Data"]) == 100 and last["MetaData"]["NextPageUrl"] is None
    assert len(api.get("nominals").json()) == 500
