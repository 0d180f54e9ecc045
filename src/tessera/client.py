"""A Python client for the Tessera token API: an ``httpx.Auth`` that logs in and refreshes.

Use it like a mobile app would::

    auth = TesseraAuth("https://id.example", "alice", password, device_name="CLI on laptop")
    with httpx.Client(base_url="https://id.example", auth=auth) as client:
        me = client.get("/api/v1/me").json()

What it does, in order, for every request (sync and async clients alike: the work is one
``auth_flow`` generator, which httpx drives for both):

1. No tokens yet: log in (``POST /api/v1/auth/login``). The password is then forgotten: an
   app keeps tokens, not passwords.
2. The access token runs out within ``refresh_margin`` seconds: refresh first (proactive).
3. Attach ``Authorization: Bearer``; send.
4. A 401 whose ``WWW-Authenticate`` says ``error="invalid_token"`` (expired, or revoked): refresh
   once, following rotation (the new refresh token replaces the old), and retry once.
5. A refresh refused with ``invalid_grant`` (the session was revoked, the refresh token expired
   or was reused) raises :class:`LoginRequired` and drops the tokens. The client never logs in
   again with a remembered password behind the user's back: a revoked session stays revoked
   until the app calls :meth:`TesseraAuth.set_credentials` (the user typed the password again).

Tokens live in memory; pass ``on_tokens`` to persist them (it is called with the new
:class:`TokenSet` after every login and refresh, and with None when they are dropped) and
``tokens`` to start from persisted ones. Token responses are read in full, so httpx is told
``requires_response_body``: responses of the app's own requests are read before they are
returned too (no streaming through this auth).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import httpx

from tessera.errors import TesseraError

__all__ = [
    "DEFAULT_CLIENT_ID",
    "ClientError",
    "LoginFailed",
    "LoginRequired",
    "LoginThrottled",
    "TesseraAuth",
    "TokenEndpointError",
    "TokenSet",
]

DEFAULT_CLIENT_ID: Final = "tessera-app"
LOGIN_PATH: Final = "/api/v1/auth/login"
REFRESH_PATH: Final = "/api/v1/auth/refresh"
LOGOUT_PATH: Final = "/api/v1/auth/logout"
_INVALID_TOKEN: Final = re.compile(r'\berror\s*=\s*"?invalid_token"?', re.IGNORECASE)


class ClientError(TesseraError):
    """Root of the errors the client raises."""

    code: ClassVar[str] = "client_error"


class LoginRequired(ClientError):
    """The app must ask the user to log in (again): no tokens, or they can no longer be used."""

    code: ClassVar[str] = "login_required"
    http_status: ClassVar[int] = 401


class LoginFailed(LoginRequired):
    """The server refused the username and password."""

    code: ClassVar[str] = "invalid_credentials"


class LoginThrottled(LoginFailed):
    """Too many failed logins: the server asks to wait ``retry_after`` seconds."""

    code: ClassVar[str] = "too_many_requests"
    http_status: ClassVar[int] = 429

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TokenEndpointError(ClientError):
    """The token endpoint answered something unexpected (a 5xx, not JSON...); tokens are kept."""

    code: ClassVar[str] = "token_endpoint_error"
    http_status: ClassVar[int] = 502

    def __init__(self, message: str, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """The tokens of one app session. Times are Unix seconds (the ``clock`` of the auth)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    refresh_expires_at: float
    scope: str = ""
    lifetime: float = 0.0
    """Seconds the access token was issued for (``expires_in``); 0 when unknown."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for ``on_tokens`` storage (it holds secrets: store it safely)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "refresh_expires_at": self.refresh_expires_at,
            "scope": self.scope,
            "lifetime": self.lifetime,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSet:
        try:
            return cls(
                access_token=str(data["access_token"]),
                refresh_token=str(data["refresh_token"]),
                expires_at=float(data["expires_at"]),
                refresh_expires_at=float(data["refresh_expires_at"]),
                scope=str(data.get("scope", "")),
                lifetime=float(data.get("lifetime", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(f"stored tokens are not usable: {exc}") from None

    @classmethod
    def from_response(cls, body: dict[str, Any], now: float) -> TokenSet:
        """From a token response (``expires_in`` seconds become instants on our clock)."""
        try:
            lifetime = float(body["expires_in"])
            return cls(
                access_token=_text(body, "access_token"),
                refresh_token=_text(body, "refresh_token"),
                expires_at=now + lifetime,
                refresh_expires_at=now + float(body["refresh_expires_in"]),
                scope=str(body.get("scope", "")),
                lifetime=lifetime,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenEndpointError(f"token response is missing a field: {exc}", 200) from None


def _text(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is not a string")
    return value


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _description(body: dict[str, Any], fallback: str) -> str:
    text = body.get("error_description")
    return text if isinstance(text, str) and text else fallback


class TesseraAuth(httpx.Auth):
    """Bearer authentication against a Tessera server, with login and refresh built in."""

    requires_response_body = True

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        device_name: str | None = None,
        tokens: TokenSet | None = None,
        on_tokens: Callable[[TokenSet | None], None] | None = None,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` turns ``expires_in`` into instants (tests pass a fake clock's ``now``)."""
        self._base = base_url.rstrip("/")
        self._username = username
        self._password = password
        self.client_id = client_id
        self.device_name = device_name
        self._tokens = tokens
        self._on_tokens = on_tokens
        self._margin = refresh_margin
        self._clock = clock

    def __repr__(self) -> str:
        state = "with tokens" if self._tokens is not None else "logged out"
        return f"<TesseraAuth {self._base} {self.client_id} {state}>"

    @property
    def tokens(self) -> TokenSet | None:
        return self._tokens

    def set_credentials(self, username: str, password: str) -> None:
        """Credentials for the next login (after :class:`LoginRequired`); used once."""
        self._username, self._password = username, password

    # --- the flow httpx drives -------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        tokens = self._tokens
        if tokens is None:
            tokens = yield from self._login()
        elif self._due(tokens):
            tokens = yield from self._refresh(tokens)
        request.headers["Authorization"] = f"Bearer {tokens.access_token}"
        response = yield request
        if response.status_code != 401 or not _INVALID_TOKEN.search(
            response.headers.get("www-authenticate", "")
        ):
            return
        current = self._tokens
        if current is not None and current is not tokens and not self._due(current):
            tokens = current  # another request refreshed meanwhile: use its tokens
        else:
            tokens = yield from self._refresh(tokens)
        request.headers["Authorization"] = f"Bearer {tokens.access_token}"
        yield request

    def _due(self, tokens: TokenSet) -> bool:
        # Short-lived tokens (tests, strict deployments): refresh in the last half at most,
        # or every request would refresh.
        margin = min(self._margin, tokens.lifetime / 2) if tokens.lifetime > 0 else self._margin
        return tokens.expires_at - self._clock() <= margin

    def _login(self) -> Generator[httpx.Request, httpx.Response, TokenSet]:
        username, password = self._username, self._password
        if username is None or password is None:
            raise LoginRequired("not logged in: call set_credentials() with the user's password")
        body: dict[str, str] = {
            "username": username,
            "password": password,
            "client_id": self.client_id,
        }
        if self.device_name is not None:
            body["device_name"] = self.device_name
        response = yield httpx.Request("POST", self._base + LOGIN_PATH, json=body)
        data = _json(response)
        if response.status_code == 429:
            retry = response.headers.get("retry-after", "")
            raise LoginThrottled(
                _description(data, "too many failed logins"),
                int(retry) if retry.isdigit() else 60,
            )
        if response.status_code in (400, 401):
            # The password was wrong, or the server refused its shape: forget it either way.
            self._password = None
            raise LoginFailed(_description(data, "login refused"))
        tokens = self._accept(response, data)
        self._password = None  # keep tokens, not passwords
        return tokens

    def _refresh(self, tokens: TokenSet) -> Generator[httpx.Request, httpx.Response, TokenSet]:
        response = yield httpx.Request(
            "POST",
            self._base + REFRESH_PATH,
            json={"refresh_token": tokens.refresh_token, "client_id": self.client_id},
        )
        data = _json(response)
        if response.status_code == 400 and data.get("error") == "invalid_grant":
            if self._tokens is not None and self._tokens is not tokens:
                # A concurrent request already rotated this token and was answered first.
                return self._tokens
            self._store(None)
            raise LoginRequired(_description(data, "the session ended; log in again"))
        return self._accept(response, data)

    def _accept(self, response: httpx.Response, data: dict[str, Any]) -> TokenSet:
        if response.status_code != 200 or not data:
            raise TokenEndpointError(
                f"{response.request.url.path} answered {response.status_code}: "
                + _description(data, response.reason_phrase or "unexpected answer"),
                response.status_code,
            )
        tokens = TokenSet.from_response(data, self._clock())
        self._store(tokens)
        return tokens

    def _store(self, tokens: TokenSet | None) -> None:
        self._tokens = tokens
        if self._on_tokens is not None:
            self._on_tokens(tokens)

    # --- logout ----------------------------------------------------------------------------

    def logout(self, client: httpx.Client) -> None:
        """End the session on the server and drop the tokens (an ended session is no error)."""
        if self._tokens is None:
            return
        try:
            client.post(self._base + LOGOUT_PATH, auth=self)
        except LoginRequired:
            pass  # revoked or expired already: nothing left to end
        finally:
            self._store(None)

    async def alogout(self, client: httpx.AsyncClient) -> None:
        """:meth:`logout` for an ``httpx.AsyncClient``."""
        if self._tokens is None:
            return
        try:
            await client.post(self._base + LOGOUT_PATH, auth=self)
        except LoginRequired:
            pass  # revoked or expired already: nothing left to end
        finally:
            self._store(None)
