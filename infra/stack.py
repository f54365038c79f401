"""The ledgerlink stack: one construct per capability, composed in dependency order."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.api_routes import ROUTES, FunctionName
from infra.constructs.api import Api
from infra.constructs.events import Events
from infra.constructs.functions import Functions, SharedResources
from infra.constructs.layer import SharedLayer
from infra.constructs.monitoring import Monitoring
from infra.constructs.queues import Queues
from infra.constructs.security import Security
from infra.constructs.storage import Storage
from infra.options import DeploymentOptions


class LedgerlinkStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, options: DeploymentOptions, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.security = security = Security(self, "Security")
        self.storage = storage = Storage(self, "Storage", key=security.key)
        self.queues = queues = Queues(self, "Queues", key=security.key)
        self.events = events = Events(self, "Events")
        self.api = api = Api(self, "Api")
        layer = SharedLayer(self, "SharedLayer", include_dependencies=options.bundle_layer_dependencies)
        self.functions = Functions(
            self,
            "Functions",
            layer=layer.layer_version,
            resources=SharedResources(
                table=storage.table,
                key=security.key,
                bus=events.bus,
                refresh_queue=queues.refresh_queue,
                publish_queue=queues.publish_queue,
                documents_bucket=storage.documents_bucket,
                app_secrets=tuple(security.app_secrets.values()),
            ),
            api_url=api.public_url,
            options=options,
        )
        api.add_routes(ROUTES, {name: self.functions.function(name) for name in FunctionName})
        events.schedule_refresh_fan_out(self.functions.function(FunctionName.REFRESH_LISTS))
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            dead_letter_queues={"Publish": queues.publish_dlq, "Refresh": queues.refresh_dlq},
        )

        # What an operator or the capture product needs after a deploy.
        CfnOutput(self, "ApiUrl", value=api.public_url)
        CfnOutput(self, "UserPoolId", value=api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=api.user_pool_client.user_pool_client_id)
        CfnOutput(self, "PublishQueueUrl", value=queues.publish_queue.queue_url)
        CfnOutput(self, "EventBusName", value=events.bus.event_bus_name)
        CfnOutput(self, "DocumentsBucketName", value=storage.documents_bucket.bucket_name)
