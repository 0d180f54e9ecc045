"""Signed and encrypted cookie values, keyed by the key ring, bound to a cookie and a purpose.

Signed (:class:`SignedCookies`), for data the client may read but not forge::

    b64url(payload) "." b64url(issued_at: 8-byte big-endian) "." kid "." b64url(mac)
    mac = HMAC-SHA256(secret, context || payload || issued_at)

Encrypted (:class:`EncryptedCookies`), for data the client may hold but not read::

    kid "." b64url(nonce(12) || AES-256-GCM(key, nonce, issued_at || payload, aad=context))
    key = HKDF-SHA256(secret, info=purpose)

``context`` is length-prefixed (tag, cookie name, purpose, kid), as Django's signing does: with
plain concatenation ("ab" + "c" == "a" + "bc") a value signed for one cookie or purpose could
verify for another. The key list is newest first: sign with the first, verify with any, so a
rotation never logs anyone out. ``unsign``/``decrypt`` answer ``None`` for anything that is
not a genuine, fresh value and count why; they never raise on the value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.cookies._cookie import MAX_NAME_VALUE_BYTES
from tessera.errors import ConfigError
from tessera.keys import HmacKey
from tessera.metrics import Metrics

#: Newest key first. A callable is asked on every call, so a rotation applies at once.
KeySource = Sequence[HmacKey] | Callable[[], Sequence[HmacKey]]

MIN_SECRET_BYTES = 32
#: Future timestamps within this many seconds are accepted: instances' clocks drift a little.
DEFAULT_SKEW = 60.0

_SIGNED_TAG = b"tessera/signed-cookie/v1"
_ENCRYPTED_TAG = b"tessera/encrypted-cookie/v1"
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_LENGTH = struct.Struct(">I")
_TIMESTAMP = struct.Struct(">Q")
_MAC_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_INVALID = "cookies.signature_invalid"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict unpadded base64url: only the canonical encoding of some bytes is accepted.

    Lenient decoders ignore the unused low bits of the last character, so several strings
    decode to the same bytes; refusing all but one keeps "any changed character fails".
    """
    if _B64.fullmatch(text) is None or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64encode(data) == text else None


def _context(tag: bytes, name: str, purpose: str, kid: str) -> bytes:
    parts = (tag, name.encode("utf-8", "surrogatepass"), purpose.encode(), kid.encode())
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


class _KeyedCodec:
    """Key handling and freshness checks shared by the signed and the encrypted codec."""

    __slots__ = ("_clock", "_key_source", "_max_age", "_metrics", "_skew", "purpose")

    def __init__(
        self,
        keys: KeySource,
        *,
        purpose: str,
        max_age: float,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        skew: float = DEFAULT_SKEW,
    ) -> None:
        if not isinstance(purpose, str) or not purpose:
            raise ConfigError("a cookie codec needs a non-empty purpose", code="invalid_config")
        if not max_age > 0 or not skew >= 0:
            raise ConfigError("max_age must be > 0 and skew >= 0", code="invalid_config")
        self._key_source = keys
        self.purpose = purpose
        self._max_age = float(max_age)
        self._skew = float(skew)
        self._clock = clock
        self._metrics = metrics if metrics is not None else Metrics()

    def _keys(self) -> Sequence[HmacKey]:
        keys = self._key_source() if callable(self._key_source) else self._key_source
        if not keys:
            raise ConfigError("the key ring has no HMAC key to sign cookies with")
        for key in keys:
            # A bad key is a deployment error: say so loudly instead of failing every cookie.
            if _KID.fullmatch(key.kid) is None:
                raise ConfigError(f"key id {key.kid!r} must match {_KID.pattern}")
            if len(key.secret) < MIN_SECRET_BYTES:
                raise ConfigError(f"key {key.kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        return keys

    def _key(self, kid: str) -> HmacKey | None:
        # Key ids are public (they travel in the value); a plain comparison is fine.
        for key in self._keys():
            if key.kid == kid:
                return key
        return None

    def _invalid(self) -> None:
        self._metrics.incr(_INVALID)

    def _issued_at(self) -> bytes:
        return _TIMESTAMP.pack(int(self._clock.now()))

    def _fresh(self, timestamp: bytes) -> bool:
        """Count and refuse values from the future (beyond the skew) or past ``max_age``."""
        (issued_at,) = _TIMESTAMP.unpack(timestamp)
        now = self._clock.now()
        if issued_at > now + self._skew:
            self._metrics.incr("cookies.issued_in_future")
            return False
        if now - issued_at > self._max_age:
            self._metrics.incr("cookies.expired")
            return False
        return True


class SignedCookies(_KeyedCodec):
    """HMAC-SHA256 signed values for one purpose; readable by the client, not forgeable."""

    __slots__ = ()

    def sign(self, name: str, payload: bytes) -> str:
        """A cookie-safe value carrying ``payload`` for the cookie ``name``."""
        key = self._keys()[0]
        timestamp = self._issued_at()
        mac = self._mac(key, name, payload, timestamp)
        return ".".join((_b64encode(payload), _b64encode(timestamp), key.kid, _b64encode(mac)))

    def unsign(self, name: str, value: str) -> bytes | None:
        """The payload when ``value`` was signed for ``name`` and this purpose and is fresh."""
        if not isinstance(value, str) or len(value) > MAX_NAME_VALUE_BYTES:
            self._invalid()
            return None
        parts = value.split(".")
        if len(parts) != 4:
            self._invalid()
            return None
        payload_text, timestamp_text, kid, mac_text = parts
        key = self._key(kid)
        payload = _b64decode(payload_text)
        timestamp = _b64decode(timestamp_text)
        mac = _b64decode(mac_text)
        if (
            key is None
            or payload is None
            or timestamp is None
            or mac is None
            or len(timestamp) != _TIMESTAMP.size
            or len(mac) != _MAC_BYTES
            or not hmac.compare_digest(mac, self._mac(key, name, payload, timestamp))
        ):
            self._invalid()
            return None
        return payload if self._fresh(timestamp) else None

    def _mac(self, key: HmacKey, name: str, payload: bytes, timestamp: bytes) -> bytes:
        message = _context(_SIGNED_TAG, name, self.purpose, key.kid) + payload + timestamp
        return hmac.new(key.secret, message, hashlib.sha256).digest()


class EncryptedCookies(_KeyedCodec):
    """AES-256-GCM values for one purpose: the client holds them but can neither read nor edit."""

    __slots__ = ("_ciphers",)

    def __init__(
        self,
        keys: KeySource,
        *,
        purpose: str,
        max_age: float,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        skew: float = DEFAULT_SKEW,
    ) -> None:
        super().__init__(
            keys, purpose=purpose, max_age=max_age, clock=clock, metrics=metrics, skew=skew
        )
        self._ciphers: dict[tuple[str, bytes], AESGCM] = {}

    def encrypt(self, name: str, payload: bytes) -> str:
        """A cookie-safe value hiding ``payload`` for the cookie ``name``."""
        key = self._keys()[0]
        nonce = os.urandom(_NONCE_BYTES)  # random 96-bit nonce: never reused under one key
        aad = _context(_ENCRYPTED_TAG, name, self.purpose, key.kid)
        sealed = self._cipher(key).encrypt(nonce, self._issued_at() + payload, aad)
        return f"{key.kid}.{_b64encode(nonce + sealed)}"

    def decrypt(self, name: str, value: str) -> bytes | None:
        """The payload when ``value`` was encrypted for ``name`` and this purpose and is fresh."""
        if not isinstance(value, str) or len(value) > MAX_NAME_VALUE_BYTES:
            self._invalid()
            return None
        kid, dot, blob_text = value.partition(".")
        key = self._key(kid) if dot else None
        blob = _b64decode(blob_text)
        if key is None or blob is None or len(blob) < _NONCE_BYTES + _TAG_BYTES:
            self._invalid()
            return None
        aad = _context(_ENCRYPTED_TAG, name, self.purpose, key.kid)
        try:
            plain = self._cipher(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
        except InvalidTag:
            self._invalid()
            return None
        if len(plain) < _TIMESTAMP.size:
            self._invalid()
            return None
        timestamp, payload = plain[: _TIMESTAMP.size], plain[_TIMESTAMP.size :]
        return payload if self._fresh(timestamp) else None

    def _cipher(self, key: HmacKey) -> AESGCM:
        cached = self._ciphers.get((key.kid, key.secret))
        if cached is None:
            # One AES key per purpose, derived rather than reusing the HMAC secret directly.
            info = _context(_ENCRYPTED_TAG, "", self.purpose, "")
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
                key.secret
            )
            if len(self._ciphers) >= 16:
                self._ciphers.clear()  # rotated-out keys must not pile up
            cached = self._ciphers[(key.kid, key.secret)] = AESGCM(derived)
        return cached
