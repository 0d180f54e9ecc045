"""JWT access tokens in the RFC 9068 profile: issue with the key ring, verify with a pinned key.

Issuing goes through ``jwt.encode`` (PyJWT) with the key ring's newest signing key. Verifying
does not call ``jwt.decode``: that would take the algorithm list from the caller and read the
clock itself. Instead, :mod:`tessera.tokens.jws` checks the signature once with the kid's own
algorithm (PyJWT's algorithm objects), the payload is parsed once, and the claims are checked
here against the injected clock. The result is a frozen :class:`AccessClaims`.

Order of a verification, cheapest refusal first: size cap, cache hit (then only key liveness,
lifetime and revocation), strict parse, ``typ``, signature with the pinned key, claim types,
issuer/audience/lifetime, revocation.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import jwt

from tessera.clock import Clock, SystemClock
from tessera.errors import InvalidInput, InvalidToken
from tessera.keys import KeyRing, SigningKey
from tessera.metrics import Metrics
from tessera.tokens.cache import BEARER_PREFIX, CachedToken, VerifiedTokenCache, token_digest
from tessera.tokens.claims import (
    ACCESS_TOKEN_TYP,
    DEFAULT_LEEWAY,
    AccessClaims,
    check_claims,
    is_access_token_typ,
    normalize_scope,
    parse_claims,
)
from tessera.tokens.jws import (
    MAX_TOKEN_BYTES,
    VerificationKey,
    json_object,
    parse_compact,
    verify_signature,
)

KeyRingProvider = Callable[[], KeyRing]
"""Returns the current key ring; called per operation so that a reloaded ring takes effect."""

KEY_REFRESH_INTERVAL: Final = 1.0
"""Seconds a verifier reuses its kid -> key map before asking the ring again (key states move
with the clock: a key that retires stops verifying within this interval)."""


class RevocationCheck(Protocol):
    """What the verifier needs from :class:`tessera.tokens.revocation.RevocationView`."""

    def is_revoked(self, claims: AccessClaims) -> bool: ...


def _provider(keys: KeyRing | KeyRingProvider) -> KeyRingProvider:
    if isinstance(keys, KeyRing):
        ring = keys
        return lambda: ring
    return keys


class TokenIssuer:
    """Mints access tokens signed by the ring's newest active signing key."""

    __slots__ = ("_audience", "_clock", "_issuer", "_keys", "ttl")

    def __init__(
        self,
        keyring_provider: KeyRing | KeyRingProvider,
        issuer: str,
        audience: str,
        ttl: int,
        clock: Clock,
    ) -> None:
        if ttl <= 0:
            raise InvalidInput("the access token ttl must be positive")
        self._keys = _provider(keyring_provider)
        self._issuer = issuer
        self._audience = audience
        self.ttl = ttl
        self._clock = clock

    def __repr__(self) -> str:
        return f"<TokenIssuer iss={self._issuer!r} aud={self._audience!r} ttl={self.ttl}>"

    def issue(
        self,
        sub: str,
        sid: str,
        scope: str | list[str] | tuple[str, ...] | frozenset[str] | set[str],
        client_id: str,
    ) -> tuple[str, AccessClaims]:
        """A signed token for user ``sub`` in session ``sid``, and the claims it carries."""
        for name, value in (("sub", sub), ("sid", sid), ("client_id", client_id)):
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"{name} must be a non-empty string")
        key: SigningKey = self._keys().signing_key()
        # NumericDate in whole seconds: the form every consumer accepts (RFC 7519 §2).
        iat = int(self._clock.now())
        claims = AccessClaims(
            iss=self._issuer,
            sub=sub,
            aud=(self._audience,),
            exp=iat + self.ttl,
            iat=iat,
            jti=secrets.token_urlsafe(16),
            sid=sid,
            client_id=client_id,
            scope=normalize_scope(scope),
            kid=key.kid,
        )
        token = jwt.encode(
            claims.to_payload(),
            key.material,
            algorithm=key.alg,
            headers={"typ": ACCESS_TOKEN_TYP, "kid": key.kid},
        )
        return token, claims


class TokenVerifier:
    """Verifies access tokens: pinned algorithms, strict parsing, injected clock, cache, revocation.

    :meth:`verify` is synchronous (pure CPU, no I/O): call it from async code directly.
    """

    __slots__ = (
        "_audience",
        "_cache",
        "_issuer",
        "_key_map",
        "_keys",
        "_keys_until",
        "_leeway",
        "_max_bytes",
        "_max_header",
        "_metrics",
        "_now",
        "_revocations",
        "_ring",
        "_static_ring",
    )

    def __init__(
        self,
        keyring_provider: KeyRing | KeyRingProvider,
        issuer: str,
        audience: str,
        clock: Clock,
        *,
        leeway: float = DEFAULT_LEEWAY,
        revocations: RevocationCheck | None = None,
        cache: VerifiedTokenCache | None = None,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        self._keys = _provider(keyring_provider)
        # A ring given as such never changes: the per-request check of a cached token can skip
        # asking the provider whether it did (key states still move with the clock).
        self._static_ring = isinstance(keyring_provider, KeyRing)
        self._issuer = issuer
        self._audience = audience
        # The system clock's reading without the method call around time.time.
        self._now: Callable[[], float] = time.time if type(clock) is SystemClock else clock.now
        self._leeway = leeway
        self._revocations = revocations
        self._cache = cache
        self._max_bytes = max_token_bytes
        self._max_header = max_token_bytes + len(BEARER_PREFIX)
        self._metrics = metrics
        self._ring: KeyRing | None = None
        self._keys_until = float("-inf")
        self._key_map: dict[str, VerificationKey] = {}

    def __repr__(self) -> str:
        return f"<TokenVerifier iss={self._issuer!r} aud={self._audience!r}>"

    @property
    def cache(self) -> VerifiedTokenCache | None:
        return self._cache

    def _live_keys(self, now: float) -> dict[str, VerificationKey]:
        """kid -> prepared key for the ring's active and retiring signing keys."""
        ring = self._keys()
        if ring is self._ring and now < self._keys_until:
            return self._key_map
        previous = self._key_map
        fresh: dict[str, VerificationKey] = {}
        for key in ring.verification_keys():
            known = previous.get(key.kid)
            # Reuse the prepared key unless the kid now names other material (never, normally).
            if known is not None and known.alg == key.alg:
                fresh[key.kid] = known
            else:
                fresh[key.kid] = VerificationKey.from_signing_key(key)
        self._key_map, self._ring, self._keys_until = fresh, ring, now + KEY_REFRESH_INTERVAL
        return fresh

    def _keys_at(self, now: float) -> dict[str, VerificationKey]:
        """:meth:`_live_keys`, without a call while the map is fresh and the ring unchanged."""
        if now < self._keys_until and (self._static_ring or self._keys() is self._ring):
            return self._key_map
        return self._live_keys(now)

    def verify(self, token: str | bytes) -> AccessClaims:
        """The claims of a valid, live, unrevoked access token; :class:`InvalidToken` otherwise."""
        return self.verify_entry(token).claims

    def verify_entry(self, token: str | bytes) -> CachedToken:
        """:meth:`verify`, returning the token's cache entry (a fresh one when there is no cache).

        The entry's ``principal`` slot is for the HTTP layer to keep what it derives from the
        claims; the entry is returned only after every check passed.
        """
        try:
            return self._verify(token)
        except InvalidToken as exc:
            if self._metrics is not None:
                self._metrics.incr(f"tokens.invalid.{exc.reason}")
            raise

    def cached_entry(self, authorization: bytes) -> CachedToken | None:
        """The fast path for a token accepted before: its entry, or None to call verify_entry().

        ``authorization`` is the raw Authorization header value; only ``Bearer <token>``
        spelled exactly so can match (the cache key is its digest), anything else is None.
        Returns the entry only when the cache holds it and every check that can change since it
        was verified passes again: lifetime (``exp`` + leeway), signing key still live, no
        revocation of its session or user. Anything else (absent, expired, retired key, revoked,
        oversized) is None, never an error: :meth:`verify_entry` then decides, with the reason
        and the metrics. Nothing is counted unless the entry is returned, so that fallback
        counts each request once.
        """
        cache = self._cache
        if cache is None or len(authorization) > self._max_header:
            return None
        # The steps of cache.entry() and _keys_at(), inlined: this runs on every request.
        digest = hashlib.sha256(authorization).digest()
        entries = cache._entries  # same package; see VerifiedTokenCache.__init__
        entry = entries.get(digest)
        if entry is None:
            return None
        now = self._now()
        if now >= entry.valid_until:
            return None
        keys = self._key_map
        if now >= self._keys_until or not (self._static_ring or self._keys() is self._ring):
            keys = self._live_keys(now)
        claims = entry.claims
        if claims.kid not in keys:
            return None
        revocations = self._revocations
        if revocations is not None and revocations.is_revoked(claims):
            return None
        entries.move_to_end(digest)
        cache.hits += 1
        return entry

    def _verify(self, token: str | bytes) -> CachedToken:
        if len(token) > self._max_bytes:
            raise InvalidToken("oversized", "token too large")
        now = self._now()
        cache = self._cache
        digest = b""
        if cache is not None:
            digest = token_digest(token)
            entry = cache.entry(digest, now)  # None past exp + leeway
            if entry is not None:
                if entry.claims.kid in self._keys_at(now):
                    self._check_revoked(entry.claims)
                    return entry
                cache.discard(digest)  # its key retired: verify afresh (and fail)
        claims = self._verify_uncached(token, now)
        self._check_revoked(claims)
        valid_until = claims.exp + self._leeway
        if cache is None:
            return CachedToken(claims, valid_until)
        return cache.put(digest, claims, valid_until)

    def _verify_uncached(self, token: str | bytes, now: float) -> AccessClaims:
        jws = parse_compact(token, self._max_bytes)
        if not is_access_token_typ(jws.header.get("typ")):
            raise InvalidToken("wrong_type", "not an access token (typ must be at+jwt)")
        keys = self._keys_at(now)
        key = verify_signature(jws, lambda kid: None if kid is None else keys.get(kid))
        try:
            payload: dict[str, Any] = json_object(jws.payload)
        except ValueError:
            raise InvalidToken("malformed", "token claims are not a JSON object") from None
        claims = parse_claims(payload, key.kid)
        check_claims(
            claims, issuer=self._issuer, audience=self._audience, now=now, leeway=self._leeway
        )
        return claims

    def _check_revoked(self, claims: AccessClaims) -> None:
        if self._revocations is not None and self._revocations.is_revoked(claims):
            raise InvalidToken("revoked", "token revoked")
