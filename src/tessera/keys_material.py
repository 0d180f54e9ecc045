"""Key material per JWS algorithm: generation, PEM and JWK conversion, checks, key ids.

Everything that depends on *which* algorithm a key is for lives here, so :mod:`tessera.keys`
only deals with lifetimes and selection. JWK encoding is PyJWT's (``jwt.algorithms``), never
hand-written; only the RFC 7638 thumbprint is computed here, because PyJWT has none.

Every loader checks that the material fits the algorithm pinned to the key (an RSA key can never
be used as EdDSA, a P-384 key never as ES256, RSA under 2048 bits never at all): the token layer
trusts ``key.alg`` and never the token's header, so the pinning must be right at load time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias, get_args

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from tessera.errors import ConfigError

SigningAlg: TypeAlias = Literal["EdDSA", "ES256", "RS256", "HS256"]
"""The JWS algorithms a signing key may be pinned to (the same set as Settings)."""

SIGNING_ALGS: Final[frozenset[str]] = frozenset(get_args(SigningAlg))
HMAC_ALG: Final = "HS256"
"""HMAC keys (cookies, CSRF, consent) are always HMAC-SHA256."""

SECRET_BYTES: Final = 32
"""Length of generated secrets, and the minimum accepted: 256 bits, as RFC 7518 §3.2 asks."""
RSA_GENERATED_BITS: Final = 2048
RSA_MIN_BITS: Final = 2048

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# RFC 7638 §3.2: the thumbprint hashes only the required members of each key type.
_THUMBPRINT_MEMBERS: Final[dict[str, tuple[str, ...]]] = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "oct": ("k", "kty"),
}


def check_signing_alg(alg: str) -> SigningAlg:
    """``alg`` narrowed to a supported signing algorithm, or a ConfigError naming the choices."""
    if alg not in SIGNING_ALGS:
        raise ConfigError(
            f"unsupported signing algorithm {alg!r}; choose one of {sorted(SIGNING_ALGS)}",
            code="invalid_key",
        )
    return alg  # type: ignore[return-value]  # narrowed by the membership test above


def generate_private_key(alg: SigningAlg) -> PrivateKey:
    """A fresh private key for an asymmetric ``alg``."""
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_GENERATED_BITS)
    raise ConfigError(f"{alg} is not an asymmetric algorithm", code="invalid_key")


def generate_secret() -> bytes:
    """A fresh 256-bit secret for HMAC keys and HS256 signing keys."""
    return secrets.token_bytes(SECRET_BYTES)


def check_private_key(key: object, alg: SigningAlg) -> PrivateKey:
    """``key`` if it is a private key that may sign ``alg``; a ConfigError saying why not."""
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"ES256 needs a P-256 key, not {key.curve.name}", code="invalid_key")
        return key
    if alg == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < RSA_MIN_BITS:
            raise ConfigError(
                f"RS256 needs an RSA key of at least {RSA_MIN_BITS} bits, not {key.key_size}",
                code="invalid_key",
            )
        return key
    raise ConfigError(
        f"a {type(key).__name__} private key cannot be used for {alg}", code="invalid_key"
    )


def check_secret(secret: bytes) -> bytes:
    """``secret`` if it is long enough to be an HMAC key."""
    if len(secret) < SECRET_BYTES:
        raise ConfigError(
            f"an HMAC secret needs at least {SECRET_BYTES} bytes, not {len(secret)}",
            code="invalid_key",
        )
    return secret


def private_pem(key: PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM, the persisted form of asymmetric keys."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_pem(pem: str, alg: SigningAlg) -> PrivateKey:
    """Parse a PEM private key and check it fits ``alg``; never echoes the PEM in errors."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, UnicodeEncodeError):
        # The library's message may quote parts of the input; say only what failed.
        raise ConfigError("not an unencrypted PEM private key", code="invalid_key") from None
    return check_private_key(key, alg)


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), the form secrets take in files and the database."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; strict about the alphabet, lenient about padding."""
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise ConfigError("not an unpadded base64url string", code="invalid_key")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError("not an unpadded base64url string", code="invalid_key") from None


def _algorithm_class(alg: SigningAlg) -> Any:
    """The PyJWT algorithm class that (de)serializes JWKs for ``alg``."""
    return {
        "EdDSA": OKPAlgorithm,
        "ES256": ECAlgorithm,
        "RS256": RSAAlgorithm,
        "HS256": HMACAlgorithm,
    }[alg]


def to_jwk(material: PrivateKey | PublicKey | bytes, alg: SigningAlg) -> dict[str, Any]:
    """The JWK (as a dict) of ``material`` via PyJWT: private members when it is private."""
    jwk: dict[str, Any] = _algorithm_class(alg).to_jwk(material, as_dict=True)
    return jwk


def from_private_jwk(jwk: Mapping[str, Any], alg: SigningAlg) -> PrivateKey | bytes:
    """Private material from a JWK dict (a secret for HS256), checked against ``alg``."""
    try:
        material = _algorithm_class(alg).from_jwk(dict(jwk))
    except Exception:
        # PyJWT raises InvalidKeyError, ValueError, KeyError... for malformed JWKs; any of them
        # means the same to the operator, and their messages may quote key members.
        raise ConfigError(f"not a valid {alg} JWK", code="invalid_key") from None
    if alg == "HS256":
        if not isinstance(material, bytes):
            raise ConfigError("an HS256 JWK must be an oct key", code="invalid_key")
        return check_secret(material)
    return check_private_key(material, alg)


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a kid anyone can recompute from the JWK."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ConfigError(f"no thumbprint for key type {jwk.get('kty')!r}", code="invalid_key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def secret_kid(secret: bytes) -> str:
    """A kid derived from a secret: stable across instances sharing the secret.

    The hash is domain-separated and truncated to 128 bits; with secrets of at least 256 bits
    it reveals nothing usable about the secret.
    """
    return b64url_encode(hashlib.sha256(b"tessera.kid\x00" + secret).digest()[:16])


def public_kid(key: PrivateKey) -> str:
    """The RFC 7638 thumbprint of the public half of ``key``."""
    public = key.public_key()
    jwk = to_jwk(public, _alg_of(public))
    return thumbprint(jwk)


def _alg_of(key: PublicKey) -> SigningAlg:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    return "RS256"
