"""What every CLI command shares: settings loading with readable errors, a rich console."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from tessera.clock import SYSTEM_CLOCK
from tessera.config import Settings, load_settings
from tessera.errors import ConfigError, TesseraError

if TYPE_CHECKING:
    from tessera.server.services import AdminKit

T = TypeVar("T")


def plain(value: str) -> Text:
    """``value`` for a terminal: as text, not rich markup, and without control characters.

    Usernames, device names and addresses come from the network or from other people; an
    escape sequence among them would otherwise be obeyed by the admin's terminal.
    """
    return Text("".join(c if c.isprintable() else "\ufffd" for c in value))


def print_error(message: str) -> None:
    """``error: message`` on stderr, the message as :func:`plain` text: an extra's name such as
    ``tessera[redis]`` or a username would otherwise be read as rich markup and vanish."""
    err_console.print(Text.assemble(("error:", "red"), " ", plain(message)), highlight=False)


console = Console()
err_console = Console(stderr=True)


def settings_or_exit(**overrides: object) -> Settings:
    """The settings, or a one-line error naming the bad field and exit status 2."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None


def database_location(url: str) -> str:
    """A human description of where the data lives, without any password in it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        return str(Path(parsed.database or "").resolve()) if parsed.database else ":memory:"
    return parsed.render_as_string(hide_password=True)


def run_admin(settings: Settings, work: Callable[[AdminKit], Awaitable[T]]) -> T:
    """Open the stores (:func:`~tessera.server.services.open_admin`), run ``work``, close them.

    Commands that revoke go through the server's own :class:`~tessera.server.revoker.Revoker`,
    so a revocation from the command line ends exactly what the same revocation in the browser
    ends: sessions, remember-me and refresh tokens, and access tokens (a revocation mark that
    running servers pick up). No keys are read or made. A setting this installation cannot serve
    is one line and exit status 2; a store or database that fails, one line and exit status 1.
    """
    from tessera.server.services import open_admin  # the server's imports, only when needed

    async def main() -> T:
        async with open_admin(settings, SYSTEM_CLOCK) as kit:
            return await work(kit)

    try:
        return asyncio.run(main())
    except ConfigError as exc:  # a setting this installation cannot serve (a missing driver)
        print_error(exc.message)
        raise typer.Exit(2) from None
    except TesseraError as exc:
        print_error(exc.message)
        raise typer.Exit(1) from None
