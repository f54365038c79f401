"""The shared Lambda layer: ``shared/ledgerlink`` as ``python/ledgerlink``, bundled without Docker."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import ASSET_EXCLUDES, SHARED_PACKAGE_DIR

LAYER_RUNTIME = lambda_.Runtime.PYTHON_3_13
LAYER_ARCHITECTURE = lambda_.Architecture.ARM_64


@jsii.implements(ILocalBundling)
class SharedPackageBundler:
    """Copies the ``ledgerlink`` package to ``<output>/python/ledgerlink`` (where Lambda's Python
    runtime looks for layer packages), so synth needs neither Docker nor the network."""

    def __init__(self, package_dir: Path, *, include_dependencies: bool = False) -> None:
        self._package_dir = package_dir
        self._include_dependencies = include_dependencies

    # jsii passes the BundlingOptions as one positional struct; none of its Docker settings apply here.
    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        target = Path(output_dir) / "python" / self._package_dir.name
        shutil.copytree(self._package_dir, target, ignore=shutil.ignore_patterns(*ASSET_EXCLUDES))
        if self._include_dependencies:
            self._install_dependencies(Path(output_dir) / "python")
        return True

    def _install_dependencies(self, site_dir: Path) -> None:
        # Seam for the later issue that ships the third-party wheels (Powertools, pydantic, httpx,
        # authlib) for manylinux aarch64 / cp313 in the layer. Until then turning the flag on fails the
        # synth loudly rather than silently deploying the same package-only layer.
        raise NotImplementedError(
            f"bundling third-party wheels into {site_dir} is not implemented yet; "
            "deploy with the context flag ledgerlink:bundleLayerDependencies=false"
        )


class SharedLayer(Construct):
    """The layer every function uses. ``include_dependencies`` is off until the wheels are bundled."""

    def __init__(self, scope: Construct, construct_id: str, *, include_dependencies: bool = False) -> None:
        super().__init__(scope, construct_id)
        code = lambda_.Code.from_asset(
            str(SHARED_PACKAGE_DIR.parent),
            # Hash what ships, not the source folder: unrelated files beside the package don't redeploy.
            asset_hash_type=AssetHashType.OUTPUT,
            exclude=list(ASSET_EXCLUDES),
            bundling=BundlingOptions(
                # Required by the API, never pulled: local bundling always succeeds or raises.
                image=LAYER_RUNTIME.bundling_image,
                local=SharedPackageBundler(SHARED_PACKAGE_DIR, include_dependencies=include_dependencies),
            ),
        )
        self.layer_version = lambda_.LayerVersion(
            self,
            "Version",
            code=code,
            compatible_runtimes=[LAYER_RUNTIME],
            compatible_architectures=[LAYER_ARCHITECTURE],
            description="ledgerlink shared package (domain, services, storage, tokens, providers)",
            # Functions already deployed keep pointing at old versions; deleting them would break a rollback.
            removal_policy=RemovalPolicy.RETAIN,
        )
