"""Revocation: ending a session, or a whole user, ends everything that hangs off it.

A session is reached by more than its cookie: an app's session by its refresh tokens and by the
access tokens already issued (valid until they expire unless a revocation mark refuses them), a
remembered browser by its remember-me cookie, which would log it straight back in. So every
place that ends sessions (the account page, the JSON API, the session cap, the command line, a
password change) goes through :class:`Revoker`, which ends all of it and records the security
event. It needs no keys: the command line builds one from the stores alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from tessera.clock import Clock
from tessera.identity.events import DetailValue, EventKind, EventLog
from tessera.identity.remember import RememberMe, remembered_selector
from tessera.sessions import SessionManager
from tessera.stores.sessions import SessionRecord
from tessera.tokens import RefreshTokens, RevocationView


class Revocation(NamedTuple):
    """What :meth:`Revoker.revoke_user_everywhere` ended."""

    sessions: int
    remember_tokens: int
    refresh_families: int


class Revoker:
    """Ends sessions together with their tokens, remember-me logins and access tokens."""

    def __init__(
        self,
        sessions: SessionManager,
        remember: RememberMe,
        refresh: RefreshTokens,
        revocations: RevocationView,
        events: EventLog,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.remember = remember
        self.refresh = refresh
        self.revocations = revocations
        self.events = events
        self.clock = clock

    async def revoke_user_everywhere(
        self, user_id: str, *, keep_session: str | None = None
    ) -> Revocation:
        """End every session, remember-me token, refresh family and access token of a user.

        ``keep_session`` (a public session handle) survives: the browser that changed the
        password stays logged in, everything else is cut off at once.
        """
        # What could bring a session back goes first, the sessions last: a failure half-way
        # leaves them whole, so running it again finishes the job.
        remember_tokens = await self.remember.forget_user(user_id)
        refresh_families = await self.refresh.revoke_user(user_id)
        await self.revocations.revoke_user(user_id, self.clock.now())
        if keep_session is None:
            sessions = await self.sessions.revoke_all(user_id)
        else:
            sessions = await self.sessions.revoke_others(user_id, keep_session)
        return Revocation(sessions, remember_tokens, refresh_families)

    async def revoke_session(
        self,
        user_id: str,
        public_id: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> bool:
        """End one of the user's sessions, browser or app, with its tokens and its remember-me
        login; ``ip`` and ``user_agent`` (of whoever revoked it) go into the security event."""
        record = await self.sessions.owned_record(user_id, public_id)
        if record is None:
            return False
        # Its tokens first, its record last: if something fails half-way the session is still
        # listed, and revoking it again finishes the job.
        await self.end_session_tokens(
            user_id,
            public_id,
            EventKind.SESSION_REVOKED,
            ip=ip,
            user_agent=user_agent,
            detail=detail,
            record=record,
        )
        await self.sessions.delete_record(record)  # False: ended meanwhile, gone either way
        return True

    async def session_evicted(self, record: SessionRecord) -> None:
        """What the session cap calls for each session it removes, before deleting it."""
        if record.user_id is not None:
            await self.end_session_tokens(
                record.user_id,
                record.id_hash,
                EventKind.SESSION_REVOKED,
                detail={"reason": "session_cap"},
                record=record,
            )

    async def end_session_tokens(
        self,
        user_id: str,
        public_id: str,
        event: EventKind,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
        record: SessionRecord | None = None,
    ) -> None:
        """Kill a session's refresh families, access tokens and (given its ``record``) its
        remember-me login now, and record ``event``.

        The revocation mark is set even when the session record is already gone (expired,
        swept): access tokens outlive nothing they should.
        """
        await self.refresh.revoke_session(public_id)
        await self.revocations.revoke_session(public_id, self.clock.now())
        selector = remembered_selector(record.data) if record is not None else None
        if selector is not None and record is not None:
            # Only a token of the session's own user: the selector is session data, which the
            # application can write, and a login as another user keeps the data.
            token = await self.remember.store.get(selector)
            if token is not None and token.user_id == record.user_id:
                await self.remember.store.delete(selector)
        await self.events.record(
            event,
            user_id=user_id,
            ip=ip,
            user_agent=user_agent,
            detail={"session": public_id[:12], **(detail or {})},
        )
