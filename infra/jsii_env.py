"""The jsii runtime's environment. Call ``configure_jsii_environment()`` before importing ``aws_cdk``:
jsii starts its Node process on that import and reads these variables once."""

from __future__ import annotations

import os

from infra.constants import REPO_ROOT

JSII_CACHE_DIR = REPO_ROOT / ".jsii-cache"  # gitignored


def configure_jsii_environment() -> None:
    # Node 20 works but jsii prints an end-of-life banner on every start.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    # jsii unpacks aws-cdk-lib (~200 MB) on first use; a cache under the repo makes later runs ~2x faster.
    os.environ.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", str(JSII_CACHE_DIR))
