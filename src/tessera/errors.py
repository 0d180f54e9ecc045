"""One error hierarchy for the whole of Tessera.

Every error carries a machine-readable ``code`` (used verbatim in HTTP error bodies) and the HTTP
status an adapter should answer with. Malformed input (:class:`InvalidInput`, a ``ValueError``)
is kept apart from failed verification (:class:`VerificationFailed`): the first is the caller's
bug or an attacker's noise, the second is an expected outcome such as an expired cookie.
"""

from __future__ import annotations

from typing import ClassVar


class TesseraError(Exception):
    """Root of every error Tessera raises on purpose."""

    code: ClassVar[str] = "tessera_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        if code is not None:
            # Instances may refine the class code (e.g. one rule of many), never the status.
            self.code = code  # type: ignore[misc]

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, str]:
        """The JSON error body adapters send: ``{"error": code, "error_description": ...}``."""
        return {"error": self.code, "error_description": self.message}


class ConfigError(TesseraError, ValueError):
    """The settings or a configured file are invalid."""

    code = "invalid_config"


class InvalidInput(TesseraError, ValueError):
    """Input does not have the form it must have (a programming error or hostile input)."""

    code = "invalid_request"
    http_status = 400


class CookieError(InvalidInput):
    """A cookie would break a rule of RFC 6265bis or of the browsers; ``code`` names the rule."""

    code = "invalid_cookie"


class CookieTooLarge(CookieError):
    """A cookie is over the size browsers keep; they would drop it silently, so we refuse."""

    code = "cookie_too_large"


class ConsentRequired(TesseraError):
    """A non-essential cookie was declared without a category, or an unknown category was used."""

    code = "consent_required"
    http_status = 400


class VerificationFailed(TesseraError):
    """A signed or stored credential was checked and is not (or no longer) acceptable."""

    code = "verification_failed"
    http_status = 401


class BadSignature(VerificationFailed):
    """The signature does not match any active key: forged, garbled or signed with a dead key."""

    code = "bad_signature"


class Expired(VerificationFailed):
    """The credential was valid once but its lifetime is over."""

    code = "expired"


class Revoked(VerificationFailed):
    """The credential was revoked before it expired."""

    code = "revoked"


class NotFound(TesseraError):
    """The record asked for does not exist (or is not visible to the caller)."""

    code = "not_found"
    http_status = 404


class SessionTooLarge(TesseraError):
    """Session data is over the configured size budget; sessions must stay concise."""

    code = "session_too_large"
    http_status = 500


class SessionGone(TesseraError):
    """The session was destroyed or expired elsewhere; saving it would resurrect it."""

    code = "session_gone"
    http_status = 409


class StoreUnavailable(TesseraError):
    """A store (database, Redis) cannot be reached; callers fail closed with a 503."""

    code = "store_unavailable"
    http_status = 503

    def __init__(self, store: str, detail: str = "") -> None:
        self.store = store
        super().__init__(f"{store} store unavailable" + (f": {detail}" if detail else ""))


class KeyNotFound(TesseraError):
    """No key with that kid (or for that purpose) is active in the key ring."""

    code = "key_not_found"
    http_status = 500


class SessionDataInvalid(TesseraError, TypeError):
    """Session data holds a value JSON cannot represent (a programming error of the app)."""

    code = "session_data_invalid"
    http_status = 500


class SessionNotLoaded(TesseraError, RuntimeError):
    """The session mapping was used before ``await load_session(...)`` (autoload is off)."""

    code = "session_not_loaded"
    http_status = 500


class Conflict(TesseraError):
    """The record would clash with an existing one (a taken username or email address)."""

    code = "conflict"
    http_status = 409


class InvalidToken(VerificationFailed):
    """A bearer access token was refused; ``reason`` says why, in a word a client can test.

    RFC 6750 gives a resource server one error code for every bad token (``invalid_token``), so
    ``code`` never varies; ``reason`` (``expired``, ``bad_signature``, ``revoked``, ``malformed``,
    ``wrong_audience`` ...) and the message tell an expired token apart from a forged one.
    """

    code = "invalid_token"

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or f"token {reason.replace('_', ' ')}")


class InvalidGrant(VerificationFailed):
    """A refresh token was refused at the token endpoint (RFC 6749 §5.2 ``invalid_grant``).

    ``reason`` is ``unknown``, ``malformed``, ``wrong_client``, ``expired``, ``revoked`` or
    ``reused``; the HTTP status is 400 as RFC 6749 asks, not 401.
    """

    code = "invalid_grant"
    http_status = 400

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or f"refresh token {reason.replace('_', ' ')}")


class RefreshTokenReused(InvalidGrant):
    """An already rotated refresh token came back after the grace window: its family is revoked.

    Carries the session and user so that the caller also ends the session the stolen token
    belonged to (RFC 9700 §4.14.2).
    """

    def __init__(self, family_id: str, sid: str, user_id: str) -> None:
        self.family_id = family_id
        self.sid = sid
        self.user_id = user_id
        super().__init__("reused", "refresh token reused; its family is revoked")
