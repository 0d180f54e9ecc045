"""Opaque refresh tokens, rotated on every use, with reuse detection and a grace window.

- A token is 256 random bits (``secrets.token_urlsafe(32)``); stores keep its SHA-256 digest.
- Tokens descend from one login in a *family* bound to the user, the session (sid) and the
  client, with an absolute lifetime (Settings.refresh_token_ttl) that rotation never extends.
- Every refresh rotates: the presented token is spent and a successor is returned.
- Presenting a spent token again is the signature of theft (RFC 9700 §4.14.2): the whole
  family is revoked and :class:`~tessera.errors.RefreshTokenReused` reports the session, which
  the caller must end too.
- Except within ``grace`` seconds of the rotation: an app that fired two refreshes at once (two
  tabs, a retry after a timeout) gets *the same* successor for both, so it is neither logged
  out nor left holding a forked family.

How the same successor can be handed out twice without storing it in the clear: at rotation the
successor's raw token is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
*presented* raw token, and that box is stored next to the presented token's digest. Only a
caller holding the old token can open it, and a database leak yields digests and boxes, neither
of them a usable credential. The box is bound (associated data) to the successor's digest, and
the opened token is checked against that digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tessera.clock import Clock
from tessera.errors import InvalidGrant, InvalidInput, RefreshTokenReused
from tessera.metrics import Metrics
from tessera.stores.refresh_tokens import (
    RefreshFamily,
    RefreshTokenStore,
    RotateOutcome,
)

DEFAULT_GRACE: Final = 10.0
"""Seconds after a rotation during which the old token still yields the same successor."""

TOKEN_BYTES: Final = 32
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_BOX_INFO: Final = b"tessera refresh-token successor v1"
_NONCE_BYTES: Final = 12


def hash_token(raw: str) -> str:
    """The stored form of a refresh token: SHA-256, hex."""
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def _box_key(old_raw: str) -> bytes:
    # The old token has 256 bits of entropy: HKDF without salt is a sound extractor here.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_BOX_INFO)
    return hkdf.derive(old_raw.encode("ascii"))


def seal_successor(old_raw: str, successor_raw: str, successor_hash: str) -> bytes:
    """nonce || AES-GCM(successor), keyed by the old token, bound to the successor's digest."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_box_key(old_raw)).encrypt(
        nonce, successor_raw.encode("ascii"), successor_hash.encode("ascii")
    )
    return nonce + sealed


def open_successor(old_raw: str, box: bytes, successor_hash: str) -> str | None:
    """The successor sealed by :func:`seal_successor`, or None when the box does not open."""
    try:
        raw = AESGCM(_box_key(old_raw)).decrypt(
            box[:_NONCE_BYTES], box[_NONCE_BYTES:], successor_hash.encode("ascii")
        )
        text = raw.decode("ascii")
    except (InvalidTag, ValueError):
        return None
    if not hmac.compare_digest(hash_token(text), successor_hash):
        return None
    return text


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """A refresh token to hand to the client, with what it is bound to."""

    refresh_token: str = field(repr=False)
    family_id: str
    sid: str
    user_id: str
    client_id: str
    expires_at: float
    """End of the family: the token is useless after this, rotated or not."""
    duplicate: bool = False
    """True when this answered a concurrent duplicate refresh within the grace window."""

    @property
    def family(self) -> str:
        return self.family_id


class RefreshTokens:
    """Issues and rotates refresh tokens over any :class:`RefreshTokenStore`."""

    __slots__ = ("_clock", "_grace", "_metrics", "_store", "_ttl")

    def __init__(
        self,
        store: RefreshTokenStore,
        clock: Clock,
        *,
        family_ttl: float,
        grace: float = DEFAULT_GRACE,
        metrics: Metrics | None = None,
    ) -> None:
        if family_ttl <= 0 or grace < 0:
            raise InvalidInput("family_ttl must be positive and grace not negative")
        self._store = store
        self._clock = clock
        self._ttl = family_ttl
        self._grace = grace
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"<RefreshTokens ttl={self._ttl} grace={self._grace} store={self._store!r}>"

    @property
    def store(self) -> RefreshTokenStore:
        return self._store

    async def issue(self, user_id: str, sid: str, client_id: str) -> RefreshResult:
        """The first token of a new family (at login)."""
        for name, value in (("user_id", user_id), ("sid", sid), ("client_id", client_id)):
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"{name} must be a non-empty string")
        now = self._clock.now()
        family = RefreshFamily(
            family_id=secrets.token_urlsafe(16),
            user_id=user_id,
            sid=sid,
            client_id=client_id,
            created_at=now,
            expires_at=now + self._ttl,
        )
        raw = secrets.token_urlsafe(TOKEN_BYTES)
        await self._store.create(family, hash_token(raw))
        return self._result(raw, family, duplicate=False)

    async def rotate(self, presented_token: str, client_id: str) -> RefreshResult:
        """Spend ``presented_token`` and return its successor.

        Raises :class:`~tessera.errors.InvalidGrant` (reason ``malformed``, ``unknown``,
        ``wrong_client``, ``revoked``, ``expired``) or
        :class:`~tessera.errors.RefreshTokenReused` (the family is now revoked; end its session).
        """
        if not isinstance(presented_token, str) or _TOKEN_SHAPE.fullmatch(presented_token) is None:
            raise self._refuse("malformed")
        now = self._clock.now()
        old_hash = hash_token(presented_token)
        successor = secrets.token_urlsafe(TOKEN_BYTES)
        successor_hash = hash_token(successor)
        box = seal_successor(presented_token, successor, successor_hash)
        result = await self._store.rotate(
            old_hash, client_id, successor_hash, box, now, self._grace
        )
        family = result.family
        outcome = result.outcome
        if outcome is RotateOutcome.ROTATED and family is not None:
            self._count("rotated")
            return self._result(successor, family, duplicate=False)
        if outcome is RotateOutcome.GRACE and family is not None:
            stored_box, boxed_hash = result.successor_box, result.successor_hash
            opened = None
            if stored_box is not None and boxed_hash is not None:
                opened = open_successor(presented_token, stored_box, boxed_hash)
            if opened is None:
                raise self._refuse("unknown")  # a box we cannot open was not sealed for us
            self._count("grace")
            return self._result(opened, family, duplicate=True)
        if outcome is RotateOutcome.REUSED and family is not None:
            self._count("reused")
            raise RefreshTokenReused(family.family_id, family.sid, family.user_id)
        raise self._refuse(outcome.value)

    async def revoke_family(self, family_id: str) -> bool:
        return await self._store.revoke_family(family_id, self._clock.now())

    async def revoke_session(self, sid: str) -> int:
        """End every refresh family of a session (logout, session revoked)."""
        return await self._store.revoke_for_session(sid, self._clock.now())

    async def revoke_user(self, user_id: str) -> int:
        """End every refresh family of a user (password change, disable, log out everywhere)."""
        return await self._store.revoke_for_user(user_id, self._clock.now())

    def _result(self, raw: str, family: RefreshFamily, *, duplicate: bool) -> RefreshResult:
        return RefreshResult(
            refresh_token=raw,
            family_id=family.family_id,
            sid=family.sid,
            user_id=family.user_id,
            client_id=family.client_id,
            expires_at=family.expires_at,
            duplicate=duplicate,
        )

    def _count(self, what: str) -> None:
        if self._metrics is not None:
            self._metrics.incr(f"refresh.{what}")

    def _refuse(self, reason: str) -> InvalidGrant:
        self._count(f"refused.{reason}")
        return InvalidGrant(reason)
