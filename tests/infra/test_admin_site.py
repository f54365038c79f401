"""The admin page's hosting: a private bucket behind CloudFront, the API on the same origin under
/v1, the deploy-time config, Cognito's hosted sign-in, and the page's files themselves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra import constants
from infra.api_routes import FunctionName
from infra.constructs.site import API_PATH_PATTERN, CONFIG_FILE, SITE_DIR
from ledgerlink.settings import ENV_PREFIX
from tests.infra.synthesized import SynthesizedApp

pytestmark = pytest.mark.infra

# CloudFront's managed policies (ids are fixed by AWS).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


def _ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def _distribution(synthesized: SynthesizedApp) -> tuple[str, dict[str, Any]]:
    (found,) = synthesized.of_type("AWS::CloudFront::Distribution").items()
    return found


def _behaviour(config: dict[str, Any], pattern: str) -> dict[str, Any]:
    return next(b for b in config["CacheBehaviors"] if b["PathPattern"] == pattern)


def _origin(config: dict[str, Any], origin_id: str) -> dict[str, Any]:
    return next(o for o in config["Origins"] if o["Id"] == origin_id)


def _site_url(synthesized: SynthesizedApp) -> dict[str, Any]:
    distribution_id, _ = _distribution(synthesized)
    return {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}


def _deployment(synthesized: SynthesizedApp) -> dict[str, Any]:
    (found,) = synthesized.of_type("Custom::CDKBucketDeployment").values()
    return found["Properties"]


def test_the_page_is_served_from_a_private_bucket_through_origin_access_control(
    synthesized: SynthesizedApp,
) -> None:
    bucket_id = synthesized.logical_id(synthesized.stack.site.bucket)
    bucket = synthesized.resources[bucket_id]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == _ref(
        synthesized.logical_id(synthesized.stack.site.logs)
    )
    distribution_id, distribution = _distribution(synthesized)
    config = distribution["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    default = config["DefaultCacheBehavior"]
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    site_origin = _origin(config, default["TargetOriginId"])
    assert site_origin["DomainName"] == {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]}
    assert "OriginAccessControlId" in site_origin
    assert config["Logging"]["Bucket"] == {
        "Fn::GetAtt": [synthesized.logical_id(synthesized.stack.site.logs), "RegionalDomainName"]
    }
    # Only this distribution may read the bucket.
    policy = next(
        p["Properties"]["PolicyDocument"]
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == _ref(bucket_id)
    )
    reads = [s for s in policy["Statement"] if s["Effect"] == "Allow" and "s3:GetObject" in json.dumps(s["Action"])]
    (read,) = reads
    assert read["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert distribution_id in json.dumps(read["Condition"])


def test_config_json_is_never_cached(synthesized: SynthesizedApp) -> None:
    _, distribution = _distribution(synthesized)
    config = distribution["Properties"]["DistributionConfig"]
    behaviour = _behaviour(config, f"/{CONFIG_FILE}")
    assert behaviour["CachePolicyId"] == CACHING_DISABLED
    assert behaviour["TargetOriginId"] == config["DefaultCacheBehavior"]["TargetOriginId"]


def test_the_api_is_on_the_same_origin_uncached_with_the_authorization_header(
    synthesized: SynthesizedApp,
) -> None:
    rest_api_id = synthesized.logical_id(synthesized.stack.api.rest_api)
    _, distribution = _distribution(synthesized)
    config = distribution["Properties"]["DistributionConfig"]
    api = _behaviour(config, API_PATH_PATTERN)
    assert set(api["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
    assert api["ViewerProtocolPolicy"] == "https-only"
    assert api["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    origin = _origin(config, api["TargetOriginId"])
    # Built from the RestApi id (not its stage or deployment, which depend on the functions).
    domain = origin["DomainName"]["Fn::Join"][1]
    assert domain[0] == _ref(rest_api_id) and domain[1] == ".execute-api."
    assert origin["OriginPath"] == f"/{constants.API_STAGE_NAME}"
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    cache = synthesized.resources[api["CachePolicyId"]["Ref"]]["Properties"]["CachePolicyConfig"]
    assert cache["DefaultTTL"] == 0 and cache["MinTTL"] == 0
    key = cache["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["HeadersConfig"] == {"HeaderBehavior": "whitelist", "Headers": ["Authorization"]}
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "all"


def test_the_page_gets_security_headers(synthesized: SynthesizedApp) -> None:
    _, distribution = _distribution(synthesized)
    policy_ref = distribution["Properties"]["DistributionConfig"]["DefaultCacheBehavior"]["ResponseHeadersPolicyId"]
    headers = synthesized.resources[policy_ref["Ref"]]["Properties"]["ResponseHeadersPolicyConfig"]
    security = headers["SecurityHeadersConfig"]
    csp = json.dumps(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert synthesized.logical_id(synthesized.stack.site.sign_in_domain) in csp  # the token endpoint
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31_536_000


def test_the_oauth_dance_may_return_to_the_page(synthesized: SynthesizedApp) -> None:
    function = synthesized.resources[synthesized.function_id(FunctionName.OAUTH_CALLBACK)]["Properties"]
    origins = function["Environment"]["Variables"][ENV_PREFIX + "ALLOWED_RETURN_ORIGINS"]
    assert json.dumps(_site_url(synthesized)["Fn::Join"][1]) in json.dumps(origins)


def test_hosted_sign_in_has_a_domain_and_a_code_flow_client_for_the_page(synthesized: SynthesizedApp) -> None:
    pool_id = synthesized.logical_id(synthesized.stack.api.user_pool)
    (domain,) = synthesized.of_type("AWS::Cognito::UserPoolDomain").values()
    assert domain["Properties"]["UserPoolId"] == _ref(pool_id)
    client = synthesized.resources[synthesized.logical_id(synthesized.stack.site.client)]["Properties"]
    assert client["UserPoolId"] == _ref(pool_id)
    assert client["GenerateSecret"] is False
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert "openid" in client["AllowedOAuthScopes"]
    site = _site_url(synthesized)
    with_slash = {"Fn::Join": ["", [*site["Fn::Join"][1], "/"]]}
    assert client["CallbackURLs"] == [with_slash]
    assert client["LogoutURLs"] == [with_slash]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    assert {"custom:business_id", "custom:role"} <= set(client["ReadAttributes"])
    assert client["WriteAttributes"] == []
    assert "ExplicitAuthFlows" not in client or not any("PASSWORD" in f for f in client["ExplicitAuthFlows"])


def test_the_srp_client_offers_no_hosted_sign_in(synthesized: SynthesizedApp) -> None:
    client = synthesized.resources[synthesized.logical_id(synthesized.stack.api.user_pool_client)]["Properties"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is False
    for name in ("AllowedOAuthFlows", "AllowedOAuthScopes", "CallbackURLs"):
        assert name not in client


def test_the_deployment_uploads_the_page_and_its_runtime_config(synthesized: SynthesizedApp) -> None:
    deployment = _deployment(synthesized)
    assert deployment["DestinationBucketName"] == _ref(synthesized.logical_id(synthesized.stack.site.bucket))
    assert deployment["DistributionPaths"] == ["/*"]
    assert deployment["SystemMetadata"] == {"cache-control": "no-cache"}
    folders = [synthesized.assembly_dir / f"asset.{key.removesuffix('.zip')}" for key in deployment["SourceObjectKeys"]]
    site, config_dir = folders
    for name in ("index.html", "app.js", "styles.css", "views/connections.js"):
        assert (site / name).is_file(), name
    # Deploy-time values stand in the file as markers the deployment replaces with JSON strings.
    raw = (config_dir / CONFIG_FILE).read_text()
    config = json.loads(re.sub(r"(<<marker:0x[0-9a-f]+:\d+>>)", r'"\1"', raw))
    assert config["api_url"] == ""  # same origin: /v1 on the distribution
    markers = deployment["SourceMarkers"][1]
    resolved = {marker: json.dumps(value) for marker, value in markers.items()}
    auth = config["auth"]
    assert auth["mode"] == "cognito"
    assert synthesized.logical_id(synthesized.stack.site.sign_in_domain) in resolved[auth["domain"]]
    assert synthesized.logical_id(synthesized.stack.site.client) in resolved[auth["client_id"]]
    distribution_id, _ = _distribution(synthesized)
    assert distribution_id in resolved[auth["redirect_uri"]]


def test_the_admin_page_url_is_an_output(synthesized: SynthesizedApp) -> None:
    assert synthesized.outputs["AdminPageUrl"]["Value"] == _site_url(synthesized)


# --- the page's own files (no synth needed) --------------------------------------------------------

ISSUE_TESTIDS = [
    *(f"connect-{ledger}" for ledger in ("xero", "quickbooks", "sage", "freeagent", "kashflow")),
    "connect-software", "organisation-option", "finish", "connection-status", "manage-menu",
    "manage-settings", "manage-reconnect", "manage-refresh", "manage-change", "manage-disconnect",
    "manage-merge", "save-settings",
]  # fmt: skip


def _site_sources() -> dict[Path, str]:
    return {path: path.read_text() for path in SITE_DIR.rglob("*") if path.suffix in (".js", ".html", ".css")}


def test_every_module_the_page_imports_exists() -> None:
    for path, text in _site_sources().items():
        for target in re.findall(r"""(?:import|from)\s+[^'"]*?["'](\.{1,2}/[^"']+)["']""", text):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports {target}"
        for target in re.findall(r"""(?:src|href)="([^"#:]+)\"""", text):
            assert (path.parent / target).resolve().is_file(), f"{path.name} refers to {target}"


def test_the_page_carries_every_hook_the_browser_tests_use() -> None:
    source = "\n".join(_site_sources().values())
    for testid in ISSUE_TESTIDS:
        provider = testid.removeprefix("connect-")
        if provider in ("xero", "quickbooks", "sage", "freeagent", "kashflow"):
            assert "`connect-${provider.provider}`" in source
        else:
            assert f'"{testid}"' in source or f"`{testid}`" in source, testid


def test_the_page_puts_no_untrusted_text_into_html() -> None:
    for path, text in _site_sources().items():
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, path.name
        assert "eval(" not in text and "new Function" not in text, path.name
