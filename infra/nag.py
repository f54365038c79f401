"""Helpers for acknowledging cdk-nag findings precisely (cdk-nag 3: ``Validations.acknowledge``)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import IConstruct


def flatten_reference(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it in a finding id (its
    ``flattenCfnReference``): ``{"Fn::GetAtt": ["Table", "Arn"]}`` becomes ``<Table.Arn>``,
    ``{"Ref": "AWS::Region"}`` becomes ``<AWS::Region>``, joins are joined."""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return str(delimiter).join(flatten_reference(item) for item in items)
        if "Fn::Sub" in value:
            return flatten_reference(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in value:
            return flatten_reference(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{flatten_reference(value['Ref'])}>"
    raise ValueError(f"cannot flatten {value!r} the way cdk-nag does")


def wildcard_resource_finding(scope: IConstruct, arn: str) -> str:
    """The AwsSolutions-IAM5 finding id for a policy statement resource that contains ``*``."""
    return f"AwsSolutions-IAM5[Resource::{flatten_reference(Stack.of(scope).resolve(arn))}]"
