"""Settings every suite shares: no real AWS account, no tracing daemon, suites marked by folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports boto3 or Powertools: fake credentials, a fixed region, no X-Ray daemon.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ["AWS_DEFAULT_REGION"] = "eu-west-2"
os.environ["POWERTOOLS_TRACE_DISABLED"] = "1"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ledgerlink-tests")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ledgerlink")
os.environ.setdefault("POWERTOOLS_DEV", "false")

SUITE_MARKERS = {"unit": "unit", "integration": "integration", "infra": "infra", "e2e": "e2e", "simulators": "integration"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).parent
    for item in items:
        suite = Path(str(item.fspath)).relative_to(tests_root).parts[0]
        marker = SUITE_MARKERS.get(suite)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))
