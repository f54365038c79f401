"""The publish queue (FIFO) and the refresh queue, each with its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.api_routes import FunctionName
from infra.constants import DLQ_MAX_RECEIVE_COUNT, DLQ_RETENTION_DAYS, visibility_timeout_seconds


class Queues(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        # Captured items: MessageGroupId = business id, so one ledger organisation is worked on by one
        # consumer at a time while different businesses run in parallel (DESIGN §6).
        self.publish_dlq = self._queue(
            "PublishDeadLetter", fifo=True, retention=Duration.days(DLQ_RETENTION_DAYS)
        )
        self.publish_queue = self._queue(
            "Publish",
            fifo=True,
            consumer=FunctionName.PUBLISH_ITEM,
            dead_letter_queue=self.publish_dlq,
        )
        self.refresh_dlq = self._queue("RefreshDeadLetter", retention=Duration.days(DLQ_RETENTION_DAYS))
        self.refresh_queue = self._queue(
            "Refresh", consumer=FunctionName.REFRESH_LISTS, dead_letter_queue=self.refresh_dlq
        )

    def _queue(
        self,
        construct_id: str,
        *,
        fifo: bool = False,
        consumer: FunctionName | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        retention: Duration | None = None,
    ) -> sqs.Queue:
        fifo_options = (
            {
                "fifo": True,
                # Senders set MessageDeduplicationId from item id + revision (a resend of the same
                # revision is dropped); the body is not a reliable identity.
                "content_based_deduplication": False,
                # High-throughput FIFO: limits apply per business, not to the whole queue.
                "deduplication_scope": sqs.DeduplicationScope.MESSAGE_GROUP,
                "fifo_throughput_limit": sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            }
            if fifo
            else {}
        )
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self._key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_timeout_seconds(consumer)) if consumer else None,
            retention_period=retention,
            dead_letter_queue=(
                sqs.DeadLetterQueue(queue=dead_letter_queue, max_receive_count=DLQ_MAX_RECEIVE_COUNT)
                if dead_letter_queue
                else None
            ),
            **fifo_options,
        )
