"""Alarms: a message in a dead-letter queue means an item or a refresh needs a human."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class Monitoring(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, dead_letter_queues: Mapping[str, sqs.IQueue]
    ) -> None:
        super().__init__(scope, construct_id)
        # Operators subscribe (email, chat, pager) outside the stack. Not KMS-encrypted: CloudWatch
        # would need to use the stack key, which also protects connection tokens.
        self.alarm_topic = sns.Topic(self, "Alarms", display_name="ledgerlink alarms", enforce_ssl=True)
        self.dlq_alarms = {
            name: self._dead_letter_alarm(name, queue) for name, queue in dead_letter_queues.items()
        }

    def _dead_letter_alarm(self, name: str, queue: sqs.IQueue) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            f"{name}DeadLetters",
            alarm_description=f"ledgerlink: messages in the {name} dead-letter queue need attention",
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # SQS publishes nothing for a queue idle for six hours; that is the normal state of a DLQ,
            # not a reason to alarm. The alarm fires when a message arrives.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        return alarm
