"""The two error families of ledgerlink.

``ServiceError`` subclasses are what the API reports to its callers: each class carries its HTTP
status and a stable machine code, and the API renders every one of them the same way,
``{"error": {"code", "message", "field"?}}``.

``LedgerError`` subclasses are what ledger adapters raise, whatever the ledger: the publishing
pipeline and the connection lifecycle decide what to do by the class (retry, hold, show to the
user, ask for a reconnect), never by matching message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class ServiceError(Exception):
    """An error the API reports to its caller."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(ServiceError):
    status = 400
    code = "invalid_request"


class InvalidOAuthState(InvalidRequest):
    code = "invalid_state"


class OAuthDenied(InvalidRequest):
    code = "oauth_denied"


class NotAuthenticated(ServiceError):
    status = 401
    code = "unauthenticated"


class NotPermitted(ServiceError):
    status = 403
    code = "forbidden"


class ResourceNotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class ConnectionExists(Conflict):
    code = "connection_exists"


class InvalidState(Conflict):
    """The request does not fit the resource's current state (e.g. no organisation to choose)."""

    code = "invalid_connection_state"


class Unprocessable(ServiceError):
    status = 422
    code = "validation_failed"


class NotYetAvailable(ServiceError):
    status = 501
    code = "not_implemented"


class UpstreamUnavailable(ServiceError):
    """The ledger could not be reached while the caller waited; nothing was changed."""

    status = 502
    code = "ledger_unavailable"


class LedgerBusy(ServiceError):
    """The ledger kept rate limiting or failing for as long as the caller could wait; nothing was
    stored, and starting the same step again in a minute is the cure."""

    status = 503
    code = "ledger_busy"


# --- Ledger errors -------------------------------------------------------------------------------


class LedgerError(Exception):
    """Something a ledger told us (or failed to tell us)."""

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status


class AuthRevoked(LedgerError):
    """The ledger refused our refresh token or the consent was withdrawn: only a reconnect helps."""


class RateLimited(LedgerError):
    """The ledger asked us to slow down; try again after ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        provider: str | None = None,
        limit: str | None = None,
        stated: bool = True,
    ):
        super().__init__(message, provider=provider, status=429)
        self.retry_after = retry_after
        self.limit = limit
        # False: the ledger sent no Retry-After and ``retry_after`` is our own cautious guess.
        self.stated = stated


class Unavailable(LedgerError):
    """5xx, timeouts, connection failures: transient, retry later."""


class TokenEndpointUnavailable(Unavailable):
    """The ledger's token endpoint failed (5xx, timeout): access cannot be renewed right now, so
    the connection is ``refresh_failing`` until a refresh succeeds."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        unprocessed: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message, provider=provider, status=status)
        # True only when the ledger clearly did not take the request (a 503 with Retry-After, a
        # refused connection), so sending it again cannot spend a single-use code twice.
        self.unprocessed = unprocessed
        self.retry_after = retry_after


@dataclass(frozen=True)
class FieldError:
    """One validation message from a ledger, with the field it concerns when the ledger says."""

    message: str
    field: str | None = None


class Rejected(LedgerError):
    """The ledger refused the content: do not retry unchanged, show the user why."""

    def __init__(
        self,
        message: str,
        *,
        field_errors: list[FieldError] | None = None,
        provider: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message, provider=provider, status=status)
        self.field_errors = field_errors or []


class NotFound(LedgerError):
    """The object we referred to does not exist at the ledger (any more)."""
