"""Bearer-token authentication of WebSocket upgrades (HS256 JWTs)."""

from __future__ import annotations

import jwt

__all__ = ["AuthError", "authenticate"]


class AuthError(Exception):
    """The upgrade carries no acceptable token; answered with HTTP 401."""


def _token(authorization: str, token_param: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if authorization:
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    if not token_param:
        raise AuthError("a bearer token is required (Authorization header or token parameter)")
    return token_param


def authenticate(authorization: str, token_param: str, secret: str) -> str:
    """The user id (`sub` claim) of the request's valid, unexpired HS256 token,
    taken from the Authorization header's value, else the token parameter.

    Raises:
        AuthError: the token is missing, malformed, wrongly signed, expired,
            or has no string `sub`.
    """
    try:
        claims = jwt.decode(
            _token(authorization, token_param),
            secret,
            algorithms=["HS256"],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the token is invalid: {exc}") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthError("the token's sub claim must be a non-empty string")
    return subject
