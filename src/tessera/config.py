"""Settings: one object, read from ``TESSERA_*`` environment variables and an optional TOML file.

The settings object is built once (by the CLI or by the application) and passed down; nothing in
Tessera reads the environment on its own. Precedence, highest first: explicit keyword arguments,
environment, the TOML file named by ``TESSERA_CONFIG`` (or ``./tessera.toml`` when it exists),
defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tessera.cookies import is_cookie_name
from tessera.errors import ConfigError

SessionStoreKind = Literal["memory", "sql", "redis"]
SigningAlgorithm = Literal["EdDSA", "ES256", "RS256", "HS256"]

DEFAULT_TOML = Path("tessera.toml")


class Settings(BaseSettings):
    """Every setting of Tessera. The README's configuration reference mirrors this class."""

    model_config = SettingsConfigDict(
        env_prefix="TESSERA_",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # --- storage -------------------------------------------------------------------------
    database_url: str = Field(
        default="sqlite:///tessera.db",
        description="SQLAlchemy URL of the database: users, keys, and sessions with the sql "
        "store. sqlite:///file.db (relative to the working directory) or postgresql://...",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL, used when session_store is redis.",
    )
    redis_prefix: str = Field(
        default="tessera",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Start of every Redis key and channel: instances sharing it share state.",
    )
    session_store: SessionStoreKind = Field(
        default="sql", description="Where sessions live: memory, sql or redis."
    )

    # --- sessions ------------------------------------------------------------------------
    session_idle_timeout: int = Field(
        default=30 * 60, gt=0, description="Seconds of inactivity after which a session ends."
    )
    session_absolute_timeout: int = Field(
        default=12 * 3600, gt=0, description="Seconds after creation at which a session ends."
    )
    session_renewal_interval: int = Field(
        default=60,
        ge=0,
        description="Seconds between two writes of a session's last access (sliding renewal).",
    )
    session_max_bytes: int = Field(
        default=4096, gt=0, description="Size budget of one session's serialized data."
    )
    session_max_per_user: int | None = Field(
        default=100,
        ge=0,
        description="Cap on concurrent sessions per user, browsers and apps together (the "
        "least recently used of the kind holding most is revoked); 0 for no cap.",
    )
    session_memory_max: int = Field(
        default=100_000, gt=0, description="Most sessions the memory store holds (LRU beyond)."
    )
    session_cookie_name: str = Field(
        default="session",
        description="Session cookie name; gets the __Host- prefix outside development mode.",
    )

    # --- tokens --------------------------------------------------------------------------
    access_token_ttl: int = Field(default=600, gt=0, description="Access token lifetime (s).")
    refresh_token_ttl: int = Field(
        default=30 * 86400, gt=0, description="Absolute lifetime of a refresh token family (s)."
    )
    signing_algorithm: SigningAlgorithm = Field(
        default="EdDSA", description="Algorithm of new token signing keys."
    )
    issuer: str = Field(
        default="http://127.0.0.1:8000",
        description="Public base URL of the server; the iss of tokens.",
    )

    # --- keys ----------------------------------------------------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description="An HMAC secret (at least 32 bytes) used instead of keys kept in the "
        "database; for deployments that inject secrets.",
    )
    secrets_file: Path | None = Field(
        default=None, description="JSON file with the key ring, instead of the database."
    )
    key_rotation_overlap: int = Field(
        default=7 * 86400,
        ge=0,
        description="Seconds a rotated-out key still verifies (signs nothing) before retiring.",
    )

    # --- cookies -------------------------------------------------------------------------
    dev: bool = Field(
        default=False,
        description="Development mode for plain-http localhost: cookies without Secure and "
        "without the __Host- prefix. Never in production.",
    )
    cookie_budget: int = Field(
        default=50, gt=0, description="Cookies per site before a warning is logged."
    )

    # --- server --------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address tessera serve binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port tessera serve binds.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )

    @field_validator("secret_key")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes")
        return value

    @field_validator("session_cookie_name")
    @classmethod
    def _cookie_name_is_a_token(cls, value: str) -> str:
        # Checked here, not at the first Set-Cookie, which the cookie layer would refuse.
        if not is_cookie_name(value):
            raise ValueError("must be an RFC 6265 token: letters, digits and !#$%&'*+-.^_`|~")
        return value

    @model_validator(mode="after")
    def _renewal_well_before_idle_end(self) -> Settings:
        # Activity counts once per renewal interval: a session renewed at t and used again at
        # t + interval - 1 still ends idle at t + idle. With at most half the idle timeout, a
        # visitor active at least every half idle timeout stays logged in.
        if 2 * self.session_renewal_interval > self.session_idle_timeout:
            raise ValueError(
                f"TESSERA_SESSION_RENEWAL_INTERVAL ({self.session_renewal_interval}) must be at "
                f"most half of TESSERA_SESSION_IDLE_TIMEOUT ({self.session_idle_timeout})"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("TESSERA_CONFIG")
        path = Path(toml_path) if toml_path else DEFAULT_TOML
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        elif toml_path:
            raise ConfigError(f"TESSERA_CONFIG names {toml_path}, which is not a file")
        return tuple(sources)

    @property
    def session_cookie(self) -> str:
        """The session cookie's full name: ``__Host-`` prefixed outside development mode."""
        return self.session_cookie_name if self.dev else f"__Host-{self.session_cookie_name}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; a validation error becomes a :class:`ConfigError` naming the field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One validation error, named by its variable (a check of several names them itself)."""
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    return f"TESSERA_{'.'.join(str(p) for p in loc).upper()}: {message}"
