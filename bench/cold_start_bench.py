"""Cold start benchmark (issue 9): each handler's import beside the import of only the third-party
libraries that handler needs, measured in the same run, from the deployable assets.

The assets are built the way the stack builds them (infra.constructs.layer.SharedPackageBundler: the
ledgerlink package and the locked runtime wheels, with no dev packages), for this machine's architecture
and Python, then compiled to bytecode. Every measurement is a fresh interpreter (``-I -S``: nothing from
this environment) with only the function's code and the layer on ``sys.path``, as on Lambda, with
Lambda's environment so that Powertools' Tracer is on (tracing is active in the stack) and patches what
it does there. The time is taken around the import alone, so interpreter start-up is not in it. Handler
and baseline runs are interleaved, so load from other processes falls on both alike; the figure is the
median of RUNS.

The baseline for a handler is what it cannot serve a request without: Powertools' logger, metrics,
tracer and REST resolver with validation (pydantic), the X-Ray SDK and the patches the tracer applies
(botocore, httpx), boto3 with its DynamoDB type (de)serialisers (every request reads the table), httpx
(ledger calls and X-Ray's patch), and Powertools' batch utility for the two queue consumers. Everything else a handler imports at start is
its own cost: ledgerlink's modules, and anything that belongs only to some requests (authlib, the ledger
adapters, idempotency, parameters), which should be imported when first used.

Run: ``.venv/bin/python -m bench.cold_start_bench`` (or ``make bench-cold-start``); results go to
bench/RESULTS.md under "Cold start (issue 9)".
"""

from __future__ import annotations

import compileall
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.results import write_section
from infra.api_routes import FunctionName
from infra.constants import FUNCTIONS_DIR, SHARED_PACKAGE_DIR

RUNS = 15
GOAL = 1.15
SECTION = "## Cold start (issue 9)"
COMMAND = ".venv/bin/python -m bench.cold_start_bench"

# What every handler needs to serve any request (see the module docstring).
COMMON_NEEDS = (
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.params",
    # enable_validation=True loads the validation middleware when the resolver is built
    "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
    "aws_lambda_powertools.utilities.typing",
    "pydantic",
    "aws_xray_sdk.core",
    "aws_xray_sdk.ext.botocore.patch",
    "aws_xray_sdk.ext.httpx.patch",
    "boto3",
    "boto3.dynamodb.types",  # the table's item (de)serialisers
    "httpx",
)
QUEUE_CONSUMER_NEEDS = ("aws_lambda_powertools.utilities.batch",)
NEEDS: dict[FunctionName, tuple[str, ...]] = {
    FunctionName.OAUTH_CALLBACK: COMMON_NEEDS,
    FunctionName.REFRESH_LISTS: COMMON_NEEDS + QUEUE_CONSUMER_NEEDS,
    FunctionName.PUBLISH_ITEM: COMMON_NEEDS + QUEUE_CONSUMER_NEEDS,
    FunctionName.MERGE_LISTS: COMMON_NEEDS,
}
# Modules only some requests need: a handler that imports one at start pays for it on every cold start.
LAZY = (
    "authlib",
    "ledgerlink.providers.xero",
    "ledgerlink.providers.quickbooks",
    "ledgerlink.providers.sage",
    "ledgerlink.providers.freeagent",
    "ledgerlink.providers.kashflow",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.parameters",
)

# Runs in each fresh interpreter: argv = task dir, layer dir, "handler" or comma-separated modules.
MEASURE = """
import sys, time
task, layer, what = sys.argv[1:4]
sys.path[:0] = [task, layer]
started, started_cpu = time.perf_counter(), time.process_time()
if what == "handler":
    import handler
else:
    for name in what.split(","):
        __import__(name)
cpu = (time.process_time() - started_cpu) * 1000
wall = (time.perf_counter() - started) * 1000
lazy = sys.argv[4].split(",")
loaded = sorted(name for name in lazy if name in sys.modules)
print(cpu, wall, ",".join(loaded))
"""


@dataclass
class Result:
    name: FunctionName
    handler_ms: list[float]  # CPU time of the import (what contention from other processes leaves alone)
    baseline_ms: list[float]
    handler_wall_ms: list[float]
    baseline_wall_ms: list[float]
    eager: str  # modules from LAZY the handler imported at start

    @property
    def ratio(self) -> float:
        return statistics.median(self.handler_ms) / statistics.median(self.baseline_ms)

    @property
    def wall_ratio(self) -> float:
        return statistics.median(self.handler_wall_ms) / statistics.median(self.baseline_wall_ms)


def build_assets(root: Path) -> tuple[Path, dict[FunctionName, Path]]:
    """The layer and the four functions' code as the stack bundles them, for this machine; compiled."""
    from infra.jsii_env import configure_jsii_environment

    configure_jsii_environment()
    from infra.constructs.layer import SharedPackageBundler

    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundler = SharedPackageBundler(
        SHARED_PACKAGE_DIR,
        python_platform=f"{platform.machine()}-manylinux2014",
        python_version=python_version,  # type: ignore[arg-type]
    )
    bundler.try_bundle(str(root / "opt"), None)  # type: ignore[arg-type]
    tasks = {}
    for name in FunctionName:
        tasks[name] = root / "task" / name.value
        shutil.copytree(FUNCTIONS_DIR / name.value, tasks[name], ignore=shutil.ignore_patterns("__pycache__"))
    # Bytecode for both sides alike: the figure compares imports, not compilation.
    compileall.compile_dir(str(root), quiet=1, workers=0)
    return root / "opt" / "python", tasks


def lambda_environment(name: FunctionName) -> dict[str, str]:
    # What Lambda sets that changes what the imports do: Powertools turns the tracer on inside Lambda.
    return {
        "AWS_LAMBDA_FUNCTION_NAME": f"ledgerlink-{name.value}",
        "AWS_REGION": "eu-west-2",
        "AWS_DEFAULT_REGION": "eu-west-2",
        "POWERTOOLS_SERVICE_NAME": name.value,
        "POWERTOOLS_METRICS_NAMESPACE": "ledgerlink",
        "LAMBDA_TASK_ROOT": "/var/task",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def measure(layer: Path, task: Path, name: FunctionName, what: str) -> tuple[float, float, str]:
    # S603: our own interpreter and script; the arguments are paths this run created.
    output = subprocess.run(  # noqa: S603
        [sys.executable, "-I", "-S", "-c", MEASURE, str(task), str(layer), what, ",".join(LAZY)],
        env=lambda_environment(name),
        cwd=task,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(output[0]), float(output[1]), output[2] if len(output) > 2 else ""


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="ledgerlink-cold-") as scratch:
        layer, tasks = build_assets(Path(scratch))
        results = {name: Result(name, [], [], [], [], "") for name in FunctionName}
        for _ in range(RUNS):
            for name in FunctionName:
                result = results[name]
                cpu, wall, result.eager = measure(layer, tasks[name], name, "handler")
                result.handler_ms.append(cpu)
                result.handler_wall_ms.append(wall)
                cpu, wall, _ = measure(layer, tasks[name], name, ",".join(NEEDS[name]))
                result.baseline_ms.append(cpu)
                result.baseline_wall_ms.append(wall)
        return list(results.values())


def report(results: list[Result], elapsed_s: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = os.cpu_count()
    python = platform.python_version()
    rows = "\n".join(
        f"| {r.name.value} | {statistics.median(r.handler_ms):.0f} | {statistics.median(r.baseline_ms):.0f} "
        f"| {r.ratio:.2f}x | {'yes' if r.ratio <= GOAL else 'NO'} "
        f"| {statistics.median(r.handler_wall_ms):.0f} / {statistics.median(r.baseline_wall_ms):.0f} "
        f"({r.wall_ratio:.2f}x) | {r.eager or 'none'} |"
        for r in results
    )
    needs = ", ".join(f"`{module}`" for module in COMMON_NEEDS)
    return f"""{SECTION}

Command: `{COMMAND}` (or `make bench-cold-start`). Machine: `{platform.machine()}`, {cpus} CPUs,
Python {python}, run on {when}; the whole run took {elapsed_s:.0f} s.

Each handler imported in a fresh interpreter (`-I -S`) from the deployable assets alone (the layer
as the stack bundles it, for this machine's architecture and Python, and the function's folder),
with bytecode compiled and Lambda's environment (so Powertools' tracer is on and patches botocore
and httpx, as in a deployed function), beside a fresh interpreter importing only the third-party
modules that handler needs, measured in the same run, interleaved. Figures are the median of
{RUNS} runs of each, in milliseconds of CPU time spent by the import (interpreter start-up not
included; CPU time rather than wall time because other processes share this machine's cores, which
stretches wall time unevenly; wall-clock medians are shown beside). The
baseline is {needs}, and for the two queue consumers also `aws_lambda_powertools.utilities.batch`.
*Loaded early* lists any module that only some requests need (authlib, the five ledger adapters,
Powertools' idempotency and parameters) found in `sys.modules` after the import. Goal: handler ÷
baseline ≤ {GOAL}x. Other processes share this machine's cores: separate runs have moved a
ratio by up to 0.05, so a figure within 0.05 of the goal is not a clear pass or fail.

| handler | import ms (CPU) | needed libraries ms (CPU) | ratio | within {GOAL}x | wall ms: import / libraries (ratio) | loaded early |
|---|---:|---:|---:|---|---|---|
{rows}

What keeps the handlers near their libraries: authlib (with joserfc and cryptography, ~100 ms) is
imported only when an OAuth call is made (`providers/base.py`); a ledger adapter only when that
ledger is used (`providers/registry.py`); each service by the wiring factory that builds it, so a
handler loads its own services and not the other functions'; Powertools' batch utility only by the
queue consumers, idempotency and parameters at first use; the tracer patches only botocore and httpx
(`patch_all()` would also import sqlite3 and X-Ray's database and requests patches). boto3 is
imported at start (the DynamoDB (de)serialisers every request needs), but no session or client is
created before the first request: `tests/infra/test_layer_bundle.py` imports each handler from the
assets and fails if one is. What remains above the libraries is ledgerlink's own modules, 30-60 ms
of CPU, mostly pydantic building the schemas of its models as their classes are defined (pydantic's
`defer_build` would move about 35 ms of it to each model's first use). Before this issue all four
handlers loaded authlib and every service at import: 1.46-1.49x (wall clock, with a smaller baseline
that left out the validation middleware and the DynamoDB types).

Not measured here: the layer ships no bytecode (it is built on a machine whose Python need not be
the runtime's, and compiled files would make the asset differ per machine), and `/opt` is read-only,
so a cold Lambda also compiles what it imports, 3-4x the import time above (DESIGN §10); building
the layer with the runtime's own Python and shipping its bytecode is the next lever.
"""


def main() -> None:
    started = time.perf_counter()
    results = run()
    section = report(results, time.perf_counter() - started)
    print(section)
    write_section(SECTION, section)


if __name__ == "__main__":
    main()
