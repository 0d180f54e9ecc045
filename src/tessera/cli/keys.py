"""``tessera keys``: list the key ring and rotate keys. Key material is never printed."""

from __future__ import annotations

import asyncio
import enum
import io
from typing import Annotated

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from tessera.cli.common import console, err_console, print_error, settings_or_exit
from tessera.clock import SYSTEM_CLOCK, to_datetime
from tessera.config import Settings
from tessera.errors import TesseraError
from tessera.keys import KeyRing, ManagedKey, Rotation
from tessera.keys_store import open_key_store, rotate_keys
from tessera.stores.sql import create_engine, ensure_schema

app = typer.Typer(
    help="List and rotate the keys that sign cookies (hmac) and tokens (sign).",
    no_args_is_help=True,
    add_completion=False,
)


class UseChoice(enum.StrEnum):
    hmac = "hmac"
    sign = "sign"


class AlgChoice(enum.StrEnum):
    EdDSA = "EdDSA"
    ES256 = "ES256"
    RS256 = "RS256"
    HS256 = "HS256"


def _date(ts: float | None) -> str:
    if ts is None:
        return "-"
    return to_datetime(ts).strftime("%Y-%m-%d %H:%M")


async def _load(settings: Settings) -> KeyRing:
    """Every key, retired ones included; listing never generates keys."""
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine)
        store = open_key_store(settings, engine)
        records = await store.load_all()
        return KeyRing((ManagedKey.from_record(r) for r in records), SYSTEM_CLOCK)
    finally:
        await engine.dispose()


async def _rotate(settings: Settings, use: str, alg: str | None) -> Rotation:
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine)
        store = open_key_store(settings, engine)
        return await rotate_keys(
            store, SYSTEM_CLOCK, use, alg, overlap=settings.key_rotation_overlap
        )
    finally:
        await engine.dispose()


def _fail(exc: TesseraError) -> typer.Exit:
    print_error(exc.message)
    return typer.Exit(1)


@app.command("list")
def list_keys() -> None:
    """Show every key with its use, algorithm, state and dates (never its material)."""
    settings = settings_or_exit()
    try:
        ring = asyncio.run(_load(settings))
    except TesseraError as exc:
        raise _fail(exc) from None
    if not len(ring):
        console.print("No keys yet; the server creates them on first start.")
        return
    now = ring.clock.now()
    rows = [
        (
            key.kid,
            key.use.value,
            key.alg,
            key.state(now).value,
            _date(key.created_at),
            _date(key.retiring_at),
            _date(key.retired_at),
        )
        for key in ring.all_keys()
    ]
    table = Table(*_COLUMNS, box=box.SIMPLE_HEAD, caption="Times in UTC.")
    # Nothing may wrap or be ellipsized (a kid is what operators copy), so on a terminal too
    # narrow for the table each key gets a block of two lines instead.
    for column in table.columns:
        column.no_wrap = True
    for row in rows:
        table.add_row(*row)
    if _natural_width(table) < console.width:
        console.print(table)
        return
    for kid, use, alg, state, *dates in rows:
        console.print(f"{kid}  {use} {alg} [bold]{state}[/bold]", highlight=False)
        shown = [f"{name} {date}" for name, date in zip(_COLUMNS[4:], dates, strict=True)]
        console.print("  " + "  ".join(s for s in shown if not s.endswith(" -")), highlight=False)
    console.print("Times in UTC.")


_COLUMNS = ("kid", "use", "alg", "state", "created", "retiring", "retired")


def _natural_width(table: Table) -> int:
    """Columns needed to show ``table`` unshrunk (rendered off-screen and measured)."""
    probe = Console(file=io.StringIO(), width=1000)
    with probe.capture() as capture:
        probe.print(table)
    return max(cell_len(line.rstrip()) for line in capture.get().splitlines())


@app.command()
def rotate(
    use: Annotated[
        UseChoice, typer.Option(help="Which keys: hmac (cookies, CSRF) or sign (tokens).")
    ] = UseChoice.sign,
    alg: Annotated[
        AlgChoice | None,
        typer.Option(help="Algorithm of the new signing key (default: TESSERA_SIGNING_ALGORITHM)."),
    ] = None,
) -> None:
    """Make a new key active now; the active key retires after TESSERA_KEY_ROTATION_OVERLAP."""
    settings = settings_or_exit()
    if use is UseChoice.hmac:
        if alg not in (None, AlgChoice.HS256):
            err_console.print("[red]error:[/red] hmac keys are always HS256")
            raise typer.Exit(2)
        chosen = None
    else:
        chosen = alg.value if alg is not None else settings.signing_algorithm
    try:
        rotation = asyncio.run(_rotate(settings, use.value, chosen))
    except TesseraError as exc:
        raise _fail(exc) from None
    console.print(
        f"New {rotation.new.use.value} key [bold]{rotation.new.kid}[/bold] "
        f"({rotation.new.alg}) is active.",
        highlight=False,
    )
    for old in rotation.retiring:
        console.print(
            f"Key {old.kid} is retiring: it verifies until {_date(old.retired_at)} UTC and "
            "signs nothing.",
            highlight=False,
        )
    if not rotation.retiring:
        console.print("No key was active before; nothing retires.")
    console.print(
        "Running servers keep the ring they loaded until they reload it (restart them).",
        highlight=False,
    )
