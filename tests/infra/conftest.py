"""One synth of the whole app per test session, shared by every infra test (a synth takes seconds).

``aws_cdk`` is imported lazily, inside ``synthesize``: collecting the other suites must not start jsii's
Node process, and jsii's environment has to be set before that import.
"""

from __future__ import annotations

import pytest

from infra.options import BUNDLE_LAYER_DEPENDENCIES_CONTEXT
from tests.infra.synthesized import SynthesizedApp, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    # The layer without its third-party wheels: every test but test_layer_bundle.py reads only the
    # template and ledgerlink's own files, and this keeps the session's synth fast and offline.
    return synthesize(tmp_path_factory.mktemp("cdk.out"), {BUNDLE_LAYER_DEPENDENCIES_CONTEXT: False})
