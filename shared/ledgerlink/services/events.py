"""Events on the stack's EventBridge bus, so the capture product can react to what happens."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ledgerlink.observability import logger

EVENT_SOURCE = "ledgerlink"
PUT_EVENTS_BATCH = 10  # PutEvents takes at most ten entries per call

Event = tuple[str, dict[str, Any]]  # (detail type, detail)


class EventPublisher:
    def __init__(self, client: Any, bus_name: str):
        self._client = client
        self._bus_name = bus_name
        # Per thread: the local runtime serves several requests at once through one publisher.
        self._local = threading.local()

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        pending: list[Event] | None = getattr(self._local, "pending", None)
        if pending is None:
            self.publish_many([(detail_type, detail)])
            return
        pending.append((detail_type, detail))
        if len(pending) >= PUT_EVENTS_BATCH:
            self.publish_many(pending)
            pending.clear()

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Events published inside the block go out ten to a PutEvents call (a publishing round that
        settles fifty items makes five calls, not fifty), the rest when the block ends, also when it
        raises. A nested block leaves the sending to the outer one."""
        if getattr(self._local, "pending", None) is not None:
            yield
            return
        self._local.pending = []
        try:
            yield
        finally:
            pending, self._local.pending = self._local.pending, None
            self.publish_many(pending)

    def publish_many(self, events: list[Event]) -> None:
        for start in range(0, len(events), PUT_EVENTS_BATCH):
            entries = [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "EventBusName": self._bus_name,
                }
                for detail_type, detail in events[start : start + PUT_EVENTS_BATCH]
            ]
            response = self._client.put_events(Entries=entries)
            if response.get("FailedEntryCount"):
                # Events are notifications: losing one must not undo the state change they report.
                logger.warning("some events were not accepted", failed=response["FailedEntryCount"])
