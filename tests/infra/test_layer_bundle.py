"""The deployable assets: one synth with the locked wheels bundled, for x86_64 and the Python running
these tests (so every handler can be imported here from the assets alone, in a clean interpreter), and
the default arm64 / Python 3.13 layer's wheels checked by their tags and their machine code.

The first run downloads the wheels into .cdk-cache/uv; later runs install from there, offline.
Sizes are printed (``pytest tests/infra/test_layer_bundle.py -rP``) and go to bench/RESULTS.md,
"Deployable assets (issue 9)".
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from infra.api_routes import FunctionName
from infra.jsii_env import configure_jsii_environment
from infra.options import (
    ARCHITECTURE_CONTEXT,
    BUNDLE_LAYER_DEPENDENCIES_CONTEXT,
    PYTHON_VERSION_CONTEXT,
    DeploymentOptions,
    PythonVersion,
)
from tests.infra.synthesized import SynthesizedApp, synthesize

pytestmark = pytest.mark.infra

MB = 1024 * 1024
# Lambda's limits: a function's code and all its layers together, unzipped; and a zip uploaded directly
# (the CDK CLI uploads through S3, where the zip itself may be larger, but staying under it keeps a
# direct `update-function-code` possible and is a sign the unzipped limit is far away).
LAMBDA_UNZIPPED_LIMIT = 250 * MB
LAMBDA_ZIPPED_LIMIT = 50 * MB
# The Python running these tests: the x86_64 assets are built for it, so it can import them.
TEST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# ELF e_machine values (EM_X86_64, EM_AARCH64), by the wheel tags' names for the architectures.
ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
# manylinux2014, the platform the bundler asks for (infra.constructs.layer.LayerTarget).
MAX_GLIBC = (2, 17)
LEGACY_MANYLINUX_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# Compiled packages in the lock: each must arrive as a wheel for the target, not this machine.
COMPILED = {"pydantic-core", "cryptography", "cffi", "wrapt"}


@dataclass(frozen=True)
class Unpacked:
    """The assets as Lambda sees them: the layer unzipped into /opt, each function's code into /var/task."""

    opt: Path
    tasks: dict[FunctionName, Path]
    sizes: dict[str, tuple[int, int]]  # asset -> (zipped, unzipped) bytes


@pytest.fixture(scope="module")
def x86_64_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    if TEST_PYTHON not in get_args(PythonVersion):
        pytest.skip(
            f"the stack's Python runtimes are {get_args(PythonVersion)}; these tests run on {TEST_PYTHON}"
        )
    return synthesize(
        tmp_path_factory.mktemp("cdk.out.x86_64"),
        {
            BUNDLE_LAYER_DEPENDENCIES_CONTEXT: True,
            ARCHITECTURE_CONTEXT: "x86_64",
            PYTHON_VERSION_CONTEXT: TEST_PYTHON,
        },
        run_nag=False,  # the session's synth checks cdk-nag; bundling changes no resource
    )


@pytest.fixture(scope="module")
def unpacked(x86_64_app: SynthesizedApp, tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    root = tmp_path_factory.mktemp("lambda")
    sizes = {"layer": _zip_round_trip(x86_64_app.layer_asset_dir(), root / "layer.zip", root / "opt")}
    tasks = {}
    for name in FunctionName:
        tasks[name] = root / "task" / name.value
        sizes[name.value] = _zip_round_trip(
            x86_64_app.handler_asset_dir(name), root / f"{name}.zip", tasks[name]
        )
    return Unpacked(opt=root / "opt", tasks=tasks, sizes=sizes)


def test_the_architecture_and_python_settings_move_the_layer_and_every_function(
    x86_64_app: SynthesizedApp,
) -> None:
    _, layer = x86_64_app.shared_layer()
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    assert layer["Properties"]["CompatibleRuntimes"] == [f"python{TEST_PYTHON}"]
    assert "locked dependencies" in layer["Properties"]["Description"]
    for name in FunctionName:
        function = x86_64_app.resources[x86_64_app.function_id(name)]["Properties"]
        assert function["Architectures"] == ["x86_64"]
        assert function["Runtime"] == f"python{TEST_PYTHON}"


def test_assets_hold_every_handler_and_the_shared_package(unpacked: Unpacked) -> None:
    for name in FunctionName:
        assert (unpacked.tasks[name] / "handler.py").is_file(), name
    assert (unpacked.opt / "python" / "ledgerlink" / "__init__.py").is_file()
    assert not (unpacked.opt / "python" / "bin").exists()
    assert not list(unpacked.opt.rglob("__pycache__"))


def test_the_layer_carries_the_whole_apis_openapi_document(unpacked: Unpacked) -> None:
    import json

    from infra.api_routes import ROUTES

    document = json.loads((unpacked.opt / "python" / "ledgerlink" / "api" / "openapi.json").read_text())
    assert {(r.method.lower(), r.path) for r in ROUTES if r.path != "/v1/openapi.json"} == {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }


def test_the_layer_holds_exactly_the_locked_runtime_closure(unpacked: Unpacked) -> None:
    from infra.constructs.layer import locked_requirements

    locked = {
        (_normalise(name), version)
        for name, version in re.findall(r"^([\w.-]+)==([^\s;]+)", locked_requirements(), re.MULTILINE)
    }
    installed = {
        (_normalise(name), version)
        for name, version in (
            path.name.removesuffix(".dist-info").rsplit("-", 1)
            for path in (unpacked.opt / "python").glob("*.dist-info")
        )
    }
    assert installed == locked
    assert {"aws-lambda-powertools", "pydantic", "httpx", "authlib", "boto3"} <= {name for name, _ in locked}


def test_the_x86_64_wheels_are_for_x86_64_linux_and_the_chosen_python(unpacked: Unpacked) -> None:
    _assert_wheels_for(unpacked.opt / "python", "x86_64", TEST_PYTHON)


def test_every_function_fits_lambdas_size_limits(unpacked: Unpacked) -> None:
    layer_zipped, layer_unzipped = unpacked.sizes["layer"]
    print(f"x86_64 layer: {layer_zipped / MB:.1f} MB zipped, {layer_unzipped / MB:.1f} MB unzipped")
    assert layer_zipped < LAMBDA_ZIPPED_LIMIT
    for name in FunctionName:
        zipped, unzipped = unpacked.sizes[name.value]
        total = layer_unzipped + unzipped
        print(
            f"{name}: {zipped / 1024:.1f} KB zipped, {unzipped / 1024:.1f} KB unzipped; with the layer {total / MB:.1f} MB unzipped"
        )
        assert zipped < LAMBDA_ZIPPED_LIMIT, name
        assert total < LAMBDA_UNZIPPED_LIMIT, name


@pytest.fixture(scope="module")
def handler_imports(unpacked: Unpacked) -> dict[FunctionName, subprocess.CompletedProcess[str]]:
    """Each handler imported in its own clean interpreter, as a cold Lambda would; all four at once.

    The interpreter is the one running the tests (the assets were built for it), started with
    ``-s -S -P -B``: no user site, not even its own site-packages, no script directory, no bytecode
    written (as on Lambda's read-only /opt). ``PYTHONPATH`` (which ``-I`` would ignore) holds only the
    function's folder and the layer's ``python/``, in Lambda's order, and the environment only what
    Lambda sets, so Powertools' tracer is on and patches botocore and httpx as it does there.
    """
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        pytest.skip("the x86_64 wheels only load on x86_64 Linux")
    layer = unpacked.opt / "python"
    running = {
        name: subprocess.Popen(
            [sys.executable, "-s", "-S", "-P", "-B", "-c", IMPORT_HANDLER],
            env={
                "PYTHONPATH": os.pathsep.join([str(unpacked.tasks[name]), str(layer)]),
                "AWS_REGION": "eu-west-2",
                "AWS_DEFAULT_REGION": "eu-west-2",
                "AWS_LAMBDA_FUNCTION_NAME": f"ledgerlink-{name.value}",
                "LAMBDA_TASK_ROOT": str(unpacked.tasks[name]),
                "POWERTOOLS_SERVICE_NAME": name.value,
            },
            cwd=unpacked.tasks[name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in FunctionName
    }
    results = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("name", list(FunctionName))
def test_every_handler_imports_from_the_assets_alone_and_creates_no_client(
    handler_imports: dict[FunctionName, subprocess.CompletedProcess[str]], name: FunctionName
) -> None:
    result = handler_imports[name]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported; no AWS or HTTP client created"


IMPORT_HANDLER = """
import os, sys, sysconfig
task, layer = os.environ["PYTHONPATH"].split(os.pathsep)
assert sys.path[:2] == [task, layer], sys.path[:3]

# Record every AWS session or client and every httpx client created while the handler is imported: a
# cold start must not pay for them, and a client built at import could not be replaced by tests.
created = []
def watch(cls):
    original = cls.__init__
    def init(self, *args, **kwargs):
        created.append(f"{cls.__module__}.{cls.__qualname__}")
        original(self, *args, **kwargs)
    cls.__init__ = init
import boto3, boto3.session, botocore.client, botocore.session, httpx
for cls in (boto3.session.Session, botocore.session.Session, botocore.client.BaseClient,
            httpx.Client, httpx.AsyncClient):
    watch(cls)

import handler

assert callable(handler.handler)
assert not created, f"created at import: {created}"
assert boto3.DEFAULT_SESSION is None
# Nothing came from outside the assets but the standard library.
stdlib = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
strays = sorted(
    name for name, module in list(sys.modules.items())
    if (path := getattr(module, "__file__", None) or "")
    and not path.startswith((task, layer))
    and (not path.startswith(tuple(stdlib)) or "site-packages" in path)
)
assert not strays, f"imported from outside the assets: {strays}"
assert sys.modules["pydantic_core"].__file__.startswith(layer)
print("imported; no AWS or HTTP client created")
"""


def test_the_arm64_layer_gets_aarch64_wheels_for_python_3_13(tmp_path: Path) -> None:
    # The default deployment (arm64, Python 3.13), through the bundler alone (the session's synth
    # already checks arm64 and python3.13 are the functions' defaults): the wheels come from the same
    # cache, so this costs an install, not a synth.
    configure_jsii_environment()
    from infra.constants import SHARED_PACKAGE_DIR
    from infra.constructs.layer import LAYER_TARGETS, SharedPackageBundler

    defaults = DeploymentOptions()
    bundler = SharedPackageBundler(
        SHARED_PACKAGE_DIR,
        python_platform=LAYER_TARGETS[defaults.architecture].python_platform,
        python_version=defaults.python_version,
    )
    assert bundler.try_bundle(str(tmp_path / "layer"), None)  # type: ignore[arg-type]
    _assert_wheels_for(tmp_path / "layer" / "python", "aarch64", defaults.python_version)
    zipped, unzipped = _zip_round_trip(tmp_path / "layer", tmp_path / "layer.zip", tmp_path / "opt")
    print(f"arm64 python3.13 layer: {zipped / MB:.1f} MB zipped, {unzipped / MB:.1f} MB unzipped")
    assert zipped < LAMBDA_ZIPPED_LIMIT
    assert unzipped < LAMBDA_UNZIPPED_LIMIT


# --- helpers ------------------------------------------------------------------------------------------


def _assert_wheels_for(site_dir: Path, machine: str, python_version: str) -> None:
    """Every platform-specific wheel is tagged for that CPython (or the stable ABI) on manylinux for
    ``machine`` within manylinux2014's glibc, and every shared library in the layer is built for it
    (extension modules named for that CPython)."""
    cpython = "cp" + python_version.replace(".", "")
    compiled = {}
    for wheel in site_dir.glob("*.dist-info/WHEEL"):
        tags = [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text().splitlines()
            if line.startswith("Tag:")
        ]
        if tags and not all(tag.endswith("-none-any") for tag in tags):
            compiled[_normalise(wheel.parent.name.removesuffix(".dist-info").rsplit("-", 1)[0])] = tags
    assert set(compiled) == COMPILED
    for name, tags in compiled.items():
        for tag in tags:
            interpreter, abi, platform = tag.split("-")
            assert (interpreter, abi) == (cpython, cpython) or (
                abi == "abi3"
                and re.fullmatch(r"cp3\d+", interpreter)
                and int(interpreter[3:]) <= int(cpython[3:])
            ), (name, tag)
            assert platform.startswith("manylinux") and platform.endswith(f"_{machine}"), (name, tag)
        assert min(_glibc(tag.split("-")[2], machine) for tag in tags) <= MAX_GLIBC, (name, tags)

    libraries = [path for path in site_dir.rglob("*.so*") if path.is_file()]
    assert libraries
    for library in libraries:
        header = library.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", library
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINES[machine], library
        if ".cpython-" in library.name:
            assert f".cpython-{cpython[2:]}-{machine}-linux-gnu.so" in library.name, library


def _glibc(platform: str, machine: str) -> tuple[int, int]:
    policy = platform.removesuffix(f"_{machine}")
    if policy in LEGACY_MANYLINUX_GLIBC:
        return LEGACY_MANYLINUX_GLIBC[policy]
    major, minor = re.fullmatch(r"manylinux_(\d+)_(\d+)", policy).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _zip_round_trip(asset: Path, archive_path: Path, target: Path) -> tuple[int, int]:
    """Zips the asset folder as the CDK CLI does when it publishes, unzips it where Lambda would;
    returns (zipped, unzipped) bytes."""
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(asset.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(asset))
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(target)
        unzipped = sum(info.file_size for info in archive.infolist())
    return archive_path.stat().st_size, unzipped
