"""The deployable layer: one synth with the locked wheels bundled, for x86_64 (this machine's
architecture, so the handlers can be imported from the assets alone), and the arm64 wheels' tags.

The first run downloads the wheels into .cdk-cache/uv; later runs install from there, offline.
Sizes are printed: ``pytest tests/infra/test_layer_bundle.py -rP`` shows them.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.api_routes import FunctionName
from infra.jsii_env import configure_jsii_environment
from infra.options import ARCHITECTURE_CONTEXT, BUNDLE_LAYER_DEPENDENCIES_CONTEXT
from tests.infra.synthesized import SynthesizedApp, synthesize

pytestmark = pytest.mark.infra

MB = 1024 * 1024
# Lambda's limit for a function's code and all its layers together, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * MB
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
    return synthesize(
        tmp_path_factory.mktemp("cdk.out.x86_64"),
        {BUNDLE_LAYER_DEPENDENCIES_CONTEXT: True, ARCHITECTURE_CONTEXT: "x86_64"},
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


def test_the_architecture_setting_moves_the_layer_and_every_function(x86_64_app: SynthesizedApp) -> None:
    _, layer = x86_64_app.shared_layer()
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    assert "locked dependencies" in layer["Properties"]["Description"]
    for name in FunctionName:
        assert x86_64_app.resources[x86_64_app.function_id(name)]["Properties"]["Architectures"] == ["x86_64"]


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


def test_the_x86_64_wheels_are_for_x86_64_linux_and_cpython_3_13(unpacked: Unpacked) -> None:
    _assert_wheels_for(unpacked.opt / "python", "x86_64")


def test_every_function_fits_lambdas_size_limit(unpacked: Unpacked) -> None:
    layer_zipped, layer_unzipped = unpacked.sizes["layer"]
    print(f"x86_64 layer: {layer_zipped / MB:.1f} MB zipped, {layer_unzipped / MB:.1f} MB unzipped")
    for name in FunctionName:
        zipped, unzipped = unpacked.sizes[name.value]
        total = layer_unzipped + unzipped
        print(f"{name}: {zipped / 1024:.1f} KB zipped; with the layer {total / MB:.1f} MB unzipped")
        assert total < LAMBDA_UNZIPPED_LIMIT, name


@pytest.fixture(scope="module")
def handler_imports(unpacked: Unpacked) -> dict[FunctionName, subprocess.CompletedProcess[str]]:
    """Each handler imported in its own clean CPython 3.13, as a cold Lambda would; all four at once."""
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        pytest.skip("the x86_64 wheels only load on x86_64 Linux")
    python = _python_3_13()
    if python is None:
        pytest.skip(
            "no CPython 3.13 to import the cp313 wheels with: set LEDGERLINK_PYTHON313 or put python3.13 on PATH"
        )
    layer = unpacked.opt / "python"
    running = {
        name: subprocess.Popen(
            # -I: no PYTHON* variables, no user site; -S: not even the interpreter's own site-packages;
            # -B: no bytecode written, as on Lambda's read-only /opt. Imports can only come from the assets.
            [python, "-I", "-S", "-B", "-c", IMPORT_HANDLER, str(unpacked.tasks[name]), str(layer)],
            # Lambda always sets a region; tracing needs the X-Ray daemon, which only Lambda runs.
            env={
                "POWERTOOLS_TRACE_DISABLED": "1",
                "AWS_REGION": "eu-west-2",
                "AWS_DEFAULT_REGION": "eu-west-2",
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
        stdout, stderr = process.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("name", list(FunctionName))
def test_every_handler_imports_from_the_assets_alone(
    handler_imports: dict[FunctionName, subprocess.CompletedProcess[str]], name: FunctionName
) -> None:
    result = handler_imports[name]
    assert result.returncode == 0, result.stderr
    print(f"{name}: cold import without bytecode {result.stdout.strip()} ms (four imports in parallel)")


IMPORT_HANDLER = """
import sys, sysconfig, time
task, layer = sys.argv[1:3]
sys.path[:0] = [task, layer]  # Lambda's order: the function's code, then /opt/python
started = time.perf_counter()
import handler
elapsed_ms = (time.perf_counter() - started) * 1000
assert callable(handler.handler)
site_packages = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
strays = sorted(
    name for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(tuple(site_packages))
)
assert not strays, f"imported from the interpreter's site-packages: {strays}"
assert sys.modules["pydantic_core"].__file__.startswith(layer)
print(round(elapsed_ms))
"""


def test_the_arm64_layer_gets_aarch64_wheels(tmp_path: Path) -> None:
    # The bundler alone (the session's synth already checks arm64 is the functions' default): the
    # wheels come from the same cache, so this costs an install, not a synth.
    configure_jsii_environment()
    from infra.constants import SHARED_PACKAGE_DIR
    from infra.constructs.layer import LAYER_TARGETS, SharedPackageBundler

    bundler = SharedPackageBundler(SHARED_PACKAGE_DIR, python_platform=LAYER_TARGETS["arm64"].python_platform)
    assert bundler.try_bundle(str(tmp_path), None)  # type: ignore[arg-type]
    _assert_wheels_for(tmp_path / "python", "aarch64")
    size = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    print(f"arm64 layer: {size / MB:.1f} MB unzipped")
    assert size < LAMBDA_UNZIPPED_LIMIT


# --- helpers ------------------------------------------------------------------------------------------


def _assert_wheels_for(site_dir: Path, machine: str) -> None:
    """Every platform-specific wheel is tagged for CPython 3.13 (or the stable ABI) on manylinux for
    ``machine`` within manylinux2014's glibc, and every shared library in the layer is built for it."""
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
            assert (interpreter, abi) == ("cp313", "cp313") or (
                abi == "abi3" and re.fullmatch(r"cp3\d+", interpreter) and int(interpreter[3:]) <= 13
            ), (name, tag)
            assert platform.startswith("manylinux") and platform.endswith(f"_{machine}"), (name, tag)
        assert min(_glibc(tag.split("-")[2], machine) for tag in tags) <= MAX_GLIBC, (name, tags)

    libraries = [path for path in site_dir.rglob("*.so*") if path.is_file()]
    assert libraries
    for library in libraries:
        header = library.read_bytes()[:20]
        assert header[:4] == b"\x7fELF", library
        assert int.from_bytes(header[18:20], "little") == ELF_MACHINES[machine], library


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


def _python_3_13() -> str | None:
    """A CPython 3.13 like the runtime's: LEDGERLINK_PYTHON313, python3.13 on PATH, or one of pyenv's."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        os.environ.get("LEDGERLINK_PYTHON313"),
        shutil.which("python3.13"),
        *sorted(str(path) for path in pyenv_root.glob("versions/3.13*/bin/python3.13")),
    ]
    check = "import sys; sys.exit(sys.implementation.name != 'cpython' or sys.version_info[:2] != (3, 13))"
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "-c", check], capture_output=True, check=False).returncode == 0
        ):
            return candidate
    return None
