"""One httpx transport for several in-process apps, chosen by host name: the API gateway and the
ledger simulators all answer inside the test process, with no ports and no patched network."""

from __future__ import annotations

import httpx


class RoutingTransport(httpx.BaseTransport):
    def __init__(self, routes: dict[str, httpx.BaseTransport]):
        self._routes = routes

    def add(self, host: str, transport: httpx.BaseTransport) -> None:
        self._routes[host] = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._routes.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no in-process app serves {request.url.host}", request=request)
        return transport.handle_request(request)
