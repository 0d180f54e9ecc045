"""The ``tessera`` command line: ``serve`` plus one sub-command group per record kind."""

from __future__ import annotations

import typer

from tessera.cli import keys, sessions, users
from tessera.cli.serve import serve

app = typer.Typer(
    help="Tessera: cookies, server-side sessions and tokens; a self-hosted login service.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="user")
app.add_typer(sessions.app, name="sessions")


@app.callback()
def _root() -> None:
    """Tessera: cookies, server-side sessions and tokens; a self-hosted login service."""


def main() -> None:
    """Entry point of the ``tessera`` script."""
    app()
