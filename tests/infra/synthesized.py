"""What the session's one synth hands to the infra tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.api_routes import FunctionName

if TYPE_CHECKING:  # importing aws_cdk starts jsii: only the fixture does that, lazily
    from aws_cdk.assertions import Template

    from infra.stack import LedgerlinkStack


@dataclass(frozen=True)
class SynthesizedApp:
    stack: LedgerlinkStack
    template: Template  # aws_cdk.assertions, for Template-style assertions
    resources: dict[str, dict[str, Any]]  # the same template as plain data, for set comparisons
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
