"""Every SQL table Tessera has: importing this module registers them all on the metadata.

:func:`tessera.stores.sql.ensure_schema` imports it, so the schema is always created whole,
whichever stores a process happens to have imported before.
"""

from __future__ import annotations

from tessera.stores import (
    sql_events,
    sql_keys,
    sql_refresh,
    sql_remember,
    sql_revocations,
    sql_sessions,
    sql_throttle,
    sql_users,
)

__all__ = [
    "sql_events",
    "sql_keys",
    "sql_refresh",
    "sql_remember",
    "sql_revocations",
    "sql_sessions",
    "sql_throttle",
    "sql_users",
]
