"""``tessera user``: add, list, disable and enable users, set passwords, show security events.

Passwords never appear on the command line (where ``ps`` and shell history would keep them):
they are prompted for on a terminal, or read from the first line of stdin with
``--password-stdin`` for scripts. A password set here, or a disabling, revokes every session and
remember-me token, refresh token and access token of the user, as the same change made in the
browser would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, NamedTuple, TypeVar

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from tessera.cli.common import console, err_console, print_error, settings_or_exit
from tessera.clock import SYSTEM_CLOCK, to_datetime
from tessera.config import Settings
from tessera.errors import ConfigError, NotFound, TesseraError
from tessera.identity.accounts import UserService
from tessera.identity.events import EventLog
from tessera.identity.passwords import MAX_PASSWORD_BYTES, PasswordHasher
from tessera.identity.users import User
from tessera.stores.sql import create_engine, ensure_schema
from tessera.stores.sql_events import SqlEventStore
from tessera.stores.sql_users import SqlUserStore

__all__ = ["Revoked", "app", "revoke_user_sessions"]

app = typer.Typer(
    help="Manage user accounts: add, list, disable, set passwords, show security events.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")


class Revoked(NamedTuple):
    """What a revocation removed."""

    sessions: int
    remember_tokens: int
    refresh_families: int = 0


async def revoke_user_sessions(settings: Settings, user_id: str) -> Revoked:
    """End every session (browser and app), remember-me token, refresh family and access token
    of the user, through the server's own Revoker: what a password change in the browser ends.

    Sessions live in whichever store ``settings.session_store`` names (a memory store belongs
    to a running server and is empty here); remember-me tokens always live in the database.
    Running servers refuse the user's access tokens once they see the revocation mark: at once
    with Redis (pub/sub), within seconds with SQL.
    """
    from tessera.server.services import open_admin  # the server's imports, only when needed

    async with open_admin(settings, SYSTEM_CLOCK) as kit:
        done = await kit.revoker.revoke_user_everywhere(user_id)
    return Revoked(done.sessions, done.remember_tokens, done.refresh_families)


async def _with_service(
    settings: Settings, work: Callable[[UserService, EventLog], Awaitable[T]]
) -> T:
    """Open the database, build the account service wired to revoke sessions, run ``work``."""
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine)
        events = EventLog(SqlEventStore(engine), SYSTEM_CLOCK)

        async def revoke(user: User) -> None:
            try:
                revoked = await revoke_user_sessions(settings, user.id)
            except TesseraError:
                # The account change is already stored; say so, so nobody retries it blindly.
                err_console.print(
                    "[yellow]The change is saved, but revoking the user's sessions failed; "
                    "run the command again once the store is back.[/yellow]"
                )
                raise
            console.print(
                f"Revoked {revoked.sessions} session(s), {revoked.remember_tokens} remember-me "
                f"token(s) and {revoked.refresh_families} refresh token famil"
                f"{'y' if revoked.refresh_families == 1 else 'ies'}.",
                highlight=False,
            )

        service = UserService(
            SqlUserStore(engine),
            PasswordHasher(),
            SYSTEM_CLOCK,
            events=events,
            on_password_changed=[revoke],
            on_disabled=[revoke],
        )
        return await work(service, events)
    finally:
        await engine.dispose()


def _run(settings: Settings, work: Callable[[UserService, EventLog], Awaitable[T]]) -> T:
    """Run ``work``; a Tessera error becomes a one-line message and exit status 1 (2 for a
    setting this installation cannot serve, as every command does)."""
    try:
        return asyncio.run(_with_service(settings, work))
    except ConfigError as exc:
        print_error(exc.message)
        raise typer.Exit(2) from None
    except TesseraError as exc:
        print_error(exc.message)
        raise typer.Exit(1) from None


async def _find(service: UserService, name: str) -> User:
    user = await service.store.get_by_username(name)
    if user is None:
        raise NotFound(f"no user named {name!r}", code="user_not_found")
    return user


def _read_password(from_stdin: bool) -> str:
    """The new password: first line of stdin, or a hidden prompt (twice) on a terminal."""
    if from_stdin:
        # Read one character past the limit, so an over-long password is refused by the
        # length check instead of being silently truncated here.
        line = sys.stdin.readline(MAX_PASSWORD_BYTES + 2)
        from_line = line.removesuffix("\n").removesuffix("\r")
        if not from_line:
            err_console.print("[red]error:[/red] no password on stdin")
            raise typer.Exit(2)
        return from_line
    if not sys.stdin.isatty():
        err_console.print("[red]error:[/red] no terminal to ask on; use --password-stdin")
        raise typer.Exit(2)
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _date(ts: float) -> str:
    return to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S")


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin (for scripts)."
    ),
]


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Username: A-Z a-z 0-9 . _ - , up to 64.")],
    email: Annotated[str | None, typer.Option(help="Email address (optional).")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user."""
    settings = settings_or_exit()
    password = _read_password(password_stdin)

    async def work(service: UserService, _: EventLog) -> User:
        return await service.register(name, password, email)

    user = _run(settings, work)
    console.print(Text(f"Created user {user.username} ({user.id})."))


@app.command("list")
def list_users(
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many users.")] = 1000,
) -> None:
    """Show users with their email, state and creation date."""
    settings = settings_or_exit()

    async def work(service: UserService, _: EventLog) -> list[User]:
        return await service.store.list(limit=limit)

    users = _run(settings, work)
    if not users:
        console.print("No users yet; add one with: tessera user add NAME")
        return
    table = Table("username", "email", "disabled", "created", box=box.SIMPLE_HEAD)
    for user in users:
        # Text, not markup: an email address may contain "[" and must print as typed.
        table.add_row(
            Text(user.username),
            Text(user.email or "-"),
            Text("yes" if user.disabled else "no"),
            Text(_date(user.created_at)),
        )
    table.caption = "Times in UTC."
    console.print(table)


@app.command()
def disable(name: Annotated[str, typer.Argument(help="Username.")]) -> None:
    """Disable a user: logins fail and every session is revoked."""
    settings = settings_or_exit()

    async def work(service: UserService, _: EventLog) -> User:
        return await service.disable((await _find(service, name)).id)

    user = _run(settings, work)
    console.print(Text(f"Disabled {user.username}."))


@app.command()
def enable(name: Annotated[str, typer.Argument(help="Username.")]) -> None:
    """Allow a disabled user to log in again."""
    settings = settings_or_exit()

    async def work(service: UserService, _: EventLog) -> User:
        return await service.enable((await _find(service, name)).id)

    user = _run(settings, work)
    console.print(Text(f"Enabled {user.username}."))


@app.command("set-password")
def set_password(
    name: Annotated[str, typer.Argument(help="Username.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password and revoke all their sessions and remember-me tokens."""
    settings = settings_or_exit()
    password = _read_password(password_stdin)

    async def work(service: UserService, _: EventLog) -> User:
        return await service.change_password((await _find(service, name)).id, password)

    user = _run(settings, work)
    console.print(Text(f"Password of {user.username} changed."))


@app.command()
def events(
    name: Annotated[str, typer.Argument(help="Username.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most recent N events.")] = 50,
) -> None:
    """Show a user's security events, newest first."""
    settings = settings_or_exit()

    async def work(service: UserService, log: EventLog) -> list[tuple[str, str, str, str, str]]:
        user = await _find(service, name)
        return [
            (
                _date(e.at),
                e.kind.value,
                e.ip or "-",
                e.user_agent or "-",
                json.dumps(dict(e.detail), ensure_ascii=False) if e.detail else "",
            )
            for e in await log.list_for_user(user.id, limit)
        ]

    rows = _run(settings, work)
    if not rows:
        console.print(Text(f"No security events for {name}."))
        return
    table = Table("time", "event", "ip", "user agent", "detail", box=box.SIMPLE_HEAD)
    for row in rows:
        # Text, not markup: IPs, user agents and details come from the network.
        table.add_row(*(Text(cell) for cell in row))
    table.caption = "Times in UTC, newest first."
    console.print(table)
