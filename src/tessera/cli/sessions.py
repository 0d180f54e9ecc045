"""``tessera sessions``: list, revoke and sweep server-side sessions in the configured store.

Sessions are shown by their public handle (the digest the store keys on), never by the ID in
the cookie; a handle can revoke a session but cannot be used to impersonate anyone. Users are
named by username; a user ID is taken too, for sessions an application keeps for users that are
not Tessera accounts. Revocations go through the server's :class:`~tessera.server.revoker.Revoker`
(see :func:`~tessera.cli.common.run_admin`), so they end a session's tokens and remember-me
login too, and are recorded in the user's security events.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich import box
from rich.markup import escape
from rich.table import Column, Table

from tessera.cli.common import (
    console,
    database_location,
    err_console,
    plain,
    print_error,
    run_admin,
    settings_or_exit,
)
from tessera.clock import SYSTEM_CLOCK, to_datetime
from tessera.config import Settings
from tessera.identity.events import EventKind
from tessera.identity.remember import remembered_selector
from tessera.sessions import SessionInfo
from tessera.stores.sessions import SessionRecord

if TYPE_CHECKING:
    # Imported by the commands that run, not here: `tessera --help` stays quick.
    from tessera.server.services import AdminKit

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
BY_CLI = {"by": "cli"}
"""The detail of the security events these commands record."""

_HEX = re.compile(r"[0-9a-f]+")


def _settings() -> Settings:
    settings = settings_or_exit()
    if settings.session_store == "memory":
        err_console.print(
            "[red]error:[/red] TESSERA_SESSION_STORE is memory: those sessions live inside the "
            "server process and cannot be reached from the command line (use sql or redis)."
        )
        raise typer.Exit(2)
    return settings


def _where(settings: Settings) -> str:
    """Which store the command reads: said on every listing, so an empty one is not a mystery."""
    if settings.session_store == "redis":
        url = urlsplit(settings.redis_url)  # host and port only: never a password
        where = f"{url.hostname}:{url.port or 6379}" if url.hostname else url.path
        return f"Redis at {where}, prefix {settings.redis_prefix!r}"
    return database_location(settings.database_url)


def _date(ts: float) -> str:
    return to_datetime(ts).strftime("%Y-%m-%d %H:%M")


def _fail(message: str, code: int = 1) -> typer.Exit:
    print_error(message)
    return typer.Exit(code)


@app.command("list")
def list_sessions(
    user: Annotated[
        str | None, typer.Option(help="Only this user's sessions (a username or a user ID).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
) -> None:
    """Show live sessions, newest first (a user's: their newest, oldest first)."""
    from tessera.server.pages import device_label

    settings = _settings()

    async def fetch(kit: AdminKit) -> tuple[list[SessionInfo], dict[str, str]] | None:
        now = SYSTEM_CLOCK.now()
        store = kit.sessions.store
        if user is not None:
            user_id, name = await _resolve_user(kit, user)
            records = (await store.list_for_user(user_id, now))[-limit:]  # the newest
            if not records and name is None:
                return None  # neither an account nor anybody's sessions: a typo, most likely
        else:
            records = await store.list_all(now, limit=limit)
        return [SessionInfo.from_record(r) for r in records], await _usernames(kit, records)

    found = run_admin(settings, fetch)
    if found is None:
        raise _fail(f"no user is named {user!r}, and no session has that user ID")
    infos, names = found
    if not infos:
        console.print(plain(f"No live sessions in {_where(settings)}."), highlight=False)
        return
    # Every column keeps a minimum width and wraps below its natural one (a date at its space),
    # so a narrow terminal or a pipe gets taller rows, never a truncated id or a vanished column.
    table = Table(
        Column("id", no_wrap=True, min_width=SHOWN_ID),
        Column("user", min_width=5, overflow="fold"),
        Column("kind", min_width=5),
        Column("last seen", min_width=10),
        Column("expires", min_width=10),
        Column("ip", min_width=7, overflow="fold"),
        Column("device", min_width=7),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption=f"{escape(_where(settings))}; times in UTC; revoke takes an id or a unique "
        f"prefix of {MIN_PREFIX}+ characters.",
    )
    for info in infos:
        table.add_row(  # plain(): names and addresses are data, never markup or escapes
            info.id[:SHOWN_ID],
            plain(names.get(info.user_id, info.user_id) if info.user_id else "-"),
            plain(info.kind + (" (remembered)" if info.remembered else "")),
            _date(info.last_seen),
            _date(info.expires_at),
            plain(info.ip or "-"),
            plain(device_label(info.user_agent) if info.user_agent else "-"),
        )
    console.print(table)


@app.command()
def revoke(
    session_id: Annotated[
        str | None,
        typer.Argument(help=f"The session's id as listed (a unique prefix of {MIN_PREFIX}+)."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="Instead: everything of this user (a username or a user ID): every session, "
            "remember-me token, refresh token and access token."
        ),
    ] = None,
) -> None:
    """End one session by its id, or everything of a user.

    A session ends with everything that would bring it back: an app session's refresh tokens,
    a remembered browser's remember-me login, and the access tokens issued for it, which running
    servers refuse as soon as they see the revocation (at once with Redis, within two seconds
    with SQL).
    """
    if session_id is None and user is None:
        raise _fail("give the id of a session to revoke, or --user NAME", 2)
    if session_id is not None and user is not None:
        raise _fail("give either a session id or --user, not both", 2)
    settings = _settings()
    if user is not None:

        async def revoke_user(kit: AdminKit) -> tuple[str, int, int, int] | None:
            user_id, name = await _resolve_user(kit, user)
            if name is None and not await kit.sessions.store.list_for_user(
                user_id, SYSTEM_CLOCK.now()
            ):
                return None  # neither an account nor anybody's sessions: a typo, most likely
            done = await kit.revoker.revoke_user_everywhere(user_id)
            if name is not None:  # a Tessera account: its security log says who did this
                await kit.events.record(
                    EventKind.SESSION_REVOKED,
                    user_id=user_id,
                    detail={"session": "all", **BY_CLI},
                )
            return name or user_id, *done

        revoked = run_admin(settings, revoke_user)
        if revoked is None:
            raise _fail(f"no user is named {user!r}, and no session has that user ID")
        who, sessions, remember, families = revoked
        console.print(
            plain(
                f"Revoked {sessions} session(s), {remember} remember-me token(s) and {families} "
                f"refresh token famil{'y' if families == 1 else 'ies'} of {who}, and their "
                "access tokens."
            ),
            highlight=False,
        )
        return
    prefix = (session_id or "").lower()
    if len(prefix) < MIN_PREFIX or len(prefix) > 64 or not _HEX.fullmatch(prefix):
        raise _fail(f"a session id is {MIN_PREFIX} to 64 hexadecimal characters", 2)

    async def find_and_revoke(kit: AdminKit) -> tuple[list[SessionRecord], bool]:
        store = kit.sessions.store
        now = SYSTEM_CLOCK.now()
        if len(prefix) == 64:
            # An infinite renewal interval: a read that never slides the session's idle timeout.
            loaded = await store.load(prefix, now, math.inf)
            matches = [] if loaded is None else [loaded[0]]
        else:
            matches = [
                r
                for r in await store.list_all(now, limit=SEARCH_LIMIT)
                if r.id_hash.startswith(prefix)
            ]
        if len(matches) != 1:
            return matches, False
        record = matches[0]
        if record.user_id is None:  # anonymous: no tokens, no security log
            return matches, await store.delete(record.id_hash)
        ended = await kit.revoker.revoke_session(record.user_id, record.id_hash, detail=BY_CLI)
        return matches, ended

    matches, ended = run_admin(settings, find_and_revoke)
    if not matches or (len(matches) == 1 and not ended):  # ended meanwhile, by itself or else
        raise _fail(f"no live session has an id starting {prefix}")
    if len(matches) > 1:
        raise _fail(
            f"{len(matches)} sessions have ids starting {prefix}; "
            "give more characters. Nothing was revoked."
        )
    record = matches[0]
    also = ""
    if record.kind == "token":
        also = " and its app's tokens"
    elif remembered_selector(record.data) is not None:
        also = " and the remember-me login that would restore it"
    console.print(f"Revoked session {record.id_hash[:SHOWN_ID]}{also}.", highlight=False)


@app.command()
def sweep() -> None:
    """Remove expired sessions now (servers also do this on their own)."""
    settings = _settings()

    async def run(kit: AdminKit) -> int:
        return await kit.sessions.store.sweep(SYSTEM_CLOCK.now())

    count = run_admin(settings, run)
    console.print(f"Removed {count} expired session(s).", highlight=False)


async def _resolve_user(kit: AdminKit, given: str) -> tuple[str, str | None]:
    """The user ID ``given`` names, and the username when it is a Tessera account.

    A username first, then a user ID; anything else is taken as the ID an application uses for
    its own users (sessions may belong to users Tessera does not keep).
    """
    store = kit.users
    account = await store.get_by_username(given) or await store.get_by_id(given)
    if account is None:
        return given, None
    return account.id, account.username


async def _usernames(kit: AdminKit, records: list[SessionRecord]) -> dict[str, str]:
    """Usernames of the users in ``records`` that are Tessera accounts, by user ID."""
    names: dict[str, str] = {}
    for user_id in {r.user_id for r in records if r.user_id is not None}:
        account = await kit.users.get_by_id(user_id)
        if account is not None:
            names[user_id] = account.username
    return names
