"""Settings, clock and errors: the small pieces everything else stands on."""

from __future__ import annotations

import pytest

from tessera.clock import FakeClock
from tessera.config import Settings, load_settings
from tessera.errors import ConfigError, CookieError, InvalidInput, StoreUnavailable, TesseraError


def test_defaults_are_secure_and_embedded() -> None:
    settings = Settings()
    assert settings.dev is False
    assert settings.database_url.startswith("sqlite")
    assert settings.session_cookie == "__Host-session"


def test_dev_mode_drops_host_prefix() -> None:
    assert Settings(dev=True).session_cookie == "session"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SESSION_IDLE_TIMEOUT", "900")
    monkeypatch.setenv("TESSERA_SESSION_STORE", "redis")
    settings = load_settings()
    assert settings.session_idle_timeout == 900
    assert settings.session_store == "redis"


def test_validation_error_names_the_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_SESSION_IDLE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="TESSERA_SESSION_IDLE_TIMEOUT"):
        load_settings()


@pytest.mark.parametrize("name", ["bad name", "a;b", "", "sess=ion", "zoë"])
def test_a_session_cookie_name_that_is_no_cookie_name_is_refused(name: str) -> None:
    """At start-up, naming the variable, rather than at the first Set-Cookie (a traceback)."""
    with pytest.raises(ConfigError, match="TESSERA_SESSION_COOKIE_NAME: must be an RFC 6265"):
        load_settings(session_cookie_name=name)


def test_a_renewal_interval_over_half_the_idle_timeout_is_refused() -> None:
    """Activity counts once per interval: with idle 61 and interval 60, a visitor active every
    45 s was logged out (no renewal due at 45 s, idle at 106 s since the one at 0)."""
    with pytest.raises(ConfigError, match=r"TESSERA_SESSION_RENEWAL_INTERVAL .* at most half"):
        load_settings(session_idle_timeout=61, session_renewal_interval=31)
    load_settings(session_idle_timeout=60, session_renewal_interval=30)


def test_the_server_refuses_a_session_cookie_named_like_another_of_its_cookies() -> None:
    from tessera.server.services import cookie_registry

    with pytest.raises(ConfigError, match="TESSERA_SESSION_COOKIE_NAME: 'csrf' is the name"):
        cookie_registry(load_settings(session_cookie_name="csrf"))


def test_short_secret_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="TESSERA_SECRET_KEY"):
        load_settings(secret_key="short")


def test_toml_file_is_read_and_env_wins(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"{tmp_path}/tessera.toml"
    with open(path, "w") as fh:
        fh.write('issuer = "https://id.example"\nport = 9000\n')
    monkeypatch.setenv("TESSERA_CONFIG", path)
    monkeypatch.setenv("TESSERA_PORT", "9100")
    settings = load_settings()
    assert settings.issuer == "https://id.example"
    assert settings.port == 9100


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_CONFIG", "/nonexistent/tessera.toml")
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_fake_clock_only_moves_forward() -> None:
    clock = FakeClock(100.0)
    clock.advance(5)
    assert clock.now() == 105.0
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_errors_carry_codes_and_statuses() -> None:
    assert issubclass(CookieError, InvalidInput)
    assert issubclass(InvalidInput, ValueError)
    err = StoreUnavailable("redis", "connection refused")
    assert isinstance(err, TesseraError)
    assert err.http_status == 503
    assert err.to_dict() == {
        "error": "store_unavailable",
        "error_description": "redis store unavailable: connection refused",
    }
    assert CookieError("x", code="cookie_name_invalid").code == "cookie_name_invalid"


def test_readme_documents_every_setting() -> None:
    """The README's configuration reference names every setting's environment variable."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [
        f"TESSERA_{name.upper()}"
        for name in Settings.model_fields
        if f"`TESSERA_{name.upper()}`" not in readme
    ]
    assert missing == []


def test_serve_says_a_taken_session_cookie_name_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """Before uvicorn starts: no lifespan traceback, nothing bound, exit status 2."""
    from typer.testing import CliRunner

    from tessera.cli import app as cli

    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("TESSERA_SESSION_COOKIE_NAME", "csrf")
    monkeypatch.setenv("COLUMNS", "250")  # rich must not wrap
    result = CliRunner().invoke(cli, ["serve", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "TESSERA_SESSION_COOKIE_NAME: 'csrf' is the name" in result.output
    assert "Traceback" not in result.output
