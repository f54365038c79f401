"""Development sign-in for the local runtime: HS256 JWTs carrying the claims the Cognito
authorizer would pass on (``sub``, ``business_id``, ``role``), minted by `ledgerlink token` and
verified by the local gateway the way API Gateway verifies Cognito tokens (signature, issuer,
audience, expiry) before any handler sees the request. Loopback development only."""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from ledgerlink.models.common import Role

# A fixed, public development key: these tokens only ever open a gateway bound to 127.0.0.1.
DEV_SIGNING_KEY = "ledgerlink-local-development-signing-key-not-for-production"
ISSUER = "ledgerlink-local"
AUDIENCE = "ledgerlink"
DEFAULT_LIFETIME_SECONDS = 12 * 3600


class InvalidDevToken(Exception):
    pass


def _key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())


def mint_token(
    business_id: str,
    role: Role | str,
    *,
    user_id: str | None = None,
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    secret: str = DEV_SIGNING_KEY,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id or f"{Role(role).value}@{business_id}",
        "business_id": business_id,
        "role": Role(role).value,
        "iat": issued,
        "exp": issued + lifetime_seconds,
    }
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, _key(secret))


def _claims_registry(now: float | None) -> JWTClaimsRegistry:
    return JWTClaimsRegistry(
        now=int(now) if now is not None else None,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
        sub={"essential": True},
        business_id={"essential": True},
        role={"essential": True, "values": [role.value for role in Role]},
    )


def verify_token(token: str, *, secret: str = DEV_SIGNING_KEY, now: float | None = None) -> dict[str, Any]:
    """The token's claims, or InvalidDevToken saying why not."""
    try:
        decoded = jwt.decode(token, _key(secret), algorithms=["HS256"])
        _claims_registry(now).validate(decoded.claims)
    except (JoseError, ValueError) as error:
        raise InvalidDevToken(str(error) or type(error).__name__) from error
    return dict(decoded.claims)
