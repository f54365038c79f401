"""The four functions: one helper builds each, its role is granted exactly ``infra.permissions``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Acknowledgment, ArnFormat, Duration, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.api_routes import FunctionName
from infra.constants import (
    ASSET_EXCLUDES,
    CONNECTION_SECRETS_PREFIX,
    FUNCTION_TIMEOUT_SECONDS,
    FUNCTIONS_DIR,
    HANDLER,
    METRICS_NAMESPACE,
    SECRETS_PREFIX,
    SQS_BATCH_SIZE,
    function_memory_mb,
)
from infra.constructs.layer import SharedLayer
from infra.nag import wildcard_resource_finding
from infra.options import DeploymentOptions
from infra.permissions import PERMISSIONS, Grant, Resource
from ledgerlink.settings import (
    ENV_PREFIX,
    CommonSettings,
    ConnectionSettings,
    MergeSettings,
    PublishSettings,
    RefreshSettings,
    environment_for,
)

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# The simulators' origins are for `ledgerlink local` only: a deployed function talks to the real ledgers.
_LOCAL_ONLY_SETTINGS = frozenset({ENV_PREFIX + "LEDGER_ORIGINS"})

# Why a resource needs a wildcard; each one is acknowledged to cdk-nag (AwsSolutions-IAM5) with this reason.
WILDCARD_REASONS: Mapping[Resource, str] = {
    Resource.TABLE: "table/<name>/index/*: the Query on GSI1 (connections by refresh shard); the pattern "
    "covers only this table's indexes.",
    Resource.CONNECTION_SECRETS: "One secret per connection is created at run time under "
    "ledgerlink/connections/, so only the name prefix is known at deploy time.",
    Resource.DOCUMENT_OBJECTS: "GetObject on the documents bucket's objects, whose keys the capture product "
    "chooses; no other bucket.",
    Resource.ANY: "xray:PutTraceSegments and xray:PutTelemetryRecords do not support resource-level "
    "permissions.",
}

DESCRIPTIONS: Mapping[FunctionName, str] = {
    FunctionName.OAUTH_CALLBACK: "ledgerlink connection lifecycle API and OAuth callback",
    FunctionName.REFRESH_LISTS: "ledgerlink list refresh: schedule fan-out, refresh worker, lists API",
    FunctionName.PUBLISH_ITEM: "ledgerlink publishing: capture queue consumer and items API",
    FunctionName.MERGE_LISTS: "ledgerlink supplier rules and Merge Lists",
}


@dataclass(frozen=True)
class SharedResources:
    """What the functions are configured with and granted on."""

    table: dynamodb.ITable
    key: kms.IKey
    bus: events.IEventBus
    refresh_queue: sqs.IQueue
    publish_queue: sqs.IQueue
    documents_bucket: s3.IBucket
    app_secrets: tuple[secretsmanager.ISecret, ...]


class LedgerFunction(Construct):
    """The one way a ledgerlink function is built: the shared layer's Python runtime (3.13 unless deployed
    otherwise) and architecture (arm64 unless deployed otherwise), JSON logs into its own log group, active tracing, the shared layer, and a
    role holding exactly the given grants."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: FunctionName,
        layer: SharedLayer,
        environment: Mapping[str, str],
        grants: tuple[Grant, ...],
        resources: SharedResources,
        reserved_concurrency: int | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name = name
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION)
        # No managed policy (AWSLambdaBasicExecutionRole would allow creating any log group).
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"ledgerlink {name}: exactly infra/permissions.py",
        )
        for grant in grants:
            self.role.add_to_principal_policy(self._statement(grant, resources))
        self._acknowledge_wildcards(grants, resources)
        self.function = lambda_.Function(
            self,
            "Function",
            description=DESCRIPTIONS[name],
            runtime=layer.runtime,
            # The layer's compiled wheels only load on the architecture they were installed for.
            architecture=layer.architecture,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR / name.value), exclude=list(ASSET_EXCLUDES)),
            handler=HANDLER,
            layers=[layer.layer_version],
            memory_size=function_memory_mb(name),
            timeout=Duration.seconds(FUNCTION_TIMEOUT_SECONDS[name]),
            reserved_concurrent_executions=reserved_concurrency,
            role=self.role,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": name.value,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
        )
        Validations.of(self.function.node.default_child).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="Pinned to the Python the shared layer's wheels are built for (python3.13 unless "
                "deployed otherwise); moving to a newer runtime is a deliberate upgrade of layer and functions "
                "together, not a side effect of a CDK release that knows a newer one.",
            )
        )

    def _acknowledge_wildcards(self, grants: tuple[Grant, ...], resources: SharedResources) -> None:
        findings = {
            wildcard_resource_finding(self, arn): WILDCARD_REASONS[grant.resource]
            for grant in grants
            for arn in self._arns(grant.resource, resources)
            if "*" in arn
        }
        # On the policy resource the findings are about, not on the role (which holds no statements).
        Validations.of(self.role.node.find_child("DefaultPolicy")).acknowledge(
            *(Acknowledgment(id=finding, reason=reason) for finding, reason in sorted(findings.items()))
        )

    def _statement(self, grant: Grant, resources: SharedResources) -> iam.PolicyStatement:
        conditions = None
        if grant.via_service:
            stack = Stack.of(self)
            via = f"{grant.via_service}.{stack.region}.{stack.url_suffix}"
            conditions = {"StringEquals": {"kms:ViaService": via}}
        return iam.PolicyStatement(
            actions=sorted(grant.actions),
            resources=self._arns(grant.resource, resources),
            conditions=conditions,
        )

    def _arns(self, resource: Resource, shared: SharedResources) -> list[str]:
        stack = Stack.of(self)
        match resource:
            case Resource.TABLE:
                return [shared.table.table_arn, f"{shared.table.table_arn}/index/*"]
            case Resource.CONNECTION_SECRETS:
                # Created at run time, one per connection, so only a name pattern can cover them.
                return [
                    stack.format_arn(
                        service="secretsmanager",
                        resource="secret",
                        resource_name=f"{CONNECTION_SECRETS_PREFIX}*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ]
            case Resource.APP_SECRETS:
                # The five secrets are ours, so their full ARNs (tighter than secret:ledgerlink/apps/*).
                return [secret.secret_arn for secret in shared.app_secrets]
            case Resource.STACK_KEY:
                return [shared.key.key_arn]
            case Resource.EVENT_BUS:
                return [shared.bus.event_bus_arn]
            case Resource.REFRESH_QUEUE:
                return [shared.refresh_queue.queue_arn]
            case Resource.PUBLISH_QUEUE:
                return [shared.publish_queue.queue_arn]
            case Resource.DOCUMENT_OBJECTS:
                return [shared.documents_bucket.arn_for_objects("*")]
            case Resource.OWN_LOG_GROUP:
                return [self.log_group.log_group_arn]  # "…:log-group:<name>:*", i.e. its streams
            case Resource.ANY:
                return ["*"]


class Functions(Construct):
    """The four handlers, configured from their settings models and wired to their queues."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer: SharedLayer,
        resources: SharedResources,
        api_url: str,
        options: DeploymentOptions,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = self._settings(resources, api_url=api_url, options=options)
        self.by_name: dict[FunctionName, LedgerFunction] = {
            name: LedgerFunction(
                self,
                _construct_id(name),
                name=name,
                layer=layer,
                environment=_environment(settings[name]),
                grants=PERMISSIONS[name],
                resources=resources,
                reserved_concurrency=options.reserved_concurrency(name),
            )
            for name in FunctionName
        }
        # The role already holds the poller's actions (infra.permissions), so the mappings are declared
        # directly rather than through SqsEventSource, whose grantConsumeMessages would add more.
        self._consume(
            "RefreshQueueSource",
            FunctionName.REFRESH_LISTS,
            resources.refresh_queue,
            options.refresh_max_concurrency,
        )
        self._consume(
            "PublishQueueSource",
            FunctionName.PUBLISH_ITEM,
            resources.publish_queue,
            options.publish_max_concurrency,
        )

    def function(self, name: FunctionName) -> lambda_.Function:
        return self.by_name[name].function

    def _consume(
        self, construct_id: str, name: FunctionName, queue: sqs.IQueue, max_concurrency: int
    ) -> lambda_.EventSourceMapping:
        # The mapping depends on the function, which depends on its role and policy: Lambda checks the
        # role can read the queue when the mapping is created.
        return lambda_.EventSourceMapping(
            self,
            construct_id,
            target=self.function(name),
            event_source_arn=queue.queue_arn,
            batch_size=SQS_BATCH_SIZE,
            # The handlers return batchItemFailures: only the failed records are retried.
            report_batch_item_failures=True,
            max_concurrency=max_concurrency,
        )

    @staticmethod
    def _settings(
        resources: SharedResources, *, api_url: str, options: DeploymentOptions
    ) -> dict[FunctionName, CommonSettings]:
        common = {
            "table_name": resources.table.table_name,
            "event_bus_name": resources.bus.event_bus_name,
            "token_key_id": resources.key.key_arn,
            "secrets_prefix": SECRETS_PREFIX,
            "token_store": options.token_store,
        }
        # Built through the settings models, so a field the handlers require and the stack forgets
        # fails the synth instead of the first request.
        return {
            FunctionName.OAUTH_CALLBACK: ConnectionSettings(
                **common,
                api_url=api_url,
                refresh_queue_url=resources.refresh_queue.queue_url,
                publish_queue_url=resources.publish_queue.queue_url,
                allowed_return_origins=list(options.allowed_return_origins),
            ),
            FunctionName.REFRESH_LISTS: RefreshSettings(
                **common, refresh_queue_url=resources.refresh_queue.queue_url
            ),
            FunctionName.PUBLISH_ITEM: PublishSettings(
                **common,
                publish_queue_url=resources.publish_queue.queue_url,
                documents_bucket=resources.documents_bucket.bucket_name,
            ),
            FunctionName.MERGE_LISTS: MergeSettings(
                **common, publish_queue_url=resources.publish_queue.queue_url
            ),
        }


def _environment(settings: CommonSettings) -> dict[str, str]:
    return {
        name: value for name, value in environment_for(settings).items() if name not in _LOCAL_ONLY_SETTINGS
    }


def _construct_id(name: FunctionName) -> str:
    return "".join(part.capitalize() for part in name.value.split("_"))
