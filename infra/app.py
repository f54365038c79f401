"""CDK entry point: ``.venv/bin/python -m infra.app`` (or ``cdk synth``, which runs the same).

Synth is offline: the stack is environment-agnostic (no account/region lookups), assets are bundled
locally without Docker, and cdk-nag's AwsSolutions pack runs as a validation plugin. Violations fail
the synth with a report; acknowledged findings are written into the template's Metadata (``cdk_nag``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from infra.jsii_env import configure_jsii_environment

configure_jsii_environment()

from aws_cdk import App, Validations  # noqa: E402 (the jsii environment must be set first)
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.constants import REPO_ROOT, STACK_ID  # noqa: E402
from infra.options import DeploymentOptions  # noqa: E402
from infra.stack import LedgerlinkStack  # noqa: E402

CDK_JSON = REPO_ROOT / "cdk.json"
DEFAULT_OUTDIR = REPO_ROOT / "cdk.out"


def cdk_json_context() -> dict[str, Any]:
    """Feature flags and ledgerlink defaults from cdk.json, so running this module directly (no CDK
    CLI) builds the same app as ``cdk synth``. The CLI's own context still wins: it arrives later."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def build_app(
    *, outdir: str | None = None, context: dict[str, Any] | None = None
) -> tuple[App, LedgerlinkStack]:
    """The app with its one stack and cdk-nag registered; ``context`` overrides cdk.json's."""
    if outdir is None and "CDK_OUTDIR" not in os.environ:  # the CLI sets CDK_OUTDIR
        outdir = str(DEFAULT_OUTDIR)
    app = App(outdir=outdir, context={**cdk_json_context(), **(context or {})})
    stack = LedgerlinkStack(
        app,
        STACK_ID,
        options=DeploymentOptions.from_context(app.node),
        description="ledgerlink: connects a capture product to Xero, QuickBooks, Sage, FreeAgent and KashFlow",
    )
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
