"""Runs the four handlers in this process the way Lambda would: one invocation at a time per
function (a Lambda container serves one request at a time, and Powertools' resolver relies on it),
each with a Lambda-like context object."""

from __future__ import annotations

import contextvars
import importlib
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from infra.api_routes import FunctionName


@dataclass
class LocalLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-2:000000000000:function:ledgerlink-{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# Locally no metrics are published (there is no CloudWatch), so Powertools' warning that an
# invocation had none to flush says nothing.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

# A context variable, not a thread-local: a handler's own worker threads (the schedule's fan-out)
# run in a copy of its context, so their calls are the function's too.
_invoking: contextvars.ContextVar[FunctionName | None] = contextvars.ContextVar("invoking", default=None)


def current_function() -> FunctionName | None:
    """The function whose handler this thread is running (for tests that watch AWS calls)."""
    return _invoking.get()


class FunctionHost:
    def __init__(self) -> None:
        self._locks = {name: threading.Lock() for name in FunctionName}
        self._handlers: dict[FunctionName, Any] = {}

    def handler(self, function: FunctionName) -> Any:
        if function not in self._handlers:
            module = importlib.import_module(f"functions.{function.value}.handler")
            self._handlers[function] = module.handler
        return self._handlers[function]

    def invoke(self, function: FunctionName, event: dict[str, Any]) -> Any:
        handler = self.handler(function)
        with self._locks[function]:
            token = _invoking.set(function)
            try:
                return handler(event, LocalLambdaContext(function_name=function.value))
            finally:
                _invoking.reset(token)
