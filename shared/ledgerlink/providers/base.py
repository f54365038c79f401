"""What every ledger adapter shares: OAuth through authlib, token use, retries with backoff on 429
and 5xx honouring Retry-After, error mapping, and the paging loop. Each ledger module fills in only
its own calls and mappings (template method); its quirks are the named hooks below."""

from __future__ import annotations

import email.utils
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ledgerlink.clock import Clock
from ledgerlink.errors import (
    AuthRevoked,
    InvalidRequest,
    LedgerError,
    NotFound,
    RateLimited,
    Rejected,
    TokenEndpointUnavailable,
    Unavailable,
)
from ledgerlink.models.common import ListType
from ledgerlink.models.connection import Organisation
from ledgerlink.models.lists import ListRecord
from ledgerlink.models.publishing import PublishPlan, PublishResult
from ledgerlink.models.tokens import AppCredentials, TokenSet
from ledgerlink.observability import LEDGER_RATE_LIMITED, count, logger
from ledgerlink.providers.config import Capabilities, ProviderConfig

if TYPE_CHECKING:  # authlib costs ~100 ms of a cold start: imported only when OAuth is done
    from ledgerlink.providers.oauth_client import OAuth2Client

USER_AGENT = "ledgerlink/0.1 (+https://github.com/ledgerlink/ledgerlink)"
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# The OAuth callback runs while the Admin's browser waits behind API Gateway, which gives up on the
# integration at 29 s; and the ledger's authorization code dies soon after it was issued (Xero and
# Sage: about a minute). The code exchange and the organisation look-up together, waits and attempts
# included, get this long, which leaves room for a cold start and our own writes.
CALLBACK_BUDGET_SECONDS = 20.0
# Under a time budget, a retry that would start with less than this left is not made: the attempt
# could not finish, and the caller is better told now.
MIN_ATTEMPT_SECONDS = 2.0
# When the calls on this thread must be done by (a clock timestamp), set by ``time_budget``.
_DEADLINE: ContextVar[float | None] = ContextVar("ledger_call_deadline", default=None)


@dataclass
class LedgerSession:
    """What an API call needs: whose connection, which organisation, and a valid access token.

    ``access_token(force_refresh)`` comes from the token manager, which refreshes under a lease.
    """

    connection_id: str
    organisation_id: str | None
    access_token: Callable[[bool], str]
    # Called before every API call: the per-connection call budget shared by list refresh and
    # publishing (it raises RateLimited when the connection's share of the ledger's limit is spent).
    spend_call: Callable[[], None] = lambda: None
    # True while a paged list fetch holds pages that a stop would keep (``resumable_pages`` turns it
    # into a checkpoint): a refresh may then end its delivery on a budget wait and lose nothing.
    resumable: bool = False
    # The scopes the ledger granted, space-separated (None: not known). A connection made before
    # the app asked for a scope lacks it until it is reconnected.
    granted_scope: Callable[[], str | None] = lambda: None


@dataclass
class ListFetch:
    """One list as fetched: the records, and what the next incremental fetch starts from."""

    records: list[ListRecord]
    # True when ``records`` is the whole list, so anything stored but absent was deleted.
    complete: bool
    high_water: str | None = None
    deleted_remote_ids: list[str] = field(default_factory=list)
    calls: int = 0


class ListFetchInterrupted(Exception):
    """A paged list stopped part-way (a 429, a 5xx, the call budget): the records of the pages
    fetched before it stopped, and where ``resume_list`` carries on, so a retry does not start the
    list again. ``cause`` is the ledger error that stopped it."""

    def __init__(self, fetched: ListFetch, resume_at: dict[str, Any], cause: LedgerError):
        super().__init__(f"list fetch stopped part-way: {cause.message}")
        self.fetched = fetched
        self.resume_at = resume_at
        self.cause = cause


@dataclass(frozen=True)
class BankLine:
    """An unreconciled line on a bank account, as the ledger shows it (what a payment pairs with)."""

    remote_id: str
    date: date
    amount: Decimal  # positive: money out of the account
    description: str = ""


@dataclass
class Attachment:
    file_name: str
    content_type: str
    content: bytes


class LedgerAdapter(ABC):
    # Each ledger module declares its production endpoints and what it can do.
    default_config: ClassVar[ProviderConfig]
    capabilities: ClassVar[Capabilities]

    def __init__(
        self,
        *,
        config: ProviderConfig,
        credentials: AppCredentials,
        clock: Clock,
        sleep: Callable[[float], None],
        http_transport: httpx.BaseTransport | None = None,
    ):
        self.config = config
        self._credentials = credentials
        # None: the real network. Tests pass a simulator's transport; nothing patches the network.
        self._transport = http_transport
        self._http = httpx.Client(transport=http_transport, timeout=config.request_timeout_seconds)
        self._clock = clock
        self._sleep = sleep

    @property
    def provider(self) -> str:
        return self.config.name.value

    # --- OAuth ------------------------------------------------------------------------------

    def authorization_url(self, *, redirect_uri: str, state: str, code_verifier: str | None) -> str:
        assert self.config.authorize_url is not None
        client = self._oauth_client(redirect_uri=redirect_uri)
        url, _ = client.create_authorization_url(
            self.config.authorize_url,
            state=state,
            code_verifier=code_verifier if self.config.pkce else None,
            **self.authorization_parameters(),
        )
        return str(url)

    def exchange_code(
        self, *, code: str, redirect_uri: str, code_verifier: str | None, callback_params: Mapping[str, str]
    ) -> TokenSet:
        """Trade the authorization code for tokens. A 429, or a failure where the ledger clearly did
        not take the request (a 503 with Retry-After, a refused connection), is retried inside the
        time budget. Nothing else is: when the ledger may have taken the code and its answer was lost
        (a timeout, a 500), the code is spent and a repeat could only be refused, and a refusal
        (invalid_grant, invalid_client) stays a refusal."""
        assert self.config.token_url is not None
        client = self._oauth_client(redirect_uri=redirect_uri)
        extra: dict[str, Any] = {}
        if self.config.pkce and code_verifier:
            extra["code_verifier"] = code_verifier
        attempt = 0
        while True:
            attempt += 1
            try:
                token = self._call_token_endpoint(
                    lambda: client.fetch_token(
                        self.config.token_url,
                        code=code,
                        grant_type="authorization_code",
                        timeout=self._attempt_timeout(),
                        **extra,
                    )
                )
                return self.token_set_from(token, callback_params=callback_params)
            except RateLimited as limited:
                wait = limited.retry_after if limited.stated else _backoff_seconds(attempt)
                self._retry_or_raise(limited, attempt, wait)
            except TokenEndpointUnavailable as failed:
                if not failed.unprocessed:
                    raise
                wait = failed.retry_after if failed.retry_after is not None else _backoff_seconds(attempt)
                self._retry_or_raise(failed, attempt, wait)

    def _may_wait_and_retry(self, attempt: int, wait: float) -> bool:
        """Whether the attempts left, the longest wait we sit through inline and the time budget
        allow waiting ``wait`` seconds for another attempt."""
        return (
            attempt < self.config.max_attempts
            and wait <= self.config.max_inline_wait_seconds
            and self._fits_budget(wait)
        )

    def _retry_or_raise(self, error: LedgerError, attempt: int, wait: float) -> None:
        """Wait ``wait`` seconds before another attempt, or raise ``error`` when none is allowed."""
        if not self._may_wait_and_retry(attempt, wait):
            raise error
        logger.info("ledger busy, retrying", provider=self.provider, reason=type(error).__name__, wait=wait)
        self._sleep(wait)

    @contextmanager
    def time_budget(self, seconds: float) -> Iterator[None]:
        """Calls made inside retry only while another attempt fits in ``seconds`` from now, and each
        attempt's timeout shrinks to what is left: for calls a person is waiting on."""
        token = _DEADLINE.set(self._clock.now().timestamp() + seconds)
        try:
            yield
        finally:
            _DEADLINE.reset(token)

    def _time_left(self) -> float | None:
        deadline = _DEADLINE.get()
        return None if deadline is None else deadline - self._clock.now().timestamp()

    def _fits_budget(self, wait: float) -> bool:
        left = self._time_left()
        return left is None or wait + MIN_ATTEMPT_SECONDS <= left

    def _attempt_timeout(self) -> float:
        left = self._time_left()
        timeout = self.config.request_timeout_seconds
        return timeout if left is None else max(MIN_ATTEMPT_SECONDS, min(timeout, left))

    def refresh_tokens(self, tokens: TokenSet) -> TokenSet:
        assert self.config.token_url is not None
        if tokens.refresh_token is None:
            raise AuthRevoked("no refresh token was issued; reconnect", provider=self.provider)
        client = self._oauth_client()
        token = self._call_token_endpoint(
            lambda: client.refresh_token(
                self.config.token_url,
                refresh_token=tokens.refresh_token.get_secret_value(),  # type: ignore[union-attr]
            )
        )
        refreshed = self.token_set_from(token, callback_params={})
        # Ledger specifics (realmId, authentication event) survive a refresh.
        return refreshed.model_copy(update={"extras": {**tokens.extras, **refreshed.extras}})

    def revoke(self, tokens: TokenSet) -> None:
        """Withdraw the consent at the ledger, where the ledger has a revocation endpoint."""
        if self.config.revoke_url is None or tokens.refresh_token is None:
            return
        client = self._oauth_client()
        response = client.revoke_token(
            self.config.revoke_url,
            token=tokens.refresh_token.get_secret_value(),
            token_type_hint="refresh_token",
        )
        if response.status_code >= 400:
            logger.warning(
                "revocation refused by the ledger", provider=self.provider, status=response.status_code
            )

    def connect_directly(self, credentials: Mapping[str, str]) -> TokenSet:
        """Sign in with a login instead of OAuth (ledgers without OAuth override this)."""
        raise InvalidRequest(
            f"{self.capabilities.display_name} connects through its own sign-in page: follow authorize_url",
            field="credentials",
        )

    def release_organisation(self, tokens: TokenSet, organisation_id: str | None) -> None:
        """Withdraw our access to one organisation (Change connection, Disconnect). By default the
        whole consent is revoked; ledgers where one consent spans organisations override this."""
        self.revoke(tokens)

    def token_set_from(self, token: Mapping[str, Any], *, callback_params: Mapping[str, str]) -> TokenSet:
        now = self._clock.now()
        expires_in = int(token.get("expires_in") or 1800)
        refresh_expires_in = (
            token.get("refresh_token_expires_in")
            or token.get("x_refresh_token_expires_in")
            or (self.config.refresh_token_lifetime_seconds if token.get("refresh_token") else None)
        )
        return TokenSet(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_at=now + timedelta(seconds=expires_in),
            refresh_expires_at=now + timedelta(seconds=int(refresh_expires_in))
            if refresh_expires_in
            else None,
            scope=token.get("scope"),
            extras=self.token_extras(token, callback_params),
        )

    def _oauth_client(self, redirect_uri: str | None = None) -> OAuth2Client:
        from ledgerlink.providers.oauth_client import OAuth2Client

        client = OAuth2Client(
            client_id=self._credentials.client_id,
            client_secret=self._credentials.client_secret.get_secret_value(),
            token_endpoint_auth_method=self.config.token_endpoint_auth_method,
            revocation_endpoint_auth_method=self.config.token_endpoint_auth_method,
            scope=" ".join(self.config.scopes) or None,
            redirect_uri=redirect_uri,
            code_challenge_method="S256" if self.config.pkce else None,
            transport=self._transport,
            timeout=self.config.request_timeout_seconds,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        client.register_compliance_hook("access_token_response", self._check_token_response)
        client.register_compliance_hook("refresh_token_response", self._check_token_response)
        return client

    def _check_token_response(self, response: httpx.Response) -> httpx.Response:
        # authlib would try to parse a 5xx page or a 429 as a token; turn them into our errors first.
        if response.status_code == 429:
            count(LEDGER_RATE_LIMITED)
            stated = _retry_after_seconds(response, self._clock)
            raise RateLimited(
                "the ledger's token endpoint is rate limiting",
                retry_after=60.0 if stated is None else stated,
                provider=self.provider,
                stated=stated is not None,
            )
        if response.status_code >= 500:
            retry_after = _retry_after_seconds(response, self._clock)
            raise TokenEndpointUnavailable(
                f"token endpoint answered {response.status_code}",
                provider=self.provider,
                status=response.status_code,
                # A 503 that says when to come back is the ledger turning the request away; any
                # other 5xx may come after it acted on the request.
                unprocessed=response.status_code == 503 and retry_after is not None,
                retry_after=retry_after,
            )
        if response.status_code == 401:
            raise LedgerError(
                "the ledger refused our app credentials (check the app secret)", provider=self.provider
            )
        return response

    def _call_token_endpoint(self, call: Callable[[], Any]) -> Mapping[str, Any]:
        from ledgerlink.providers.oauth_client import OAuthError

        try:
            return call()  # type: ignore[no-any-return]
        except OAuthError as error:
            if error.error == "invalid_grant":
                raise AuthRevoked(
                    f"the ledger refused the grant: {error.description or 'invalid_grant'}",
                    provider=self.provider,
                ) from error
            raise LedgerError(f"token request failed: {error.error}", provider=self.provider) from error
        except httpx.TransportError as error:
            raise TokenEndpointUnavailable(
                f"token endpoint unreachable: {type(error).__name__}",
                provider=self.provider,
                # No connection was made, so the request never reached the ledger; a read timeout
                # or a dropped connection may come after the ledger acted on it.
                unprocessed=isinstance(error, httpx.ConnectError | httpx.ConnectTimeout),
            ) from error

    # --- API calls -----------------------------------------------------------------------------

    def request(
        self,
        session: LedgerSession,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry_safe: bool | None = None,
    ) -> httpx.Response:
        """One API call with retries. Reads, and writes that carry an idempotency key
        (``retry_safe=True``), are retried on 429/5xx/timeouts; other writes are not, because
        a retry could duplicate them."""
        safe = method.upper() == "GET" if retry_safe is None else retry_safe
        force_refresh = False
        for attempt in range(1, self.config.max_attempts + 1):
            session.spend_call()
            request_headers = {
                **self.authorization_headers(session.access_token(force_refresh)),
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                **self.session_headers(session),
                **(headers or {}),
            }
            request_params = {**self.default_params(session), **(params or {})}
            last_attempt = attempt == self.config.max_attempts
            try:
                response = self._http.request(
                    method,
                    url,
                    params=request_params or None,
                    json=json,
                    content=content,
                    headers=request_headers,
                    timeout=self._attempt_timeout(),
                )
            except httpx.TransportError as error:
                if safe and not last_attempt and self._backoff(attempt, reason=type(error).__name__):
                    continue
                raise Unavailable(
                    f"{self.provider} did not answer: {type(error).__name__}", provider=self.provider
                ) from error

            if response.status_code == 401 and not force_refresh and not last_attempt:
                force_refresh = True  # the token may have expired early or been rotated elsewhere
                continue
            if response.status_code == 429:
                count(LEDGER_RATE_LIMITED)
                wait = _retry_after_seconds(response, self._clock)
                if wait is None:
                    wait = _backoff_seconds(attempt)
                if safe and self._may_wait_and_retry(attempt, wait):
                    logger.info("rate limited, waiting", provider=self.provider, retry_after=wait)
                    self._sleep(wait)
                    continue
                raise RateLimited(
                    f"{self.provider} rate limit reached",
                    retry_after=wait,
                    provider=self.provider,
                    limit=self.rate_limit_name(response),
                )
            if response.status_code in RETRYABLE_STATUSES:
                if safe and not last_attempt and self._backoff(attempt, reason=str(response.status_code)):
                    continue
                raise Unavailable(
                    f"{self.provider} answered {response.status_code}",
                    provider=self.provider,
                    status=response.status_code,
                )
            if response.status_code >= 400:
                raise self.map_error(response)
            return response
        raise Unavailable(f"{self.provider} kept failing", provider=self.provider)  # pragma: no cover

    def _backoff(self, attempt: int, *, reason: str) -> bool:
        """Back off before another attempt; False (no wait) when the time budget has no room for it."""
        wait = _backoff_seconds(attempt)
        if not self._fits_budget(wait):
            return False
        logger.info("transient ledger failure, backing off", provider=self.provider, reason=reason, wait=wait)
        self._sleep(wait)
        return True

    def map_error(self, response: httpx.Response) -> LedgerError:
        """Turn a 4xx into our error family. Ledgers override to read their own error format."""
        status = response.status_code
        message = f"{self.provider} answered {status}"
        if status == 401:
            return AuthRevoked(
                f"{self.provider} no longer accepts our access", provider=self.provider, status=status
            )
        if status == 404:
            return NotFound(message, provider=self.provider, status=status)
        return Rejected(message, provider=self.provider, status=status)

    # --- hooks each ledger fills in -------------------------------------------------------------

    def authorization_parameters(self) -> dict[str, str]:
        """Extra query parameters on the authorize URL."""
        return {}

    def token_extras(self, token: Mapping[str, Any], callback_params: Mapping[str, str]) -> dict[str, str]:
        """Ledger specifics worth keeping with the token (realmId, authentication event...)."""
        return {}

    def session_headers(self, session: LedgerSession) -> dict[str, str]:
        """Headers that select the organisation (Xero tenant, Sage business)."""
        return {}

    def authorization_headers(self, access_token: str) -> dict[str, str]:
        """How the access token travels (KashFlow uses its own scheme)."""
        return {"Authorization": f"Bearer {access_token}"}

    def default_params(self, session: LedgerSession) -> dict[str, str]:
        """Query parameters every API call carries (QuickBooks' minorversion)."""
        return {}

    def rate_limit_name(self, response: httpx.Response) -> str | None:
        return None

    @abstractmethod
    def organisations(self, tokens: TokenSet) -> list[Organisation]:
        """The organisations this consent covers."""

    @abstractmethod
    def fetch_list(self, session: LedgerSession, list_type: ListType, *, since: str | None) -> ListFetch:
        """One of the six lists; ``since`` is the high-water mark of the last fetch (None: all)."""

    @abstractmethod
    def ensure_contact(self, session: LedgerSession, name: str, *, customer: bool, key: str) -> ListRecord:
        """The ledger's contact called ``name``: found, or created once (``key`` makes a retried
        creation a replay where the ledger supports it)."""

    @abstractmethod
    def publish(self, session: LedgerSession, plan: PublishPlan) -> PublishResult:
        """Create the document the plan describes, exactly once (the plan carries the key)."""

    def publish_batch(
        self, session: LedgerSession, plans: list[PublishPlan]
    ) -> list[PublishResult | LedgerError]:
        """Publish several plans, one result or refusal per plan, in order. Ledgers with a batch
        write override this; the default makes one call per plan. A transient failure (rate
        limit, outage) before anything went through is raised for the whole batch; one after
        some plans went through answers the rest with it (``stopped_short``), so what was
        published is kept and only the rest is retried (a batch that always ran out of call
        budget half-way would otherwise be retried for ever)."""
        results: list[PublishResult | LedgerError] = []
        for index, plan in enumerate(plans):
            try:
                results.append(self.publish(session, plan))
            except (Rejected, NotFound) as refused:
                results.append(refused)
            except LedgerError as stopped:
                return stopped_short(results, stopped, len(plans) - index)
        return results

    def find_bank_line(
        self,
        session: LedgerSession,
        *,
        bank_account_remote_id: str,
        amount: Decimal,
        earliest: date,
        latest: date,
    ) -> BankLine | None:
        """Bank match: the unreconciled line on the account with this amount inside the window."""
        raise Rejected(f"{self.capabilities.display_name} has no bank match", provider=self.provider)

    def record_payment(
        self,
        session: LedgerSession,
        plan: PublishPlan,
        result: PublishResult,
        *,
        bank_account_remote_id: str,
        paid_on: date,
        amount: Decimal,
        key: str,
    ) -> str:
        """Bank match: pay the published document from the bank account (so the ledger's
        reconciliation pairs it with the bank line); ``key`` makes a retry a replay. Returns the
        payment's id."""
        raise Rejected(f"{self.capabilities.display_name} has no bank match", provider=self.provider)

    @abstractmethod
    def attach(
        self, session: LedgerSession, plan: PublishPlan, result: PublishResult, document: Attachment
    ) -> str:
        """Attach the captured document to what ``publish`` created; returns the attachment id."""

    def pages(self, fetch_page: Callable[[int], tuple[list[Any], bool]]) -> Iterator[list[Any]]:
        """Page numbers from 1 until ``fetch_page`` says it was the last page."""
        page = 1
        while True:
            rows, more = fetch_page(page)
            yield rows
            if not more:
                return
            page += 1

    def resume_list(
        self, session: LedgerSession, list_type: ListType, *, since: str | None, resume_at: Mapping[str, Any]
    ) -> ListFetch:
        """Carry on a fetch that raised ``ListFetchInterrupted``, from ``resume_at`` (with the same
        ``since``); the result holds only the records from there on. Adapters whose fetches raise it
        override this; the default fetches the list again from its start."""
        return self.fetch_list(session, list_type, since=since)

    def resumable_pages(
        self,
        fetch_page: Callable[[int], tuple[list[ListRecord], bool]],
        *,
        first_page: int = 1,
        session: LedgerSession | None = None,
        held: bool = False,
    ) -> tuple[list[ListRecord], int]:
        """Every page's records from ``first_page`` to the last, and the calls made. A 429 or 5xx
        after at least one page raises ``ListFetchInterrupted`` naming the page to carry on from, so
        the pages already fetched are kept and not fetched again. ``session.resumable`` says so
        meanwhile (``held``: the caller keeps records of its own on a stop, so it is from the start)."""
        records: list[ListRecord] = []
        page, calls = first_page, 0
        try:
            while True:
                if session is not None:
                    session.resumable = held or bool(records)
                try:
                    rows, more = fetch_page(page)
                except (RateLimited, Unavailable) as error:
                    if not records:
                        raise  # nothing fetched yet: a plain retry starts where this one did
                    raise ListFetchInterrupted(
                        ListFetch(records, complete=False, calls=calls), {"page": page}, error
                    ) from error
                calls += 1
                records.extend(rows)
                if not more:
                    return records, calls
                page += 1
        finally:
            if session is not None:
                session.resumable = False


def _backoff_seconds(attempt: int) -> float:
    # Full jitter keeps many workers from retrying in lockstep.
    ceiling: float = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def _retry_after_seconds(response: httpx.Response, clock: Clock) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def stopped_short(
    results: list[PublishResult | LedgerError], stopped: LedgerError, unanswered: int
) -> list[PublishResult | LedgerError]:
    """A batch a transient failure cut short: raised as it is when nothing went through yet (the
    whole batch is retried), otherwise the plans not sent yet are answered with it, and the
    publisher keeps what went through and retries only those."""
    if not any(isinstance(result, PublishResult) for result in results):
        raise stopped
    return [*results, *[stopped] * unanswered]
