"""Numbers and names the stack is built from, in one place so the trade-offs are visible together.

Plain Python (no CDK import): the tests and the local runtime may read these without starting jsii.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from infra.api_routes import FunctionName

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_PACKAGE_DIR = REPO_ROOT / "shared" / "ledgerlink"  # becomes <layer>/python/ledgerlink
FUNCTIONS_DIR = REPO_ROOT / "functions"  # functions/<name>/handler.py, handler "handler.handler"
HANDLER = "handler.handler"
# Never ship bytecode or caches: they differ per machine and would change the asset hash.
ASSET_EXCLUDES = ("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
# uv's cache for the layer's third-party wheels (gitignored): synths after the first are fast and offline.
LAYER_WHEEL_CACHE_DIR = REPO_ROOT / ".cdk-cache" / "uv"
# The uv that `make setup` bootstraps; the layer bundler runs it (uv export, uv pip install).
BOOTSTRAPPED_UV = REPO_ROOT / ".tools" / "bin" / "uv"

STACK_ID = "Ledgerlink"
EVENT_BUS_NAME = "ledgerlink"
METRICS_NAMESPACE = "ledgerlink"  # ledgerlink.observability.METRICS_NAMESPACE (tests/infra checks they agree)

# Secrets Manager names (see DESIGN §5). The functions' settings carry SECRETS_PREFIX and derive the rest.
SECRETS_PREFIX = "ledgerlink/"
APP_SECRETS_PREFIX = f"{SECRETS_PREFIX}apps/"  # one per ledger, filled in by the operator
CONNECTION_SECRETS_PREFIX = f"{SECRETS_PREFIX}connections/"  # one per connection, created at run time

# --- Functions -------------------------------------------------------------------------------------
# Memory also buys CPU: the handlers' cold import is ~430 ms of CPU-bound work (DESIGN §10).
FUNCTION_MEMORY_MB = 1024
# refresh_lists is billed mostly for waiting on the ledgers and DynamoDB, not for CPU, and needs
# little memory: the handler's imports take ~80 MiB and a large organisation's refresh (10,000
# contacts, every list) peaked at ~60 MiB of Python allocations, moto and the simulator
# included (bench/RESULTS.md, "Lists refresh"). 512 MB keeps 3x headroom and halves the GB-seconds
# of the waiting; its price is half the CPU, so a cold start of its API routes takes ~0.9 s, not ~0.45.
FUNCTION_MEMORY_OVERRIDES_MB: MappingProxyType[FunctionName, int] = MappingProxyType(
    {FunctionName.REFRESH_LISTS: 512}
)


def function_memory_mb(function: FunctionName) -> int:
    return FUNCTION_MEMORY_OVERRIDES_MB.get(function, FUNCTION_MEMORY_MB)


# API-only functions stop at API Gateway's 29 s integration limit anyway. The two queue consumers get
# the time a batch of ten needs when a ledger answers slowly and asks us to back off.
FUNCTION_TIMEOUT_SECONDS: MappingProxyType[FunctionName, int] = MappingProxyType(
    {
        FunctionName.OAUTH_CALLBACK: 29,
        FunctionName.MERGE_LISTS: 29,
        # A large import is paced by the connection's call budget (services/budget.py): KashFlow's
        # 10,000 contacts alone take over four minutes at the refresh's share of 60 calls a minute.
        # A refresh hands over to a fresh delivery after services/lists.REFRESH_TIME_ALLOWANCE.
        FunctionName.REFRESH_LISTS: 900,
        FunctionName.PUBLISH_ITEM: 120,
    }
)

# --- Queues ----------------------------------------------------------------------------------------
SQS_BATCH_SIZE = 10
DLQ_MAX_RECEIVE_COUNT = 5  # sandbox/aws_resources.py mirrors this for the local runtime
# AWS guidance for Lambda consumers: visibility timeout at least six times the function timeout, so a
# batch that is retried by Lambda's poller is not made visible again while it is still being worked on.
VISIBILITY_TIMEOUT_FACTOR = 6
DLQ_RETENTION_DAYS = 14  # the SQS maximum: time for a human to look at what failed
# Each queue consumer's maximum concurrency (the SQS event source's ScalingConfig): the poller never
# runs more copies than this, whatever the backlog, so a backlog cannot take the Region's concurrency.
# These are the defaults of the ledgerlink:refreshMaxConcurrency and ledgerlink:publishMaxConcurrency
# settings, sized for up to a few hundred businesses; the README's "Capacity" section shows the
# arithmetic for more (hourly refreshes x seconds per refresh / 3600).
# Refresh workers call the ledgers' list endpoints; five at a time keeps us inside every ledger's
# per-app rate budget while the schedule fans out across thousands of connections.
REFRESH_MAX_CONCURRENCY = 5
# Publishing is already serialised per business by the FIFO message group; this caps how many
# businesses are worked on at once (Lambda's minimum for an SQS event source is 2).
PUBLISH_MAX_CONCURRENCY = 20


# Reserved concurrency (the ledgerlink:reserveConcurrency setting turns it off): each function is
# guaranteed its share of the Region's pool (1,000 by default, of which Lambda keeps 100 unreserved)
# and can never take more, so a flood of one kind of work starves neither the others nor the account's
# other workloads. A function reserves what its API routes need, sized from the stage's throttle (50
# requests/s, bursts of 100) at well under a second a request, plus, for a queue consumer, its event
# source's maximum concurrency (reserved below that, its own poller would be throttled): 150 in all
# with the default maximums.
API_RESERVED_CONCURRENCY: MappingProxyType[FunctionName, int] = MappingProxyType(
    {
        FunctionName.OAUTH_CALLBACK: 40,
        FunctionName.REFRESH_LISTS: 25,
        FunctionName.PUBLISH_ITEM: 40,
        FunctionName.MERGE_LISTS: 20,
    }
)


def visibility_timeout_seconds(consumer: FunctionName) -> int:
    return VISIBILITY_TIMEOUT_FACTOR * FUNCTION_TIMEOUT_SECONDS[consumer]


# --- Alarms ----------------------------------------------------------------------------------------
# Any message in a dead-letter queue alarms (infra/constructs/monitoring.py). The two below watch the
# functions' own metrics (ledgerlink.observability): one business revoking consent is routine, many in
# an hour point at the app's credentials or a ledger-side change; 429s are retried after Retry-After,
# so only a sustained rate means the app's limits (or the call budget's sizing) are being outgrown.
NEEDS_RECONNECT_ALARM_THRESHOLD = 10  # connections moved to needs_reconnect ...
NEEDS_RECONNECT_ALARM_PERIOD_MINUTES = 60  # ... within an hour
RATE_LIMITED_ALARM_THRESHOLD = 100  # 429s from the ledgers ...
RATE_LIMITED_ALARM_PERIOD_MINUTES = 5  # ... per five minutes ...
RATE_LIMITED_ALARM_EVALUATION_PERIODS = 3  # ... for fifteen minutes running

# --- Schedule --------------------------------------------------------------------------------------
REFRESH_SCHEDULE_MINUTES = 5
# refresh_lists tells a schedule tick from an API or SQS event by this constant input.
REFRESH_SCHEDULE_INPUT: MappingProxyType[str, str] = MappingProxyType(
    {"source": "ledgerlink.schedule", "action": "fan_out"}
)

# --- API -------------------------------------------------------------------------------------------
API_STAGE_NAME = "prod"
API_THROTTLE_RATE_PER_SECOND = 50
API_THROTTLE_BURST = 100
# Cognito custom attributes carried in the ID token; the API trusts them for business scope and role.
COGNITO_BUSINESS_ID_ATTRIBUTE = "business_id"
COGNITO_ROLE_ATTRIBUTE = "role"
