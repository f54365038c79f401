"""The per-container dependencies every handler shares: clock, HTTP transport, AWS clients, and
the services built from them.

Nothing is created at import time. The first request builds what it needs and keeps it for the
container's life; tests and the local runtime install their own ``Runtime`` (moto, a simulator's
httpx transport, the simulator's clock) and the handlers run unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from ledgerlink.clock import Clock, SystemClock
from ledgerlink.settings import CommonSettings, settings_from_environment

T = TypeVar("T")
SettingsT = TypeVar("SettingsT", bound=CommonSettings)


class Runtime:
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        boto3_session: Any | None = None,
        environ: dict[str, str] | None = None,
    ):
        self.clock: Clock = clock or SystemClock()
        # None means the real network; tests pass a simulator's transport.
        self.http_transport = http_transport
        self.sleep: Callable[[float], None] = sleep or time.sleep
        self._boto3_session = boto3_session
        self._environ = environ
        self._memo: dict[Any, Any] = {}
        self._lock = threading.RLock()

    def memo(self, key: Any, factory: Callable[[], T]) -> T:
        """Build once per runtime (per container in Lambda) and reuse."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = factory()
            return self._memo[key]  # type: ignore[no-any-return]

    def settings(self, model: type[SettingsT]) -> SettingsT:
        return self.memo(("settings", model), lambda: settings_from_environment(model, self._environ))

    def aws_client(self, service: str) -> Any:
        def build() -> Any:
            import boto3  # imported on first use: a cold start only pays for it when it needs AWS

            session = self._boto3_session or boto3.session.Session()
            return session.client(service)  # type: ignore[call-overload]

        return self.memo(("aws", service), build)

    def http_client(self, **options: Any) -> httpx.Client:
        """A new httpx client on this runtime's transport (callers own and reuse it)."""
        if self.http_transport is not None:
            options["transport"] = self.http_transport
        return httpx.Client(**options)


_current: Runtime | None = None
_current_lock = threading.Lock()


def current_runtime() -> Runtime:
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime()
        return _current


def install_runtime(runtime: Runtime | None) -> None:
    """Replace the process's runtime (tests, the local runtime). ``None`` resets to the default."""
    global _current
    with _current_lock:
        _current = runtime
