"""Alarms: a message in a dead-letter queue means an item or a refresh needs a human; many connections
needing reconnect, or a sustained rate of 429s from the ledgers, mean something larger is wrong."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constants import (
    NEEDS_RECONNECT_ALARM_PERIOD_MINUTES,
    NEEDS_RECONNECT_ALARM_THRESHOLD,
    RATE_LIMITED_ALARM_EVALUATION_PERIODS,
    RATE_LIMITED_ALARM_PERIOD_MINUTES,
    RATE_LIMITED_ALARM_THRESHOLD,
)
from ledgerlink.observability import (
    CONNECTIONS_NEEDING_RECONNECT,
    LEDGER_RATE_LIMITED,
    METRICS_NAMESPACE,
    METRICS_SERVICE,
)


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
        self.needs_reconnect_alarm = self._metric_alarm(
            "ConnectionsNeedingReconnect",
            CONNECTIONS_NEEDING_RECONNECT,
            description=f"ledgerlink: {NEEDS_RECONNECT_ALARM_THRESHOLD} or more connections moved to "
            f"needs_reconnect within {NEEDS_RECONNECT_ALARM_PERIOD_MINUTES} minutes (check the ledger apps' "
            "credentials and the ledgers' status)",
            threshold=NEEDS_RECONNECT_ALARM_THRESHOLD,
            period=Duration.minutes(NEEDS_RECONNECT_ALARM_PERIOD_MINUTES),
            evaluation_periods=1,
        )
        self.rate_limited_alarm = self._metric_alarm(
            "LedgerRateLimited",
            LEDGER_RATE_LIMITED,
            description=f"ledgerlink: the ledgers answered {RATE_LIMITED_ALARM_THRESHOLD} or more 429s per "
            f"{RATE_LIMITED_ALARM_PERIOD_MINUTES} minutes for "
            f"{RATE_LIMITED_ALARM_PERIOD_MINUTES * RATE_LIMITED_ALARM_EVALUATION_PERIODS} minutes (the apps' "
            "rate limits, or the call budget's sizing, are being outgrown)",
            threshold=RATE_LIMITED_ALARM_THRESHOLD,
            period=Duration.minutes(RATE_LIMITED_ALARM_PERIOD_MINUTES),
            evaluation_periods=RATE_LIMITED_ALARM_EVALUATION_PERIODS,
        )

    def _metric_alarm(
        self,
        construct_id: str,
        metric_name: str,
        *,
        description: str,
        threshold: int,
        period: Duration,
        evaluation_periods: int,
    ) -> cloudwatch.Alarm:
        # The functions' own counts (EMF through ledgerlink.observability.count), summed over every
        # function: each carries the one dimension service=ledgerlink.
        metric = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"service": METRICS_SERVICE},
            statistic=cloudwatch.Stats.SUM,
            period=period,
        )
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # Nothing emitted means nothing happened: no reconnects, no 429s.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        return alarm

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
