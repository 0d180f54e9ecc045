"""``tessera keys list`` and ``tessera keys rotate`` against a temporary SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli.keys import app
from tessera.keys import KeyUse, new_key
from tessera.keys_file import dump_secrets_file
from tessera.keys_material import b64url_decode
from tessera.stores.keys import KeyRecord
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_keys import SqlKeyStore


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """TESSERA_DATABASE_URL pointing at a fresh SQLite file; no other TESSERA_* leaks in."""
    url = f"sqlite:///{tmp_path}/cli.db"
    for name in ("TESSERA_SECRET_KEY", "TESSERA_SECRETS_FILE", "TESSERA_SIGNING_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TESSERA_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)  # no stray ./tessera.toml
    return url


def stored(url: str) -> list[KeyRecord]:
    async def load() -> list[KeyRecord]:
        engine = create_engine(url)
        try:
            await ensure_schema(engine)
            return await SqlKeyStore(engine).load_all()
        finally:
            await engine.dispose()

    return asyncio.run(load())


def assert_no_material(output: str, records: list[KeyRecord]) -> None:
    assert "PRIVATE KEY" not in output
    for r in records:
        assert r.material not in output
        if not r.material.startswith("-----"):
            assert b64url_decode(r.material).hex() not in output
        else:
            assert r.material.splitlines()[1] not in output


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_list_on_an_empty_database_says_so_and_creates_nothing(database: str) -> None:
    code, output = invoke("list")
    assert code == 0, output
    assert "No keys yet" in output
    assert stored(database) == []


def test_rotate_prints_the_new_kid_and_what_turned_retiring(database: str) -> None:
    code, output = invoke("rotate", "--use", "sign", "--alg", "ES256")
    assert code == 0, output
    [first] = stored(database)
    assert first.kid in output
    assert "No key was active before" in output

    code, output = invoke("rotate")
    assert code == 0, output
    records = {r.kid: r for r in stored(database)}
    [second] = [r for kid, r in records.items() if kid != first.kid]
    assert second.alg == "EdDSA"  # the default TESSERA_SIGNING_ALGORITHM
    assert second.kid in output
    assert f"Key {first.kid} is retiring" in output
    assert records[first.kid].retiring_at is not None
    assert_no_material(output, list(records.values()))


@pytest.mark.parametrize("columns", ["200", "80"])
def test_list_shows_kids_uses_and_states_but_never_material(
    database: str, columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wide terminal gets a table, a narrow one a block per key; kids are never cut."""
    monkeypatch.setenv("COLUMNS", columns)
    for args in (["--use", "hmac"], ["--use", "sign", "--alg", "RS256"], ["--use", "sign"]):
        assert invoke("rotate", *args)[0] == 0
    code, output = invoke("list")
    assert code == 0, output
    records = stored(database)
    assert len(records) == 3
    for r in records:
        assert r.kid in output
    for word in ("hmac", "sign", "HS256", "RS256", "EdDSA", "active", "retiring", "retired"):
        assert word in output
    assert ("─" in output) is (columns == "200")
    assert_no_material(output, records)


def test_rotate_hmac_with_a_signing_algorithm_is_refused(database: str) -> None:
    code, output = invoke("rotate", "--use", "hmac", "--alg", "ES256")
    assert code == 2
    assert "hmac keys are always HS256" in output
    assert stored(database) == []


def test_rotate_with_an_unknown_algorithm_is_refused(database: str) -> None:
    code, _ = invoke("rotate", "--alg", "none")
    assert code == 2
    assert stored(database) == []


def test_rotate_against_a_secrets_file_fails_with_a_clear_error(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(dump_secrets_file([new_key(KeyUse.SIGN, "EdDSA", 0.0)]))
    monkeypatch.setenv("TESSERA_SECRETS_FILE", str(path))
    code, output = invoke("rotate")
    assert code == 1
    assert "never writes" in output
    code, output = invoke("list")
    assert code == 0
    assert "active" in output


def test_invalid_settings_exit_with_status_2(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_SECRET_KEY", "too short")
    code, output = invoke("list")
    assert code == 2
    assert "TESSERA_SECRET_KEY" in output
    assert "too short" not in output
