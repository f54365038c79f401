"""One logger, tracer and metrics object per container, configured by Powertools' own
environment variables (service name, log level, metrics namespace)."""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="ledgerlink")
tracer = Tracer(service="ledgerlink")
metrics = Metrics(namespace="ledgerlink", service="ledgerlink")

# These libraries log whole request and response payloads at DEBUG (botocore would print every
# Secrets Manager value, httpcore every header): never let them, whatever the root level is.
for _library in ("botocore", "boto3", "urllib3", "httpcore", "s3transfer"):
    logging.getLogger(_library).setLevel(logging.INFO)


def count(name: str, value: int = 1) -> None:
    """Add to a CloudWatch metric (EMF in the function's log; the alarms watch these)."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
