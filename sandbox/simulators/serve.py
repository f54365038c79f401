"""Serving simulators over real HTTP on loopback.

``serve_in_thread`` runs any WSGI app on a threaded werkzeug server in a daemon thread (tests,
the local runtime); ``start_sandbox`` builds and serves the requested simulators on consecutive
ports; ``run_sandbox`` does that, prints the base URLs and blocks until Ctrl-C (the CLI).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.simulators.harness import LOOPBACK_HOSTS, LedgerSimulator, SimClock


@dataclass
class RunningServer:
    """A WSGI app being served on loopback. Stop it with :meth:`stop` (or use it as a context)."""

    host: str
    port: int
    _server: BaseWSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve_in_thread(wsgi_app: Callable[..., Any], host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``wsgi_app`` on ``host:port`` (0: any free port) in a background thread.

    Loopback only: the simulators have no authentication on their control API.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"simulators are served on loopback only, not {host!r}")
    server = make_server(host, port, wsgi_app, threaded=True)
    # A short poll interval keeps stop() quick (shutdown waits for the loop's next poll).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox-server-{server.port}", daemon=True)
    thread.start()
    return RunningServer(host=host, port=server.port, _server=server, _thread=thread)


@dataclass
class ServedSimulator:
    provider: str
    simulator: LedgerSimulator
    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.simulator.close()  # release requests held by timeout faults first
        self.server.stop()


def _resolve_providers(providers: Sequence[str]) -> list[str]:
    from sandbox.simulators import (  # imported late: the registry imports this package
        PROVIDER_ORDER,
        SIMULATORS,
    )

    wanted = {p.strip().lower() for p in providers if p.strip()}
    if not wanted or "all" in wanted:
        return [name for name in PROVIDER_ORDER if name in SIMULATORS]
    unknown = wanted - set(PROVIDER_ORDER)
    if unknown:
        raise ValueError(f"unknown ledger(s): {', '.join(sorted(unknown))}; known: {', '.join(PROVIDER_ORDER)}")
    missing = wanted - set(SIMULATORS)
    if missing:
        raise ValueError(f"no simulator yet for: {', '.join(sorted(missing))}; "
                         f"available: {', '.join(SIMULATORS)}")
    return [name for name in PROVIDER_ORDER if name in wanted]


def start_sandbox(
    providers: Sequence[str],
    port: int,
    *,
    auto_consent: bool = False,
    host: str = "127.0.0.1",
    clock_factory: Callable[[], SimClock] = lambda: SimClock(scale=1.0),
) -> list[ServedSimulator]:
    """Build and serve simulators on consecutive ports from ``port``, in the canonical order
    xero, quickbooks, sage, freeagent, kashflow (``[]`` or ``["all"]``: every one available).

    Served simulators follow the wall clock (``scale=1``) so tokens expire as they would live.
    """
    from sandbox.simulators import SIMULATORS  # imported late: the registry imports this package

    served: list[ServedSimulator] = []
    try:
        for offset, provider in enumerate(_resolve_providers(providers)):
            simulator = SIMULATORS[provider](clock_factory(), auto_consent=auto_consent)
            server = serve_in_thread(simulator.wsgi_app, host, port + offset if port else 0)
            served.append(ServedSimulator(provider, simulator, server))
    except BaseException:
        for running in served:
            running.stop()
        raise
    return served


def run_sandbox(providers: list[str], port: int, auto_consent: bool) -> None:
    """Serve the simulators, print each base URL, block until Ctrl-C (or SIGTERM)."""
    served = start_sandbox(providers, port, auto_consent=auto_consent)
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # A supervisor (the local runtime, a container) stops us with SIGTERM, not Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    for running in served:
        print(f"{running.provider:<11} {running.url}   (control API: {running.url}/_sandbox/)", flush=True)
    print("Sign in as admin@example.com / sandbox. Ctrl-C to stop.", flush=True)
    try:
        while not stopping.wait(timeout=0.5):  # a timed wait keeps Ctrl-C responsive
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for running in served:
            running.stop()
