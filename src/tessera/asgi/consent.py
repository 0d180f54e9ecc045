"""ConsentMiddleware: enforces cookie consent on every response an ASGI app sends.

It wraps ``send`` and edits the Set-Cookie headers of ``http.response.start`` (and
``websocket.accept``) through :class:`tessera.consent.ConsentEnforcer`, so no endpoint can set
a cookie the visitor did not agree to. Raw header strings are filtered as they are (only the
name and lifetime are parsed), so cookies set by any framework or library are covered.

The visitor's consent is put at ``scope["tessera.consent"]`` (a ConsentState; ``decided`` is
False until they choose) and the manager at ``scope["tessera.consent_manager"]``, whose
``consent_response_cookies`` a consent endpoint uses to answer a new choice. When a response
sets a new consent cookie, that response is already filtered by the new choice, and cookies
the new choice refuses are deleted in the same response.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.consent import (
    DEFAULT_CONSENT_MAX_AGE,
    ConsentManager,
    ConsentState,
    CookieRegistry,
)
from tessera.cookies import (
    Cookie,
    CookieBudget,
    CookiePolicy,
    KeySource,
    parse_cookie_header,
    parse_set_cookie,
)
from tessera.metrics import Metrics

SCOPE_CONSENT = "tessera.consent"
SCOPE_MANAGER = "tessera.consent_manager"
_STARTS = frozenset({"http.response.start", "websocket.accept"})


def request_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies; several Cookie fields (HTTP/2) are joined as RFC 9113 says."""
    fields = [value for key, value in scope.get("headers", ()) if key.lower() == b"cookie"]
    return parse_cookie_header(b"; ".join(fields))


class ConsentMiddleware:
    """Pure ASGI middleware: ``ConsentMiddleware(app, registry=..., keys=..., policy=...)``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: CookieRegistry,
        keys: KeySource,
        policy: CookiePolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
        cookie_name: str = "consent",
        max_age: int = DEFAULT_CONSENT_MAX_AGE,
        budget: CookieBudget | None = None,
    ) -> None:
        self.app = app
        self.manager = ConsentManager(
            registry,
            keys,
            policy=policy if policy is not None else CookiePolicy(),
            clock=clock,
            metrics=metrics,
            logger=logger,
            cookie_name=cookie_name,
            max_age=max_age,
        )
        self.budget = budget
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookies = request_cookies(scope)
        consent = self.manager.cookie.read(cookies)
        scope[SCOPE_CONSENT] = consent
        scope[SCOPE_MANAGER] = self.manager

        async def send_filtered(message: Message) -> None:
            if message["type"] in _STARTS:
                message = self._filter_start(message, consent, cookies)
            await send(message)

        await self.app(scope, receive, send_filtered)

    def _filter_start(
        self, message: Message, consent: ConsentState, cookies: dict[str, str]
    ) -> Message:
        headers = list(message.get("headers") or ())
        raw = [v.decode("latin-1") for k, v in headers if k.lower() == b"set-cookie"]
        if not raw:
            return message
        decision = self._new_decision(raw)
        kept = self.manager.enforcer.filter(
            raw,
            consent=decision or consent,
            request_cookies=cookies if decision is not None else None,
        )
        if self.budget is not None:
            self.budget.check(cookies, kept)
        others = [(k, v) for k, v in headers if k.lower() != b"set-cookie"]
        set_cookies = [
            (b"set-cookie", (c.serialize() if isinstance(c, Cookie) else c).encode("latin-1"))
            for c in kept
        ]
        return {**message, "headers": others + set_cookies}

    def _new_decision(self, raw: list[str]) -> ConsentState | None:
        """The consent this response sets, if it sets a genuine, current one."""
        now = self._clock.now()
        for header in raw:
            parsed = parse_set_cookie(header)
            if parsed.name == self.manager.cookie.name and not parsed.is_deletion(now):
                state = self.manager.cookie.decode(parsed.value)
                if state.decided:
                    return state
        return None
