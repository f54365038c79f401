"""The shared Lambda layer: ``shared/ledgerlink`` and its locked runtime dependencies, installed for the
functions' architecture, bundled locally without Docker.

Lambda's Python runtime puts ``/opt/python`` on ``sys.path``, so the layer holds ``python/ledgerlink``
and the third-party packages beside it in ``python/``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import (
    ASSET_EXCLUDES,
    BOOTSTRAPPED_UV,
    LAYER_WHEEL_CACHE_DIR,
    REPO_ROOT,
    SHARED_PACKAGE_DIR,
)
from infra.options import ArchitectureName, PythonVersion

# The Lambda runtime per Python version: the functions run on it and the wheels are chosen for it.
LAYER_RUNTIMES: Mapping[PythonVersion, lambda_.Runtime] = MappingProxyType(
    {
        "3.11": lambda_.Runtime.PYTHON_3_11,
        "3.12": lambda_.Runtime.PYTHON_3_12,
        "3.13": lambda_.Runtime.PYTHON_3_13,
    }
)


@dataclass(frozen=True)
class LayerTarget:
    architecture: lambda_.Architecture
    # uv's --python-platform. manylinux2014 (glibc 2.17) is the tag every compiled package we lock
    # publishes, and the python3.11-3.13 runtimes (Amazon Linux 2 and 2023, glibc 2.26/2.34) run it. Should a locked
    # package ever ship only newer wheels, manylinux_2_34 is as far as this may be raised.
    python_platform: str


LAYER_TARGETS: Mapping[ArchitectureName, LayerTarget] = MappingProxyType(
    {
        "arm64": LayerTarget(lambda_.Architecture.ARM_64, "aarch64-manylinux2014"),
        "x86_64": LayerTarget(lambda_.Architecture.X86_64, "x86_64-manylinux2014"),
    }
)


def write_openapi_document(package_dir: Path) -> None:
    """The API's OpenAPI document, merged from the four functions' resolvers, goes into the layer so
    ``GET /v1/openapi.json`` can serve it (no single function can generate the others' parts)."""
    from sandbox.openapi import merged_openapi  # build-time only: sandbox is never deployed

    target = package_dir / "api" / "openapi.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged_openapi(), indent=1, sort_keys=True))


class BundlingError(RuntimeError):
    """uv could not build the layer; the message carries uv's own explanation."""


@jsii.implements(ILocalBundling)
class SharedPackageBundler:
    """Copies the ``ledgerlink`` package to ``<output>/python/ledgerlink`` and, given a
    ``python_platform``, installs the locked runtime dependencies beside it."""

    def __init__(
        self, package_dir: Path, *, python_platform: str | None = None, python_version: PythonVersion = "3.13"
    ) -> None:
        self._package_dir = package_dir
        self._python_platform = python_platform
        self._python_version = python_version

    # jsii passes the BundlingOptions as one positional struct; none of its Docker settings apply here.
    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        site_dir = Path(output_dir) / "python"
        shutil.copytree(
            self._package_dir,
            site_dir / self._package_dir.name,
            ignore=shutil.ignore_patterns(*ASSET_EXCLUDES),
        )
        write_openapi_document(site_dir / self._package_dir.name)
        if self._python_platform is not None:
            install_locked_dependencies(
                site_dir, python_platform=self._python_platform, python_version=self._python_version
            )
        return True


def locked_requirements() -> str:
    """The ``[project.dependencies]`` closure exactly as uv.lock pins it, as a requirements file: no dev
    group, and not the project itself (its one runtime package, ledgerlink, is copied in as source)."""
    return _uv(
        "export",
        "--project",
        str(REPO_ROOT),
        "--frozen",
        "--no-dev",
        "--no-hashes",
        "--no-emit-project",
        "--no-header",
        "--no-annotate",
    )


def install_locked_dependencies(
    site_dir: Path,
    *,
    python_platform: str,
    python_version: PythonVersion,
    cache_dir: Path = LAYER_WHEEL_CACHE_DIR,
) -> None:
    # boto3 and botocore are bundled although the runtime carries a copy: that copy is whatever AWS last
    # shipped, not what uv.lock pins, so handlers would run an SDK no test ran, and the assets could not
    # be import-checked on their own (tests/infra/test_layer_bundle.py). ~25 MB of the 250 MB.
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(locked_requirements())
        install = (
            "pip",
            "install",
            "--requirements",
            str(requirements),
            "--target",
            str(site_dir),
            "--python-platform",
            python_platform,
            "--python-version",
            python_version,
            # Wheels only: an sdist built here would be built for this machine, not for Lambda.
            "--only-binary",
            ":all:",
            # The export is already the whole pinned closure: install exactly that, resolve nothing.
            "--no-deps",
            # Copies, not hard links into the cache, which the asset would otherwise share.
            "--link-mode",
            "copy",
            "--cache-dir",
            str(cache_dir),
            # Only hosts the install (no interpreter search, no download): the wheels are chosen by the
            # platform and version above.
            "--python",
            sys.executable,
        )
        # Offline first: once the cache holds the wheels, a synth needs no network.
        try:
            _uv(*install, "--offline")
        except BundlingError:
            _uv(*install)
    # Console scripts are no use in a layer, and their shebangs name this machine's interpreter, which
    # would make the asset hash differ from machine to machine.
    shutil.rmtree(site_dir / "bin", ignore_errors=True)


def find_uv() -> str:
    """``UV`` (uv sets it for the processes it runs), the uv ``make setup`` bootstraps, or uv on PATH."""
    for candidate in (os.environ.get("UV"), BOOTSTRAPPED_UV, shutil.which("uv")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BundlingError(
        "bundling the layer's dependencies needs uv: run `make setup` (it bootstraps .tools/bin/uv), "
        "put uv on PATH or set UV"
    )


def _uv(*args: str) -> str:
    command = [find_uv(), *args]
    # The wheels are chosen by --python-version: never let uv fetch an interpreter for that.
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    # S603: the arguments are ours; nothing here comes from a request or a user.
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BundlingError(f"{shlex.join(command)} failed:\n{result.stderr.strip()}")
    return result.stdout


class SharedLayer(Construct):
    """The layer every function uses, built for one architecture and Python: ``architecture`` and
    ``runtime`` are what the functions must run on, since the compiled wheels (pydantic-core,
    cryptography) are per platform and per interpreter."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        architecture: ArchitectureName,
        python_version: PythonVersion,
        include_dependencies: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        target = LAYER_TARGETS[architecture]
        self.architecture = target.architecture
        self.runtime = runtime = LAYER_RUNTIMES[python_version]
        bundler = SharedPackageBundler(
            SHARED_PACKAGE_DIR,
            python_platform=target.python_platform if include_dependencies else None,
            python_version=python_version,
        )
        code = lambda_.Code.from_asset(
            str(SHARED_PACKAGE_DIR.parent),
            # Hash what ships, not the source folder: unrelated files beside the package don't redeploy,
            # and a changed lock or architecture does.
            asset_hash_type=AssetHashType.OUTPUT,
            exclude=list(ASSET_EXCLUDES),
            bundling=BundlingOptions(
                # Required by the API, never pulled: local bundling always succeeds or raises.
                image=runtime.bundling_image,
                local=bundler,
            ),
        )
        contents = "and its locked dependencies" if include_dependencies else "only (no dependencies)"
        self.layer_version = lambda_.LayerVersion(
            self,
            "Version",
            code=code,
            compatible_runtimes=[runtime],
            compatible_architectures=[target.architecture],
            description=f"ledgerlink shared package {contents}, {runtime.name} {architecture}",
            # Functions already deployed keep pointing at old versions; deleting them would break a rollback.
            removal_policy=RemovalPolicy.RETAIN,
        )
