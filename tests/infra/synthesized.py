"""What a synth hands to the infra tests, and the one way they synthesise the app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.api_routes import FunctionName
from infra.jsii_env import configure_jsii_environment

if TYPE_CHECKING:  # importing aws_cdk starts jsii: only synthesize() does that, lazily
    from aws_cdk.assertions import Template

    from infra.stack import LedgerlinkStack

# Report cdk-nag findings through the test that checks them instead of failing the synth.
FAIL_SYNTH_ON_VALIDATION_ERRORS = "@aws-cdk/core:failSynthOnValidationErrors"


@dataclass(frozen=True)
class SynthesizedApp:
    stack: LedgerlinkStack
    template: Template  # aws_cdk.assertions, for Template-style assertions
    resources: dict[str, dict[str, Any]]  # the same template as plain data, for set comparisons
    outputs: dict[str, dict[str, Any]]  # the template's Outputs, as plain data
    assembly_dir: Path
    nag_violations: list[dict[str, Any]]  # AwsSolutions findings nobody acknowledged

    def logical_id(self, construct: Any) -> str:
        """The CloudFormation logical id of an L1 construct (or an L2's default child)."""
        cfn = getattr(construct.node, "default_child", None) or construct
        return str(self.stack.resolve(self.stack.get_logical_id(cfn)))

    def function_id(self, name: FunctionName) -> str:
        return self.logical_id(self.stack.functions.by_name[name].function)

    def role_id(self, name: FunctionName) -> str:
        return self.logical_id(self.stack.functions.by_name[name].role)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}

    def shared_layer(self) -> tuple[str, dict[str, Any]]:
        """The ledgerlink layer's logical id and resource (the admin page's BucketDeployment brings a
        layer of its own, CDK's AWS CLI layer)."""
        (found,) = [
            (key, value)
            for key, value in self.of_type("AWS::Lambda::LayerVersion").items()
            if key.startswith("SharedLayer")
        ]
        return found

    def layer_asset_dir(self) -> Path:
        """The layer's bundled asset in the cloud assembly (a folder: the CLI zips it when publishing)."""
        _, layer = self.shared_layer()
        return self.assembly_dir / f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}"

    def handler_asset_dir(self, name: FunctionName) -> Path:
        code = self.resources[self.function_id(name)]["Properties"]["Code"]
        return self.assembly_dir / f"asset.{code['S3Key'].removesuffix('.zip')}"


def synthesize(outdir: Path, context: dict[str, Any], *, run_nag: bool = True) -> SynthesizedApp:
    """The app as ``cdk synth`` builds it, with ``context`` over cdk.json's."""
    configure_jsii_environment()
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from infra.app import build_app

    app, stack = build_app(outdir=str(outdir), context={FAIL_SYNTH_ON_VALIDATION_ERRORS: False, **context})
    assembly = app.synth()
    template_json = assembly.get_stack_artifact(stack.artifact_id).template
    violations = []
    if run_nag:
        # The plugin registered in build_app ran during synth; running the pack again over the same tree
        # hands the findings to the test directly (an empty report file would not prove the pack ran).
        report = AwsSolutionsChecks().validate_scope(app)
        violations = [
            {
                "rule": violation.rule_name,
                "severity": violation.severity,
                "resources": [resource.construct_path for resource in violation.violating_resources],
                "description": violation.description,
            }
            for violation in report.violations
        ]
    return SynthesizedApp(
        stack=stack,
        template=Template.from_json(template_json),
        resources=json.loads(json.dumps(template_json["Resources"])),
        outputs=json.loads(json.dumps(template_json.get("Outputs", {}))),
        assembly_dir=Path(assembly.directory),
        nag_violations=violations,
    )
