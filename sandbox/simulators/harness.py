"""What every ledger simulator shares: clock, OAuth, faults, logs, rate limits and the control API.

A simulator (Xero today; QuickBooks, Sage, FreeAgent and KashFlow later) subclasses
:class:`LedgerSimulator`, loads the neutral seed dataset into its own shapes and registers its
real paths on a Flask app. Everything here is provider-neutral; provider quirks are hooks.

Pieces, and why they look the way they do:

* :class:`SimClock` — every time-based rule (code TTLs, token expiry, grace windows, rate windows,
  ``UpdatedDateUTC`` stamps, since-filters) reads this clock, never the wall clock, so tests move
  time with ``advance`` instead of sleeping. ``scale=0`` (the default) freezes it; ``scale=1``
  follows the wall clock (the served sandbox); ``scale=N`` runs N times faster (benchmarks).
* OAuth: :class:`AppRegistry` (registered apps and redirect URIs), :class:`UserDirectory` (the
  seeded sign-in), :class:`AuthorizationCodeStore` (single-use codes bound to client, redirect URI
  and PKCE challenge) and :class:`TokenRegistry`, which keeps *every* refresh token it ever issued
  with its state (current / superseded at T / revoked / expired) so tests can assert rotation.
* :class:`FaultInjector` — per-route faults by method and path glob, with counts, probabilities
  and a seedable RNG.
* :class:`WriteLog` and :class:`RequestLog` — what was created/updated (to prove "exactly once")
  and what was asked (to assert headers); Authorization is redacted.
* :class:`RateLimiter` (rolling windows) and :class:`ConcurrencyGate` (in-flight counter).
* :class:`IdempotencyStore` — replay of stored responses for the ledgers that have keys.
* The ``/_sandbox/`` control API, mounted on every simulator, mirrored by plain methods.
* :class:`SimulatorTransport` — an ``httpx`` transport that serves the simulator in-process and
  turns the ``timeout``/``lost_response`` faults into ``httpx.ReadTimeout``. Over real HTTP the
  same faults hold the response for ``fault_delay_seconds`` and then answer 504.

Thread safety: the transport is called from many threads at once. Simulator state is guarded by
``LedgerSimulator.lock``; the concurrency gate and rate limiter have their own short locks and
are taken *outside* the state lock, so requests that are "in flight" (including the optional
``latency_seconds``) overlap and concurrency limits can actually trip.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from flask import Blueprint, Flask, Response, g, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.simulators.seed import PRESETS, Dataset, Preset, build_dataset, stable_uuid

# --------------------------------------------------------------------------------------------
# Clock
# --------------------------------------------------------------------------------------------


class SimClock:
    """A controllable UTC clock.

    ``scale`` is how many simulated seconds pass per wall-clock second: 0 freezes the clock
    (deterministic tests), 1 follows the wall clock, 60 makes a minute pass every second.
    ``advance`` and ``set`` work at any scale.
    """

    def __init__(self, start: datetime | None = None, *, scale: float = 0.0) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("SimClock needs a timezone-aware start time")
        if scale < 0:
            raise ValueError("scale must be >= 0")
        self._lock = threading.Lock()
        self._anchor = (start or datetime.now(UTC)).astimezone(UTC)
        self._anchor_wall = time.monotonic()
        self._scale = float(scale)

    def _now_locked(self) -> datetime:
        elapsed = (time.monotonic() - self._anchor_wall) * self._scale
        return self._anchor + timedelta(seconds=elapsed)

    def _reanchor_locked(self, at: datetime) -> None:
        self._anchor = at
        self._anchor_wall = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            return self._now_locked()

    def timestamp(self) -> float:
        return self.now().timestamp()

    def today(self) -> date:
        return self.now().date()

    def advance(self, seconds: float) -> datetime:
        """Move time forward (never backwards: rolling windows and grace periods assume it)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward; use set() to jump")
        with self._lock:
            self._reanchor_locked(self._now_locked() + timedelta(seconds=seconds))
            return self._anchor

    def set(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("set() needs a timezone-aware datetime")
        with self._lock:
            self._reanchor_locked(moment.astimezone(UTC))
            return self._anchor

    @property
    def scale(self) -> float:
        return self._scale

    def set_scale(self, scale: float) -> None:
        if scale < 0:
            raise ValueError("scale must be >= 0")
        with self._lock:
            self._reanchor_locked(self._now_locked())
            self._scale = float(scale)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time: advances a frozen clock, sleeps a running one.

        Give this to a client under test as its sleep function so honouring ``Retry-After``
        against a frozen clock takes no wall time.
        """
        if seconds <= 0:
            return
        if self._scale == 0:
            self.advance(seconds)
        else:
            time.sleep(seconds / self._scale)

    def describe(self) -> dict[str, Any]:
        return {"now": self.now().isoformat(), "scale": self._scale, "frozen": self._scale == 0}


def truncate_to_millis(moment: datetime) -> datetime:
    """Ledgers stamp records to the millisecond; comparisons must use what the client sees."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# --------------------------------------------------------------------------------------------
# Settings shared by every simulator
# --------------------------------------------------------------------------------------------


class SimulatorSettings(BaseModel):
    """Knobs every simulator has. Providers subclass with their own defaults and extra knobs.

    Changed at runtime through :meth:`LedgerSimulator.update_settings` or
    ``POST /_sandbox/settings``; unknown names and wrong types are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    authorization_code_ttl_seconds: float = Field(300, gt=0)
    access_token_ttl_seconds: float = Field(3600, gt=0)
    # None: refresh tokens never die of disuse.
    refresh_token_unused_ttl_seconds: float | None = Field(None, gt=0)
    refresh_token_rotation: bool = True
    # How long a superseded refresh token keeps working (0: strictly single use).
    refresh_token_grace_seconds: float = Field(0, ge=0)
    # Over real HTTP, `timeout`/`lost_response` faults hold the response this long, then 504.
    fault_delay_seconds: float = Field(35, ge=0)
    # Wall-clock time each API request spends "in flight" (outside the state lock). Lets
    # concurrency limits trip in benchmarks; 0 in tests.
    latency_seconds: float = Field(0, ge=0)
    request_log_limit: int = Field(10_000, gt=0)
    write_log_limit: int = Field(100_000, gt=0)


# --------------------------------------------------------------------------------------------
# OAuth: apps, users, PKCE, codes, tokens
# --------------------------------------------------------------------------------------------


class OAuthError(Exception):
    """An OAuth2 error response (RFC 6749 §5.2): ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str | None = None, *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    def body(self, *, with_description: bool = True) -> dict[str, str]:
        body = {"error": self.error}
        if with_description and self.description:
            body["error_description"] = self.description
        return body


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class RegisteredApp:
    """An app registered with the ledger's developer portal."""

    client_id: str
    client_secret: str | None
    name: str = "ledgerlink (sandbox)"
    redirect_uris: tuple[str, ...] = ()
    # Development apps may redirect to any loopback port (the local runtime picks its port).
    allow_loopback_redirects: bool = True

    def accepts_redirect(self, redirect_uri: str | None) -> bool:
        if not redirect_uri:
            return False
        if redirect_uri in self.redirect_uris:
            return True
        if not self.allow_loopback_redirects:
            return False
        try:
            parts = urlsplit(redirect_uri)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and not parts.fragment


DEFAULT_APP = RegisteredApp(client_id="ledgerlink-dev", client_secret="ledgerlink-dev-secret")


class AppRegistry:
    def __init__(self, apps: Iterable[RegisteredApp] = (DEFAULT_APP,)) -> None:
        self._apps = {app.client_id: app for app in apps}

    def register(self, app: RegisteredApp) -> None:
        self._apps[app.client_id] = app

    def get(self, client_id: str | None) -> RegisteredApp | None:
        return self._apps.get(client_id or "")

    def authenticate(self, client_id: str | None, client_secret: str | None) -> RegisteredApp:
        """Check client credentials; a wrong id or secret is ``invalid_client``."""
        app = self.get(client_id)
        if app is None or app.client_secret is None or client_secret is None:
            raise OAuthError("invalid_client")
        if not hmac.compare_digest(app.client_secret.encode(), client_secret.encode()):
            raise OAuthError("invalid_client")
        return app


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str | None
    client_secret: str | None
    # "client_secret_basic", "client_secret_post" or "none".
    method: str


def client_credentials_from_request() -> ClientCredentials:
    """Read client credentials from HTTP Basic (preferred) or the form body."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            client_id, _, client_secret = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            return ClientCredentials(None, None, "client_secret_basic")
        return ClientCredentials(client_id, client_secret, "client_secret_basic")
    if "client_secret" in request.form:
        return ClientCredentials(
            request.form.get("client_id"), request.form.get("client_secret"), "client_secret_post"
        )
    return ClientCredentials(request.form.get("client_id"), None, "none")


@dataclass(frozen=True)
class SandboxUser:
    user_id: str
    email: str
    password: str
    first_name: str
    last_name: str

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


DEFAULT_USER = SandboxUser(
    user_id=stable_uuid("user", "admin@example.com"),
    email="admin@example.com",
    password="sandbox",
    first_name="Alex",
    last_name="Morgan",
)


class UserDirectory:
    def __init__(self, users: Iterable[SandboxUser] = (DEFAULT_USER,)) -> None:
        self._by_email = {user.email.lower(): user for user in users}

    def authenticate(self, email: str | None, password: str | None) -> SandboxUser | None:
        user = self._by_email.get((email or "").strip().lower())
        if user is None or not hmac.compare_digest(user.password.encode(), (password or "").encode()):
            return None
        return user

    def get(self, user_id: str) -> SandboxUser | None:
        return next((u for u in self._by_email.values() if u.user_id == user_id), None)

    def by_email(self, email: str) -> SandboxUser | None:
        return self._by_email.get(email.lower())

    def all(self) -> list[SandboxUser]:
        return list(self._by_email.values())


_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def pkce_challenge(verifier: str, method: str = "S256") -> str:
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_pkce(challenge: str, method: str, verifier: str | None) -> bool:
    if not verifier or not _PKCE_VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(pkce_challenge(verifier, method), challenge)


@dataclass(frozen=True)
class Consent:
    """What the user agreed to at the authorize step; codes and token grants carry it."""

    client_id: str
    user_id: str
    scope: tuple[str, ...]
    redirect_uri: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    nonce: str | None = None
    # Provider-specific facts of the consent (Xero: auth event id and tenants; QBO: realm id).
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class IssuedCode:
    code: str
    consent: Consent
    issued_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None = None


class AuthorizationCodeStore:
    """Single-use authorization codes bound to client, redirect URI and PKCE challenge."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._codes: dict[str, IssuedCode] = {}

    def issue(self, consent: Consent, ttl_seconds: float, *, prefix: str = "") -> str:
        """A new code; ``prefix`` lets a ledger shape it (Sage's codes start with the region, ``GB/``)."""
        code = prefix + secrets.token_urlsafe(32)
        now = self._clock.now()
        self._codes[code] = IssuedCode(code, consent, now, now + timedelta(seconds=ttl_seconds))
        return code

    def redeem(
        self, code: str | None, *, client_id: str, redirect_uri: str | None, code_verifier: str | None
    ) -> Consent:
        """Exchange a code for its consent, or raise ``invalid_grant``.

        Any redemption attempt burns the code, as a real authorization server does: a client that
        sends the wrong verifier cannot try again with the same code.
        """
        issued = self._codes.get(code or "")
        if issued is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        now = self._clock.now()
        already_redeemed = issued.redeemed_at is not None
        issued.redeemed_at = issued.redeemed_at or now
        consent = issued.consent
        if already_redeemed:
            raise OAuthError("invalid_grant", "authorization code already used")
        if now >= issued.expires_at:
            raise OAuthError("invalid_grant", "authorization code expired")
        if consent.client_id != client_id:
            raise OAuthError("invalid_grant", "authorization code was issued to another client")
        if consent.redirect_uri != redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if consent.code_challenge is not None and not verify_pkce(
            consent.code_challenge, consent.code_challenge_method or "plain", code_verifier
        ):
            raise OAuthError("invalid_grant", "PKCE verification failed")
        return consent

    def clear(self) -> None:
        self._codes.clear()


class RefreshTokenState(StrEnum):
    CURRENT = "current"
    SUPERSEDED = "superseded"  # replaced by a newer token, still inside the grace window
    EXPIRED = "expired"  # past the grace window, or unused for too long
    REVOKED = "revoked"


@dataclass(frozen=True)
class TokenPolicy:
    """Lifetimes applied when tokens are issued or refreshed (read from settings each time)."""

    access_ttl_seconds: float
    refresh_unused_ttl_seconds: float | None
    rotation: bool
    grace_seconds: float

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> TokenPolicy:
        return cls(
            access_ttl_seconds=settings.access_token_ttl_seconds,
            refresh_unused_ttl_seconds=settings.refresh_token_unused_ttl_seconds,
            rotation=settings.refresh_token_rotation,
            grace_seconds=settings.refresh_token_grace_seconds,
        )


@dataclass
class TokenGrant:
    """One consent's chain of tokens: the first code exchange and every refresh after it."""

    grant_id: str
    client_id: str
    user_id: str
    scope: tuple[str, ...]
    issued_at: datetime
    extras: Mapping[str, Any]
    current_refresh_token: str | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = None


@dataclass
class RefreshTokenRecord:
    token: str
    grant_id: str
    client_id: str
    user_id: str
    issued_at: datetime
    # When it dies if never used (None: never).
    unused_expires_at: datetime | None
    superseded_at: datetime | None = None
    grace_ends_at: datetime | None = None
    replaced_by: str | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    use_count: int = 0

    def state(self, now: datetime, grant: TokenGrant) -> RefreshTokenState:
        if self.revoked_at is not None or grant.revoked_at is not None:
            return RefreshTokenState.REVOKED
        if self.unused_expires_at is not None and now >= self.unused_expires_at:
            return RefreshTokenState.EXPIRED
        if self.superseded_at is not None:
            if self.grace_ends_at is not None and now < self.grace_ends_at:
                return RefreshTokenState.SUPERSEDED
            return RefreshTokenState.EXPIRED
        return RefreshTokenState.CURRENT

    def describe(self, now: datetime, grant: TokenGrant) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            # Whole: tests match tokens they hold. The control API is sandbox-only, on loopback.
            "token": self.token,
            "grant_id": self.grant_id,
            "client_id": self.client_id,
            "user_id": self.user_id,
            "status": self.state(now, grant).value,
            "issued_at": iso(self.issued_at),
            "superseded_at": iso(self.superseded_at),
            "grace_ends_at": iso(self.grace_ends_at),
            "replaced_by": self.replaced_by,
            "revoked_at": iso(self.revoked_at or grant.revoked_at),
            "unused_expires_at": iso(self.unused_expires_at),
            "last_used_at": iso(self.last_used_at),
            "use_count": self.use_count,
        }


@dataclass
class AccessTokenRecord:
    token: str
    grant_id: str
    client_id: str
    user_id: str
    scope: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime

    @property
    def expires_in(self) -> int:
        """Its lifetime in whole seconds: a token response's ``expires_in``."""
        return int((self.expires_at - self.issued_at).total_seconds())


@dataclass(frozen=True)
class IssuedTokens:
    grant: TokenGrant
    access: AccessTokenRecord
    refresh_token: str | None


class AccessTokenProblem(Exception):
    """Base for access-token failures; providers turn these into their own 401 bodies."""

    def __init__(self, record: AccessTokenRecord | None = None) -> None:
        super().__init__(type(self).__name__)
        self.record = record


class AccessTokenMissing(AccessTokenProblem):
    pass


class AccessTokenInvalid(AccessTokenProblem):
    pass


class AccessTokenExpired(AccessTokenProblem):
    pass


class AccessTokenRevoked(AccessTokenProblem):
    pass


AccessTokenFactory = Callable[[TokenGrant, str, datetime, datetime], str]


def _opaque_token(_grant: TokenGrant, _jti: str, _issued: datetime, _expires: datetime) -> str:
    return secrets.token_urlsafe(32)


class TokenRegistry:
    """Issues, refreshes, revokes and checks tokens; remembers every refresh token ever issued."""

    def __init__(self, clock: SimClock, access_token_factory: AccessTokenFactory = _opaque_token) -> None:
        self._clock = clock
        self._make_access_token = access_token_factory
        self._grants: dict[str, TokenGrant] = {}
        self._refresh: dict[str, RefreshTokenRecord] = {}
        self._access: dict[str, AccessTokenRecord] = {}

    # -- issuing -------------------------------------------------------------------------------

    def start_grant(self, consent: Consent, policy: TokenPolicy, *, with_refresh_token: bool) -> IssuedTokens:
        now = self._clock.now()
        grant = TokenGrant(
            grant_id=str(uuid.uuid4()),
            client_id=consent.client_id,
            user_id=consent.user_id,
            scope=consent.scope,
            issued_at=now,
            extras=dict(consent.extras),
        )
        self._grants[grant.grant_id] = grant
        refresh = self._new_refresh_token(grant, policy, now) if with_refresh_token else None
        return IssuedTokens(grant, self._new_access_token(grant, policy, now), refresh)

    def _new_access_token(self, grant: TokenGrant, policy: TokenPolicy, now: datetime) -> AccessTokenRecord:
        expires = now + timedelta(seconds=policy.access_ttl_seconds)
        token = self._make_access_token(grant, uuid.uuid4().hex.upper(), now, expires)
        record = AccessTokenRecord(
            token, grant.grant_id, grant.client_id, grant.user_id, grant.scope, now, expires
        )
        self._access[token] = record
        return record

    def _new_refresh_token(self, grant: TokenGrant, policy: TokenPolicy, now: datetime) -> str:
        token = secrets.token_hex(32)
        unused_ttl = policy.refresh_unused_ttl_seconds
        self._refresh[token] = RefreshTokenRecord(
            token=token,
            grant_id=grant.grant_id,
            client_id=grant.client_id,
            user_id=grant.user_id,
            issued_at=now,
            unused_expires_at=now + timedelta(seconds=unused_ttl) if unused_ttl else None,
        )
        grant.current_refresh_token = token
        return token

    def refresh(self, refresh_token: str | None, *, client_id: str, policy: TokenPolicy) -> IssuedTokens:
        """The refresh_token grant: rotate (or not) per policy, or raise ``invalid_grant``."""
        record = self._refresh.get(refresh_token or "")
        if record is None or record.client_id != client_id:
            raise OAuthError("invalid_grant")
        grant = self._grants[record.grant_id]
        now = self._clock.now()
        state = record.state(now, grant)
        if state not in (RefreshTokenState.CURRENT, RefreshTokenState.SUPERSEDED):
            raise OAuthError("invalid_grant")
        record.last_used_at = now
        record.use_count += 1
        access = self._new_access_token(grant, policy, now)
        if not policy.rotation:
            return IssuedTokens(grant, access, record.token)
        # Whatever is current now (this token, or a newer one if this is a grace-window reuse)
        # is superseded by a fresh token; superseded tokens keep their original grace deadline.
        current = self._refresh.get(grant.current_refresh_token or "")
        new_token = self._new_refresh_token(grant, policy, now)
        replaced = [record] if current is None or current is record else [record, current]
        for superseded in replaced:
            if superseded.superseded_at is None:
                superseded.superseded_at = now
                superseded.grace_ends_at = now + timedelta(seconds=policy.grace_seconds)
            superseded.replaced_by = superseded.replaced_by or new_token
        return IssuedTokens(grant, access, new_token)

    # -- checking ------------------------------------------------------------------------------

    def authenticate(self, authorization_header: str | None) -> AccessTokenRecord:
        """Resolve ``Authorization: Bearer <token>`` or raise an :class:`AccessTokenProblem`."""
        if not authorization_header or authorization_header[:7].lower() != "bearer ":
            raise AccessTokenMissing()
        record = self._access.get(authorization_header[7:].strip())
        if record is None:
            raise AccessTokenInvalid()
        grant = self._grants[record.grant_id]
        if grant.revoked_at is not None:
            raise AccessTokenRevoked(record)
        if self._clock.now() >= record.expires_at:
            raise AccessTokenExpired(record)
        return record

    def grant(self, grant_id: str) -> TokenGrant:
        return self._grants[grant_id]

    def grant_for_refresh_token(self, refresh_token: str) -> TokenGrant | None:
        record = self._refresh.get(refresh_token)
        return self._grants[record.grant_id] if record else None

    def grant_for_access_token(self, token: str) -> TokenGrant | None:
        record = self._access.get(token)
        return self._grants[record.grant_id] if record else None

    def user_for_access_token(self, token: str) -> str | None:
        record = self._access.get(token)
        return record.user_id if record else None

    # -- revoking ------------------------------------------------------------------------------

    def revoke_grant(self, grant_id: str, reason: str) -> None:
        grant = self._grants.get(grant_id)
        if grant is not None and grant.revoked_at is None:
            grant.revoked_at = self._clock.now()
            grant.revoke_reason = reason

    def revoke_user(self, user_id: str | None, *, client_id: str | None = None, reason: str) -> list[str]:
        """Revoke every grant of a user (every user when None) — consent withdrawn."""
        revoked = []
        for grant in self._grants.values():
            if (
                (user_id is None or grant.user_id == user_id)
                and (client_id is None or grant.client_id == client_id)
                and grant.revoked_at is None
            ):
                self.revoke_grant(grant.grant_id, reason)
                revoked.append(grant.grant_id)
        return revoked

    # -- inspection ----------------------------------------------------------------------------

    def issued_values(self) -> list[str]:
        """Every access and refresh token ever issued (for tests proving none reaches a log)."""
        return [*self._access, *self._refresh]

    def refresh_token_records(self, grant_id: str | None = None) -> list[dict[str, Any]]:
        now = self._clock.now()
        return [
            record.describe(now, self._grants[record.grant_id])
            for record in self._refresh.values()
            if grant_id is None or record.grant_id == grant_id
        ]

    def refresh_token_state(self, refresh_token: str) -> RefreshTokenState | None:
        record = self._refresh.get(refresh_token)
        return record.state(self._clock.now(), self._grants[record.grant_id]) if record else None


def encode_jwt(claims: Mapping[str, Any], key: bytes, *, kid: str = "sandbox") -> str:
    """A compact HS256 JWT. Ledgers sign with RS256; clients only decode, so HS256 is enough."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(dict(claims)).encode())}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT without verifying it (what clients of these ledgers do)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# Token endpoint responses carry credentials and must not be cached (RFC 6749 §5.1).
NO_STORE_HEADERS: Mapping[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_endpoint_error(error: OAuthError) -> Response:
    """A token endpoint's error as Xero, Intuit and Sage send it: the bare error code.

    The reason travels only in a sandbox-only ``X-Sandbox-Reason`` header, for tests to read;
    a client must not depend on it.
    """
    reason = {"X-Sandbox-Reason": error.description} if error.description else {}
    return json_response(error.body(with_description=False), error.status, {**NO_STORE_HEADERS, **reason})


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class FaultKind(StrEnum):
    RATE_LIMIT = "429"  # a 429 storm with the provider's headers
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    TIMEOUT = "timeout"  # nothing is applied; the client times out
    LOST_RESPONSE = "lost_response"  # the write IS applied; the client times out
    REVOKE = "revoke"  # consent withdrawn just before this request


@dataclass
class FaultRule:
    rule_id: int
    kind: FaultKind
    method: str = "*"
    path: str = "*"
    # How many times it fires (None: every time). Exhausted rules stay listed for inspection.
    count: int | None = 1
    probability: float = 1.0
    # Matching requests to let through before the rule starts firing.
    skip: int = 0
    retry_after: int | None = None
    seen: int = 0
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and method.upper() not in {m.strip().upper() for m in self.method.split(",")}:
            return False
        return fnmatch.fnmatchcase(path.lower(), self.path.lower())

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value, "exhausted": self.exhausted}


class FaultInjector:
    """Per-route faults. Rules are checked in the order they were added; the first that fires wins."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def add(
        self,
        kind: FaultKind | str,
        path: str = "*",
        *,
        method: str = "*",
        count: int | None = 1,
        probability: float = 1.0,
        skip: int = 0,
        retry_after: int | None = None,
    ) -> FaultRule:
        kind = FaultKind(str(kind))
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (or None for unlimited)")
        with self._lock:
            rule = FaultRule(self._next_id, kind, method.upper(), path, count, probability, skip, retry_after)
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def remove(self, rule_id: int) -> FaultRule | None:
        """Withdraw one rule (an outage that ends) and return it with its counts; None if unknown."""
        with self._lock:
            for rule in self._rules:
                if rule.rule_id == rule_id:
                    self._rules.remove(rule)
                    return rule
        return None

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The fault to apply to this request, if any (counting it as fired)."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteEntry:
    seq: int
    time: datetime
    org: str
    kind: str
    object_id: str
    action: str  # "create" | "update" | "delete"
    idempotency_key: str | None
    body: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "org": self.org,
            "kind": self.kind,
            "id": self.object_id,
            "action": self.action,
            "idempotency_key": self.idempotency_key,
            "body": self.body,
        }


class WriteLog:
    """Every object a simulator created or changed, in order — to prove "no duplicates"."""

    def __init__(self, clock: SimClock, limit: int = 100_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: deque[WriteEntry] = deque(maxlen=limit)
        self._seq = 0

    def record(
        self,
        *,
        org: str,
        kind: str,
        object_id: str,
        body: Any,
        action: str = "create",
        idempotency_key: str | None = None,
    ) -> WriteEntry:
        with self._lock:
            self._seq += 1
            entry = WriteEntry(
                self._seq, self._clock.now(), org, kind, object_id, action, idempotency_key, body
            )
            self._entries.append(entry)
            return entry

    def entries(
        self, *, kind: str | None = None, org: str | None = None, action: str | None = None
    ) -> list[WriteEntry]:
        with self._lock:
            return [
                entry
                for entry in self._entries
                if (kind is None or entry.kind.lower() == kind.lower())
                and (org is None or entry.org == org)
                and (action is None or entry.action == action)
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Header values never worth recording; Authorization keeps only its scheme.
_UNLOGGED_HEADERS = frozenset({"cookie"})


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    recorded: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _UNLOGGED_HEADERS:
            continue
        if lowered == "authorization":
            scheme = value.split(" ", 1)[0] if value else ""
            recorded[name] = f"{scheme} [redacted]".strip()
        else:
            recorded[name] = value
    return recorded


@dataclass(frozen=True)
class RequestEntry:
    seq: int
    time: datetime
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    status: int
    fault: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": dict(self.headers),
            "status": self.status,
            "fault": self.fault,
        }

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class RequestLog:
    def __init__(self, clock: SimClock, limit: int = 10_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: deque[RequestEntry] = deque(maxlen=limit)
        self._seq = 0

    def record(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        status: int,
        fault: str | None = None,
    ) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append(
                RequestEntry(
                    self._seq, self._clock.now(), method, path, query, redact_headers(headers), status, fault
                )
            )

    def entries(self, *, path_glob: str | None = None, method: str | None = None) -> list[RequestEntry]:
        with self._lock:
            return [
                entry
                for entry in self._entries
                if (path_glob is None or fnmatch.fnmatchcase(entry.path.lower(), path_glob.lower()))
                and (method is None or entry.method == method.upper())
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowLimit:
    """``limit`` requests per rolling ``window_seconds``; ``problem`` names it in responses."""

    problem: str
    limit: int
    window_seconds: float


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    # Remaining requests per limit name, after this request was counted (if allowed).
    remaining: Mapping[str, int]
    problem: str | None = None
    retry_after_seconds: int = 0


class RateLimiter:
    """Rolling-window counters keyed by ``(limit name, key)`` (e.g. ``("minute", tenant)``)."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, Hashable], deque[float]] = {}

    def _window(self, limit: WindowLimit, key: Hashable, now: float) -> deque[float]:
        hits = self._hits.setdefault((limit.problem, key), deque())
        while hits and hits[0] <= now - limit.window_seconds:
            hits.popleft()
        return hits

    def acquire(self, checks: Sequence[tuple[WindowLimit, Hashable]]) -> RateDecision:
        """Count one request against every limit, or refuse it naming the first limit hit.

        A refused request is not counted (a client that backs off recovers on schedule).
        """
        now = self._clock.timestamp()
        with self._lock:
            windows = [(limit, self._window(limit, key, now)) for limit, key in checks]
            for limit, hits in windows:
                if len(hits) >= limit.limit:
                    oldest = hits[len(hits) - limit.limit]
                    retry_after = max(1, math.ceil(oldest + limit.window_seconds - now))
                    return RateDecision(
                        allowed=False,
                        remaining={lim.problem: max(0, lim.limit - len(h)) for lim, h in windows},
                        problem=limit.problem,
                        retry_after_seconds=retry_after,
                    )
            for _, hits in windows:
                hits.append(now)
            return RateDecision(True, {lim.problem: max(0, lim.limit - len(h)) for lim, h in windows})

    def remaining(self, checks: Sequence[tuple[WindowLimit, Hashable]]) -> dict[str, int]:
        now = self._clock.timestamp()
        with self._lock:
            return {
                limit.problem: max(0, limit.limit - len(self._window(limit, key, now)))
                for limit, key in checks
            }

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class ConcurrencyGate:
    """Counts requests in flight per key; refuses entry above a limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[Hashable, int] = {}
        self.peak: dict[Hashable, int] = {}

    def try_enter(self, key: Hashable, limit: int | None) -> bool:
        with self._lock:
            current = self._in_flight.get(key, 0)
            if limit is not None and current >= limit:
                return False
            self._in_flight[key] = current + 1
            self.peak[key] = max(self.peak.get(key, 0), current + 1)
            return True

    def leave(self, key: Hashable) -> None:
        with self._lock:
            remaining = self._in_flight.get(key, 0) - 1
            if remaining > 0:
                self._in_flight[key] = remaining
            else:
                self._in_flight.pop(key, None)

    def in_flight(self, key: Hashable) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)


# --------------------------------------------------------------------------------------------
# Idempotency
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str]
    fingerprint: str
    expires_at: datetime

    def to_response(self) -> Response:
        response = Response(self.body, status=self.status, content_type=self.content_type)
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


class IdempotencyKeyReused(Exception):
    """The key was used within the window for a different request."""


# Marks a response replayed from the idempotency store (sandbox-only: tests assert replays with it).
IDEMPOTENT_REPLAY_HEADER = "X-Sandbox-Idempotent-Replay"


class IdempotencyStore:
    """Responses stored by ``(scope, key)`` for a window; same request → replay, other → conflict."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._stored: dict[tuple[Hashable, str], StoredResponse] = {}

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(b"\n".join([method.upper().encode(), path.lower().encode(), body])).hexdigest()

    def lookup(self, scope: Hashable, key: str, fingerprint: str) -> StoredResponse | None:
        with self._lock:
            stored = self._stored.get((scope, key))
            if stored is None:
                return None
            if self._clock.now() >= stored.expires_at:
                del self._stored[(scope, key)]
                return None
            if stored.fingerprint != fingerprint:
                raise IdempotencyKeyReused(key)
            return stored

    def store(
        self,
        scope: Hashable,
        key: str,
        fingerprint: str,
        response: Response,
        window_seconds: float,
        *,
        replay_headers: Iterable[str] = (),
    ) -> None:
        headers = {name: response.headers[name] for name in replay_headers if name in response.headers}
        with self._lock:
            self._stored[(scope, key)] = StoredResponse(
                status=response.status_code,
                body=response.get_data(),
                content_type=response.content_type or "application/json",
                headers=headers,
                fingerprint=fingerprint,
                expires_at=self._clock.now() + timedelta(seconds=window_seconds),
            )

    def clear(self) -> None:
        with self._lock:
            self._stored.clear()


# --------------------------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------------------------

# Set on the WSGI environ by SimulatorTransport: "this request is in-process, raise, don't hold".
IN_PROCESS_ENVIRON_KEY = "ledgerlink.sandbox.in_process"
# Response header by which the app tells the transport to turn the response into a timeout.
FAULT_MARKER_HEADER = "X-Sandbox-Fault"


class SimulatorTransport(httpx.BaseTransport):
    """Serves a simulator in-process; ``timeout``/``lost_response`` faults raise ``ReadTimeout``."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        def mark_in_process(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            environ[IN_PROCESS_ENVIRON_KEY] = True
            return wsgi_app(environ, start_response)

        self._inner = httpx.WSGITransport(app=mark_in_process)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        fault = response.headers.get(FAULT_MARKER_HEADER)
        if fault in (FaultKind.TIMEOUT, FaultKind.LOST_RESPONSE):
            response.close()
            raise httpx.ReadTimeout(f"sandbox fault: {fault}", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(
        json.dumps(payload, default=_json_default),
        status=status,
        content_type="application/json; charset=utf-8",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def request_json() -> Any:
    """The request body as JSON (None if absent or malformed)."""
    return request.get_json(silent=True, force=True)


def request_json_object() -> dict[str, Any]:
    """The request body's JSON object (empty if absent, malformed or not an object)."""
    payload = request_json()
    return payload if isinstance(payload, dict) else {}


def sandbox_bad_request(message: str) -> Response:
    """The ``/_sandbox/`` control API's 400."""
    return json_response({"error": "bad_request", "message": message}, 400)


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Query-string booleans: ``true``/``True``/``1`` (SDKs send Python's ``True``)."""
    if value is None or value == "":
        return default
    return value.strip().lower() in {"true", "1", "yes"}


# --------------------------------------------------------------------------------------------
# Routing and look-ups
# --------------------------------------------------------------------------------------------


def match_path(
    pattern: Sequence[str], segments: Sequence[str], *, ignore_case: bool = False
) -> dict[str, str] | None:
    """Match URL path segments against a route pattern, returning its named parts (or None).

    A pattern holds literals, ``{name}`` for one segment and, last, ``{name*}`` for the rest of
    the path. ``ignore_case`` matches literals (written lower-case) whatever the request's case,
    as Xero's and ASP.NET's paths are case-insensitive.
    """
    params: dict[str, str] = {}
    for index, part in enumerate(pattern):
        if index >= len(segments):
            return None
        if part.endswith("*}"):
            params[part[1:-2]] = "/".join(segments[index:])
            return params
        segment = segments[index]
        if part.startswith("{"):
            params[part[1:-1]] = segment
        elif part != (segment.lower() if ignore_case else segment):
            return None
    return params if len(segments) == len(pattern) else None


class Route(Protocol):
    @property
    def method(self) -> str: ...

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None: ...


RouteT = TypeVar("RouteT", bound=Route)


def find_route(
    routes: Iterable[RouteT], method: str, segments: list[str]
) -> tuple[RouteT, dict[str, str]] | None:
    """The first route serving ``method`` on this path, with the path's named parts."""
    matches = ((route, route.match(method, segments)) for route in routes)
    return next(((route, params) for route, params in matches if params is not None), None)


def path_is_routed(routes: Iterable[Route], segments: list[str]) -> bool:
    """Whether some route serves this path (under any method): another method is a 405, not a 404."""
    return any(route.match(route.method, segments) is not None for route in routes)


class Named(Protocol):
    @property
    def name(self) -> str: ...


NamedT = TypeVar("NamedT", bound=Named)


def find_named(
    candidates: Iterable[NamedT], name_or_id: str, aliases: Callable[[NamedT], Iterable[str]], what: str
) -> NamedT:
    """The candidate called ``name_or_id`` by one of its (lower-case) aliases, ignoring case.

    Raises ``ValueError`` naming what there is, so a test with a typo says what it could have used.
    """
    options = list(candidates)
    wanted = name_or_id.strip().lower()
    found = next((candidate for candidate in options if wanted in set(aliases(candidate))), None)
    if found is None:
        raise ValueError(f"no {what} {name_or_id!r}; have {[candidate.name for candidate in options]}")
    return found


# --------------------------------------------------------------------------------------------
# The simulator base class
# --------------------------------------------------------------------------------------------


class LedgerSimulator(ABC):
    """Base of every ledger simulator: state, OAuth plumbing, faults, logs and the control API.

    Subclasses set ``provider`` and ``settings_model`` and implement the abstract hooks
    (``_load_dataset``, ``_register_routes``, ``mint_tokens``, ``revoke_consent``,
    ``organisations``); they may override ``fault_response``, ``gateway_timeout_response`` and
    ``_make_access_token``.

    Control routes (JSON, under ``/_sandbox``) and the Python method each mirrors:

    - ``GET /`` — summary (provider, preset, clock, organisations)
    - ``POST /seed {"preset": "small"|"large"|"empty"}`` — :meth:`seed`
    - ``GET /organisations`` — :meth:`organisations`
    - ``POST /tokens {"organisations": [ids or names], "scope": "..."}`` — :meth:`mint_tokens`
    - ``POST /auto-consent {"enabled": bool, "deny": bool}`` — :meth:`set_auto_consent`
    - ``GET /faults``, ``POST /faults {kind, path, method, count, probability, skip, retry_after}``
      (or ``{"faults": [...]}``, or ``{"seed": N}`` to reseed), ``DELETE /faults`` (all),
      ``DELETE /faults/<rule_id>`` (one, answering its counts) — :meth:`inject_fault`,
      :meth:`clear_faults`
    - ``GET /writes?kind=&org=`` — :meth:`writes`
    - ``GET /requests?path=&method=``, ``DELETE /requests`` — :meth:`requests`
    - ``GET /refresh-tokens`` — :meth:`refresh_tokens`
    - ``GET /clock``, ``POST /clock {"now": iso8601, "scale": N}``,
      ``POST /clock/advance {"seconds": N}`` — ``clock``, :meth:`advance_clock`
    - ``GET /settings``, ``POST /settings {name: value, ...}`` — :meth:`update_settings`
    """

    provider: ClassVar[str]
    settings_model: ClassVar[type[SimulatorSettings]] = SimulatorSettings

    def __init__(
        self,
        clock: SimClock | None = None,
        *,
        auto_consent: bool = False,
        preset: Preset = "small",
        settings: SimulatorSettings | None = None,
        fault_seed: int = 0,
        data_seed: int = 0,
    ) -> None:
        self.clock = clock or SimClock()
        self.settings = settings or self.settings_model()
        if not isinstance(self.settings, self.settings_model):
            raise TypeError(f"settings must be {self.settings_model.__name__}")
        # Guards all ledger state. Never held while a request waits "in flight".
        self.lock = threading.RLock()
        self.apps = AppRegistry()
        self.users = UserDirectory()
        self.codes = AuthorizationCodeStore(self.clock)
        self.tokens = TokenRegistry(self.clock, self._make_access_token)
        self.faults = FaultInjector(fault_seed)
        self.write_log = WriteLog(self.clock, self.settings.write_log_limit)
        self.request_log = RequestLog(self.clock, self.settings.request_log_limit)
        self.rate_limiter = RateLimiter(self.clock)
        self.concurrency = ConcurrencyGate()
        self.idempotency = IdempotencyStore(self.clock)
        self.auto_consent = auto_consent
        self.auto_consent_deny = False
        self.data_seed = data_seed
        self.preset: Preset = preset
        # Set on close(): releases requests held by timeout/lost_response faults over HTTP.
        self._release_held = threading.Event()
        self.seed(preset)
        self.wsgi_app: Flask = self._build_app()

    # -- hooks for providers -------------------------------------------------------------------

    @abstractmethod
    def _load_dataset(self, dataset: Dataset) -> None:
        """Replace all ledger data with the provider's mapping of ``dataset`` (lock held)."""

    @abstractmethod
    def _register_routes(self, app: Flask) -> None:
        """Add the ledger's real paths to ``app``."""

    @abstractmethod
    def mint_tokens(
        self, organisations: Sequence[str] | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        """Consent as the seeded user (to the given organisation ids or names; all if None) and
        return the ledger's token response plus the organisations it covers."""

    @abstractmethod
    def revoke_consent(self, user_id: str | None = None) -> None:
        """The user withdrew consent in the ledger (None: every user): tokens die, connections go."""

    @abstractmethod
    def organisations(self) -> list[dict[str, Any]]:
        """``[{"id": ..., "name": ...}]`` for the seeded organisations."""

    def _make_access_token(self, grant: TokenGrant, jti: str, issued: datetime, expires: datetime) -> str:
        return _opaque_token(grant, jti, issued, expires)

    def fault_response(self, rule: FaultRule) -> Response:
        """The response for a 429/500/503 fault; providers add their own headers and bodies."""
        if rule.kind is FaultKind.RATE_LIMIT:
            return json_response({"error": "rate_limited"}, 429, {"Retry-After": str(rule.retry_after or 1)})
        if rule.kind is FaultKind.SERVER_ERROR:
            return json_response({"error": "internal_server_error"}, 500)
        return Response("Service Unavailable", status=503, content_type="text/plain")

    def gateway_timeout_response(self) -> Response:
        return Response("Gateway Timeout", status=504, content_type="text/plain")

    # -- steps the providers' request handlers share ---------------------------------------------
    #
    # Faults are applied around every request by the app itself (``_apply_fault_before`` and
    # ``_finish_request``); a provider's API handler runs: its token check (``bearer_access``)
    # -> its rate and concurrency limits (``concurrency_slot``, ``self.rate_limiter``) ->
    # ``run_in_flight`` -> the route handler, idempotent writes through ``replay_or_run``. The
    # responses to each refusal are the provider's own.

    def bearer_access(self) -> AccessTokenRecord:
        """The access token of this request's ``Authorization: Bearer`` header.

        Raises an :class:`AccessTokenProblem`, which each provider answers with its own 401.
        """
        with self.lock:
            return self.tokens.authenticate(request.headers.get("Authorization"))

    @contextmanager
    def concurrency_slot(self, key: Hashable, limit: int | None, *, enabled: bool = True) -> Iterator[bool]:
        """Hold one of ``limit`` in-flight places for ``key`` while the request runs.

        Yields False, holding nothing, when every place is taken (the caller answers its 429);
        not ``enabled`` (rate limits switched off), it admits without counting.
        """
        if not enabled:
            yield True
            return
        if not self.concurrency.try_enter(key, limit):
            yield False
            return
        try:
            yield True
        finally:
            self.concurrency.leave(key)

    def run_in_flight(self, handler: Callable[[], Response]) -> Response:
        """Spend ``latency_seconds`` "in flight", then run ``handler`` under the state lock.

        The wait is outside the lock so concurrent requests overlap and concurrency limits trip.
        """
        if self.settings.latency_seconds:
            time.sleep(self.settings.latency_seconds)
        with self.lock:
            return handler()

    def replay_or_run(
        self,
        scope: Hashable,
        key: str,
        fingerprint: str,
        window_seconds: float,
        write: Callable[[], Response],
    ) -> Response:
        """An idempotent write: replay the response stored for ``(scope, key)``, or run ``write``
        and keep its response for ``window_seconds`` (unless a 5xx, which a client may retry).

        Raises :class:`IdempotencyKeyReused` when the key was used for a different request.
        """
        stored = self.idempotency.lookup(scope, key, fingerprint)
        if stored is not None:
            replay = stored.to_response()
            replay.headers[IDEMPOTENT_REPLAY_HEADER] = "true"
            return replay
        response = write()
        if response.status_code < 500:
            self.idempotency.store(scope, key, fingerprint, response, window_seconds)
        return response

    def redeem_posted_code(self, client_id: str) -> Consent:
        """The ``authorization_code`` grant: redeem the form's code, redirect URI and verifier."""
        return self.codes.redeem(
            request.form.get("code"),
            client_id=client_id,
            redirect_uri=request.form.get("redirect_uri"),
            code_verifier=request.form.get("code_verifier"),
        )

    def revoke_app_grant(self, grant: TokenGrant | None, client_id: str) -> bool:
        """An app revokes a token: only a grant of its own dies; anything else is ignored, as
        RFC 7009 has it (an unknown token is not an error). Returns whether a grant was revoked."""
        if grant is None or grant.client_id != client_id:
            return False
        self.tokens.revoke_grant(grant.grant_id, "revoked by the app")
        return True

    # -- Python control methods ----------------------------------------------------------------

    def seed(self, preset: Preset = "small") -> dict[str, Any]:
        """Reset all ledger data to ``preset``. Tokens and connections survive (ids are stable);
        the write log and idempotency cache are cleared because the data they describe is gone."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}")
        dataset = build_dataset(preset, seed=self.data_seed, today=self.clock.today())
        with self.lock:
            self._load_dataset(dataset)
            self.preset = preset
            self.write_log.clear()
            self.idempotency.clear()
        return {"preset": preset, "organisations": self.organisations()}

    def set_auto_consent(self, enabled: bool, *, deny: bool = False) -> None:
        with self.lock:
            self.auto_consent = enabled
            self.auto_consent_deny = deny

    def inject_fault(
        self,
        kind: FaultKind | str,
        path: str = "*",
        *,
        method: str = "*",
        count: int | None = 1,
        probability: float = 1.0,
        skip: int = 0,
        retry_after: int | None = None,
    ) -> FaultRule:
        return self.faults.add(
            kind,
            path,
            method=method,
            count=count,
            probability=probability,
            skip=skip,
            retry_after=retry_after,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def writes(self, *, kind: str | None = None, org: str | None = None) -> list[dict[str, Any]]:
        return [entry.as_dict() for entry in self.write_log.entries(kind=kind, org=org)]

    def requests(self, *, path_glob: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        return [entry.as_dict() for entry in self.request_log.entries(path_glob=path_glob, method=method)]

    def refresh_tokens(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.tokens.refresh_token_records()

    def issued_secrets(self) -> list[str]:
        """Every credential this simulator handed out: what must never appear in a log."""
        with self.lock:
            return self.tokens.issued_values()

    def advance_clock(self, seconds: float) -> datetime:
        return self.clock.advance(seconds)

    def update_settings(self, **changes: Any) -> SimulatorSettings:
        with self.lock:
            try:
                self.settings = self.settings_model.model_validate({**self.settings.model_dump(), **changes})
            except ValidationError as error:
                raise ValueError(str(error)) from error
            return self.settings

    def transport(self) -> SimulatorTransport:
        """An httpx transport serving this simulator in-process (no sockets)."""
        return SimulatorTransport(self.wsgi_app)

    def close(self) -> None:
        """Release any request held by a timeout fault (call before stopping a server)."""
        self._release_held.set()

    @property
    def token_policy(self) -> TokenPolicy:
        return TokenPolicy.from_settings(self.settings)

    # -- the Flask app -------------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask(f"ledgerlink_sandbox_{self.provider}")
        app.register_blueprint(self._control_blueprint())
        app.before_request(self._apply_fault_before)
        app.after_request(self._finish_request)
        self._register_routes(app)
        return app

    @staticmethod
    def _is_control_path(path: str) -> bool:
        return path.startswith("/_sandbox")

    def _in_process(self) -> bool:
        return bool(request.environ.get(IN_PROCESS_ENVIRON_KEY))

    def _hold_then_gateway_timeout(self) -> Response:
        self._release_held.wait(self.settings.fault_delay_seconds)
        return self.gateway_timeout_response()

    def _apply_fault_before(self) -> Response | None:
        g.fault = None
        if self._is_control_path(request.path):
            return None
        rule = self.faults.take(request.method, request.path)
        if rule is None:
            return None
        g.fault = rule
        if rule.kind is FaultKind.TIMEOUT:
            if self._in_process():
                return Response(status=504, headers={FAULT_MARKER_HEADER: rule.kind.value})
            return self._hold_then_gateway_timeout()
        if rule.kind is FaultKind.REVOKE:
            bearer = request.headers.get("Authorization", "")
            user_id = None
            if bearer[:7].lower() == "bearer ":
                with self.lock:
                    user_id = self.tokens.user_for_access_token(bearer[7:].strip())
            with self.lock:
                self.revoke_consent(user_id)
            return None  # the request now proceeds and fails the way a revoked consent does
        if rule.kind is FaultKind.LOST_RESPONSE:
            return None  # applied after the handler committed (see _finish_request)
        return self.fault_response(rule)

    def _finish_request(self, response: Response) -> Response:
        rule: FaultRule | None = g.get("fault")
        if rule is not None and rule.kind is FaultKind.LOST_RESPONSE:
            if self._in_process():
                response.headers[FAULT_MARKER_HEADER] = rule.kind.value
            else:
                response = self._hold_then_gateway_timeout()
        if not self._is_control_path(request.path):
            self.request_log.record(
                method=request.method,
                path=request.path,
                query=request.query_string.decode("latin-1"),
                headers=request.headers.items(),
                status=response.status_code,
                fault=rule.kind.value if rule else None,
            )
        return response

    # -- the control API -----------------------------------------------------------------------

    def _control_blueprint(self) -> Blueprint:  # noqa: PLR0915 - one small closure per route
        control = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")

        @control.get("/")
        def index() -> Response:
            return json_response(
                {
                    "provider": self.provider,
                    "preset": self.preset,
                    "auto_consent": self.auto_consent,
                    "clock": self.clock.describe(),
                    "organisations": self.organisations(),
                    "default_app": {"client_id": DEFAULT_APP.client_id},
                    "default_user": {"email": DEFAULT_USER.email},
                }
            )

        @control.post("/seed")
        def seed() -> Response:
            preset = request_json_object().get("preset", "small")
            if preset not in PRESETS:
                return sandbox_bad_request(f"preset must be one of {', '.join(PRESETS)}")
            return json_response(self.seed(preset))

        @control.get("/organisations")
        def organisations() -> Response:
            return json_response(self.organisations())

        @control.post("/tokens")
        def tokens() -> Response:
            payload = request_json_object()
            organisations = payload.get("organisations")
            if organisations is not None and not isinstance(organisations, list):
                return sandbox_bad_request("organisations must be a list of ids or names")
            try:
                return json_response(self.mint_tokens(organisations, payload.get("scope")))
            except ValueError as error:
                return sandbox_bad_request(str(error))

        @control.post("/auto-consent")
        def auto_consent() -> Response:
            payload = request_json_object()
            if not isinstance(payload.get("enabled"), bool):
                return sandbox_bad_request("enabled must be true or false")
            self.set_auto_consent(payload["enabled"], deny=bool(payload.get("deny", False)))
            return json_response({"enabled": self.auto_consent, "deny": self.auto_consent_deny})

        @control.get("/faults")
        def list_faults() -> Response:
            return json_response([rule.describe() for rule in self.faults.rules()])

        @control.post("/faults")
        def add_fault() -> Response:
            payload = request_json_object()
            specs = payload.get("faults", [payload])
            added = []
            try:
                for spec in specs:
                    if "seed" in spec and "kind" not in spec:
                        self.faults.reseed(int(spec["seed"]))
                        continue
                    added.append(
                        self.inject_fault(
                            spec["kind"],
                            spec.get("path", "*"),
                            method=spec.get("method", "*"),
                            count=spec.get("count", 1),
                            probability=float(spec.get("probability", 1.0)),
                            skip=int(spec.get("skip", 0)),
                            retry_after=spec.get("retry_after"),
                        ).describe()
                    )
            except (KeyError, ValueError, TypeError) as error:
                return sandbox_bad_request(f"bad fault spec: {error}; kinds: {[k.value for k in FaultKind]}")
            return json_response(added, 201)

        @control.delete("/faults")
        def clear_faults() -> Response:
            self.clear_faults()
            return Response(status=204)

        @control.delete("/faults/<int:rule_id>")
        def remove_fault(rule_id: int) -> Response:
            rule = self.faults.remove(rule_id)
            if rule is None:
                return json_response({"error": f"no fault rule {rule_id}"}, 404)
            return json_response(rule.describe())

        @control.get("/writes")
        def writes() -> Response:
            return json_response(self.writes(kind=request.args.get("kind"), org=request.args.get("org")))

        @control.get("/requests")
        def requests_() -> Response:
            return json_response(
                self.requests(path_glob=request.args.get("path"), method=request.args.get("method"))
            )

        @control.delete("/requests")
        def clear_requests() -> Response:
            self.request_log.clear()
            return Response(status=204)

        @control.get("/refresh-tokens")
        def refresh_tokens() -> Response:
            return json_response(self.refresh_tokens())

        @control.get("/clock")
        def clock() -> Response:
            return json_response(self.clock.describe())

        @control.post("/clock")
        def set_clock() -> Response:
            payload = request_json_object()
            try:
                if "now" in payload:
                    self.clock.set(datetime.fromisoformat(str(payload["now"]).replace("Z", "+00:00")))
                if "scale" in payload:
                    self.clock.set_scale(float(payload["scale"]))
            except (TypeError, ValueError) as error:
                return sandbox_bad_request(str(error))
            return json_response(self.clock.describe())

        @control.post("/clock/advance")
        def advance_clock() -> Response:
            try:
                self.advance_clock(float(request_json_object().get("seconds", 0)))
            except (TypeError, ValueError) as error:
                return sandbox_bad_request(str(error))
            return json_response(self.clock.describe())

        @control.get("/settings")
        def get_settings() -> Response:
            return json_response(self.settings.model_dump())

        @control.post("/settings")
        def post_settings() -> Response:
            try:
                return json_response(self.update_settings(**request_json_object()).model_dump())
            except ValueError as error:
                return sandbox_bad_request(str(error))

        return control
