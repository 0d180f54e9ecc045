"""A bounded cache of verified access tokens, so a busy API verifies each token's signature once.

A bearer token is sent on every request for its whole lifetime; checking its signature again
each time is most of the cost of authentication. Entries are keyed by the SHA-256 digest of the
token, not the token: a memory dump of the cache yields no usable credential, and an exact match
of 256 bits is as good as comparing the tokens. An entry is good until the token's ``exp``
(plus the leeway); it never outlives its signing key (the verifier checks the kid is still
live) and never overrides a revocation (the verifier consults the revocation view on every
hit). Eviction is least-recently-used, at a fixed number of entries.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Final

from tessera.tokens.claims import AccessClaims

DEFAULT_MAX_ENTRIES: Final = 10_000


def token_digest(token: str | bytes) -> bytes:
    """The cache key of a token: its SHA-256 digest."""
    data = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
    return hashlib.sha256(data).digest()


class VerifiedTokenCache:
    """Digest -> (claims, valid-until), LRU-bounded. Not thread-safe; one per event loop."""

    __slots__ = ("_entries", "_max", "evictions", "hits", "misses")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._entries: OrderedDict[bytes, tuple[AccessClaims, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<VerifiedTokenCache {len(self._entries)}/{self._max}>"

    def get(self, digest: bytes, now: float) -> AccessClaims | None:
        """The cached claims, or None when absent or past their validity (then dropped)."""
        entry = self._entries.get(digest)
        if entry is None:
            self.misses += 1
            return None
        claims, valid_until = entry
        if now >= valid_until:
            del self._entries[digest]
            self.misses += 1
            return None
        self._entries.move_to_end(digest)
        self.hits += 1
        return claims

    def put(self, digest: bytes, claims: AccessClaims, valid_until: float) -> None:
        """Remember verified ``claims`` until ``valid_until``, evicting the least recently used."""
        entries = self._entries
        entries[digest] = (claims, valid_until)
        entries.move_to_end(digest)
        while len(entries) > self._max:
            entries.popitem(last=False)
            self.evictions += 1

    def discard(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def clear(self) -> None:
        """Forget everything (e.g. after a key was revoked out of band)."""
        self._entries.clear()
