"""``tessera serve``: run the server with uvicorn on the configured (default: SQLite) database."""

from __future__ import annotations

import gc
from typing import Annotated

import typer

from tessera.cli.common import console, database_location, print_error, settings_or_exit
from tessera.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (TESSERA_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (TESSERA_PORT).")] = None,
    dev: Annotated[
        bool | None,
        typer.Option(
            "--dev/--no-dev",
            help="Development mode for plain http (TESSERA_DEV): cookies without Secure and "
            "without the __Host- prefix. Browsers need it on hosts other than localhost and "
            "127.0.0.1. Never in production.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the Tessera server."""
    import uvicorn

    from tessera.server.app import create_app

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if dev is not None:
        overrides["dev"] = dev
    settings = settings_or_exit(**overrides)
    from tessera.server.services import cookie_registry
    from tessera.stores.factory import require_drivers

    try:
        # Before uvicorn: raised in its startup, the error would print as a traceback.
        require_drivers(settings)
        cookie_registry(settings)
    except ConfigError as exc:
        print_error(exc.message)
        raise typer.Exit(2) from None
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    console.print(f"Tessera serving at [bold]http://{shown_host}:{settings.port}/[/bold]")
    console.print(f"Database: {database_location(settings.database_url)}")
    console.print(f"Session store: {settings.session_store}")
    if settings.dev:
        console.print(
            "[yellow]Development mode: cookies are sent over plain http. "
            "Do not use in production.[/yellow]"
        )
    elif not settings.issuer.startswith("https://") and settings.host not in LOOPBACK:
        # Browsers take Secure cookies over plain http from loopback addresses only.
        console.print(
            "[yellow]Cookies are Secure: browsers keep them over plain http only on "
            "localhost. Serve https behind a proxy (and set TESSERA_ISSUER), or use --dev "
            "for a trial.[/yellow]"
        )
    app = create_app(settings)
    # Everything alive now (modules, the app) lives as long as the process. Requests that wait
    # on Redis or a database keep objects alive across event-loop iterations, which triggers
    # collections, and each full one walked all of this again: about a sixth of the CPU of a
    # Redis-backed request (bench/sessions_http.py, BENCH_GC_FREEZE=0). Frozen, it is skipped.
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        # No WebSocket routes: uvicorn then answers an Upgrade as a plain request, instead of
        # holding a handshake it cannot complete.
        ws="none",
    )
