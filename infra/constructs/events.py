"""The ``ledgerlink`` event bus (status changes, refreshed lists, published items) and the schedule."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import EVENT_BUS_NAME, REFRESH_SCHEDULE_INPUT, REFRESH_SCHEDULE_MINUTES


class Events(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        # The capture product subscribes to this bus with its own rules (DESIGN §5).
        self.bus = events.EventBus(self, "Bus", event_bus_name=EVENT_BUS_NAME)

    def schedule_refresh_fan_out(self, refresh_lists: lambda_.IFunction) -> events.Rule:
        """Every few minutes refresh_lists enqueues the connections whose lists are due. Scheduled
        rules only exist on the default bus, so this rule is not on ``self.bus``."""
        return events.Rule(
            self,
            "RefreshSchedule",
            description="ledgerlink: fan out list refreshes for due connections",
            schedule=events.Schedule.rate(Duration.minutes(REFRESH_SCHEDULE_MINUTES)),
            targets=[
                targets.LambdaFunction(
                    refresh_lists,
                    event=events.RuleTargetInput.from_object(dict(REFRESH_SCHEDULE_INPUT)),
                    # A missed tick is harmless: the next one picks up every due connection.
                    retry_attempts=2,
                    max_event_age=Duration.minutes(REFRESH_SCHEDULE_MINUTES),
                )
            ],
        )
