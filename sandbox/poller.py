"""Feeds SQS messages to a handler in batches, as Lambda's event source mapping does: delete what
the handler processed, leave the reported failures for SQS to redeliver (and dead-letter)."""

from __future__ import annotations

import threading
from typing import Any

from infra.api_routes import FunctionName
from sandbox.lambda_host import FunctionHost

BATCH_SIZE = 10


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "0",
                    "SenderId": "local",
                    "ApproximateFirstReceiveTimestamp": "0",
                    **message.get("Attributes", {}),
                },
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


# The longest hold of a refresh paced by the call budget: the rest of a budget window
# (ledgerlink.services.budget.BudgetLimits, at most 60 / 9 s) and SQS's rounding up to whole seconds.
PACE_SECONDS = 11


class SimulatedQueueTime:
    """For in-process runs on a simulated clock (tests, benchmarks), where moto's SQS still hides
    messages on wall-clock time: watches the visibility timeouts and delays the handlers ask for,
    so that a run can let a refresh paced by the call budget come back in simulated time (the wait
    it handed back to the queue) rather than in real seconds. Longer holds (a ledger's
    Retry-After, a backoff after a 5xx) are left to the run, which lets that time pass itself."""

    def __init__(self, session: Any):
        self.visibility: dict[str, int] = {}
        # Register before the clients are made: each client copies the session's handlers.
        session.events.register("provide-client-params.sqs.ChangeMessageVisibility", self._on_visibility)
        session.events.register("provide-client-params.sqs.SendMessage", self._on_send)

    def _on_visibility(self, params: dict[str, Any], **_kwargs: Any) -> None:
        self.visibility[params["ReceiptHandle"]] = int(params["VisibilityTimeout"])

    def _on_send(self, params: dict[str, Any], **_kwargs: Any) -> None:
        # A paced refresh carried on in a fresh message: delivered now, it finds the window where
        # it stands and hands the rest of the wait back again (which the run then lets pass).
        if 0 < int(params.get("DelaySeconds", 0)) <= PACE_SECONDS:
            params["DelaySeconds"] = 0

    def release_paced(self, poller: QueuePoller, advance: Any) -> bool:
        """Bring back the poller's messages held for a pace, after ``advance(seconds)`` moves the
        simulated clock on by the longest of those holds; False when there were none."""
        paced = [h for h in poller.failed_receipts if 0 < self.visibility.get(h, 0) <= PACE_SECONDS]
        if not paced:
            return False
        advance(max(self.visibility[h] for h in paced))
        poller.make_visible(paced)
        return True


class QueuePoller:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: FunctionName,
        host: FunctionHost,
        *,
        idle_seconds: float = 0.2,
    ):
        self._sqs = sqs
        self._queue_url = queue_url
        self._function = function
        self._host = host
        # Short polls with a pause when idle: moto's long polling spins a CPU core while it waits.
        self._idle_seconds = idle_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poller-{function.value}", daemon=True)
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self._queue_arn = attributes["QueueArn"]
        self._region = self._queue_arn.split(":")[3]
        self.batches = 0
        # Receipt handles of messages the handler failed: SQS redelivers them after their
        # visibility timeout (tests fast-forward that with make_failed_visible()).
        self.failed_receipts: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll_once(self) -> int:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=BATCH_SIZE,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        result = self._host.invoke(self._function, sqs_event(messages, self._queue_arn, self._region)) or {}
        failed = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        self.failed_receipts += [m["ReceiptHandle"] for m in messages if m["MessageId"] in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        self.batches += 1
        return len(messages)

    def make_failed_visible(self) -> int:
        """Let the failed messages come back now instead of after their visibility timeout."""
        return self.make_visible(list(self.failed_receipts))

    def make_visible(self, handles: list[str]) -> int:
        """Let these failed messages come back now instead of after their visibility timeout."""
        self.failed_receipts = [handle for handle in self.failed_receipts if handle not in handles]
        for handle in handles:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=handle, VisibilityTimeout=0
            )
        return len(handles)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poll_once() == 0:
                    self._stop.wait(self._idle_seconds)
            except Exception:  # keep polling: a crashed batch is redelivered by SQS like in Lambda
                import logging

                logging.getLogger("ledgerlink.local").exception("poller batch failed")
                self._stop.wait(1)
