"""A warning when a site's cookies approach what browsers keep per site.

RFC 6265 §6.1 only promises 50 cookies per domain; past a browser's real limit the oldest are
evicted silently, which can be the session cookie. We cannot see the browser's jar, so we
estimate from one request/response pair what the jar *would hold* after the response:

    names in the request's Cookie header, plus names set (not deleted) by the response
    minus names the response deletes

Names only: the Cookie header carries no domain or path, so two cookies of one name on
different paths count once (the estimate errs low, never cries wolf).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tessera.clock import SYSTEM_CLOCK, Clock
from tessera.cookies._cookie import Cookie
from tessera.cookies._parse import parse_set_cookie
from tessera.errors import ConfigError
from tessera.metrics import Metrics

_LOG = logging.getLogger("tessera.cookies")
_MAX_LOGGED_NAMES = 60


class CookieBudget:
    """Counts ``cookies.budget_exceeded`` and logs the names when the estimate is over ``limit``."""

    __slots__ = ("_clock", "_logger", "_metrics", "limit")

    def __init__(
        self,
        limit: int = 50,
        *,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("the cookie budget must be a positive int", code="invalid_config")
        self.limit = limit
        self._metrics = metrics if metrics is not None else Metrics()
        self._logger = logger if logger is not None else _LOG
        self._clock = clock

    def projected(
        self, request_cookie_names: Iterable[str], set_cookies: Iterable[Cookie | str]
    ) -> set[str]:
        """The cookie names the browser would hold after this response (see module doc)."""
        now = self._clock.now()
        names = set(request_cookie_names)
        for item in set_cookies:
            parsed = item if isinstance(item, Cookie) else parse_set_cookie(item)
            if parsed.is_deletion(now):
                names.discard(parsed.name)
            else:
                names.add(parsed.name)
        return names

    def check(
        self, request_cookie_names: Iterable[str], set_cookies: Iterable[Cookie | str]
    ) -> bool:
        """True when within budget; otherwise count, warn (names, never values) and say False."""
        names = self.projected(request_cookie_names, set_cookies)
        if len(names) <= self.limit:
            return True
        self._metrics.incr("cookies.budget_exceeded")
        listed = sorted(names)
        # repr(): request names come from the client; escape them against log injection.
        shown = ", ".join(repr(name) for name in listed[:_MAX_LOGGED_NAMES])
        more = len(listed) - _MAX_LOGGED_NAMES
        self._logger.warning(
            "cookie budget exceeded: the site would hold %d cookies (limit %d): %s%s",
            len(names),
            self.limit,
            shown,
            f" and {more} more" if more > 0 else "",
        )
        return False
