"""``tessera sessions``: list, revoke and sweep server-side sessions in the configured store.

Sessions are shown by their public handle (the digest the store keys on), never by the ID in
the cookie; a handle can revoke a session but cannot be used to impersonate anyone.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.table import Table

from tessera.cli.common import console, err_console, settings_or_exit
from tessera.clock import SYSTEM_CLOCK, to_datetime
from tessera.config import Settings
from tessera.errors import TesseraError
from tessera.sessions import SessionInfo
from tessera.stores.factory import open_session_store
from tessera.stores.sessions import SessionStore

app = typer.Typer(
    help="List, revoke and sweep sessions in the store of TESSERA_SESSION_STORE (sql or redis). "
    "The memory store lives inside one server process; this command cannot reach it.",
    no_args_is_help=True,
    add_completion=False,
)

SHOWN_ID = 16
"""Characters of the handle shown in tables: plenty to be unique, and revoke takes prefixes."""
MIN_PREFIX = 8
SEARCH_LIMIT = 1_000_000
"""Most sessions searched for a handle prefix."""

_HEX = re.compile(r"[0-9a-f]+")
T = TypeVar("T")


def _run(settings: Settings, action: Callable[[SessionStore], Awaitable[T]]) -> T:
    """Open the configured store, run ``action`` on it, close it; store errors exit 1."""

    async def main() -> T:
        store = await open_session_store(settings)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except TesseraError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


def _settings() -> Settings:
    settings = settings_or_exit()
    if settings.session_store == "memory":
        err_console.print(
            "[red]error:[/red] TESSERA_SESSION_STORE is memory: those sessions live inside the "
            "server process and cannot be reached from the command line (use sql or redis)."
        )
        raise typer.Exit(2)
    return settings


def _date(ts: float) -> str:
    return to_datetime(ts).strftime("%Y-%m-%d %H:%M")


@app.command("list")
def list_sessions(
    user: Annotated[str | None, typer.Option(help="Only this user's sessions.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
) -> None:
    """Show live sessions, newest first (a user's: oldest first)."""
    settings = _settings()
    now = SYSTEM_CLOCK.now()

    async def fetch(store: SessionStore) -> list[SessionInfo]:
        if user is not None:
            records = (await store.list_for_user(user, now))[:limit]
        else:
            records = await store.list_all(now, limit=limit)
        return [SessionInfo.from_record(r) for r in records]

    infos = _run(settings, fetch)
    if not infos:
        console.print("No live sessions.")
        return
    table = Table(
        "id",
        "user",
        "kind",
        "created",
        "last seen",
        "expires",
        "ip",
        "user agent",
        box=box.SIMPLE_HEAD,
        caption=f"Times in UTC. ids shortened; revoke takes any unique prefix of "
        f"{MIN_PREFIX}+ characters.",
    )
    for info in infos:
        table.add_row(
            info.id[:SHOWN_ID],
            info.user_id or "-",
            info.kind + (" (remembered)" if info.remembered else ""),
            _date(info.created_at),
            _date(info.last_seen),
            _date(info.expires_at),
            info.ip or "-",
            (info.user_agent or "-")[:40],
        )
    console.print(table)


@app.command()
def revoke(
    session_id: Annotated[
        str | None,
        typer.Argument(help=f"The session's id as listed (a unique prefix of {MIN_PREFIX}+)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Revoke every session of this user instead.")
    ] = None,
) -> None:
    """End one session by its id, or all sessions of a user; they stop working at once."""
    if (session_id is None) == (user is None):
        err_console.print("[red]error:[/red] give either a session id or --user, not both")
        raise typer.Exit(2)
    settings = _settings()
    if user is not None:
        count = _run(settings, lambda store: store.delete_for_user(user))
        console.print(f"Revoked {count} session(s) of {user}.", highlight=False)
        return
    prefix = (session_id or "").lower()
    if len(prefix) < MIN_PREFIX or len(prefix) > 64 or not _HEX.fullmatch(prefix):
        err_console.print(
            f"[red]error:[/red] a session id is {MIN_PREFIX} to 64 hexadecimal characters"
        )
        raise typer.Exit(2)

    async def find_and_delete(store: SessionStore) -> list[str]:
        if len(prefix) == 64:
            return [prefix] if await store.delete(prefix) else []
        now = SYSTEM_CLOCK.now()
        matches = [
            r.id_hash
            for r in await store.list_all(now, limit=SEARCH_LIMIT)
            if r.id_hash.startswith(prefix)
        ]
        if len(matches) == 1:
            await store.delete(matches[0])
        return matches

    matches = _run(settings, find_and_delete)
    if not matches:
        err_console.print(f"[red]error:[/red] no live session has an id starting {prefix}")
        raise typer.Exit(1)
    if len(matches) > 1:
        err_console.print(
            f"[red]error:[/red] {len(matches)} sessions have ids starting {prefix}; "
            "give more characters. Nothing was revoked."
        )
        raise typer.Exit(1)
    console.print(f"Revoked session {matches[0][:SHOWN_ID]}.", highlight=False)


@app.command()
def sweep() -> None:
    """Remove expired sessions now (servers also do this on their own)."""
    settings = _settings()
    count = _run(settings, lambda store: store.sweep(SYSTEM_CLOCK.now()))
    console.print(f"Removed {count} expired session(s).", highlight=False)
