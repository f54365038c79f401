"""Who is calling: the claims API Gateway's Cognito authorizer (or the local gateway, the same way)
put on the request, and the role checks every state-changing route makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ledgerlink.errors import NotAuthenticated, NotPermitted
from ledgerlink.models.common import Role


class Caller(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    business_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def caller_from_claims(claims: Mapping[str, Any] | None) -> Caller:
    """Cognito puts custom attributes under ``custom:``; the dev JWT uses plain names."""
    if not claims:
        raise NotAuthenticated("sign in first: the request carries no verified identity")

    def claim(name: str) -> Any:
        return claims.get(name) or claims.get(f"custom:{name}")

    try:
        return Caller(
            user_id=claims.get("sub", ""), business_id=claim("business_id") or "", role=claim("role")
        )
    except ValidationError as error:
        raise NotAuthenticated("the identity token lacks a business or a valid role") from error


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    caller = caller_from_claims(authorizer.get("claims"))
    if not caller.user_id or not caller.business_id:
        raise NotAuthenticated("the identity token lacks a user or a business")
    return caller


def require_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise NotPermitted(f"only an Admin of the business can {action}")
