"""The compact JWS signature path: strict parsing, then one signature check with a pinned key.

This is the part of access-token verification that knows nothing about JWT claims, so it can be
tested on its own against the RFC 7520 cookbook and Wycheproof vectors. The cryptography is
PyJWT's (its per-algorithm ``Algorithm`` objects, the same ones ``jwt.decode`` ends up calling);
what is written here is only the framing, done once instead of twice:

- the size cap comes before any decoding, so a hostile megabyte costs nothing;
- base64url is strict (RFC 7515 §2: no padding, no whitespace, no stray characters, no
  non-zero unused bits), because a lenient decoder lets two different strings carry one
  signature, which breaks every cache keyed on the token;
- the algorithm is the *key's*, never the header's: the header's ``alg`` must merely agree,
  which shuts out ``alg: none`` and every key-confusion attack (an HS256 header on a public key,
  an RS256 header on an EdDSA kid...);
- ``crit`` is refused outright: we implement no JWS extension (RFC 7515 §4.1.11).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import Algorithm, get_default_algorithms

from tessera.errors import InvalidToken
from tessera.keys import SigningKey
from tessera.keys_material import RSA_MIN_BITS, SECRET_BYTES, SIGNING_ALGS

MAX_TOKEN_BYTES: Final = 8192
"""Tokens longer than this are refused before any parsing (ours are well under 1 KiB)."""

_ALGORITHMS: Final[Mapping[str, Algorithm]] = {
    name: algorithm for name, algorithm in get_default_algorithms().items() if name in SIGNING_ALGS
}
"""PyJWT's algorithm objects for exactly the algorithms keys may be pinned to ("none" is not)."""

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_B64_VALUES: Final = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259) and break comparisons.
    raise ValueError(f"{name} is not JSON")


def b64url_decode(part: str) -> bytes:
    """Strict unpadded base64url; raises ``ValueError`` on anything RFC 7515 §2 does not allow."""
    rest = len(part) % 4
    if rest == 1 or _B64URL.fullmatch(part) is None:
        raise ValueError("not unpadded base64url")
    # The last character of a 2- or 3-character group carries unused low bits, which must be
    # zero: otherwise several encodings decode to the same bytes (Wycheproof's "unused bits").
    if (rest == 2 and _B64_VALUES[part[-1]] & 0x0F) or (rest == 3 and _B64_VALUES[part[-1]] & 0x03):
        raise ValueError("non-canonical base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def json_object(data: bytes) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes, or ``ValueError`` (other encodings, arrays, NaN...)."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        # A few kilobytes of "[" nest deeper than the decoder's recursion limit; the header is
        # read before any signature check, so anyone can send it.
        raise ValueError("JSON nested too deeply") from None
    if type(value) is not dict:
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key ready to verify: its kid, its one algorithm, and PyJWT's prepared key object.

    Built once per key (the verifier caches them per kid), so that no verification pays for key
    preparation. ``repr`` never shows the material (an HS256 secret would be in it).
    """

    kid: str | None
    alg: str
    material: Any = field(repr=False, compare=False)
    _algorithm: Algorithm = field(repr=False, compare=False)

    @classmethod
    def create(cls, kid: str | None, alg: str, material: Any) -> VerificationKey:
        """A key for ``alg`` (one of EdDSA, ES256, RS256, HS256) from a public key or a secret."""
        algorithm = _ALGORITHMS.get(alg)
        if algorithm is None:
            raise InvalidToken("unsupported_algorithm", f"algorithm {alg!r} is not supported")
        if alg == "HS256" and (not isinstance(material, bytes) or len(material) < SECRET_BYTES):
            raise InvalidToken("weak_key", f"an HS256 key needs at least {SECRET_BYTES} bytes")
        if (
            alg == "RS256"
            and isinstance(material, rsa.RSAPublicKey | rsa.RSAPrivateKey)
            and material.key_size < RSA_MIN_BITS
        ):
            raise InvalidToken("weak_key", f"RS256 needs at least {RSA_MIN_BITS}-bit keys")
        if (
            alg == "ES256"
            and isinstance(material, ec.EllipticCurvePublicKey)
            and not isinstance(material.curve, ec.SECP256R1)
        ):
            raise InvalidToken("wrong_key_type", "ES256 needs a P-256 key")
        try:
            prepared = algorithm.prepare_key(material)
        except Exception:
            # PyJWT raises InvalidKeyError, TypeError, ValueError... for a key of the wrong
            # family (an RSA key for EdDSA, a PEM string as an HMAC secret); all mean the same.
            raise InvalidToken("wrong_key_type", f"not a {alg} key") from None
        return cls(kid, alg, prepared, algorithm)

    @classmethod
    def from_signing_key(cls, key: SigningKey) -> VerificationKey:
        """The verifying half of a key-ring signing key (public key, or the HS256 secret)."""
        return cls.create(key.kid, key.alg, key.verification_material)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], alg: str | None = None) -> VerificationKey:
        """A key from a public JWK (another issuer's JWKS, test vectors).

        Refuses keys whose ``use`` is not ``sig``, whose ``key_ops`` lack ``verify``, or whose
        ``alg`` disagrees with ``alg``: RFC 7517 §4.2/§4.3 say such a key must not verify.
        """
        if "use" in jwk and jwk["use"] != "sig":
            raise InvalidToken("wrong_key_use", "the JWK is not a signature key")
        if "key_ops" in jwk and (
            not isinstance(jwk["key_ops"], list) or "verify" not in jwk["key_ops"]
        ):
            raise InvalidToken("wrong_key_use", "the JWK may not verify")
        declared = jwk.get("alg")
        chosen = alg or declared
        if not isinstance(chosen, str) or (declared is not None and declared != chosen):
            raise InvalidToken("algorithm_mismatch", "the JWK's algorithm is missing or differs")
        algorithm = _ALGORITHMS.get(chosen)
        if algorithm is None:
            raise InvalidToken("unsupported_algorithm", f"algorithm {chosen!r} is not supported")
        try:
            material = algorithm.from_jwk(dict(jwk))
        except Exception:
            raise InvalidToken("wrong_key_type", f"not a valid {chosen} JWK") from None
        kid = jwk.get("kid")
        return cls.create(kid if isinstance(kid, str) else None, chosen, material)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``signing_input``."""
        return self._algorithm.verify(signing_input, self.material, signature)


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A compact JWS split and decoded, not yet verified."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes = field(repr=False)


def parse_compact(token: str | bytes, max_bytes: int = MAX_TOKEN_BYTES) -> CompactJWS:
    """Split and decode a compact JWS; :class:`InvalidToken` (``oversized``/``malformed``)."""
    if len(token) > max_bytes:
        raise InvalidToken("oversized", "token too large")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidToken("malformed", "token is not ASCII") from None
    elif not isinstance(token, str):
        raise InvalidToken("malformed", "token is not a string")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise InvalidToken("malformed", "token is not a compact JWS")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json_object(b64url_decode(header_b64))
        payload = b64url_decode(payload_b64)
        signature = b64url_decode(signature_b64)
    except ValueError:  # also UnicodeDecodeError and json.JSONDecodeError
        raise InvalidToken("malformed", "token is not a compact JWS") from None
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    return CompactJWS(header, payload, signing_input, signature)


KeyLookup = Callable[[str | None], VerificationKey | None]
"""Finds the key for a kid (None when the header has none); None when there is no such key."""


def verify_signature(jws: CompactJWS, lookup: KeyLookup) -> VerificationKey:
    """Check ``jws``'s signature with the key its kid names, in that key's algorithm only.

    Returns the key that verified. Raises :class:`InvalidToken` with reason ``missing_kid``,
    ``unknown_key``, ``algorithm_mismatch``, ``unsupported_header`` or ``bad_signature``.
    """
    header = jws.header
    kid = header.get("kid")
    if kid is not None and type(kid) is not str:
        raise InvalidToken("malformed", "kid is not a string")
    key = lookup(kid)
    if key is None:
        if kid is None:
            raise InvalidToken("missing_kid", "token has no key id")
        raise InvalidToken("unknown_key", "token signed with an unknown key")
    if header.get("alg") != key.alg:
        # Covers "none", HS256-with-a-public-key confusion and any header/key disagreement.
        raise InvalidToken("algorithm_mismatch", "token algorithm does not match its key")
    if "crit" in header:
        raise InvalidToken("unsupported_header", "token has critical header extensions")
    if not key.verify(jws.signing_input, jws.signature):
        raise InvalidToken("bad_signature", "token signature is invalid")
    return key
