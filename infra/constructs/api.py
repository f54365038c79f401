"""The REST API (``/v1/...`` from ``infra.api_routes.ROUTES``) behind a Cognito user-pool authorizer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from aws_cdk import Acknowledgment, Aws, Fn, RemovalPolicy, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.api_routes import GATEWAY_ERRORS, FunctionName, GatewayError, Route
from infra.constants import (
    API_STAGE_NAME,
    API_THROTTLE_BURST,
    API_THROTTLE_RATE_PER_SECOND,
    COGNITO_BUSINESS_ID_ATTRIBUTE,
    COGNITO_ROLE_ATTRIBUTE,
)

ACCESS_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS
# Extra headers on some gateway errors; values are literals, hence the inner quotes.
GATEWAY_ERROR_HEADERS: Mapping[str, Mapping[str, str]] = {
    "UNAUTHORIZED": {"WWW-Authenticate": "'Bearer'"},  # RFC 6750: which scheme the 401 wants
    # The stage refills its token bucket at API_THROTTLE_RATE_PER_SECOND: a second is enough.
    "THROTTLED": {"Retry-After": "'1'"},
}


class Api(Construct):
    """Build order matters: the functions need ``public_url`` before ``add_routes`` can point methods
    at them, so the RestApi exists first and routes are added once the functions do."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.user_pool, self.user_pool_client = self._user_pool()
        access_logs = logs.LogGroup(self, "AccessLogs", retention=ACCESS_LOG_RETENTION)
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name="ledgerlink",
            description="ledgerlink: connect a capture product to five accounting ledgers",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # Execution logging needs the account-level API Gateway CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=API_STAGE_NAME,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                # Bodies carry OAuth codes and connection settings: never in execution logs.
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=API_THROTTLE_RATE_PER_SECOND,
                throttling_burst_limit=API_THROTTLE_BURST,
            ),
        )
        self._acknowledge_stage_and_logging_role()
        for response_type, error in GATEWAY_ERRORS.items():
            self._gateway_response(response_type, error)
        self.authorizer = apigateway.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[self.user_pool]
        )
        # Attached to every method so that request models and required parameters, once exported from
        # the handlers' OpenAPI documents, are enforced before Lambda is invoked; until then the
        # handlers' own validation (Powertools enable_validation) is what rejects bad requests.
        self.request_validator = self.rest_api.add_request_validator(
            "ValidateRequests", validate_request_body=True, validate_request_parameters=True
        )

    @property
    def public_url(self) -> str:
        """The stage's base URL, ``https://{id}.execute-api.{region}.{suffix}/{stage}``.

        Built from the RestApi id rather than ``rest_api.url``: that URL references the stage, the
        stage the deployment, the deployment every method, and the methods oauth_callback — whose
        environment needs this URL, a cycle CloudFormation rejects. The RestApi itself depends on no
        function, so its id is safe. A custom domain would replace this with a context value.
        """
        return Fn.join(
            "",
            [
                "https://",
                self.rest_api.rest_api_id,
                ".execute-api.",
                Aws.REGION,
                ".",
                Aws.URL_SUFFIX,
                f"/{API_STAGE_NAME}",
            ],
        )

    def add_routes(
        self, routes: Iterable[Route], functions: Mapping[FunctionName, lambda_.IFunction]
    ) -> None:
        """One method per route, a Lambda proxy integration to the route's function."""
        integrations: dict[FunctionName, apigateway.LambdaIntegration] = {}
        for route in routes:
            function = functions[route.function]
            integration = integrations.setdefault(
                route.function,
                # No extra permission for the console's test-invoke: halves the Lambda permissions.
                apigateway.LambdaIntegration(function, proxy=True, allow_test_invoke=False),
            )
            resource = self.rest_api.root.resource_for_path(route.path)
            if route.public:
                method = resource.add_method(
                    route.method,
                    integration,
                    authorization_type=apigateway.AuthorizationType.NONE,
                    request_validator=self.request_validator,
                )
                self._acknowledge_public(method, route)
            else:
                resource.add_method(
                    route.method,
                    integration,
                    authorization_type=apigateway.AuthorizationType.COGNITO,
                    authorizer=self.authorizer,
                    request_validator=self.request_validator,
                )

    def _gateway_response(self, response_type: str, error: GatewayError) -> None:
        """Errors the gateway answers itself (no token, no route, throttled) in the API's error format
        instead of its default ``{"message": ...}``."""
        # Gateway response templates only substitute variables (no VTL). messageString is the gateway's
        # message already quoted as a JSON string; our own messages are quoted here.
        message = json.dumps(error.message) if error.message else "$context.error.messageString"
        body = '{"error":{"code":' + json.dumps(error.code) + ',"message":' + message + "}}"
        headers = GATEWAY_ERROR_HEADERS.get(response_type)
        self.rest_api.add_gateway_response(
            f"{response_type.title().replace('_', '')}Response",
            type=apigateway.ResponseType.of(response_type),
            status_code=str(error.status) if error.status else None,
            response_headers=dict(headers) if headers else None,
            templates={"application/json": body},
        )

    def _acknowledge_stage_and_logging_role(self) -> None:
        logging_role = self.rest_api.node.find_child("CloudWatchRole")
        Validations.of(logging_role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                reason="The account-level API Gateway logging role; this AWS-managed policy is the one "
                "AWS documents for it and only allows writing API Gateway's own log groups.",
            )
        )
        Validations.of(self.rest_api.deployment_stage).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="No WAF web ACL yet: every route but the OAuth callback needs a Cognito token and "
                "the stage is throttled. A web ACL (per-ACL and per-request cost) is an operator choice.",
            )
        )

    @staticmethod
    def _acknowledge_public(method: apigateway.Method, route: Route) -> None:
        reason = f"{route.method} {route.path} needs no sign-in: {route.public_because}."
        Validations.of(method.node.default_child).acknowledge(
            Acknowledgment(id="AwsSolutions-APIG4", reason=reason),
            Acknowledgment(id="AwsSolutions-COG4", reason=reason),
        )

    def _user_pool(self) -> tuple[cognito.UserPool, cognito.UserPoolClient]:
        user_pool = cognito.UserPool(
            self,
            "Users",
            # Users are provisioned by the capture product (AdminCreateUser), which also sets the
            # business and role they act for.
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            custom_attributes={
                COGNITO_BUSINESS_ID_ATTRIBUTE: cognito.StringAttribute(min_len=1, max_len=64, mutable=True),
                COGNITO_ROLE_ATTRIBUTE: cognito.StringAttribute(min_len=1, max_len=32, mutable=True),
            },
            # These users may connect, change and disconnect a business's books: a second factor is worth it.
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )
        Validations.of(user_pool.node.default_child).acknowledge(
            Acknowledgment(
                id="AwsSolutions-COG8",
                reason="Essentials tier: Plus (threat protection) is billed per monthly active user and is "
                "the operator's choice; MFA is already required and the pool has no self sign-up.",
            )
        )
        client = user_pool.add_client(
            "AppClient",
            generate_secret=False,  # used from the capture product's browser pages (SRP)
            auth_flows=cognito.AuthFlow(user_srp=True),
            prevent_user_existence_errors=True,
            # Readable in the ID token but never writable by the user: whoever could set their own
            # business_id or role would act for any business, as an Admin.
            read_attributes=cognito.ClientAttributes()
            .with_standard_attributes(email=True, email_verified=True)
            .with_custom_attributes(COGNITO_BUSINESS_ID_ATTRIBUTE, COGNITO_ROLE_ATTRIBUTE),
            write_attributes=cognito.ClientAttributes().with_standard_attributes(email=True),
        )
        return user_pool, client
