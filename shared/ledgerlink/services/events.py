"""Events on the stack's EventBridge bus, so the capture product can react to what happens."""

from __future__ import annotations

import json
from typing import Any

from ledgerlink.observability import logger

EVENT_SOURCE = "ledgerlink"
PUT_EVENTS_BATCH = 10  # PutEvents takes at most ten entries per call


class EventPublisher:
    def __init__(self, client: Any, bus_name: str):
        self._client = client
        self._bus_name = bus_name

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.publish_many([(detail_type, detail)])

    def publish_many(self, events: list[tuple[str, dict[str, Any]]]) -> None:
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
