"""Tokens: JWT access tokens (RFC 9068), their verification and cache, rotating refresh tokens,
and the revocation view. Sans-IO except for the stores the refresh and revocation parts await.

Typical wiring (the HTTP layer builds these once from the Settings and the key ring)::

    issuer = TokenIssuer(lambda: ring, settings.issuer, audience, settings.access_token_ttl,
                         clock)
    view = RevocationView(revocation_store, clock,
                          max_token_lifetime=settings.access_token_ttl, feed=redis_store)
    verifier = TokenVerifier(lambda: ring, settings.issuer, audience, clock,
                             revocations=view, cache=VerifiedTokenCache())
    refresh = RefreshTokens(refresh_store, clock, family_ttl=settings.refresh_token_ttl)

    claims = verifier.verify(bearer)            # AccessClaims or InvalidToken (401)
    header = www_authenticate(error)            # for the 401's WWW-Authenticate
"""

from __future__ import annotations

from tessera.tokens.access import KeyRingProvider, TokenIssuer, TokenVerifier
from tessera.tokens.cache import VerifiedTokenCache
from tessera.tokens.challenge import www_authenticate
from tessera.tokens.claims import AccessClaims
from tessera.tokens.jws import VerificationKey
from tessera.tokens.refresh import RefreshResult, RefreshTokens
from tessera.tokens.revocation import RevocationView

__all__ = [
    "AccessClaims",
    "KeyRingProvider",
    "RefreshResult",
    "RefreshTokens",
    "RevocationView",
    "TokenIssuer",
    "TokenVerifier",
    "VerificationKey",
    "VerifiedTokenCache",
    "www_authenticate",
]
