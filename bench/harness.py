"""What the in-process benchmarks share: simulated time for every wait, and a runtime installed
(and the process environment restored) for the length of one measured set-up."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import boto3
import httpx

from ledgerlink.runtime import Runtime, install_runtime
from sandbox.simulators.harness import SimClock


def prepare_benchmark_process() -> None:
    """What every in-process benchmark sets once: moto's faster DynamoDB, fake AWS credentials, no
    tracing, a metrics namespace, and warnings only (a log line per item would drown the results)."""
    from ledgerlink.observability import logger
    from sandbox.moto_speed import speed_up_moto_dynamodb

    speed_up_moto_dynamodb()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("POWERTOOLS_TRACE_DISABLED", "1"),
        ("POWERTOOLS_METRICS_NAMESPACE", "ledgerlink"),
    ):
        os.environ.setdefault(name, value)
    logger.setLevel("WARNING")


def sleep_on(clock: SimClock) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        # Budget waits and Retry-After move simulated time only: the wall time measured is the work.
        clock.advance(seconds)

    return sleep


@contextmanager
def restored_environ() -> Iterator[None]:
    """The set-up writes the functions' settings into os.environ; put it back afterwards."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def installed_runtime(
    clock: SimClock, transport: httpx.BaseTransport, session: boto3.session.Session
) -> Iterator[None]:
    install_runtime(
        Runtime(clock=clock, http_transport=transport, sleep=sleep_on(clock), boto3_session=session)
    )
    try:
        yield
    finally:
        install_runtime(None)
