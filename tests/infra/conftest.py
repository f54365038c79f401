"""One synth of the whole app per test session, shared by every infra test (a synth takes seconds).

``aws_cdk`` is imported lazily, inside the fixture: collecting the other suites must not start jsii's
Node process, and jsii's environment has to be set before that import.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.jsii_env import configure_jsii_environment
from tests.infra.synthesized import SynthesizedApp

# Report cdk-nag findings through the test that checks them instead of failing the shared synth.
FAIL_SYNTH_ON_VALIDATION_ERRORS = "@aws-cdk/core:failSynthOnValidationErrors"


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    configure_jsii_environment()
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from infra.app import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(outdir=str(outdir), context={FAIL_SYNTH_ON_VALIDATION_ERRORS: False})
    assembly = app.synth()
    template_json = assembly.get_stack_artifact(stack.artifact_id).template
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
        assembly_dir=Path(assembly.directory),
        nag_violations=violations,
    )
