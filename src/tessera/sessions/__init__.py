"""Server-side sessions: the change-tracking :class:`Session` and the :class:`SessionManager`.

The cookie carries a random 256-bit ID; stores keep only its SHA-256 digest. Policy (idle and
absolute timeouts, sliding renewal, rotation, size budget, per-user caps) lives in the manager,
so every store (memory, SQL, Redis) gets it identically.
"""

from __future__ import annotations

from tessera.sessions._ids import hash_session_id, is_well_formed, new_session_id
from tessera.sessions.manager import (
    DEFAULT_MAX_PER_USER,
    CookieAction,
    SaveResult,
    SessionInfo,
    SessionManager,
    encode_data,
)
from tessera.sessions.session import Session

__all__ = [
    "DEFAULT_MAX_PER_USER",
    "CookieAction",
    "SaveResult",
    "Session",
    "SessionInfo",
    "SessionManager",
    "encode_data",
    "hash_session_id",
    "is_well_formed",
    "new_session_id",
]
