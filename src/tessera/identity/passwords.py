"""Password hashing: argon2id with a named parameter profile, and nothing clever on top.

Why these choices:

* **argon2id** through argon2-cffi, parameters from a named profile
  (:data:`argon2.profiles.RFC_9106_LOW_MEMORY` by default). The profile is chosen by the code
  that builds the hasher (the server, a test), never by anything that arrives over the network.
  When the profile changes, :meth:`PasswordHasher.needs_rehash` says so at the next successful
  login and the caller stores a fresh hash.
* **Bounded input.** Passwords over :data:`MAX_PASSWORD_BYTES` are refused before hashing, so a
  megabyte "password" cannot buy a megabyte of argon2 work.
* **NFKC normalisation** before hashing (NIST SP 800-63B 5.1.1.2), so the same password typed on
  two keyboards that compose characters differently hashes the same.
* **Same cost for unknown users.** :meth:`PasswordHasher.dummy_verify` runs one real argon2
  verification against a hash of a random secret, so "no such user" and "wrong password" take
  the same time and an attacker cannot enumerate accounts by timing.
* **Off the event loop.** argon2 is deliberately slow (tens of milliseconds, 64 MiB); the
  ``*_async`` methods run it in a worker thread behind a capacity limiter, so a login storm
  neither blocks the loop nor allocates unbounded memory.
"""

from __future__ import annotations

import os
import secrets
import unicodedata
from typing import Final

import anyio
import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from tessera.errors import InvalidInput

__all__ = [
    "DEFAULT_PROFILE",
    "FAST_INSECURE_PROFILE",
    "MAX_PASSWORD_BYTES",
    "MIN_PASSWORD_LENGTH",
    "PasswordHasher",
    "check_new_password",
]

DEFAULT_PROFILE: Final[argon2.Parameters] = argon2.profiles.RFC_9106_LOW_MEMORY
"""argon2id, t=3, m=64 MiB, p=4: RFC 9106's second recommendation, for memory-bound servers."""

FAST_INSECURE_PROFILE: Final[argon2.Parameters] = argon2.profiles.CHEAPEST
"""The cheapest argon2id parameters: for test suites only, never for real passwords."""

MIN_PASSWORD_LENGTH: Final = 8
"""Characters (after normalisation) a new password needs; checked at creation, not at login."""

MAX_PASSWORD_BYTES: Final = 1024
"""UTF-8 bytes beyond which a password is refused: bounds the CPU one request can spend."""


def _normalise(password: str) -> bytes:
    """The bytes that get hashed; raises InvalidInput for over-long or unencodable input."""
    # Check the raw length first: NFKC can expand a string up to 18x, so bound its work too.
    if len(password) > MAX_PASSWORD_BYTES:
        raise InvalidInput("password is too long", code="password_too_long")
    try:
        data = unicodedata.normalize("NFKC", password).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. from a JSON "\ud800" escape) have no UTF-8 form.
        raise InvalidInput("password is not valid text", code="invalid_password") from None
    if len(data) > MAX_PASSWORD_BYTES:
        raise InvalidInput("password is too long", code="password_too_long")
    return data


def check_new_password(password: str) -> None:
    """Refuse a password that may not be *set* (too short, too long, not text).

    Only new passwords are checked for length: an existing short password must still be able
    to log in (and be changed) if the minimum is raised later.
    """
    _normalise(password)
    if len(unicodedata.normalize("NFKC", password)) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters",
            code="password_too_short",
        )


def _default_concurrency() -> int:
    # One argon2 hash already uses `parallelism` lanes; more concurrent hashes than cores only
    # adds memory (64 MiB each) and latency, so queue beyond the core count.
    return max(1, os.cpu_count() or 1)


class PasswordHasher:
    """Hash and verify passwords with argon2id; see the module docstring for the policy."""

    __slots__ = ("_argon2", "_dummy_hash", "_limiter", "profile")

    def __init__(
        self, profile: argon2.Parameters = DEFAULT_PROFILE, *, max_concurrency: int | None = None
    ) -> None:
        if profile.type is not argon2.Type.ID:
            raise InvalidInput("only argon2id profiles are accepted", code="invalid_profile")
        self.profile = profile
        self._argon2 = argon2.PasswordHasher.from_parameters(profile)
        self._dummy_hash: str | None = None
        self._limiter = anyio.CapacityLimiter(max_concurrency or _default_concurrency())

    def __repr__(self) -> str:
        p = self.profile
        return f"PasswordHasher(t={p.time_cost}, m={p.memory_cost}KiB, p={p.parallelism})"

    def hash(self, password: str) -> str:
        """The PHC-format argon2id hash of ``password`` (a fresh random salt every time)."""
        return self._argon2.hash(_normalise(password))

    def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``. Never raises: malformed means False."""
        try:
            data = _normalise(password)
        except InvalidInput:
            # Refused before any hashing: the length limit is public, so no timing leak.
            return False
        try:
            return self._argon2.verify(password_hash, data)
        except (VerificationError, InvalidHashError, UnicodeError):
            # UnicodeError: a stored "hash" with lone surrogates cannot even be encoded.
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than this hasher's profile."""
        try:
            return self._argon2.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):  # ValueError covers UnicodeError too
            # A hash we cannot even parse should be replaced once the password is known good.
            return True

    def dummy_verify(self, password: str = "") -> None:
        """Spend exactly what :meth:`verify` spends, for a user that does not exist."""
        try:
            _normalise(password)
        except InvalidInput:
            return  # verify() would refuse it before hashing too
        self.verify(self._dummy(), password)

    def _dummy(self) -> str:
        # Computed on first use, not in __init__, so building a hasher (e.g. per CLI command)
        # stays cheap; the one-off extra hash of the first unknown-user login in a process is
        # not a usable signal. Two threads racing here both compute a valid hash; either works.
        if self._dummy_hash is None:
            self._dummy_hash = self._argon2.hash(secrets.token_bytes(32))
        return self._dummy_hash

    async def hash_async(self, password: str) -> str:
        """:meth:`hash` in a worker thread."""
        return await anyio.to_thread.run_sync(self.hash, password, limiter=self._limiter)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        """:meth:`verify` in a worker thread."""
        return await anyio.to_thread.run_sync(
            self.verify, password_hash, password, limiter=self._limiter
        )

    async def dummy_verify_async(self, password: str = "") -> None:
        """:meth:`dummy_verify` in a worker thread."""
        await anyio.to_thread.run_sync(self.dummy_verify, password, limiter=self._limiter)
