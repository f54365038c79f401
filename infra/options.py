"""Deploy-time choices, read from CDK context (cdk.json or ``cdk deploy -c key=value``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from infra.api_routes import FunctionName
from infra.constants import API_RESERVED_CONCURRENCY, PUBLISH_MAX_CONCURRENCY, REFRESH_MAX_CONCURRENCY
from ledgerlink.settings import TokenStoreChoice

if TYPE_CHECKING:  # plain data: importing constructs would start jsii's Node process
    from constructs import Node

TOKEN_STORE_CONTEXT = "ledgerlink:tokenStore"
ALLOWED_RETURN_ORIGINS_CONTEXT = "ledgerlink:allowedReturnOrigins"
BUNDLE_LAYER_DEPENDENCIES_CONTEXT = "ledgerlink:bundleLayerDependencies"
ARCHITECTURE_CONTEXT = "ledgerlink:architecture"
PYTHON_VERSION_CONTEXT = "ledgerlink:pythonVersion"
RESERVE_CONCURRENCY_CONTEXT = "ledgerlink:reserveConcurrency"
REFRESH_MAX_CONCURRENCY_CONTEXT = "ledgerlink:refreshMaxConcurrency"
PUBLISH_MAX_CONCURRENCY_CONTEXT = "ledgerlink:publishMaxConcurrency"

# Lambda's names for its two instruction sets.
ArchitectureName = Literal["arm64", "x86_64"]
# Lambda's Python runtimes the project supports (pyproject's requires-python is >=3.11).
PythonVersion = Literal["3.11", "3.12", "3.13"]


@dataclass(frozen=True)
class DeploymentOptions:
    # "per-ledger": Sage on dynamodb-kms, the rest on Secrets Manager; or one back end for all (DESIGN §5).
    token_store: TokenStoreChoice = "per-ledger"
    # Origins of the capture product's pages the OAuth dance may return to (no open redirects).
    allowed_return_origins: tuple[str, ...] = ()
    # On for anything deployed: without the locked wheels the handlers cannot import. The infra tests
    # turn it off for their shared synth (speed); one test synthesises with it on.
    bundle_layer_dependencies: bool = True
    # The functions run on the architecture the layer's wheels are installed for (they must agree).
    # arm64 (Graviton) is cheaper per GB-second for the same work.
    architecture: ArchitectureName = "arm64"
    # The functions' Lambda runtime, and the interpreter the layer's compiled wheels are chosen for. 3.13
    # is what the project is deployed on; the others exist so the assets can be built for the Python a
    # machine has, which is how tests/infra/test_layer_bundle.py imports them without a second Python.
    python_version: PythonVersion = "3.13"
    # Reserve each function's concurrency (infra.constants). Off only for an account whose concurrency
    # quota is too small to reserve it and keep Lambda's 100 unreserved (new accounts).
    reserve_concurrency: bool = True
    # The queue consumers' maximum concurrency (README, "Capacity": raise them with the businesses served).
    refresh_max_concurrency: int = REFRESH_MAX_CONCURRENCY
    publish_max_concurrency: int = PUBLISH_MAX_CONCURRENCY

    def reserved_concurrency(self, name: FunctionName) -> int | None:
        """What ``name`` reserves: its API routes' share plus its event source's maximum, or nothing."""
        if not self.reserve_concurrency:
            return None
        consumers = {
            FunctionName.REFRESH_LISTS: self.refresh_max_concurrency,
            FunctionName.PUBLISH_ITEM: self.publish_max_concurrency,
        }
        return API_RESERVED_CONCURRENCY[name] + consumers.get(name, 0)

    @classmethod
    def from_context(cls, node: Node) -> DeploymentOptions:
        return cls(
            token_store=_one_of(node, TOKEN_STORE_CONTEXT, get_args(TokenStoreChoice), cls.token_store),
            allowed_return_origins=_as_list(node.try_get_context(ALLOWED_RETURN_ORIGINS_CONTEXT)),
            bundle_layer_dependencies=_as_bool(
                node.try_get_context(BUNDLE_LAYER_DEPENDENCIES_CONTEXT), cls.bundle_layer_dependencies
            ),
            architecture=_one_of(node, ARCHITECTURE_CONTEXT, get_args(ArchitectureName), cls.architecture),
            python_version=_one_of(node, PYTHON_VERSION_CONTEXT, get_args(PythonVersion), cls.python_version),
            reserve_concurrency=_as_bool(
                node.try_get_context(RESERVE_CONCURRENCY_CONTEXT), cls.reserve_concurrency
            ),
            refresh_max_concurrency=_event_source_concurrency(
                node, REFRESH_MAX_CONCURRENCY_CONTEXT, cls.refresh_max_concurrency
            ),
            publish_max_concurrency=_event_source_concurrency(
                node, PUBLISH_MAX_CONCURRENCY_CONTEXT, cls.publish_max_concurrency
            ),
        )


def _one_of(node: Node, key: str, choices: tuple[str, ...], default: Any) -> Any:
    value = node.try_get_context(key) or default
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, not {value!r}")
    return value


# `-c key=value` on the command line always arrives as a string; cdk.json can hold real JSON types.
def _as_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part) for part in value)


def _event_source_concurrency(node: Node, key: str, default: int) -> int:
    value = node.try_get_context(key)
    number = default if value is None else int(value)
    # Lambda's bounds for an SQS event source's maximum concurrency.
    if not 2 <= number <= 1000:
        raise ValueError(f"{key} must be between 2 and 1000, not {value!r}")
    return number


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)
