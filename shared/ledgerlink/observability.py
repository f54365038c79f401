"""One logger, tracer and metrics object per container, configured by Powertools' own
environment variables (service name, log level, metrics namespace)."""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

# Every metric carries the dimension service=ledgerlink in this namespace; the stack's alarms
# (infra/constructs/monitoring.py) match on both, so they are named once here.
METRICS_NAMESPACE = "ledgerlink"
METRICS_SERVICE = "ledgerlink"
# Metrics the alarms watch: a connection moved to needs_reconnect; a ledger answered 429.
CONNECTIONS_NEEDING_RECONNECT = "ConnectionsNeedingReconnect"
LEDGER_RATE_LIMITED = "LedgerRateLimited"

logger = Logger(service="ledgerlink")
# Only the libraries we call through are patched: patch_all() would also import sqlite3, http.client
# and X-Ray's database and requests patches on every cold start, for clients we never use.
tracer = Tracer(service="ledgerlink", patch_modules=("botocore", "httpx"))
metrics = Metrics(namespace=METRICS_NAMESPACE, service=METRICS_SERVICE)

# These libraries log whole request and response payloads at DEBUG (botocore would print every
# Secrets Manager value, httpcore every header): never let them, whatever the root level is.
for _library in ("botocore", "boto3", "urllib3", "httpcore", "s3transfer"):
    logging.getLogger(_library).setLevel(logging.INFO)


def count(name: str, value: int = 1) -> None:
    """Add to a CloudWatch metric (EMF in the function's log; the alarms watch these)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
