"""One httpx transport for several in-process apps, chosen by host name: the API gateway and the
ledger simulators all answer inside the test process, with no ports and no patched network."""

from __future__ import annotations

from collections.abc import Callable

import httpx


class RoutingTransport(httpx.BaseTransport):
    def __init__(
        self,
        routes: dict[str, httpx.BaseTransport],
        *,
        start: Callable[[str], httpx.BaseTransport | None] | None = None,
    ):
        self._routes = routes
        # Starts the app for a host on its first request (e.g. a ledger simulator a test never named).
        self._start = start

    def add(self, host: str, transport: httpx.BaseTransport) -> None:
        self._routes[host] = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        transport = self._routes.get(host)
        if transport is None and self._start is not None:
            transport = self._start(host)
        if transport is None:
            raise httpx.ConnectError(f"no in-process app serves {host}", request=request)
        return transport.handle_request(request)
