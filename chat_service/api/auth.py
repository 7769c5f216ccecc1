"""Bearer-token authentication: JWTs checked with PyJWT against one key.

The key decides the one algorithm a token may use: HS256 for
`AUTH_JWT_SECRET`, RS256 for an RSA public key, ES256 for an EC P-256 one
(`AUTH_JWT_PUBLIC_KEY_FILE`). Pinning it defeats `alg` confusion: a token
saying `none`, or HS256 "signed" with the public key, never verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..realtime.grant import AuthError, Grant

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["AuthError", "Claims", "TokenVerifier", "bearer_token", "key_algorithm"]


def key_algorithm(public_key_pem: str) -> str:
    """The JWS algorithm of a PEM public key: RS256 (RSA) or ES256 (EC P-256).

    Raises:
        ValueError: the text is not a PEM public key of either kind.
    """
    try:
        key = load_pem_public_key(public_key_pem.encode())
    except ValueError:
        raise ValueError("is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("must be an RSA or an EC P-256 public key (RS256 or ES256)")


@dataclass(frozen=True, slots=True)
class Claims(Grant):
    """What a verified token grants: a connection's `Grant` (`sub`, `rooms`,
    `exp`), and its `scope` claim's space-separated words (RFC 8693)."""

    scope: frozenset[str] = frozenset()


def bearer_token(authorization: str, token_param: str = "") -> str:
    """The token of an `Authorization: Bearer` header value, else `token_param`.

    Raises:
        AuthError: the header is there but not `Bearer <token>`, or there is
            no token at all.
    """
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if authorization:
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    if not token_param:
        raise AuthError("a bearer token is required (Authorization header or token parameter)")
    return token_param


class TokenVerifier:
    """Checks JWTs against the configured key, audience, issuer and leeway."""

    def __init__(self, config: Config) -> None:
        if config.auth_jwt_public_key:
            self._key: str = config.auth_jwt_public_key
            self._algorithm = key_algorithm(config.auth_jwt_public_key)
        else:
            self._key = config.auth_jwt_secret
            self._algorithm = "HS256"
        self._audience = config.auth_jwt_audience or None
        self._issuer = config.auth_jwt_issuer or None
        self._leeway = config.auth_leeway_seconds
        required = ["exp", "sub"] + ["aud"] * bool(self._audience) + ["iss"] * bool(self._issuer)
        # Without a configured audience, `aud` is not checked (an identity
        # provider's tokens always carry one).
        self._options: jwt.types.Options = {
            "require": required,
            "verify_aud": bool(self._audience),
        }

    @property
    def algorithm(self) -> str:
        """The one algorithm tokens are accepted in: HS256, RS256 or ES256."""
        return self._algorithm

    def verify(self, token: str) -> Claims:
        """The claims of `token` if it is validly signed, current (`exp`,
        `nbf`, within the leeway) and for this audience and issuer.

        Raises:
            AuthError: anything is wrong with it; the message says what.
        """
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is invalid: {exc}") from None
        return _claims(claims)


def _claims(claims: dict[str, Any]) -> Claims:
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthError("the token's sub claim must be a non-empty string")
    rooms = claims.get("rooms")
    if rooms is not None and not (
        isinstance(rooms, list) and all(isinstance(room, str) and room for room in rooms)
    ):
        raise AuthError("the token's rooms claim must be a list of room patterns")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise AuthError("the token's scope claim must be a space-separated string")
    return Claims(
        user_id=subject,
        exp=int(claims["exp"]),
        rooms=None if rooms is None else tuple(rooms),
        scope=frozenset(scope.split()),
    )
