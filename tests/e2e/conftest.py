"""`ledgerlink local` started as a user starts it: a separate process on loopback, with the
simulators approving sign-ins at once. Module-scoped, so each e2e file pays for one runtime and
no file sees another's businesses or simulator settings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox.local import free_port

ROOT = Path(__file__).resolve().parents[2]
READY = "Mint a sign-in token"
START_ATTEMPTS = 3


def _start(*, auto_consent: bool) -> tuple[subprocess.Popen[str], list[str]]:
    """The runtime process and its output so far, once it is serving (or has stopped)."""
    # The simulators bind free ports themselves (0); the API's port goes into the OAuth callback
    # URLs before it is bound, so it is chosen here, and another process may take it meanwhile.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.cli",
            "local",
            "--port",
            str(free_port()),
            "--simulator-port",
            "0",
            *(["--auto-consent"] if auto_consent else []),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:  # a thread, so a silent process cannot block the deadline below
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith(READY):
                ready.set()
        ready.set()  # the process ended: stop waiting at once

    threading.Thread(target=read, daemon=True).start()
    ready.wait(120)
    return process, output


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def running_local(*, auto_consent: bool) -> Iterator[dict[str, str]]:
    """`ledgerlink local` for the length of the block: its printed URLs, ``API`` and one per ledger
    simulator. Without auto-consent, sign-ins go through the simulators' consent pages."""
    for _attempt in range(START_ATTEMPTS):
        process, output = _start(auto_consent=auto_consent)
        if any(line.startswith(READY) for line in output):
            break
        _stop(process)
        if not any("in use" in line for line in output):
            break
    else:
        pytest.fail("ledgerlink local found no free port:\n" + "".join(output[-40:]))
    try:
        assert any(line.startswith(READY) for line in output), "ledgerlink local did not start:\n" + "".join(
            output[-40:]
        )
        yield {
            words[0]: words[1]
            for words in (line.split() for line in output)
            if words and words[0] in ("API", "xero", "quickbooks", "sage", "freeagent", "kashflow")
        }
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def local() -> Iterator[dict[str, str]]:
    """The runtime's printed URLs, with the simulators approving sign-ins at once."""
    with running_local(auto_consent=True) as urls:
        yield urls
