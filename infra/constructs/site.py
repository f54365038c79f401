"""The admin page (``infra/site``: plain HTML, CSS and JavaScript modules, no build step) in a private
S3 bucket behind CloudFront, with the API on the same origin and Cognito's hosted sign-in.

- ``/*`` serves the page from S3 through an origin access control; ``/config.json`` is written at
  deploy time with the sign-in settings (the local runtime serves its own at ``/app/config.json``).
- ``/v1/*`` is the REST API's stage behind the same distribution, never cached, so the page calls
  the API on its own origin: no CORS, and the OAuth dance may return to the page (its origin joins
  the allowed return origins). The origin is built from the RestApi id, not ``rest_api.url``, for
  the reason ``Api.public_url`` gives: the functions' settings need this origin.
- Cognito's hosted sign-in: a user-pool domain and an app client for the page (authorization code
  with PKCE, no secret) whose callback URL is the site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import (
    Acknowledgment,
    Aws,
    DefaultStackSynthesizer,
    Duration,
    Fn,
    RemovalPolicy,
    Stack,
    Validations,
)
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct, IConstruct

from infra.constants import API_STAGE_NAME, COGNITO_BUSINESS_ID_ATTRIBUTE, COGNITO_ROLE_ATTRIBUTE, REPO_ROOT
from infra.nag import flatten_reference, wildcard_resource_finding

SITE_DIR = REPO_ROOT / "infra" / "site"
API_PATH_PATTERN = "/v1/*"
CONFIG_FILE = "config.json"
SIGN_IN_DOMAIN_PREFIX_CONTEXT = "ledgerlink:signInDomainPrefix"
SIGN_IN_SCOPES = (cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE)
LOG_RETENTION = Duration.days(365)
# Neither the page nor its config may be cached stale after a deploy (the deployment also invalidates).
SITE_CACHE_CONTROL = "no-cache"


def default_sign_in_domain_prefix() -> str:
    """Cognito domain prefixes are global per Region: one per account unless the context names one."""
    return Fn.join("-", ["ledgerlink", Aws.ACCOUNT_ID])


class AdminSite(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rest_api_id: str,
        user_pool: cognito.IUserPool,
        sign_in_domain_prefix: str | None = None,
        site_dir: Path = SITE_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        self.logs = self._log_bucket()
        self.bucket = s3.Bucket(
            self,
            "Files",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.logs,
            server_access_logs_prefix="site-bucket/",
            # Holds only what the deployment writes: nothing to keep when the stack goes.
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.sign_in_domain = user_pool.add_domain(
            "HostedSignIn",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=sign_in_domain_prefix or default_sign_in_domain_prefix()
            ),
        )
        self.distribution = self._distribution(rest_api_id)
        self.url = f"https://{self.distribution.distribution_domain_name}"
        self.origin = self.url  # what the OAuth dance may return to
        self.client = self._client(user_pool)
        self.config: dict[str, Any] = {
            "api_url": "",  # the API is on the page's own origin, under /v1
            "auth": {
                "mode": "cognito",
                "domain": self.sign_in_domain.base_url(),
                "client_id": self.client.user_pool_client_id,
                "redirect_uri": f"{self.url}/",
                "scopes": [scope.scope_name for scope in SIGN_IN_SCOPES],
            },
        }
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            sources=[
                s3deploy.Source.asset(str(site_dir), exclude=["*.map", ".DS_Store"]),
                s3deploy.Source.json_data(CONFIG_FILE, self.config),
            ],
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
            cache_control=[s3deploy.CacheControl.from_string(SITE_CACHE_CONTROL)],
            memory_limit=256,
        )
        self._acknowledge_deployment_handler()

    def _log_bucket(self) -> s3.Bucket:
        logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # CloudFront's standard logs are written with an ACL, and server access logs need SSE-S3.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[s3.LifecycleRule(expiration=LOG_RETENTION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        _acknowledge(
            logs,
            "AwsSolutions-S1",
            "This is the access-log bucket of the admin page's bucket and distribution; logging it into "
            "itself would log its own log deliveries without end.",
        )
        return logs

    def _distribution(self, rest_api_id: str) -> cloudfront.Distribution:
        api_origin = origins.HttpOrigin(
            Fn.join("", [rest_api_id, ".execute-api.", Aws.REGION, ".", Aws.URL_SUFFIX]),
            origin_path=f"/{API_STAGE_NAME}",
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
        )
        # The Authorization header reaches the origin only as part of the cache key; a zero default TTL
        # and no Cache-Control from the API mean nothing is actually cached.
        api_cache = cloudfront.CachePolicy(
            self,
            "ApiNoCache",
            comment="ledgerlink API: forward Authorization and the query, cache nothing",
            default_ttl=Duration.seconds(0),
            min_ttl=Duration.seconds(0),
            max_ttl=Duration.seconds(1),
            header_behavior=cloudfront.CacheHeaderBehavior.allow_list("Authorization"),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.all(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
        )
        site_origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)
        headers = self._security_headers()
        distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="ledgerlink admin page and API",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=site_origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
                compress=True,
            ),
            additional_behaviors={
                API_PATH_PATTERN: cloudfront.BehaviorOptions(
                    origin=api_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=api_cache,
                    # Everything but Host: API Gateway answers 403 to a Host that is not its own.
                    origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                ),
                f"/{CONFIG_FILE}": cloudfront.BehaviorOptions(
                    origin=site_origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    response_headers_policy=headers,
                ),
            },
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.logs,
            log_file_prefix="cloudfront/",
        )
        _acknowledge(
            distribution,
            "AwsSolutions-CFR1",
            "No geo restriction: the businesses and accountants who use the page may be anywhere; sign-in "
            "(Cognito with a required second factor) decides who gets in.",
        )
        _acknowledge(
            distribution,
            "AwsSolutions-CFR2",
            "No WAF web ACL yet, as for the API stage: every API call needs a Cognito token and the stage is "
            "throttled. A CloudFront web ACL lives in us-east-1 and costs per rule; it is the operator's choice.",
        )
        _acknowledge(
            distribution,
            "AwsSolutions-CFR4",
            "The distribution uses CloudFront's default *.cloudfront.net certificate, whose minimum viewer "
            "TLS version CloudFront fixes; a custom domain with an ACM certificate (TLSv1.2_2021) is the "
            "operator's choice. The API origin is reached over TLS 1.2 only.",
        )
        return distribution

    def _security_headers(self) -> cloudfront.ResponseHeadersPolicy:
        csp = Fn.join(
            "",
            [
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self' ",
                self.sign_in_domain.base_url(),
                "; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'",
            ],
        )
        return cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="ledgerlink admin page: CSP, HSTS, no framing, no referrer",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=csp, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                # The consent pages of the ledgers need not learn where the user came from.
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
            ),
        )

    def _client(self, user_pool: cognito.IUserPool) -> cognito.UserPoolClient:
        return user_pool.add_client(
            "AdminPageClient",
            user_pool_client_name="ledgerlink-admin-page",
            generate_secret=False,  # a browser page: authorization code with PKCE, no secret
            auth_flows=cognito.AuthFlow(),  # no direct password flows: the hosted sign-in only
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=list(SIGN_IN_SCOPES),
                callback_urls=[f"{self.url}/"],
                logout_urls=[f"{self.url}/"],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(12),
            # The ID token (what the API's authorizer reads) carries the business and the role; the user
            # can never write them.
            read_attributes=cognito.ClientAttributes()
            .with_standard_attributes(email=True, email_verified=True)
            .with_custom_attributes(COGNITO_BUSINESS_ID_ATTRIBUTE, COGNITO_ROLE_ATTRIBUTE),
            write_attributes=cognito.ClientAttributes(),
        )

    def _acknowledge_deployment_handler(self) -> None:
        """BucketDeployment copies the files with a singleton Lambda function CDK owns."""
        stack = Stack.of(self)
        reason = (
            "CDK's BucketDeployment handler syncs the page's files from the CDK asset bucket into the site "
            "bucket: it needs every object of both (the object-level actions and wildcards CDK grants) and "
            "creates a CloudFront invalidation, which has no resource-level permission."
        )
        wildcards = [
            *(
                f"AwsSolutions-IAM5[Action::{action}]"
                for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*")
            ),
            "AwsSolutions-IAM5[Resource::*]",
            wildcard_resource_finding(self, self.bucket.arn_for_objects("*")),
        ]
        if isinstance(stack.synthesizer, DefaultStackSynthesizer):  # the CDK bootstrap's asset bucket
            qualifier = (
                stack.node.try_get_context("@aws-cdk/core:bootstrapQualifier")
                or DefaultStackSynthesizer.DEFAULT_QUALIFIER
            )
            assets = DefaultStackSynthesizer.DEFAULT_FILE_ASSETS_BUCKET_NAME.replace(
                "${Qualifier}", qualifier
            )
            wildcards.append(
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{flatten_reference(assets)}/*]"
            )
        for child in stack.node.children:
            if not child.node.id.startswith("Custom::CDKBucketDeployment"):
                continue
            Validations.of(child).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    reason="CDK's BucketDeployment handler writes its own logs with the AWS-managed basic "
                    "execution policy; it runs only when the stack deploys the admin page.",
                ),
                *(Acknowledgment(id=finding, reason=reason) for finding in wildcards),
                Acknowledgment(
                    id="AwsSolutions-L1",
                    reason="The BucketDeployment handler's runtime is chosen by the CDK release, which moves "
                    "it forward; it runs only at deploy time, never on a request.",
                ),
            )


def _acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    target = construct.node.default_child or construct
    Validations.of(target).acknowledge(Acknowledgment(id=rule, reason=reason))


def without_hosted_sign_in(client: cognito.UserPoolClient) -> None:
    """An SRP-only client (the capture product's own pages) offers no OAuth flow once the pool has a
    hosted sign-in domain: CDK's defaults (implicit and code flows to https://example.com) would let
    the hosted sign-in hand that client's tokens to a URL nobody here controls."""
    cfn = client.node.default_child
    assert isinstance(cfn, cognito.CfnUserPoolClient)
    cfn.allowed_o_auth_flows_user_pool_client = False
    for name in (
        "AllowedOAuthFlows",
        "AllowedOAuthScopes",
        "CallbackURLs",
        "LogoutURLs",
        "SupportedIdentityProviders",
    ):
        cfn.add_property_deletion_override(name)
