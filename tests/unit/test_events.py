"""Events go to EventBridge ten to a PutEvents call, and none is held back when a round stops."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerlink.services.events import EVENT_SOURCE, EventPublisher

pytestmark = pytest.mark.unit


class RecordingEvents:
    """Stands in for the EventBridge client: keeps each PutEvents call's entries."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(Entries))]}


def test_outside_a_batch_each_event_goes_at_once() -> None:
    client = RecordingEvents()
    EventPublisher(client, "bus").publish("item.published", {"item_id": "a"})
    assert [[entry["DetailType"] for entry in call] for call in client.calls] == [["item.published"]]
    (entry,) = client.calls[0]
    assert entry["Source"] == EVENT_SOURCE
    assert entry["EventBusName"] == "bus"


def test_a_batch_sends_ten_to_a_call_in_order_and_the_rest_at_the_end() -> None:
    client = RecordingEvents()
    events = EventPublisher(client, "bus")
    with events.batched():
        for index in range(23):
            events.publish("item.published", {"item_id": index})
        assert [len(call) for call in client.calls] == [10, 10]  # full calls go as soon as they fill
    assert [len(call) for call in client.calls] == [10, 10, 3]
    sent = [entry["Detail"] for call in client.calls for entry in call]
    assert sent == [f'{{"item_id": {index}}}' for index in range(23)]


def test_a_batch_that_raises_still_sends_what_it_published() -> None:
    client = RecordingEvents()
    events = EventPublisher(client, "bus")
    with pytest.raises(RuntimeError), events.batched():
        events.publish("item.published", {"item_id": "a"})
        raise RuntimeError("the ledger went away")
    assert [len(call) for call in client.calls] == [1]
    events.publish("item.failed", {"item_id": "b"})  # the batch is over: sent at once again
    assert [len(call) for call in client.calls] == [1, 1]


def test_a_nested_batch_leaves_the_sending_to_the_outer_one() -> None:
    client = RecordingEvents()
    events = EventPublisher(client, "bus")
    with events.batched():
        with events.batched():
            events.publish("item.published", {"item_id": "a"})
        events.publish("item.published", {"item_id": "b"})
        assert client.calls == []
    assert [len(call) for call in client.calls] == [2]
