"""Intuit's own clients, unchanged, against the QuickBooks simulator served on a loopback port:
intuitlib's ``AuthClient`` (pointed at the simulator's discovery document) runs authorize →
callback with realmId → token → refresh → revoke, and python-quickbooks pages vendors, reads CDC,
creates a bill, runs a batch, replays a ``requestid`` and uploads an attachment.

python-quickbooks builds every URL from ``QuickBooks.api_url`` (``api_url_v3``, or
``sandbox_api_url_v3`` for a ``sandbox`` auth client): setting that attribute on the instance to
``<served URL>/v3`` is all it takes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from qbo_sim_helpers import REDIRECT_URI, account_id, tax_code_id
from quickbooks import QuickBooks
from quickbooks.batch import BatchManager
from quickbooks.cdc import change_data_capture
from quickbooks.objects.attachable import Attachable
from quickbooks.objects.base import AttachableRef, Ref
from quickbooks.objects.bill import Bill
from quickbooks.objects.detailline import AccountBasedExpenseLine, AccountBasedExpenseLineDetail
from quickbooks.objects.vendor import Vendor

from sandbox.simulators.harness import DEFAULT_APP, SimClock
from sandbox.simulators.quickbooks import QuickBooksSimulator
from sandbox.simulators.serve import RunningServer, serve_in_thread


@pytest.fixture
def qbo() -> QuickBooksSimulator:
    # intuitlib checks the id_token's expiry against the wall clock: start the frozen clock at now.
    return QuickBooksSimulator(SimClock(datetime.now(UTC)), auto_consent=True)


@pytest.fixture
def server(qbo: QuickBooksSimulator) -> Iterator[RunningServer]:
    with serve_in_thread(qbo.wsgi_app) as running:
        yield running


def auth_client(server: RunningServer, **tokens: str) -> AuthClient:
    return AuthClient(DEFAULT_APP.client_id, DEFAULT_APP.client_secret, REDIRECT_URI,
                      environment=f"{server.url}/.well-known/openid_configuration", **tokens)


def test_intuitlib_runs_the_whole_oauth_flow(qbo: QuickBooksSimulator, server: RunningServer) -> None:
    client = auth_client(server)
    url = client.get_authorization_url([Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL])
    assert url.startswith(f"{server.url}/connect/oauth2?")
    callback = httpx.get(url, follow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback.headers["Location"]).query).items()}
    assert query["state"] == client.state_token

    client.get_bearer_token(query["code"], realm_id=query["realmId"])
    assert client.realm_id == qbo.company("Demo Company (UK)").realm_id
    assert (client.expires_in, client.x_refresh_token_expires_in) == (3600, 8726400)
    assert client.id_token  # verified by intuitlib against the simulator's JWKS
    assert client.get_user_info().json()["email"] == "admin@example.com"

    first_refresh = client.refresh_token
    client.refresh()
    assert client.refresh_token != first_refresh

    assert client.revoke() is True
    with pytest.raises(AuthClientError) as refused:
        client.refresh()
    assert refused.value.status_code == 400


@pytest.fixture
def qb(qbo: QuickBooksSimulator, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> QuickBooks:
    # requests-oauthlib (python-quickbooks' session) insists on https unless told loopback is fine.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    tokens = qbo.mint_tokens(["Demo Company (UK)"])
    # No access token yet: python-quickbooks refreshes through intuitlib before its first call.
    client = QuickBooks(auth_client=auth_client(server), refresh_token=tokens["refresh_token"],
                        company_id=tokens["realmId"], minorversion=75)
    client.api_url_v3 = f"{server.url}/v3"
    return client


def sdk_bill(qbo: QuickBooksSimulator, realm_id: str, vendor_id: str, amount: float = 100.0) -> Bill:
    detail = AccountBasedExpenseLineDetail()
    detail.AccountRef = Ref()
    detail.AccountRef.value = account_id(qbo, realm_id, "429")
    detail.TaxCodeRef = Ref()
    detail.TaxCodeRef.value = tax_code_id(qbo, realm_id)
    line = AccountBasedExpenseLine()
    line.Amount = amount
    line.Description = "Printer paper"
    line.AccountBasedExpenseLineDetail = detail
    created = Bill()
    created.VendorRef = Ref()
    created.VendorRef.value = vendor_id
    created.TxnDate = qbo.clock.today().isoformat()
    created.Line.append(line)
    return created


def test_python_quickbooks_pages_reads_cdc_writes_batches_and_uploads(
        qbo: QuickBooksSimulator, qb: QuickBooks) -> None:
    realm = str(qb.company_id)
    vendors, start = [], 1
    while True:
        page = Vendor.where("Active IN (true,false)", start_position=start, max_results=25, qb=qb)
        vendors += page
        if len(page) < 25:
            break
        start += 25
    assert len({v.Id for v in vendors}) == Vendor.count("Active IN (true,false)", qb=qb) == 75
    assert all(v.Active for v in Vendor.all(max_results=1000, qb=qb))

    vendor_id = next(v.Id for v in vendors if v.Active)
    saved = sdk_bill(qbo, realm, vendor_id).save(qb=qb, request_id="capture-1-rev-1")
    replayed = sdk_bill(qbo, realm, vendor_id).save(qb=qb, request_id="capture-1-rev-1")
    assert saved.Id == replayed.Id and saved.TotalAmt == 120.0
    assert len(qbo.writes(kind="Bill")) == 1

    # A datetime would go out without an offset (read as Intuit server time): send ISO with one.
    since = (qbo.clock.now() - timedelta(minutes=1)).isoformat(timespec="seconds")
    changes = change_data_capture([Vendor, Bill], since, qb=qb)
    assert [b.Id for b in changes.Bill] == [saved.Id]

    result = BatchManager("create").save([sdk_bill(qbo, realm, vendor_id, 50.0), sdk_bill(qbo, realm, "99999")],
                                         qb=qb)
    assert len(result.successes) == 1 and len(result.faults) == 1
    assert result.faults[0].Error[0].code == "2500"
    assert len(qbo.writes(kind="Bill")) == 2

    attachment = Attachable()
    ref = AttachableRef()
    ref.EntityRef = Ref()
    ref.EntityRef.type, ref.EntityRef.value = "Bill", saved.Id
    attachment.AttachableRef.append(ref)
    attachment.FileName, attachment.ContentType = "receipt.pdf", "application/pdf"
    attachment._FileBytes = b"%PDF-1.4 a receipt"
    uploaded = attachment.save(qb=qb)
    assert uploaded.Size == len(b"%PDF-1.4 a receipt")
    [entry] = qbo.requests(path_glob="/v3/company/*/upload")
    assert entry["headers"]["User-Agent"] == "python-quickbooks V3 library"
