"""What every CLI command shares: settings loading with readable errors, a rich console."""

from __future__ import annotations

import typer
from rich.console import Console

from tessera.config import Settings, load_settings
from tessera.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


def settings_or_exit(**overrides: object) -> Settings:
    """The settings, or a one-line error naming the bad field and exit status 2."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def database_location(url: str) -> str:
    """A human description of where the data lives, without any password in it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        return str(Path(parsed.database or "").resolve()) if parsed.database else ":memory:"
    return parsed.render_as_string(hide_password=True)
