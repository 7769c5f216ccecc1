"""JWTs for the tests: keys generated per test session, tokens minted with PyJWT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

SECRET = "test-secret-of-at-least-thirty-two-bytes"


def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def mint(
    key: str | PrivateKeyTypes = SECRET,
    algorithm: str = "HS256",
    *,
    sub: str = "user-7",
    expires_in: float = 3600,
    **claims: Any,
) -> str:
    """A token for `sub` expiring in `expires_in` seconds, with `claims` added."""
    payload = {"sub": sub, "exp": int(time.time() + expires_in)} | claims
    return jwt.encode(payload, key, algorithm)  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], mac_key: bytes | None) -> str:
    """A token PyJWT would refuse to make: `alg` as `header` says, HMAC-SHA256
    with `mac_key` (the confusion attack) or no signature at all (None)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if mac_key is None:
        return signing_input + "."
    signature = hmac.new(mac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
