"""The key ring: HMAC secrets and token signing keys, each with a lifetime, and their rotation.

Two uses, never mixed: ``hmac`` secrets sign cookies, CSRF tokens and consent records (sign with
the newest, verify with all live ones); ``sign`` keys sign tokens and are published as JWKS.
Every key is pinned to one algorithm; the token layer verifies with ``key.alg``, never with the
algorithm a token claims.

A key's state is not stored, it is computed from its times against the injected clock::

    pending --activated_at--> active --retiring_at--> retiring --retired_at--> retired
                              signs, verifies         verifies only           nothing

so a rotation is just new times, and every instance reading the same times agrees on the state
without coordination. The ring is immutable and does no I/O: :meth:`KeyRing.rotate` returns the
new ring together with the records to persist (see :mod:`tessera.keys_store`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tessera.clock import Clock
from tessera.errors import ConfigError, KeyNotFound
from tessera.keys_material import (
    HMAC_ALG,
    PrivateKey,
    PublicKey,
    SigningAlg,
    b64url_decode,
    b64url_encode,
    check_secret,
    check_signing_alg,
    from_private_jwk,
    generate_private_key,
    generate_secret,
    load_private_pem,
    private_pem,
    public_kid,
    secret_kid,
    to_jwk,
)
from tessera.stores.keys import KeyRecord

__all__ = [
    "HmacKey",
    "KeyRing",
    "KeyState",
    "KeyUse",
    "ManagedKey",
    "Rotation",
    "SigningAlg",
    "SigningKey",
    "new_key",
]


class KeyUse(enum.StrEnum):
    """What a key is for; a key serves exactly one use."""

    HMAC = "hmac"
    SIGN = "sign"


class KeyState(enum.StrEnum):
    """Where a key is in its life at a given instant."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class HmacKey:
    """One HMAC secret with its key id. ``repr`` never shows the secret."""

    kid: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A token signing key pinned to one JWS algorithm. ``repr`` never shows the material.

    ``material`` is a ``cryptography`` private key for EdDSA, ES256 and RS256, and the secret
    bytes for HS256. Equality compares kid and algorithm only: kids are unique in a ring.
    """

    kid: str
    alg: SigningAlg
    material: PrivateKey | bytes = field(repr=False, compare=False)

    @property
    def is_symmetric(self) -> bool:
        """True for HS256: such a key is never published and verifies only on this side."""
        return isinstance(self.material, bytes)

    @property
    def private_key(self) -> PrivateKey:
        """The ``cryptography`` private key to sign with (asymmetric algorithms only)."""
        if isinstance(self.material, bytes):
            raise KeyNotFound(f"key {self.kid} is an HS256 secret, not a private key")
        return self.material

    @property
    def public_key(self) -> PublicKey | None:
        """The public key to verify with; None for HS256 (verify with :attr:`material`)."""
        if isinstance(self.material, bytes):
            return None
        return self.material.public_key()

    @property
    def verification_material(self) -> PublicKey | bytes:
        """What a verifier passes to the JWS library: the public key, or the HS256 secret."""
        if isinstance(self.material, bytes):
            return self.material
        return self.material.public_key()

    def public_jwk(self) -> dict[str, Any] | None:
        """The public JWK with kid, alg and ``use: sig``; None for HS256 (never published)."""
        public = self.public_key
        if public is None:
            return None
        jwk = to_jwk(public, self.alg)
        # PyJWT adds key_ops to RSA JWKs; RFC 7517 §4.3 says not to combine it with "use".
        jwk.pop("key_ops", None)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def private_jwk(self) -> dict[str, Any]:
        """The JWK *with* private members, for export to another system; handle as a secret."""
        jwk = to_jwk(self.material, self.alg)
        jwk.pop("key_ops", None)
        return {**jwk, "kid": self.kid, "alg": self.alg}

    def private_pem(self) -> str:
        """PKCS#8 PEM of the private key (asymmetric algorithms only), for persistence."""
        return private_pem(self.private_key)

    @classmethod
    def generate(cls, alg: str) -> SigningKey:
        """A fresh key for ``alg``; asymmetric kids are RFC 7638 thumbprints."""
        checked = check_signing_alg(alg)
        if checked == "HS256":
            secret = generate_secret()
            return cls(secret_kid(secret), checked, secret)
        private = generate_private_key(checked)
        return cls(public_kid(private), checked, private)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], alg: str, kid: str | None = None) -> SigningKey:
        """A key from a private JWK; ``kid`` defaults to the JWK's kid, then to a derived one."""
        checked = check_signing_alg(alg)
        material = from_private_jwk(jwk, checked)
        given = kid or jwk.get("kid")
        return cls(_kid_for(material, given), checked, material)

    @classmethod
    def from_pem(cls, pem: str, alg: str, kid: str | None = None) -> SigningKey:
        """A key from a PKCS#8 (or traditional) PEM private key checked against ``alg``."""
        checked = check_signing_alg(alg)
        if checked == "HS256":
            raise ConfigError("an HS256 key is a secret, not a PEM", code="invalid_key")
        material = load_private_pem(pem, checked)
        return cls(_kid_for(material, kid), checked, material)


def _kid_for(material: PrivateKey | bytes, given: object) -> str:
    if given is not None:
        if not isinstance(given, str) or not given:
            raise ConfigError("a kid must be a non-empty string", code="invalid_key")
        return given
    if isinstance(material, bytes):
        return secret_kid(material)
    return public_kid(material)


@dataclass(frozen=True, slots=True)
class ManagedKey:
    """A key of the ring with its lifetime (Unix seconds).

    ``retiring_at`` ends signing, ``retired_at`` ends verifying; either may be None (not
    scheduled). The constructor refuses times out of order, so a state is always well defined.
    """

    key: HmacKey | SigningKey
    created_at: float
    activated_at: float
    retiring_at: float | None = None
    retired_at: float | None = None

    def __post_init__(self) -> None:
        ends = [t for t in (self.retiring_at, self.retired_at) if t is not None]
        if any(t < self.activated_at for t in ends) or ends != sorted(ends):
            raise ConfigError(
                f"key {self.kid}: times must satisfy activated_at <= retiring_at <= retired_at",
                code="invalid_key",
            )

    @property
    def kid(self) -> str:
        return self.key.kid

    @property
    def use(self) -> KeyUse:
        return KeyUse.HMAC if isinstance(self.key, HmacKey) else KeyUse.SIGN

    @property
    def alg(self) -> str:
        return HMAC_ALG if isinstance(self.key, HmacKey) else self.key.alg

    def state(self, now: float) -> KeyState:
        """The state at ``now``; boundaries belong to the later state (retired at retired_at)."""
        if self.retired_at is not None and now >= self.retired_at:
            return KeyState.RETIRED
        if self.retiring_at is not None and now >= self.retiring_at:
            return KeyState.RETIRING
        if now >= self.activated_at:
            return KeyState.ACTIVE
        return KeyState.PENDING

    def retire(self, now: float, overlap: float) -> ManagedKey:
        """This key retiring at ``now`` and retired after ``overlap``; earlier plans stand."""
        retired_at = now + overlap
        if self.retired_at is not None:
            retired_at = min(retired_at, self.retired_at)
        retiring_at = min(now, retired_at)
        return replace(self, retiring_at=retiring_at, retired_at=retired_at)

    def to_record(self) -> KeyRecord:
        """The persisted form: PEM for asymmetric keys, base64url for secrets."""
        if isinstance(self.key, HmacKey):
            material = b64url_encode(self.key.secret)
        elif isinstance(self.key.material, bytes):
            material = b64url_encode(self.key.material)
        else:
            material = self.key.private_pem()
        return KeyRecord(
            kid=self.kid,
            use=self.use.value,
            alg=self.alg,
            material=material,
            created_at=self.created_at,
            activated_at=self.activated_at,
            retiring_at=self.retiring_at,
            retired_at=self.retired_at,
        )

    @classmethod
    def from_record(cls, record: KeyRecord) -> ManagedKey:
        """Parse a stored key, checking its material fits its use and algorithm."""
        key: HmacKey | SigningKey
        if record.use == KeyUse.HMAC:
            if record.alg != HMAC_ALG:
                raise ConfigError(
                    f"key {record.kid}: hmac keys are {HMAC_ALG}, not {record.alg!r}",
                    code="invalid_key",
                )
            key = HmacKey(record.kid, check_secret(b64url_decode(record.material)))
        elif record.use == KeyUse.SIGN:
            alg = check_signing_alg(record.alg)
            if alg == "HS256":
                secret = check_secret(b64url_decode(record.material))
                key = SigningKey(record.kid, alg, secret)
            else:
                key = SigningKey(record.kid, alg, load_private_pem(record.material, alg))
        else:
            raise ConfigError(
                f"key {record.kid}: use must be 'hmac' or 'sign', not {record.use!r}",
                code="invalid_key",
            )
        return cls(
            key, record.created_at, record.activated_at, record.retiring_at, record.retired_at
        )


def new_key(use: KeyUse | str, alg: str | None, now: float) -> ManagedKey:
    """A freshly generated key, active from ``now``. ``alg`` defaults to HS256 / EdDSA."""
    kind = _check_use(use)
    key: HmacKey | SigningKey
    if kind is KeyUse.HMAC:
        if alg not in (None, HMAC_ALG):
            raise ConfigError(f"hmac keys are {HMAC_ALG}, not {alg!r}", code="invalid_key")
        secret = generate_secret()
        key = HmacKey(secret_kid(secret), secret)
    else:
        key = SigningKey.generate(alg or "EdDSA")
    return ManagedKey(key, created_at=now, activated_at=now)


def _check_use(use: KeyUse | str) -> KeyUse:
    try:
        return KeyUse(use)
    except ValueError:
        raise ConfigError(f"key use must be 'hmac' or 'sign', not {use!r}") from None


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of :meth:`KeyRing.rotate`: the new ring and what to persist."""

    ring: KeyRing
    new: ManagedKey
    retiring: tuple[ManagedKey, ...]
    """The previously active keys of that use, with their new retiring and retired times."""


class KeyRing:
    """An immutable set of keys, answering "which key?" against the injected clock.

    Orders are newest first (by activation, then creation, then kid), so that when two keys of
    one use are active at once (two instances generated at once) every instance signs with the
    same one and verifies with both.
    """

    __slots__ = ("_clock", "_keys")

    def __init__(self, keys: Iterable[ManagedKey], clock: Clock) -> None:
        ordered = sorted(keys, key=lambda k: (k.activated_at, k.created_at, k.kid), reverse=True)
        kids = [k.kid for k in ordered]
        if len(set(kids)) != len(kids):
            duplicate = next(kid for kid in kids if kids.count(kid) > 1)
            raise ConfigError(f"two keys share the kid {duplicate!r}", code="invalid_key")
        self._keys: tuple[ManagedKey, ...] = tuple(ordered)
        self._clock = clock

    def __repr__(self) -> str:
        return f"<KeyRing {len(self._keys)} keys: {', '.join(self.kids())}>"

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def clock(self) -> Clock:
        return self._clock

    def kids(self) -> list[str]:
        return [k.kid for k in self._keys]

    def all_keys(self) -> tuple[ManagedKey, ...]:
        """Every key, retired and pending ones included, newest first (for listing)."""
        return self._keys

    def _live(self, use: KeyUse) -> tuple[list[ManagedKey], list[ManagedKey]]:
        """Active keys newest first, and retiring keys newest first, at one clock reading."""
        now = self._clock.now()
        states = [(k, k.state(now)) for k in self._keys if k.use is use]
        active = [k for k, s in states if s is KeyState.ACTIVE]
        retiring = [k for k, s in states if s is KeyState.RETIRING]
        return active, retiring

    def hmac_keys(self) -> Sequence[HmacKey]:
        """Live HMAC secrets: sign with ``[0]`` (the newest active), verify with all.

        Raises KeyNotFound when no HMAC key is active: signing with a retiring key would mint
        cookies that die with it, so the caller must fail loudly instead.
        """
        active, retiring = self._live(KeyUse.HMAC)
        if not active:
            raise KeyNotFound(
                "no active HMAC key in the key ring; run `tessera keys rotate --use hmac`"
            )
        return [k.key for k in active + retiring if isinstance(k.key, HmacKey)]

    def signing_key(self) -> SigningKey:
        """The newest active token signing key."""
        now = self._clock.now()
        for managed in self._keys:
            if managed.use is KeyUse.SIGN and managed.state(now) is KeyState.ACTIVE:
                key = managed.key
                if isinstance(key, SigningKey):
                    return key
        raise KeyNotFound(
            "no active signing key in the key ring; run `tessera keys rotate --use sign`"
        )

    def verification_keys(self) -> Sequence[SigningKey]:
        """Signing keys a token may be verified with: active, then retiring, newest first."""
        active, retiring = self._live(KeyUse.SIGN)
        return [k.key for k in active + retiring if isinstance(k.key, SigningKey)]

    def key_for_kid(self, kid: str) -> SigningKey | None:
        """The active or retiring signing key with that kid; None for unknown or dead kids."""
        for key in self.verification_keys():
            if key.kid == kid:
                return key
        return None

    def state_of(self, kid: str) -> KeyState | None:
        """The current state of the key with that kid, None if it is not in the ring."""
        now = self._clock.now()
        for managed in self._keys:
            if managed.kid == kid:
                return managed.state(now)
        return None

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS of live asymmetric keys: public members only; HS256 keys never appear."""
        jwks = [key.public_jwk() for key in self.verification_keys()]
        return {"keys": [jwk for jwk in jwks if jwk is not None]}

    def rotate(
        self,
        use: KeyUse | str,
        alg: str | None = None,
        *,
        overlap: float,
        now: float | None = None,
    ) -> Rotation:
        """Generate a key of ``use`` active now; active keys of that use turn retiring now and
        retired after ``overlap`` seconds (Settings.key_rotation_overlap)."""
        kind = _check_use(use)
        if overlap < 0:
            raise ConfigError("the rotation overlap cannot be negative")
        at = self._clock.now() if now is None else now
        fresh = new_key(kind, alg, at)
        retiring = tuple(
            k.retire(at, overlap)
            for k in self._keys
            if k.use is kind and k.state(at) is KeyState.ACTIVE
        )
        replaced = {k.kid: k for k in retiring}
        keys = [replaced.get(k.kid, k) for k in self._keys]
        return Rotation(KeyRing([fresh, *keys], self._clock), fresh, retiring)
