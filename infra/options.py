"""Deploy-time choices, read from CDK context (cdk.json or ``cdk deploy -c key=value``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from ledgerlink.settings import TokenStoreChoice

if TYPE_CHECKING:  # plain data: importing constructs would start jsii's Node process
    from constructs import Node

TOKEN_STORE_CONTEXT = "ledgerlink:tokenStore"
ALLOWED_RETURN_ORIGINS_CONTEXT = "ledgerlink:allowedReturnOrigins"
BUNDLE_LAYER_DEPENDENCIES_CONTEXT = "ledgerlink:bundleLayerDependencies"


@dataclass(frozen=True)
class DeploymentOptions:
    # "per-ledger": Sage on dynamodb-kms, the rest on Secrets Manager; or one back end for all (DESIGN §5).
    token_store: TokenStoreChoice = "per-ledger"
    # Origins of the capture product's pages the OAuth dance may return to (no open redirects).
    allowed_return_origins: tuple[str, ...] = ()
    # Off until the layer bundles the third-party wheels (a later issue); see SharedPackageBundler.
    bundle_layer_dependencies: bool = False

    @classmethod
    def from_context(cls, node: Node) -> DeploymentOptions:
        token_store = node.try_get_context(TOKEN_STORE_CONTEXT) or cls.token_store
        if token_store not in get_args(TokenStoreChoice):
            raise ValueError(
                f"{TOKEN_STORE_CONTEXT} must be one of {get_args(TokenStoreChoice)}, not {token_store!r}"
            )
        return cls(
            token_store=token_store,
            allowed_return_origins=_as_list(node.try_get_context(ALLOWED_RETURN_ORIGINS_CONTEXT)),
            bundle_layer_dependencies=_as_bool(node.try_get_context(BUNDLE_LAYER_DEPENDENCIES_CONTEXT)),
        )


# `-c key=value` on the command line always arrives as a string; cdk.json can hold real JSON types.
def _as_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part) for part in value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)
