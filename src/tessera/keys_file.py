"""The secrets file: a key ring kept outside the database, for deployments that inject secrets.

Format (JSON)::

    {"keys": [
      {"use": "hmac", "secret": "<base64url, >= 32 bytes>", "activated_at": 1767225600},
      {"use": "sign", "alg": "EdDSA", "pem": "-----BEGIN PRIVATE KEY-----\\n...",
       "kid": "optional", "activated_at": "2026-01-01T00:00:00Z", "retiring_at": null},
      {"use": "sign", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "d": "..."}}
    ]}

A bare list of entries is accepted too. Times are Unix seconds or ISO 8601 with a UTC offset;
``activated_at`` defaults to 0 (active since always), ``created_at`` to ``activated_at``. A kid
left out is derived (RFC 7638 thumbprint, or a hash of the secret), so every instance reading
the file agrees on it. Unknown members are refused: a misspelt ``retired_at`` must not leave a
compromised key verifying. Errors name the entry and member, never the material.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from tessera.errors import ConfigError
from tessera.keys import HmacKey, KeyUse, ManagedKey, SigningKey
from tessera.keys_material import (
    HMAC_ALG,
    SIGNING_ALGS,
    b64url_decode,
    check_secret,
    secret_kid,
)

_MEMBERS: Final = frozenset(
    {
        "kid",
        "use",
        "alg",
        "secret",
        "pem",
        "jwk",
        "created_at",
        "activated_at",
        "retiring_at",
        "retired_at",
    }
)
_MATERIAL: Final = ("secret", "pem", "jwk")


def parse_secrets_file(text: str | bytes, source: str = "secrets file") -> list[ManagedKey]:
    """Every key in the file, validated; a :class:`ConfigError` naming the first problem."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # JSONDecodeError's msg names the position only, never the content.
        raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({type(exc).__name__})") from None
    entries = document.get("keys") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise ConfigError(f'{source}: expected {{"keys": [...]}} or a list of keys')
    if not entries:
        raise ConfigError(f"{source}: holds no keys")
    keys = [_parse_entry(entry, f"{source}: keys[{i}]") for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key.kid in seen:
            raise ConfigError(f"{source}: keys[{i}].kid: {key.kid!r} appears twice")
        seen.add(key.kid)
    return keys


def _parse_entry(entry: object, where: str) -> ManagedKey:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = sorted(str(m) for m in entry if m not in _MEMBERS)
    if unknown:
        raise ConfigError(f"{where}: unknown member {unknown[0]!r}")
    given = [m for m in _MATERIAL if m in entry]
    if len(given) != 1:
        raise ConfigError(f"{where}: needs exactly one of 'secret', 'pem', 'jwk'")
    material = given[0]
    kid = entry.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > 128):
        raise ConfigError(f"{where}.kid: must be a string of 1 to 128 characters")
    try:
        key = _parse_key(entry, material, kid, where)
    except ConfigError as exc:
        if exc.message.startswith(where):
            raise
        raise ConfigError(f"{where}.{material}: {exc.message}") from None
    activated = _time(entry, "activated_at", where) or 0.0
    created = _time(entry, "created_at", where)
    retiring = _time(entry, "retiring_at", where)
    retired = _time(entry, "retired_at", where)
    try:
        return ManagedKey(
            key,
            created_at=activated if created is None else created,
            activated_at=activated,
            retiring_at=retiring,
            retired_at=retired,
        )
    except ConfigError:
        raise ConfigError(
            f"{where}: times must satisfy activated_at <= retiring_at <= retired_at"
        ) from None


def _parse_key(
    entry: Mapping[str, Any], material: str, kid: str | None, where: str
) -> HmacKey | SigningKey:
    use = entry.get("use")
    if use not in ("hmac", "sign"):
        raise ConfigError(f"{where}.use: must be 'hmac' or 'sign'")
    alg = entry.get("alg", HMAC_ALG if use == "hmac" else None)
    if not isinstance(alg, str):
        raise ConfigError(f"{where}.alg: required for signing keys (EdDSA, ES256, RS256, HS256)")
    if use == KeyUse.SIGN and alg not in SIGNING_ALGS:
        raise ConfigError(f"{where}.alg: unsupported signing algorithm {alg!r}")
    value = entry[material]
    if use == KeyUse.HMAC:
        if alg != HMAC_ALG:
            raise ConfigError(f"{where}.alg: hmac keys are {HMAC_ALG}")
        if material != "secret" or not isinstance(value, str):
            raise ConfigError(f"{where}: an hmac key needs a base64url 'secret'")
        secret = check_secret(b64url_decode(value))
        return HmacKey(kid or secret_kid(secret), secret)
    if material == "jwk":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.jwk: must be a JSON object")
        return SigningKey.from_jwk(value, alg, kid)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{material}: must be a string")
    if material == "pem":
        return SigningKey.from_pem(value, alg, kid)
    if alg != "HS256":
        raise ConfigError(f"{where}.secret: only HS256 signing keys are secrets; use 'pem'")
    secret = check_secret(b64url_decode(value))
    return SigningKey(kid or secret_kid(secret), "HS256", secret)


def _time(entry: Mapping[str, Any], member: str, where: str) -> float | None:
    value = entry.get(member)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}.{member}: not an ISO 8601 date") from None
        if parsed.tzinfo is None:
            raise ConfigError(f"{where}.{member}: an ISO 8601 date needs a UTC offset (Z)")
        return parsed.timestamp()
    # bool is an int in Python; `true` as a date is a typo, not the epoch plus one second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{member}: must be Unix seconds or an ISO 8601 date")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{where}.{member}: must be a finite, non-negative time")
    return seconds


def dump_secrets_file(keys: Iterable[ManagedKey]) -> str:
    """The secrets file holding ``keys`` (private material included: write it with care)."""
    entries: list[dict[str, Any]] = []
    for managed in keys:
        record = managed.to_record()
        entry: dict[str, Any] = {"kid": record.kid, "use": record.use, "alg": record.alg}
        entry["pem" if record.material.startswith("-----") else "secret"] = record.material
        entry.update(
            created_at=record.created_at,
            activated_at=record.activated_at,
            retiring_at=record.retiring_at,
            retired_at=record.retired_at,
        )
        entries.append(entry)
    return json.dumps({"keys": entries}, indent=2)


def env_hmac_key(secret: str) -> ManagedKey:
    """The HMAC key of ``TESSERA_SECRET_KEY``: active since always, kid derived from it.

    Only an HMAC key comes from this secret; no signing key is derived from it (an HS256 key
    would let every cookie-verifying party mint tokens), so signing keys still come from the
    database. Rotate it by deploying a new secret; cookies signed with the old one stop
    verifying then, as there is no overlap outside the database or a secrets file.
    """
    data = check_secret(secret.encode("utf-8"))
    return ManagedKey(HmacKey(secret_kid(data), data), created_at=0.0, activated_at=0.0)
