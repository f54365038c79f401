"""The ledgerlink stack: one construct per capability, composed in dependency order."""

from __future__ import annotations

import dataclasses
from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from constructs import Construct

from infra.api_routes import OAUTH_CALLBACK_PATH, ROUTES, FunctionName
from infra.constructs.api import Api
from infra.constructs.events import Events
from infra.constructs.functions import Functions, SharedResources
from infra.constructs.layer import SharedLayer
from infra.constructs.monitoring import Monitoring
from infra.constructs.queues import Queues
from infra.constructs.security import Security
from infra.constructs.site import SIGN_IN_DOMAIN_PREFIX_CONTEXT, AdminSite, without_hosted_sign_in
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
        # The admin page (S3 + CloudFront, the API under /v1 on the same origin, Cognito's hosted
        # sign-in); the OAuth dance may return to it.
        self.site = site = AdminSite(
            self,
            "AdminSite",
            rest_api_id=api.rest_api.rest_api_id,
            user_pool=api.user_pool,
            sign_in_domain_prefix=self.node.try_get_context(SIGN_IN_DOMAIN_PREFIX_CONTEXT),
        )
        without_hosted_sign_in(api.user_pool_client)
        options = dataclasses.replace(
            options, allowed_return_origins=(*options.allowed_return_origins, site.origin)
        )
        layer = SharedLayer(
            self,
            "SharedLayer",
            architecture=options.architecture,
            python_version=options.python_version,
            include_dependencies=options.bundle_layer_dependencies,
        )
        self.functions = Functions(
            self,
            "Functions",
            layer=layer,
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

        # What an operator or the capture product needs after a deploy (`cdk deploy` prints them).
        outputs = {
            "ApiUrl": (api.public_url, "Base URL of the REST API: <ApiUrl>/v1/..."),
            "OAuthCallbackUrl": (
                Fn.join("", [api.public_url, OAUTH_CALLBACK_PATH]),
                "Redirect URI to register with each ledger's developer app",
            ),
            "UserPoolId": (api.user_pool.user_pool_id, "Cognito user pool the API's tokens come from"),
            "UserPoolClientId": (
                api.user_pool_client.user_pool_client_id,
                "Cognito app client for the capture product's pages (SRP sign-in)",
            ),
            "PublishQueueUrl": (
                queues.publish_queue.queue_url,
                "FIFO queue the capture product sends captured items to (message group: business id)",
            ),
            "EventBusName": (events.bus.event_bus_name, "Event bus for connection, list and publish events"),
            "DocumentsBucketName": (
                storage.documents_bucket.bucket_name,
                "Bucket the capture product puts item documents in for publishing",
            ),
            "AdminPageUrl": (site.url, "The admin Connections page (sign in with a Cognito user of the pool)"),
            "AlarmTopicArn": (
                self.monitoring.alarm_topic.topic_arn,
                "SNS topic of the dead-letter alarms: subscribe an email, chat or pager to it",
            ),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
