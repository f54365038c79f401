"""`ledgerlink local`: the whole service on loopback with no AWS account.

moto's server stands in for DynamoDB, SQS, Secrets Manager, S3, EventBridge and KMS (resources
created from the schema constants, as CDK creates them); the ledger simulators serve the five
ledgers; a local gateway turns HTTP into API Gateway events for the handlers; pollers feed the
queues to their consumers in batches; a scheduler tick runs the refresh fan-out. The handlers run
unchanged: nothing in the layer knows it is local.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from infra.api_routes import FunctionName
from sandbox.aws_resources import REGION, LocalResources, create_resources
from sandbox.gateway import LocalGateway, LocalSite
from sandbox.lambda_host import FunctionHost
from sandbox.poller import QueuePoller
from sandbox.simulators.serve import RunningServer, ServedSimulator, serve_in_thread, start_sandbox

LOOPBACK = "127.0.0.1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalRuntime:
    """Start with ``start()``, stop with ``stop()`` (or use as a context manager)."""

    port: int = 8000
    auto_consent: bool = False
    providers: tuple[str, ...] = ("all",)
    simulator_port: int = 0  # 0: any free ports
    scheduler_interval_seconds: float = 60.0
    api_url: str = ""
    resources: LocalResources | None = None
    simulators: list[ServedSimulator] = field(default_factory=list)
    _moto: Any = None
    _gateway_server: RunningServer | None = None
    _pollers: list[QueuePoller] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _scheduler: threading.Thread | None = None
    host: FunctionHost = field(default_factory=FunctionHost)

    def start(self) -> LocalRuntime:
        import logging

        from moto.server import ThreadedMotoServer

        # moto, the simulators and the gateway all run on werkzeug: its per-request lines drown the output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        moto_port = free_port()
        self._moto = ThreadedMotoServer(ip_address=LOOPBACK, port=moto_port, verbose=False)
        self._moto.start()
        os.environ.update(FAKE_CREDENTIALS)
        os.environ["AWS_DEFAULT_REGION"] = REGION
        os.environ["AWS_ENDPOINT_URL"] = f"http://{LOOPBACK}:{moto_port}"
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "1"  # no X-Ray daemon on a laptop
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # no CloudWatch: keep EMF lines off the console
        os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ledgerlink")
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ledgerlink")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

        import boto3

        session = boto3.session.Session(region_name=REGION)
        self.resources = create_resources(session)
        self.simulators = start_sandbox(
            list(self.providers), self.simulator_port, auto_consent=self.auto_consent
        )
        self.api_url = f"http://{LOOPBACK}:{self.port}"
        os.environ.update(
            self.resources.environment(
                api_url=self.api_url,
                ledger_origins={served.provider: served.url for served in self.simulators},
                return_origins=[self.api_url],
            )
        )
        from ledgerlink.runtime import install_runtime

        install_runtime(None)  # a fresh runtime reads the environment set above

        from sandbox.openapi import merged_openapi

        self._gateway_server = serve_in_thread(
            LocalGateway(self.host, openapi=merged_openapi(self.api_url), site=LocalSite()), LOOPBACK, self.port
        )
        self.port = self._gateway_server.port
        self.api_url = f"http://{LOOPBACK}:{self.port}"
        sqs = session.client("sqs")
        self._pollers = [
            QueuePoller(sqs, self.resources.publish_queue_url, FunctionName.PUBLISH_ITEM, self.host),
            QueuePoller(sqs, self.resources.refresh_queue_url, FunctionName.REFRESH_LISTS, self.host),
        ]
        for poller in self._pollers:
            poller.start()
        self._scheduler = threading.Thread(target=self._tick, name="scheduler", daemon=True)
        self._scheduler.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(self.scheduler_interval_seconds):
            try:
                self.host.invoke(
                    FunctionName.REFRESH_LISTS, {"source": "ledgerlink.schedule", "action": "fan_out"}
                )
            except Exception:
                import logging

                logging.getLogger("ledgerlink.local").exception("scheduled fan-out failed")

    def simulator(self, provider: str) -> ServedSimulator:
        return next(served for served in self.simulators if served.provider == provider)

    def stop(self) -> None:
        self._stop.set()
        for poller in self._pollers:
            poller.stop()
        if self._gateway_server is not None:
            self._gateway_server.stop()
        for served in self.simulators:
            served.stop()
        if self._moto is not None:
            self._moto.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def describe(self) -> list[str]:
        lines = [f"API          {self.api_url}/v1   (OpenAPI: {self.api_url}/v1/openapi.json)"]
        lines.append(f"Admin page   {self.api_url}/app/dev-login?business=demo&role=admin")
        lines += [
            f"{served.provider:<12} {served.url}   (control: {served.url}/_sandbox/)"
            for served in self.simulators
        ]
        lines.append(f"AWS (moto)   {os.environ.get('AWS_ENDPOINT_URL')}")
        return lines
