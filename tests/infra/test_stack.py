"""The synthesised stack: storage, queues, functions, least-privilege roles, API, schedule, alarms, cdk-nag.

Everything here reads the one session-wide synth (``synthesized`` in conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import constants
from infra.api_routes import GATEWAY_ERRORS, OAUTH_CALLBACK_PATH, ROUTES, FunctionName
from infra.options import DeploymentOptions
from infra.permissions import actions_for
from ledgerlink import observability
from ledgerlink.models.common import ProviderName
from ledgerlink.settings import (
    ENV_PREFIX,
    ConnectionSettings,
    MergeSettings,
    PublishSettings,
    RefreshSettings,
)
from ledgerlink.storage import schema
from tests.infra.synthesized import SynthesizedApp

pytestmark = pytest.mark.infra

SETTINGS_MODELS = {
    FunctionName.OAUTH_CALLBACK: ConnectionSettings,
    FunctionName.REFRESH_LISTS: RefreshSettings,
    FunctionName.PUBLISH_ITEM: PublishSettings,
    FunctionName.MERGE_LISTS: MergeSettings,
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def _arn(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def _only(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, sorted(resources)
    return next(iter(resources.items()))


def _statements_of_role(synthesized: SynthesizedApp, name: FunctionName) -> list[dict[str, Any]]:
    role_id = synthesized.role_id(name)
    role = synthesized.resources[role_id]["Properties"]
    assert not role.get("ManagedPolicyArns"), "function roles carry no managed policies"
    statements = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        if _ref(role_id) in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert all(statement["Effect"] == "Allow" for statement in statements)
    return statements


def _synthesized_actions(synthesized: SynthesizedApp, name: FunctionName) -> set[str]:
    return {a for statement in _statements_of_role(synthesized, name) for a in _as_list(statement["Action"])}


def _key_id(synthesized: SynthesizedApp) -> str:
    return _only(synthesized.of_type("AWS::KMS::Key"))[0]


# --- Storage and security ----------------------------------------------------------------------------


def test_table_is_built_from_the_schema_module(synthesized: SynthesizedApp) -> None:
    _, table = _only(synthesized.of_type("AWS::DynamoDB::Table"))
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": schema.PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": schema.SORT_KEY, "KeyType": "RANGE"},
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": schema.TTL_ATTRIBUTE, "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": _arn(_key_id(synthesized)),
            },
        },
    )
    properties = table["Properties"]
    assert {
        a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]
    } == schema.KEY_ATTRIBUTES
    indexes = {
        index["IndexName"]: tuple(key["AttributeName"] for key in index["KeySchema"])
        for index in properties["GlobalSecondaryIndexes"]
    }
    assert indexes == schema.GLOBAL_SECONDARY_INDEXES
    assert table["DeletionPolicy"] == "Retain"


def test_one_rotating_retained_key(synthesized: SynthesizedApp) -> None:
    _, key = _only(synthesized.of_type("AWS::KMS::Key"))
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"


def test_app_credential_secrets_exist_for_every_ledger(synthesized: SynthesizedApp) -> None:
    secrets = {
        s["Properties"]["Name"]: s["Properties"]
        for s in synthesized.of_type("AWS::SecretsManager::Secret").values()
    }
    assert set(secrets) == {f"ledgerlink/apps/{ledger.value}" for ledger in ProviderName}
    for properties in secrets.values():
        assert properties["KmsKeyId"] == _arn(_key_id(synthesized))
        assert '"client_id"' in properties["Description"]
        assert '"client_secret"' in properties["Description"]
        assert properties["SecretString"] == "{}"  # empty: the operator fills it in


def test_documents_bucket_is_private_versioned_logged_and_ssl_only(synthesized: SynthesizedApp) -> None:
    buckets = synthesized.of_type("AWS::S3::Bucket")
    documents_id = synthesized.logical_id(synthesized.stack.storage.documents_bucket)
    documents = buckets[documents_id]["Properties"]
    assert documents["VersioningConfiguration"] == {"Status": "Enabled"}
    assert documents["LoggingConfiguration"]["DestinationBucketName"]["Ref"] in buckets
    for bucket_id, bucket in buckets.items():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        policy = next(
            p
            for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
            if p["Properties"]["Bucket"] == _ref(bucket_id)
        )
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


# --- Queues ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue_attribute", "consumer", "fifo"),
    [
        ("publish_queue", FunctionName.PUBLISH_ITEM, True),
        ("refresh_queue", FunctionName.REFRESH_LISTS, False),
    ],
)
def test_queue_has_dlq_and_a_visibility_timeout_of_six_consumer_timeouts(
    synthesized: SynthesizedApp, queue_attribute: str, consumer: FunctionName, fifo: bool
) -> None:
    queue_id = synthesized.logical_id(getattr(synthesized.stack.queues, queue_attribute))
    queue = synthesized.resources[queue_id]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    dlq = synthesized.resources[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
    assert queue.get("FifoQueue", False) is fifo
    assert dlq.get("FifoQueue", False) is fifo  # a FIFO queue's DLQ must be FIFO too
    consumer_timeout = synthesized.resources[synthesized.function_id(consumer)]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * consumer_timeout


def test_every_queue_is_kms_encrypted_and_ssl_only(synthesized: SynthesizedApp) -> None:
    queues = synthesized.of_type("AWS::SQS::Queue")
    assert len(queues) == 4
    policies = synthesized.of_type("AWS::SQS::QueuePolicy").values()
    for queue_id, queue in queues.items():
        assert queue["Properties"]["KmsMasterKeyId"] == _arn(_key_id(synthesized))
        policy = next(p for p in policies if _ref(queue_id) in p["Properties"]["Queues"])
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


@pytest.mark.parametrize(
    ("name", "queue_attribute", "max_concurrency"),
    [
        (FunctionName.REFRESH_LISTS, "refresh_queue", constants.REFRESH_MAX_CONCURRENCY),
        (FunctionName.PUBLISH_ITEM, "publish_queue", constants.PUBLISH_MAX_CONCURRENCY),
    ],
)
def test_queue_event_sources(
    synthesized: SynthesizedApp, name: FunctionName, queue_attribute: str, max_concurrency: int
) -> None:
    queue_id = synthesized.logical_id(getattr(synthesized.stack.queues, queue_attribute))
    mappings = [
        m["Properties"]
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == _ref(synthesized.function_id(name))
    ]
    assert mappings == [
        {
            "BatchSize": 10,
            "EventSourceArn": _arn(queue_id),
            "FunctionName": _ref(synthesized.function_id(name)),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": max_concurrency},
        }
    ]


def test_refresh_concurrency_is_five() -> None:
    assert constants.REFRESH_MAX_CONCURRENCY == 5


def test_the_publish_queue_is_high_throughput_fifo(synthesized: SynthesizedApp) -> None:
    # Quotas per message group (business) rather than per queue: 300 calls/s per action would
    # otherwise bound every business together (README, "Capacity").
    for queue in (synthesized.stack.queues.publish_queue, synthesized.stack.queues.publish_dlq):
        properties = synthesized.resources[synthesized.logical_id(queue)]["Properties"]
        assert properties["FifoQueue"] is True
        assert properties["DeduplicationScope"] == "messageGroup"
        assert properties["FifoThroughputLimit"] == "perMessageGroupId"
        assert properties["ContentBasedDeduplication"] is False


@pytest.mark.parametrize(
    ("name", "reserved"),
    [
        (FunctionName.OAUTH_CALLBACK, 40),
        (FunctionName.REFRESH_LISTS, 25 + constants.REFRESH_MAX_CONCURRENCY),
        (FunctionName.PUBLISH_ITEM, 40 + constants.PUBLISH_MAX_CONCURRENCY),
        (FunctionName.MERGE_LISTS, 20),
    ],
)
def test_every_function_has_its_reserved_concurrency(
    synthesized: SynthesizedApp, name: FunctionName, reserved: int
) -> None:
    properties = synthesized.resources[synthesized.function_id(name)]["Properties"]
    assert properties["ReservedConcurrentExecutions"] == reserved


def test_the_default_reservations_leave_lambdas_unreserved_minimum_of_a_default_region() -> None:
    # 1,000 per Region by default, of which Lambda keeps 100 unreserved.
    assert sum(DeploymentOptions().reserved_concurrency(name) or 0 for name in FunctionName) <= 900


# --- Functions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FunctionName))
def test_function_runtime_and_observability(synthesized: SynthesizedApp, name: FunctionName) -> None:
    function = synthesized.resources[synthesized.function_id(name)]["Properties"]
    layer_id, _ = synthesized.shared_layer()
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "handler.handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["Layers"] == [_ref(layer_id)]
    log_group = synthesized.resources[function["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == 30
    environment = function["Environment"]["Variables"]
    assert environment["POWERTOOLS_SERVICE_NAME"] == name.value
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "ledgerlink"


@pytest.mark.parametrize("name", list(FunctionName))
def test_function_environment_is_exactly_its_settings_model(
    synthesized: SynthesizedApp, name: FunctionName
) -> None:
    environment = synthesized.resources[synthesized.function_id(name)]["Properties"]["Environment"][
        "Variables"
    ]
    expected = {ENV_PREFIX + field.upper() for field in SETTINGS_MODELS[name].model_fields} - {
        ENV_PREFIX + "LEDGER_ORIGINS"  # local runtime only
    }
    assert {key for key in environment if key.startswith(ENV_PREFIX)} == expected
    assert environment[ENV_PREFIX + "TOKEN_KEY_ID"] == _arn(_key_id(synthesized))
    assert environment[ENV_PREFIX + "SECRETS_PREFIX"] == "ledgerlink/"
    assert environment[ENV_PREFIX + "TOKEN_STORE"] == "per-ledger"


def test_oauth_callback_api_url_is_built_from_the_rest_api_id(synthesized: SynthesizedApp) -> None:
    environment = synthesized.resources[synthesized.function_id(FunctionName.OAUTH_CALLBACK)]["Properties"]
    rest_api_id, _ = _only(synthesized.of_type("AWS::ApiGateway::RestApi"))
    parts = environment["Environment"]["Variables"][ENV_PREFIX + "API_URL"]["Fn::Join"][1]
    # The RestApi id, never the stage or deployment (which depend on the methods, hence on the function).
    assert parts[0] == "https://"
    assert _ref(rest_api_id) in parts
    assert parts[-1] == f"/{constants.API_STAGE_NAME}"
    assert not any("Deployment" in json.dumps(part) or "Stage" in json.dumps(part) for part in parts)


def test_layer_asset_holds_the_shared_package_without_caches(synthesized: SynthesizedApp) -> None:
    _, layer = synthesized.shared_layer()
    asset = synthesized.layer_asset_dir()
    assert (asset / "python" / "ledgerlink" / "__init__.py").is_file()
    assert (asset / "python" / "ledgerlink" / "settings.py").is_file()
    assert not list(asset.rglob("__pycache__"))
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


@pytest.mark.parametrize("name", list(FunctionName))
def test_handler_asset_is_the_function_folder(synthesized: SynthesizedApp, name: FunctionName) -> None:
    asset = synthesized.handler_asset_dir(name)
    assert (asset / "handler.py").is_file()
    assert not list(asset.rglob("__pycache__"))


# --- Least privilege ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FunctionName))
def test_each_role_allows_exactly_the_permissions_module(
    synthesized: SynthesizedApp, name: FunctionName
) -> None:
    assert _synthesized_actions(synthesized, name) == actions_for(name)


def test_one_role_per_function(synthesized: SynthesizedApp) -> None:
    roles = [synthesized.role_id(name) for name in FunctionName]
    assert len(set(roles)) == len(roles)


_RUNTIME_ACTIONS = {
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}


def test_merge_lists_and_publish_item_literally(synthesized: SynthesizedApp) -> None:
    """Spelled out here, not read from infra.permissions, so a change there has to be made twice."""
    assert _synthesized_actions(synthesized, FunctionName.MERGE_LISTS) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "events:PutEvents",
        "sqs:SendMessage",  # a saved auto-publish rule queues the supplier's waiting items
        "kms:Decrypt",  # only via DynamoDB and SQS (the table and the queue use the stack key)
        "kms:GenerateDataKey",  # only via SQS
        *_RUNTIME_ACTIONS,
    }
    assert _synthesized_actions(synthesized, FunctionName.PUBLISH_ITEM) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "s3:GetObject",
        "sqs:SendMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "events:PutEvents",
        *_RUNTIME_ACTIONS,
    }


@pytest.mark.parametrize("name", list(FunctionName))
def test_only_xray_is_granted_on_every_resource(synthesized: SynthesizedApp, name: FunctionName) -> None:
    for statement in _statements_of_role(synthesized, name):
        if "*" in _as_list(statement["Resource"]):
            assert set(_as_list(statement["Action"])) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
        assert not any("*" in action for action in _as_list(statement["Action"]))


def test_secrets_are_scoped_by_name(synthesized: SynthesizedApp) -> None:
    statements = _statements_of_role(synthesized, FunctionName.OAUTH_CALLBACK)
    create = next(s for s in statements if "secretsmanager:CreateSecret" in _as_list(s["Action"]))
    assert json.dumps(create["Resource"]).endswith(':secret:ledgerlink/connections/*"]]}')
    app_secret_ids = [
        _ref(key) for key in synthesized.of_type("AWS::SecretsManager::Secret")
    ]  # Ref = full ARN
    read_apps = [
        s for s in statements if s["Resource"] and all(r in app_secret_ids for r in _as_list(s["Resource"]))
    ]
    assert [_as_list(s["Action"]) for s in read_apps] == [["secretsmanager:GetSecretValue"]]
    assert len(_as_list(read_apps[0]["Resource"])) == len(ProviderName)


def test_merge_lists_uses_the_key_only_through_dynamodb_and_sqs(synthesized: SynthesizedApp) -> None:
    statements = _statements_of_role(synthesized, FunctionName.MERGE_LISTS)
    kms = [s for s in statements if any(a.startswith("kms:") for a in _as_list(s["Action"]))]
    via = {}
    for statement in kms:
        assert statement["Resource"] == _arn(_key_id(synthesized))
        service = json.dumps(statement["Condition"]["StringEquals"]["kms:ViaService"])
        assert service.startswith('{"Fn::Join": ["", ["')
        via[service.split('"')[5].rstrip(".")] = set(_as_list(statement["Action"]))
    assert via == {"dynamodb": {"kms:Decrypt"}, "sqs": {"kms:Decrypt", "kms:GenerateDataKey"}}


# --- API ---------------------------------------------------------------------------------------------


def _resource_paths(synthesized: SynthesizedApp) -> dict[str, str]:
    resources = synthesized.of_type("AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            properties = resources[logical_id]["Properties"]
            parent = properties["ParentId"]
            prefix = path_of(parent["Ref"]) if "Ref" in parent else ""  # GetAtt RootResourceId: the root
            paths[logical_id] = f"{prefix}/{properties['PathPart']}"
        return paths[logical_id]

    for logical_id in resources:
        path_of(logical_id)
    return paths


def test_one_method_per_route_with_cognito_on_every_non_public_route(synthesized: SynthesizedApp) -> None:
    paths = _resource_paths(synthesized)
    authorizer_id, _ = _only(synthesized.of_type("AWS::ApiGateway::Authorizer"))
    methods = {}
    for method in synthesized.of_type("AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        methods[(properties["HttpMethod"], paths[properties["ResourceId"]["Ref"]])] = properties
    assert set(methods) == {(route.method, route.path) for route in ROUTES}
    for route in ROUTES:
        method = methods[(route.method, route.path)]
        if route.public:
            assert method["AuthorizationType"] == "NONE"
            assert "AuthorizerId" not in method
        else:
            assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
            assert method["AuthorizerId"] == _ref(authorizer_id)
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert _arn(synthesized.function_id(route.function)) in integration["Uri"]["Fn::Join"][1]


def test_only_the_oauth_callback_and_the_openapi_document_are_public(synthesized: SynthesizedApp) -> None:
    public = [
        m["Properties"]
        for m in synthesized.of_type("AWS::ApiGateway::Method").values()
        if m["Properties"]["AuthorizationType"] == "NONE"
    ]
    paths = _resource_paths(synthesized)
    assert sorted((m["HttpMethod"], paths[m["ResourceId"]["Ref"]]) for m in public) == [
        ("GET", "/v1/oauth/callback"),
        ("GET", "/v1/openapi.json"),
    ]


def test_authorizer_uses_the_user_pool_and_users_cannot_write_their_claims(
    synthesized: SynthesizedApp,
) -> None:
    pool_id, pool = _only(synthesized.of_type("AWS::Cognito::UserPool"))
    _, authorizer = _only(synthesized.of_type("AWS::ApiGateway::Authorizer"))
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["ProviderARNs"] == [_arn(pool_id)]
    custom = {a["Name"] for a in pool["Properties"]["Schema"]}
    assert custom == {"business_id", "role"}
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    client = synthesized.resources[synthesized.logical_id(synthesized.stack.api.user_pool_client)]
    assert {"custom:business_id", "custom:role"} <= set(client["Properties"]["ReadAttributes"])
    assert not any(a.startswith("custom:") for a in client["Properties"]["WriteAttributes"])


def test_stage_logs_traces_and_throttles(synthesized: SynthesizedApp) -> None:
    from aws_cdk.assertions import Match

    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": constants.API_STAGE_NAME,
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp("requestId"),
            },
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "DataTraceEnabled": False,
                        "LoggingLevel": "ERROR",
                        "ThrottlingRateLimit": constants.API_THROTTLE_RATE_PER_SECOND,
                        "ThrottlingBurstLimit": constants.API_THROTTLE_BURST,
                    }
                )
            ],
        },
    )


def test_the_gateways_own_errors_use_the_api_error_format(synthesized: SynthesizedApp) -> None:
    rest_api_id, _ = _only(synthesized.of_type("AWS::ApiGateway::RestApi"))
    responses = {
        response["Properties"]["ResponseType"]: response["Properties"]
        for response in synthesized.of_type("AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == {
        "UNAUTHORIZED",
        "MISSING_AUTHENTICATION_TOKEN",
        "ACCESS_DENIED",
        "THROTTLED",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    }
    for response_type, response in responses.items():
        assert response["RestApiId"] == _ref(rest_api_id)
        # What the gateway sends once it has put its own (JSON-quoted) message into the template.
        template = response["ResponseTemplates"]["application/json"]
        body = json.loads(template.replace("$context.error.messageString", '"Request too large"'))
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message"}
        assert body["error"]["code"] == GATEWAY_ERRORS[response_type].code
        assert body["error"]["message"]


@pytest.mark.parametrize(
    ("response_type", "status", "body", "headers"),
    [
        (
            "UNAUTHORIZED",
            "401",
            {"code": "unauthenticated", "message": "sign in first: missing or invalid token"},
            {"gatewayresponse.header.WWW-Authenticate": "'Bearer'"},
        ),
        # What a REST API answers for a path or method that matches no route.
        (
            "MISSING_AUTHENTICATION_TOKEN",
            "404",
            {"code": "route_not_found", "message": "no such route"},
            None,
        ),
        ("ACCESS_DENIED", "403", {"code": "forbidden", "message": "not allowed"}, None),
        (
            "THROTTLED",
            "429",
            {"code": "throttled", "message": "too many requests: retry in a moment"},
            {"gatewayresponse.header.Retry-After": "'1'"},
        ),
    ],
)
def test_gateway_error_status_body_and_headers(
    synthesized: SynthesizedApp,
    response_type: str,
    status: str,
    body: dict[str, str],
    headers: dict[str, str] | None,
) -> None:
    from aws_cdk.assertions import Match

    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {
            "ResponseType": response_type,
            "StatusCode": status,
            "ResponseTemplates": {"application/json": json.dumps({"error": body}, separators=(",", ":"))},
            "ResponseParameters": headers if headers else Match.absent(),
        },
    )


@pytest.mark.parametrize(
    ("response_type", "code"), [("DEFAULT_4XX", "bad_request"), ("DEFAULT_5XX", "internal_error")]
)
def test_default_gateway_errors_keep_the_gateways_status_and_message(
    synthesized: SynthesizedApp, response_type: str, code: str
) -> None:
    from aws_cdk.assertions import Match

    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {
            "ResponseType": response_type,
            # 400, 413, 415, 502, 504...: the status still tells the cases apart.
            "StatusCode": Match.absent(),
            "ResponseTemplates": {
                "application/json": f'{{"error":{{"code":"{code}","message":$context.error.messageString}}}}'
            },
        },
    )


# --- Outputs -----------------------------------------------------------------------------------------


def test_outputs_give_an_operator_and_the_capture_product_what_they_need(
    synthesized: SynthesizedApp,
) -> None:
    rest_api_id, _ = _only(synthesized.of_type("AWS::ApiGateway::RestApi"))
    # RestApi adds an output of its own (the stage URL, with a trailing slash); the rest are ours.
    ours = {
        key: value for key, value in synthesized.outputs.items() if not key.startswith("ApiRestApiEndpoint")
    }
    assert all(output.get("Description") for output in ours.values())
    assert set(ours) == {
        "ApiUrl",
        "OAuthCallbackUrl",
        "UserPoolId",
        "UserPoolClientId",
        "PublishQueueUrl",
        "EventBusName",
        "DocumentsBucketName",
        "AlarmTopicArn",
        "AdminPageUrl",
    }

    stack = synthesized.stack
    referenced = {
        "UserPoolId": stack.api.user_pool,
        "UserPoolClientId": stack.api.user_pool_client,
        "PublishQueueUrl": stack.queues.publish_queue,
        "EventBusName": stack.events.bus,
        "DocumentsBucketName": stack.storage.documents_bucket,
        "AlarmTopicArn": stack.monitoring.alarm_topic,
    }
    for output, construct in referenced.items():
        assert ours[output]["Value"] == _ref(synthesized.logical_id(construct)), output
    api_url = ours["ApiUrl"]["Value"]["Fn::Join"][1]
    assert api_url[:2] == ["https://", _ref(rest_api_id)]
    assert api_url[-1] == f"/{constants.API_STAGE_NAME}"
    callback = ours["OAuthCallbackUrl"]["Value"]["Fn::Join"][1]
    assert callback[:-1] == api_url[:-1]
    assert callback[-1] == f"/{constants.API_STAGE_NAME}{OAUTH_CALLBACK_PATH}"


def test_the_callback_output_is_the_redirect_uri_the_handler_sends() -> None:
    from ledgerlink.services.connections import CALLBACK_PATH

    assert OAUTH_CALLBACK_PATH == CALLBACK_PATH


# --- Events and monitoring ---------------------------------------------------------------------------


def test_event_bus_and_refresh_schedule(synthesized: SynthesizedApp) -> None:
    synthesized.template.has_resource_properties("AWS::Events::EventBus", {"Name": "ledgerlink"})
    _, rule = _only(synthesized.of_type("AWS::Events::Rule"))
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == _arn(synthesized.function_id(FunctionName.REFRESH_LISTS))
    assert json.loads(target["Input"]) == {"source": "ledgerlink.schedule", "action": "fan_out"}


def test_an_alarm_on_each_dead_letter_queue(synthesized: SynthesizedApp) -> None:
    redrive_targets = {
        queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for queue in synthesized.of_type("AWS::SQS::Queue").values()
        if "RedrivePolicy" in queue["Properties"]
    }
    topic_id, _ = _only(synthesized.of_type("AWS::SNS::Topic"))
    alarmed = set()
    for alarm in synthesized.of_type("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if properties.get("Namespace") != "AWS/SQS":
            continue
        assert properties["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert properties["Threshold"] == 1
        assert properties["AlarmActions"] == [_ref(topic_id)]
        (dimension,) = properties["Dimensions"]
        alarmed.add(dimension["Value"]["Fn::GetAtt"][0])
    assert alarmed == redrive_targets
    assert len(alarmed) == 2


@pytest.mark.parametrize(
    ("metric_name", "threshold", "period_seconds", "evaluation_periods"),
    [
        (
            observability.CONNECTIONS_NEEDING_RECONNECT,
            constants.NEEDS_RECONNECT_ALARM_THRESHOLD,
            constants.NEEDS_RECONNECT_ALARM_PERIOD_MINUTES * 60,
            1,
        ),
        (
            observability.LEDGER_RATE_LIMITED,
            constants.RATE_LIMITED_ALARM_THRESHOLD,
            constants.RATE_LIMITED_ALARM_PERIOD_MINUTES * 60,
            constants.RATE_LIMITED_ALARM_EVALUATION_PERIODS,
        ),
    ],
)
def test_alarms_on_needs_reconnect_counts_and_429_rates(
    synthesized: SynthesizedApp,
    metric_name: str,
    threshold: int,
    period_seconds: int,
    evaluation_periods: int,
) -> None:
    topic_id, _ = _only(synthesized.of_type("AWS::SNS::Topic"))
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            # What ledgerlink.observability.count() emits: its namespace, its one dimension.
            "Namespace": observability.METRICS_NAMESPACE,
            "MetricName": metric_name,
            "Dimensions": [{"Name": "service", "Value": observability.METRICS_SERVICE}],
            "Statistic": "Sum",
            "Period": period_seconds,
            "EvaluationPeriods": evaluation_periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [_ref(topic_id)],
        },
    )


def test_the_functions_emit_the_metrics_the_alarms_watch() -> None:
    assert constants.METRICS_NAMESPACE == observability.METRICS_NAMESPACE == observability.metrics.namespace
    assert observability.metrics.service == observability.METRICS_SERVICE
    source = {path: path.read_text() for path in constants.SHARED_PACKAGE_DIR.rglob("*.py")}
    emitters = {
        name: sorted(path.name for path, text in source.items() if f"count({name})" in text)
        for name in ("CONNECTIONS_NEEDING_RECONNECT", "LEDGER_RATE_LIMITED")
    }
    # The status keeper makes every needs_reconnect move; 429s are met in the adapters' request loop,
    # at the token endpoint and at KashFlow's login.
    assert emitters == {
        "CONNECTIONS_NEEDING_RECONNECT": ["connection_status.py"],
        "LEDGER_RATE_LIMITED": ["base.py", "kashflow.py"],
    }


# --- cdk-nag -----------------------------------------------------------------------------------------


def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(synthesized: SynthesizedApp) -> None:
    assert synthesized.nag_violations == []


def test_every_acknowledged_finding_carries_a_reason(synthesized: SynthesizedApp) -> None:
    acknowledged = [
        (logical_id, rule)
        for logical_id, resource in synthesized.resources.items()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]
    assert acknowledged, "write_suppressions_to_cloud_formation should copy acknowledgments into Metadata"
    for logical_id, rule in acknowledged:
        assert rule["id"].startswith("AwsSolutions-"), (logical_id, rule)
        assert len(rule.get("reason", "").strip()) >= 40, (logical_id, rule)


def test_the_refresh_worker_is_sized_for_waiting_and_the_others_for_their_cold_start(
    synthesized: SynthesizedApp,
) -> None:
    memory = {
        function: synthesized.resources[synthesized.function_id(function)]["Properties"]["MemorySize"]
        for function in FunctionName
    }
    assert memory.pop(FunctionName.REFRESH_LISTS) == 512
    assert set(memory.values()) == {1024}
