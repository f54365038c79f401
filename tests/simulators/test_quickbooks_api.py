"""The QuickBooks Accounting API: minorversion, the query language and paging, CDC, writes with
QBO's Fault codes, requestid replay, /batch, /upload, throttles and injected faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qbo_sim_helpers import QBO_URL, QboApi, account_id, active_vendor_id, bill, fault_code, tax_code_id

from sandbox.simulators.harness import DEFAULT_APP, SimClock
from sandbox.simulators.quickbooks import QuickBooksSimulator


@pytest.fixture
def qbo(clock: SimClock) -> QuickBooksSimulator:
    return QuickBooksSimulator(clock, auto_consent=True)


@pytest.fixture
def realm(qbo: QuickBooksSimulator) -> str:
    return qbo.company("Demo Company (UK)").realm_id


@pytest.fixture
def api(qbo: QuickBooksSimulator) -> Iterator[QboApi]:
    tokens = qbo.mint_tokens(["Demo Company (UK)"])
    with httpx.Client(transport=qbo.transport(), base_url=QBO_URL) as http:
        yield QboApi(http, tokens["access_token"], tokens["realmId"])


# -- request basics ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "74", "abc"])
def test_minorversion_below_75_or_missing_is_refused(api: QboApi, version: str | None) -> None:
    params = {} if version is None else {"minorversion": version}
    response = api.http.get(f"/v3/company/{api.realm_id}/preferences", params=params,
                            headers={"Authorization": f"Bearer {api.access_token}"})
    assert response.status_code == 400 and fault_code(response) == "2010"
    assert response.headers["intuit_tid"]


def test_minorversion_floor_is_a_setting(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.update_settings(min_minorversion=70)
    assert api.get("preferences", params={"minorversion": "73"}).status_code == 200


def test_company_info_preferences_and_single_reads(api: QboApi, qbo: QuickBooksSimulator, realm: str) -> None:
    info = api.get(f"companyinfo/{realm}").json()
    assert info["CompanyInfo"]["CompanyName"] == "Demo Company (UK)" and info["time"]
    prefs = api.get("preferences").json()["Preferences"]
    assert prefs["AccountingInfoPrefs"]["DepartmentTerminology"] == "Location"
    assert prefs["CurrencyPrefs"]["HomeCurrency"]["value"] == "GBP"
    vendor_id = active_vendor_id(qbo, realm)
    assert api.get(f"vendor/{vendor_id}").json()["Vendor"]["Id"] == vendor_id
    missing = api.get("vendor/99999")
    assert (missing.status_code, fault_code(missing)) == (400, "610")


# -- the query language --------------------------------------------------------------------------


# The statements below are QBO's query language sent to the simulator, not SQL (hence S608 noqa).


def test_pages_vendors_to_the_end_with_startposition(api: QboApi) -> None:
    total = api.query("SELECT COUNT(*) FROM Vendor WHERE Active IN (true,false)").json()["QueryResponse"]["totalCount"]
    seen: list[str] = []
    start = 1
    while True:
        statement = f"SELECT * FROM Vendor WHERE Active IN (true,false) STARTPOSITION {start} MAXRESULTS 20"  # noqa: S608
        page = api.rows(statement, "Vendor")
        seen += [v["Id"] for v in page]
        if len(page) < 20:
            break
        start += 20
    assert len(seen) == len(set(seen)) == total == 75
    past_the_end = api.query(f"SELECT * FROM Vendor STARTPOSITION {total + 1}").json()  # noqa: S608
    assert past_the_end["QueryResponse"] == {}


def test_inactive_names_are_left_out_unless_active_is_asked_about(api: QboApi) -> None:
    active = api.rows("SELECT * FROM Account MAXRESULTS 1000", "Account")
    every = api.rows("SELECT * FROM Account WHERE Active IN (true,false) MAXRESULTS 1000", "Account")
    inactive = api.rows("SELECT * FROM Account WHERE Active = false", "Account")
    assert len(every) == len(active) + len(inactive) and inactive
    assert all(a["Active"] for a in active) and not any(a["Active"] for a in inactive)
    assert api.rows("SELECT * FROM Class WHERE Active IN (true,false)", "Class")[-1]["Name"] == "Events (closed)"


def test_query_filters_order_select_and_like(api: QboApi) -> None:
    banks = api.rows("select * from Account where AccountType = 'Bank' order by Name desc", "Account")
    assert [a["Name"] for a in banks] == ["Business Savings Account", "Business Current Account"]
    named = api.rows("SELECT Id, DisplayName FROM Vendor WHERE DisplayName LIKE 'Avon%' ORDERBY DisplayName", "Vendor")
    assert named and all(set(v) <= {"Id", "DisplayName", "domain"} for v in named)
    assert all(v["DisplayName"].startswith("Avon") for v in named)
    some = api.rows("SELECT * FROM TaxCode WHERE Id IN ('1', '3')", "TaxCode")
    assert [c["Name"] for c in some] == ["20.0% S", "0.0% Z"]
    items = api.rows("SELECT *, Sku FROM Item WHERE Type = 'Service'", "Item")
    assert {i["Sku"] for i in items} == {"CONSULT-HR", "TRAIN-DAY"}


def test_last_updated_time_filters_for_incremental_sync(api: QboApi, qbo: QuickBooksSimulator) -> None:
    mark = "2026-11-02T01:00:00-08:00"  # the simulator's "now", in Intuit's server time
    since_mark = f"SELECT * FROM Vendor WHERE MetaData.LastUpdatedTime >= '{mark}'"  # noqa: S608
    assert api.query(since_mark).json()["QueryResponse"] == {}
    qbo.advance_clock(60)
    vendor_id = active_vendor_id(qbo, api.realm_id)
    api.post("vendor", json={"Id": vendor_id, "SyncToken": "0", "sparse": True, "Notes": "changed"})
    after_mark = f"SELECT * FROM Vendor WHERE MetaData.LastUpdatedTime > '{mark}' ORDER BY MetaData.LastUpdatedTime"  # noqa: S608
    changed = api.rows(after_mark, "Vendor")
    assert [v["Id"] for v in changed] == [vendor_id]


@pytest.mark.parametrize(("statement", "code"), [
    ("SELECT * FROM Vendor MAXRESULTS 1001", "4001"),
    ("SELECT * FROM Vendor WHERE Active = true OR DisplayName = 'x'", "4000"),
    ("SELECT * FROM Widget", "4001"),
    ("SELECT * FROM Vendor WHERE DisplayName != 'x'", "4000"),
    ("SELECT * FROM Vendor WHERE Colour = 'red'", "4001"),
    ("SELEKT * FROM Vendor", "4000"),
])
def test_query_errors_are_faults(api: QboApi, statement: str, code: str) -> None:
    response = api.query(statement)
    assert (response.status_code, fault_code(response)) == (400, code)


def test_query_also_takes_a_text_body(api: QboApi) -> None:
    response = api.post("query", content="SELECT COUNT(*) FROM Customer", headers={"Content-Type": "application/text"})
    assert response.json()["QueryResponse"]["totalCount"] > 50


# -- change data capture -------------------------------------------------------------------------


def test_cdc_returns_changes_and_deleted_rows(api: QboApi, qbo: QuickBooksSimulator) -> None:
    created = api.post("bill", json=bill(qbo, api.realm_id)).json()["Bill"]
    deleted = api.post("bill", params={"operation": "delete"}, json={"Id": created["Id"], "SyncToken": "0"})
    assert deleted.json()["Bill"]["status"] == "Deleted"
    response = api.get("cdc", params={"entities": "Bill,Vendor", "changedSince": "2026-10-20T00:00:00-07:00"}).json()
    bills, vendors = response["CDCResponse"][0]["QueryResponse"]
    assert bills["Bill"] == [{"domain": "QBO", "status": "Deleted", "Id": created["Id"],
                              "MetaData": {"LastUpdatedTime": "2026-11-02T01:00:00-08:00"}}]
    assert vendors["totalCount"] == len(vendors["Vendor"]) > 0
    assert any(not v["Active"] for v in vendors["Vendor"]) or all(v["Active"] for v in vendors["Vendor"])


def test_cdc_caps_objects_across_entities(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.update_settings(cdc_max_objects=5)
    response = api.get("cdc", params={"entities": "Vendor,Customer", "changedSince": "2026-10-05"}).json()
    counts = [r.get("totalCount", 0) for r in response["CDCResponse"][0]["QueryResponse"]]
    assert sum(counts) == 5


@pytest.mark.parametrize(("params", "code"), [
    ({"entities": "Vendor", "changedSince": "2026-09-01T00:00:00Z"}, "4001"),  # over 30 days back
    ({"entities": "TaxCode", "changedSince": "2026-10-30"}, "4001"),
    ({"changedSince": "2026-10-30"}, "2020"),
    ({"entities": "Vendor", "changedSince": "yesterday"}, "2010"),
])
def test_cdc_refusals(api: QboApi, params: dict[str, str], code: str) -> None:
    response = api.get("cdc", params=params)
    assert (response.status_code, fault_code(response)) == (400, code)


# -- writes --------------------------------------------------------------------------------------


def test_bill_create_computes_tax_and_totals(api: QboApi, qbo: QuickBooksSimulator) -> None:
    response = api.post("bill", json=bill(qbo, api.realm_id))
    assert response.status_code == 200, response.text
    created = response.json()["Bill"]
    assert (created["SyncToken"], created["TotalAmt"], created["Balance"]) == ("0", 120.0, 120.0)
    assert created["TxnTaxDetail"]["TotalTax"] == 20.0
    assert created["Line"][0]["AccountBasedExpenseLineDetail"]["ClassRef"]["name"] == "Sales"
    [entry] = qbo.writes(kind="Bill")
    assert entry["id"] == created["Id"] and entry["action"] == "create"


def test_tax_inclusive_lines_accept_net_or_gross(api: QboApi, qbo: QuickBooksSimulator) -> None:
    gross = api.post("bill", json=bill(qbo, api.realm_id, GlobalTaxCalculation="TaxInclusive")).json()["Bill"]
    assert (gross["TotalAmt"], gross["TxnTaxDetail"]["TotalTax"]) == (100.0, 16.67)
    net = api.post("bill", json=bill(qbo, api.realm_id, GlobalTaxCalculation="TaxInclusive",
                                     detail={"TaxInclusiveAmt": 120.0})).json()["Bill"]
    assert (net["TotalAmt"], net["TxnTaxDetail"]["TotalTax"]) == (120.0, 20.0)


def _inactive(qbo: QuickBooksSimulator, realm: str, entity: str) -> str:
    return next(r["Id"] for r in qbo.companies[realm].entities[entity].values() if not r["Active"])


@pytest.mark.parametrize(("change", "code"), [
    ({"VendorRef": {"value": "9999"}}, "2500"),
    ({"VendorRef": None}, "2020"),
    ({"Line": []}, "2020"),
    ({"detail": {"TaxCodeRef": None}}, "6000"),
    ({"detail": {"AccountRef": {"value": "9999"}}}, "2500"),
    ({"detail": {"ClassRef": {"value": "5"}}}, "610"),  # "Events (closed)" is inactive
    ({"TxnDate": "2026-06-30"}, "6000"),  # on the closing date
    ({"DocNumber": "X" * 22}, "2050"),
    ({"CurrencyRef": {"value": "EUR"}}, "6000"),
])
def test_bill_validation_faults(api: QboApi, qbo: QuickBooksSimulator, change: dict[str, Any], code: str) -> None:
    response = api.post("bill", json=bill(qbo, api.realm_id, **change))
    assert (response.status_code, fault_code(response)) == (400, code), response.text
    assert response.json()["Fault"]["type"] == "ValidationFault"
    assert qbo.writes() == []


def test_inactive_vendor_is_610(api: QboApi, qbo: QuickBooksSimulator) -> None:
    vendor = {"value": _inactive(qbo, api.realm_id, "Vendor")}
    response = api.post("bill", json=bill(qbo, api.realm_id, VendorRef=vendor))
    assert fault_code(response) == "610"
    assert "made inactive" in response.json()["Fault"]["Error"][0]["Detail"]


def test_update_needs_the_current_sync_token_and_sparse_keeps_the_rest(api: QboApi, qbo: QuickBooksSimulator) -> None:
    created = api.post("vendor", json={"DisplayName": "Quayside Paper Co", "CompanyName": "Quayside Paper Co",
                                       "PrimaryEmailAddr": {"Address": "sales@quayside.example"}}).json()["Vendor"]
    updated = api.post("vendor", json={"Id": created["Id"], "SyncToken": "0", "sparse": True,
                                       "CompanyName": "Quayside Paper Company"}).json()["Vendor"]
    assert (updated["SyncToken"], updated["CompanyName"]) == ("1", "Quayside Paper Company")
    assert updated["PrimaryEmailAddr"]["Address"] == "sales@quayside.example"
    stale = api.post("vendor", json={"Id": created["Id"], "SyncToken": "0", "sparse": True, "Notes": "x"})
    assert (stale.status_code, fault_code(stale)) == (400, "5010")
    assert [w["action"] for w in qbo.writes(kind="Vendor")] == ["create", "update"]


def test_display_names_are_unique_across_vendors_customers_and_employees(api: QboApi, qbo: QuickBooksSimulator) -> None:
    customer = next(iter(qbo.companies[api.realm_id].entities["Customer"].values()))["DisplayName"]
    clash = api.post("vendor", json={"DisplayName": customer.upper()})
    assert (clash.status_code, fault_code(clash)) == (400, "6240")
    employee = api.post("customer", json={"GivenName": "Alex", "FamilyName": "Morgan"})
    assert fault_code(employee) == "6240"  # derived DisplayName "Alex Morgan" is an employee's
    assert api.post("customer", json={"DisplayName": "Brand New Customer Ltd"}).status_code == 200


def test_invoice_rules(api: QboApi, qbo: QuickBooksSimulator) -> None:
    company = qbo.companies[api.realm_id]
    customer = next(c["Id"] for c in company.entities["Customer"].values() if c["Active"])
    item = next(i for i in company.entities["Item"].values() if i["Sku"] == "CONSULT-HR")

    def invoice(**line: Any) -> dict[str, Any]:
        detail = {"ItemRef": {"value": item["Id"]}, "Qty": 2, "UnitPrice": 95,
                  "TaxCodeRef": {"value": tax_code_id(qbo, api.realm_id)}, **line}
        return {"CustomerRef": {"value": customer}, "DocNumber": "INV-77", "TxnDate": "2026-10-31",
                "Line": [{"DetailType": "SalesItemLineDetail", "Amount": 190, "SalesItemLineDetail": detail}]}

    created = api.post("invoice", json=invoice()).json()["Invoice"]
    assert created["TotalAmt"] == 228.0
    assert fault_code(api.post("invoice", json=invoice())) == "6140"  # DocNumber taken
    wrong_sum = invoice(Qty=3)
    wrong_sum["DocNumber"] = "INV-78"
    assert fault_code(api.post("invoice", json=wrong_sum)) == "6070"
    no_item = invoice(ItemRef=None)
    no_item["DocNumber"] = "INV-79"
    assert fault_code(api.post("invoice", json=no_item)) == "2020"


def test_purchase_must_be_paid_from_a_matching_account(api: QboApi, qbo: QuickBooksSimulator) -> None:
    body = bill(qbo, api.realm_id)
    for field in ("VendorRef", "DueDate"):
        body.pop(field)
    body |= {"PaymentType": "CreditCard", "AccountRef": {"value": account_id(qbo, api.realm_id, "090")},
             "EntityRef": {"value": active_vendor_id(qbo, api.realm_id), "type": "Vendor"}}
    assert fault_code(api.post("purchase", json=body)) == "6000"  # a bank account, not a card
    body["AccountRef"] = {"value": account_id(qbo, api.realm_id, "092")}
    created = api.post("purchase", json=body).json()["Purchase"]
    assert created["TotalAmt"] == 120.0 and created["EntityRef"]["type"] == "Vendor"


def test_names_cannot_be_deleted_only_made_inactive(api: QboApi, qbo: QuickBooksSimulator) -> None:
    vendor_id = active_vendor_id(qbo, api.realm_id)
    response = api.post("vendor", params={"operation": "delete"}, json={"Id": vendor_id, "SyncToken": "0"})
    assert fault_code(response) == "500"


# -- requestid -----------------------------------------------------------------------------------


def test_requestid_replays_the_first_response(api: QboApi, qbo: QuickBooksSimulator) -> None:
    first = api.post("bill", params={"requestid": "item-9-rev-1"}, json=bill(qbo, api.realm_id))
    again = api.post("bill", params={"requestid": "item-9-rev-1"}, json=bill(qbo, api.realm_id, DocNumber="OTHER"))
    assert first.json()["Bill"]["Id"] == again.json()["Bill"]["Id"]
    assert again.headers["X-Sandbox-Idempotent-Replay"] == "true"
    assert len(qbo.writes(kind="Bill")) == 1
    assert qbo.writes(kind="Bill")[0]["idempotency_key"] == "item-9-rev-1"
    too_long = api.post("bill", params={"requestid": "x" * 51}, json=bill(qbo, api.realm_id))
    assert fault_code(too_long) == "2010"


def test_lost_response_then_retry_with_the_same_requestid(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.inject_fault("lost_response", f"/v3/company/{api.realm_id}/bill", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        api.post("bill", params={"requestid": "r-1"}, json=bill(qbo, api.realm_id))
    assert len(qbo.writes(kind="Bill")) == 1  # committed although the client saw a timeout
    retry = api.post("bill", params={"requestid": "r-1"}, json=bill(qbo, api.realm_id))
    assert retry.json()["Bill"]["Id"] == qbo.writes(kind="Bill")[0]["id"]
    assert len(qbo.writes(kind="Bill")) == 1


def test_requestid_window_is_a_setting(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.update_settings(requestid_window_seconds=600)
    api.post("bill", params={"requestid": "r-2"}, json=bill(qbo, api.realm_id))
    qbo.advance_clock(601)
    api.post("bill", params={"requestid": "r-2"}, json=bill(qbo, api.realm_id))
    assert len(qbo.writes(kind="Bill")) == 2


# -- batch ---------------------------------------------------------------------------------------


def test_batch_answers_per_item_with_faults_and_queries(api: QboApi, qbo: QuickBooksSimulator) -> None:
    good, bad = bill(qbo, api.realm_id), bill(qbo, api.realm_id, VendorRef={"value": "9999"})
    response = api.post("batch", json={"BatchItemRequest": [
        {"bId": "1", "operation": "create", "Bill": good},
        {"bId": "2", "operation": "create", "Bill": bad},
        {"bId": "3", "Query": "SELECT COUNT(*) FROM Vendor"},
    ]})
    assert response.status_code == 200
    items = {item["bId"]: item for item in response.json()["BatchItemResponse"]}
    assert items["1"]["Bill"]["TotalAmt"] == 120.0
    assert items["2"]["Fault"]["Error"][0]["code"] == "2500"
    assert items["3"]["QueryResponse"]["totalCount"] == 66
    assert len(qbo.writes(kind="Bill")) == 1


def test_batch_items_cannot_see_objects_created_earlier_in_the_batch(api: QboApi, qbo: QuickBooksSimulator) -> None:
    next_id = str(qbo.companies[api.realm_id].next_ids.get("Vendor", 1))
    response = api.post("batch", json={"BatchItemRequest": [
        {"bId": "1", "operation": "create", "Vendor": {"DisplayName": "Batch Vendor Ltd"}},
        {"bId": "2", "operation": "create", "Bill": bill(qbo, api.realm_id, VendorRef={"value": next_id})},
    ]}).json()["BatchItemResponse"]
    assert response[0]["Vendor"]["Id"] == next_id
    assert response[1]["Fault"]["Error"][0]["code"] == "2500"


def test_batch_size_and_item_ids(api: QboApi, qbo: QuickBooksSimulator) -> None:
    items = [{"bId": str(n), "Query": "SELECT * FROM Class"} for n in range(31)]
    assert fault_code(api.post("batch", json={"BatchItemRequest": items})) == "4001"
    qbo.update_settings(batch_max_items=40)
    assert api.post("batch", json={"BatchItemRequest": items}).status_code == 200
    long_ids = [{"bId": "a-very-long-item-id", "Query": "SELECT * FROM Class"}]
    with_request_id = api.post("batch", params={"requestid": "b-1"}, json={"BatchItemRequest": long_ids})
    assert fault_code(with_request_id) == "2010"


def test_batch_calls_have_their_own_rate_limit(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.update_settings(batch_minute_limit=2)
    body = {"BatchItemRequest": [{"bId": "1", "Query": "SELECT * FROM Class"}]}
    assert [api.post("batch", json=body).status_code for _ in range(3)] == [200, 200, 429]
    assert api.get("preferences").status_code == 200  # only batch calls are counted against it
    qbo.advance_clock(60)
    assert api.post("batch", json=body).status_code == 200


# -- upload --------------------------------------------------------------------------------------


def _multipart(metadata: str, content: bytes, content_type: str = "application/pdf") -> tuple[bytes, str]:
    boundary = "sandbox-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file_metadata_01\"\r\n"
            f"Content-Type: application/json\r\n\r\n{metadata}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file_content_01\"; filename=\"r.pdf\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_upload_attaches_a_file_to_an_existing_bill(api: QboApi, qbo: QuickBooksSimulator) -> None:
    bill_id = api.post("bill", json=bill(qbo, api.realm_id)).json()["Bill"]["Id"]
    metadata = json.dumps({"AttachableRef": [{"EntityRef": {"type": "Bill", "value": bill_id}}],
                           "FileName": "r.pdf", "ContentType": "application/pdf"})
    body, content_type = _multipart(metadata, b"%PDF-1.4 receipt")
    response = api.post("upload", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    attachable = response.json()["AttachableResponse"][0]["Attachable"]
    assert (attachable["Size"], attachable["AttachableRef"][0]["EntityRef"]) == (16, {"type": "Bill", "value": bill_id})
    assert api.http.get(attachable["TempDownloadUri"]).content == b"%PDF-1.4 receipt"
    linked = api.rows("SELECT * FROM Attachable", "Attachable")
    assert [a["Id"] for a in linked] == [attachable["Id"]]


@pytest.mark.parametrize(("metadata", "content_type", "code"), [
    ('{"AttachableRef":[{"EntityRef":{"type":"Bill","value":"999"}}],"FileName":"r.pdf"}', "application/pdf", "2500"),
    ('{"AttachableRef":[],"FileName":"r.exe","ContentType":"application/x-msdownload"}', "application/x-msdownload",
     "2010"),
    ('{"AttachableRef":[]}', "application/pdf", "2020"),
])
def test_upload_refusals(api: QboApi, metadata: str, content_type: str, code: str) -> None:
    body, multipart_type = _multipart(metadata, b"data", content_type)
    response = api.post("upload", content=body, headers={"Content-Type": multipart_type})
    assert (response.status_code, fault_code(response)) == (400, code)


# -- throttles and faults ------------------------------------------------------------------------


def test_minute_throttle_is_429_fault_003001_without_retry_after(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.update_settings(minute_limit=3)
    statuses = [api.get("preferences").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = api.get("preferences")
    assert fault_code(limited) == "003001" and "Retry-After" not in limited.headers
    qbo.update_settings(throttle_retry_after_seconds=30)
    assert api.get("preferences").headers["Retry-After"] == "30"
    qbo.advance_clock(60)
    assert api.get("preferences").status_code == 200


def test_ten_requests_in_flight_is_the_limit(api: QboApi, qbo: QuickBooksSimulator) -> None:
    gate = (DEFAULT_APP.client_id, api.realm_id)
    for _ in range(10):  # ten calls "in flight" for this app and company
        assert qbo.concurrency.try_enter(gate, None)
    response = api.get("preferences")
    assert (response.status_code, fault_code(response)) == (429, "003001")
    qbo.concurrency.leave(gate)
    assert api.get("preferences").status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("503", 503)])
def test_injected_faults_in_qbo_shapes(api: QboApi, qbo: QuickBooksSimulator, kind: str, status: int) -> None:
    qbo.inject_fault(kind, "/v3/company/*/query", count=1)
    response = api.query("SELECT * FROM Class")
    assert response.status_code == status
    if status != 503:
        assert response.json()["Fault"]["type"] in {"ValidationFault", "SystemFault"}
    assert api.query("SELECT * FROM Class").status_code == 200


def test_timeout_applies_nothing_and_revoke_fault_kills_the_token(api: QboApi, qbo: QuickBooksSimulator) -> None:
    qbo.inject_fault("timeout", "/v3/company/*/bill")
    with pytest.raises(httpx.ReadTimeout):
        api.post("bill", json=bill(qbo, api.realm_id))
    assert qbo.writes() == []
    qbo.inject_fault("revoke", "/v3/company/*")
    assert api.get("preferences").status_code == 401


def test_large_preset_maps_into_qbo_shapes(clock: SimClock) -> None:
    big = QuickBooksSimulator(clock, preset="large")
    tokens = big.mint_tokens()
    with httpx.Client(transport=big.transport(), base_url=QBO_URL) as http:
        api = QboApi(http, tokens["access_token"], tokens["realmId"])
        counts = {entity: api.query(f"SELECT COUNT(*) FROM {entity} WHERE Active IN (true,false)")  # noqa: S608
                  .json()["QueryResponse"]["totalCount"] for entity in ("Account", "Vendor", "Item")}
        assert counts == {"Account": 500, "Vendor": 5600, "Item": 1000}
        page = api.rows("SELECT * FROM Vendor STARTPOSITION 5001 MAXRESULTS 1000", "Vendor")
        assert 0 < len(page) < 1000
        projects = api.rows("SELECT * FROM Customer WHERE Job = true AND Active IN (true,false)", "Customer")
        assert len(projects) == 5 and all(p["IsProject"] for p in projects)
        assert [d["Name"] for d in api.rows("SELECT * FROM Department", "Department")][:2] == ["North", "South"]
