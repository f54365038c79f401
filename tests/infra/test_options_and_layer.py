"""Deploy-time options, the permissions data and the layer bundler, without a synth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.api_routes import FunctionName
from infra.constants import REPO_ROOT
from infra.jsii_env import configure_jsii_environment
from infra.options import (
    ALLOWED_RETURN_ORIGINS_CONTEXT,
    ARCHITECTURE_CONTEXT,
    BUNDLE_LAYER_DEPENDENCIES_CONTEXT,
    PUBLISH_MAX_CONCURRENCY_CONTEXT,
    PYTHON_VERSION_CONTEXT,
    REFRESH_MAX_CONCURRENCY_CONTEXT,
    RESERVE_CONCURRENCY_CONTEXT,
    TOKEN_STORE_CONTEXT,
    DeploymentOptions,
)
from infra.permissions import PERMISSIONS, Caller, Resource, handler_actions

pytestmark = pytest.mark.infra


class FakeNode:
    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context

    def try_get_context(self, key: str) -> Any:
        return self._context.get(key)


def test_options_default_to_per_ledger_tokens_and_a_deployable_arm64_layer() -> None:
    assert DeploymentOptions.from_context(FakeNode({})) == DeploymentOptions()  # type: ignore[arg-type]
    assert DeploymentOptions().token_store == "per-ledger"
    assert DeploymentOptions().bundle_layer_dependencies is True
    assert DeploymentOptions().architecture == "arm64"
    assert DeploymentOptions().python_version == "3.13"
    assert DeploymentOptions().reserve_concurrency is True


def test_cdk_json_deploys_what_the_defaults_say() -> None:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    options = DeploymentOptions.from_context(FakeNode(context))  # type: ignore[arg-type]
    assert options == DeploymentOptions()


def test_options_accept_command_line_strings() -> None:
    node = FakeNode(
        {
            TOKEN_STORE_CONTEXT: "dynamodb-kms",
            ALLOWED_RETURN_ORIGINS_CONTEXT: "https://app.example.com, https://admin.example.com",
            BUNDLE_LAYER_DEPENDENCIES_CONTEXT: "false",
            ARCHITECTURE_CONTEXT: "x86_64",
            PYTHON_VERSION_CONTEXT: "3.11",
            RESERVE_CONCURRENCY_CONTEXT: "false",
            REFRESH_MAX_CONCURRENCY_CONTEXT: "200",
            PUBLISH_MAX_CONCURRENCY_CONTEXT: "50",
        }
    )
    options = DeploymentOptions.from_context(node)  # type: ignore[arg-type]
    assert options == DeploymentOptions(
        token_store="dynamodb-kms",
        allowed_return_origins=("https://app.example.com", "https://admin.example.com"),
        bundle_layer_dependencies=False,
        architecture="x86_64",
        python_version="3.11",
        reserve_concurrency=False,
        refresh_max_concurrency=200,
        publish_max_concurrency=50,
    )
    assert options.reserved_concurrency(FunctionName.REFRESH_LISTS) is None


def test_a_consumer_reserves_its_event_sources_maximum_on_top_of_its_api_share() -> None:
    options = DeploymentOptions.from_context(
        FakeNode({REFRESH_MAX_CONCURRENCY_CONTEXT: 200, PUBLISH_MAX_CONCURRENCY_CONTEXT: 50})  # type: ignore[arg-type]
    )
    defaults = DeploymentOptions()
    for name, raised_by in ((FunctionName.REFRESH_LISTS, 195), (FunctionName.PUBLISH_ITEM, 30)):
        assert options.reserved_concurrency(name) == (defaults.reserved_concurrency(name) or 0) + raised_by
    for name in (FunctionName.OAUTH_CALLBACK, FunctionName.MERGE_LISTS):
        assert options.reserved_concurrency(name) == defaults.reserved_concurrency(name)
    with pytest.raises(ValueError, match="ledgerlink:refreshMaxConcurrency"):
        DeploymentOptions.from_context(FakeNode({REFRESH_MAX_CONCURRENCY_CONTEXT: "1"}))  # type: ignore[arg-type]


def test_an_unknown_token_store_or_architecture_fails_the_synth() -> None:
    with pytest.raises(ValueError, match="ledgerlink:tokenStore"):
        DeploymentOptions.from_context(FakeNode({TOKEN_STORE_CONTEXT: "vault"}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ledgerlink:architecture"):
        DeploymentOptions.from_context(FakeNode({ARCHITECTURE_CONTEXT: "aarch64"}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ledgerlink:pythonVersion"):
        DeploymentOptions.from_context(FakeNode({PYTHON_VERSION_CONTEXT: "3.9"}))  # type: ignore[arg-type]


def test_every_function_has_permissions_and_the_runtime_grants() -> None:
    assert set(PERMISSIONS) == set(FunctionName)
    for grants in PERMISSIONS.values():
        runtime = {grant.resource for grant in grants if grant.caller is Caller.LAMBDA_RUNTIME}
        assert runtime == {Resource.OWN_LOG_GROUP, Resource.ANY}
        assert all(
            grant.resource is not Resource.ANY or grant.caller is Caller.LAMBDA_RUNTIME for grant in grants
        )


def test_handler_actions_leave_out_what_lambda_and_aws_services_do_for_the_function() -> None:
    assert handler_actions(FunctionName.MERGE_LISTS) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "events:PutEvents",
        "sqs:SendMessage",
    }
    assert "sqs:ReceiveMessage" not in handler_actions(FunctionName.PUBLISH_ITEM)
    assert "sqs:ChangeMessageVisibility" in handler_actions(FunctionName.PUBLISH_ITEM)


def test_bundler_without_a_platform_copies_only_the_package(tmp_path: Path) -> None:
    configure_jsii_environment()
    from infra.constants import SHARED_PACKAGE_DIR
    from infra.constructs.layer import SharedPackageBundler

    package = tmp_path / "src" / "ledgerlink"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")

    assert SharedPackageBundler(package).try_bundle(str(tmp_path / "out"), None)  # type: ignore[arg-type]
    assert (tmp_path / "out" / "python" / "ledgerlink" / "__init__.py").is_file()
    assert not (tmp_path / "out" / "python" / "ledgerlink" / "__pycache__").exists()
    assert [path.name for path in (tmp_path / "out" / "python").iterdir()] == ["ledgerlink"]
    assert (tmp_path / "out" / "python" / "ledgerlink" / "api" / "openapi.json").is_file()
    assert SHARED_PACKAGE_DIR.name == "ledgerlink"


def test_the_layer_installs_the_locked_runtime_closure_and_no_dev_tools() -> None:
    configure_jsii_environment()
    from infra.constructs.layer import locked_requirements

    names = {line.split("==")[0] for line in locked_requirements().splitlines() if "==" in line}
    assert {"aws-lambda-powertools", "pydantic", "pydantic-core", "httpx", "authlib", "boto3"} <= names
    assert not names & {"ledgerlink", "aws-cdk-lib", "cdk-nag", "moto", "pytest", "ruff", "mypy"}
