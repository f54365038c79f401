"""One logger, tracer and metrics object per container, configured by Powertools' own
environment variables (service name, log level, metrics namespace)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="ledgerlink")
tracer = Tracer(service="ledgerlink")
metrics = Metrics(namespace="ledgerlink", service="ledgerlink")
