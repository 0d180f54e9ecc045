"""The token API for first-party apps (``/api/v1/auth``), OAuth revocation/introspection, JWKS.

A mobile app or a script logs in with a username and password and gets a token pair instead of
a cookie. Each login creates a server-side session of kind ``token``: the app appears in the
user's sessions list next to the browsers, and revoking it there (or logging out, changing the
password, disabling the user, "log out everywhere") cuts the app off at once, because the
access token's ``sid`` is that session's public handle and the verifier consults the
revocation view on every request.

Wire rules, written once here:

- Errors are ``{"error": code, "error_description": text}`` (plus ``reason`` where a client
  can act on it), never a 500 for bad input. Wrong credentials are **401
  ``invalid_credentials``** (this is not the OAuth token endpoint, so RFC 6749's
  ``invalid_grant`` is kept for refresh tokens, where it is 400 as RFC 6749 §5.2 says).
- Request bodies are capped at :data:`MAX_BODY_BYTES` before any parsing (413 beyond).
- Token responses carry ``Cache-Control: no-store`` (RFC 6749 §5.1).
- ``/oauth/revoke`` (RFC 7009) and ``/oauth/introspect`` (RFC 7662) authenticate the caller
  with its own Bearer access token (first-party apps have no client secret). Revocation acts
  only on tokens of the caller's user (anything else is answered 200 with no effect, as RFC 7009
  §2.2 answers unknown tokens); introspection reports ``{"active": false}`` for tokens of other
  users and for refresh tokens, which are opaque and of no use to a resource server.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Form
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from tessera.asgi.auth import Principal, current_principal
from tessera.asgi.body_limit import declared_length
from tessera.errors import InvalidGrant, InvalidToken, RefreshTokenReused
from tessera.identity.events import DetailValue, EventKind
from tessera.server.deps import client_ip, services_of, user_agent
from tessera.server.services import Services
from tessera.tokens import RefreshResult

log = logging.getLogger("tessera.server.tokens")

MAX_BODY_BYTES: Final = 16 * 1024
"""Largest request body read by these endpoints; credentials and tokens are far smaller."""

DEFAULT_CLIENT_ID: Final = "tessera-app"
FIRST_PARTY_SCOPE: Final = "account"
"""The scope of first-party access tokens: acting as the user on the account API."""

CLIENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_REFRESH_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
JWKS_MAX_AGE: Final = 300
"""Seconds caches may keep the JWKS: short, so a rotated-in key is picked up quickly."""

TOKEN_HEADERS: Final = {"cache-control": "no-store", "pragma": "no-cache"}
BEARER_CHALLENGE: Final = 'Bearer realm="tessera"'


# --- bodies: capped before FastAPI parses them ----------------------------------------------


class _BodyTooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        length = declared_length(declared)
        if length is None or length > limit:
            raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class CappedBodyRoute(APIRoute):
    """An APIRoute that reads at most :data:`MAX_BODY_BYTES` of body before FastAPI parses it.

    FastAPI reads the whole body before any dependency runs, so a cap has to sit in front of
    the route handler; the buffered body is replayed to it unchanged.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            try:
                body = await _read_capped(request, MAX_BODY_BYTES)
            except _BodyTooLarge:
                return error(
                    413, "body_too_large", f"request bodies are capped at {MAX_BODY_BYTES}"
                )
            except ClientDisconnect:
                # Gone mid-body: nobody reads this, but it is not an unhandled exception.
                return error(400, "invalid_request", "the client went away mid-body")
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return {"type": "http.disconnect"}

            return await handler(Request(request.scope, replay))

        return capped


router = APIRouter(tags=["tokens"], route_class=CappedBodyRoute)


def error(
    status: int,
    code: str,
    description: str,
    *,
    reason: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON error of every endpoint here (``reason`` refines ``code`` for clients)."""
    body: dict[str, str] = {"error": code, "error_description": description}
    if reason is not None:
        body["reason"] = reason
    return JSONResponse(body, status_code=status, headers={**TOKEN_HEADERS, **(headers or {})})


# --- models (they are the OpenAPI documentation too) ----------------------------------------


def _printable(value: str | None) -> str | None:
    if value is not None and any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in value):
        raise ValueError("must not contain control or format characters")
    return value


class LoginRequest(BaseModel):
    """Credentials of a first-party app's login."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)
    client_id: str = Field(
        default=DEFAULT_CLIENT_ID,
        pattern=CLIENT_ID_PATTERN,
        description="Which app this is (letters, digits, . _ : -; at most 64 characters).",
    )
    device_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Shown in the user's sessions list (the User-Agent is used without it).",
    )

    @field_validator("device_name")
    @classmethod
    def _device_printable(cls, value: str | None) -> str | None:
        return _printable(value)


class RefreshRequest(BaseModel):
    """A refresh token to rotate."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=512)
    client_id: str = Field(default=DEFAULT_CLIENT_ID, pattern=CLIENT_ID_PATTERN)


class TokenResponse(BaseModel):
    """A token pair. ``expires_in`` and ``refresh_expires_in`` are seconds from now."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str


class ErrorResponse(BaseModel):
    error: str
    error_description: str
    reason: str | None = None


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2: ``active`` always; the claims only for an active token."""

    active: bool
    token_type: str | None = None
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    sid: str | None = None
    iss: str | None = None
    aud: list[str] | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None


class JwksResponse(BaseModel):
    keys: list[dict[str, Any]]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


# --- helpers ----------------------------------------------------------------------------------


async def _token_pair(
    services: Services, user_id: str, sid: str, client_id: str, refresh: RefreshResult
) -> JSONResponse:
    access, claims = services.issuer.issue(user_id, sid, FIRST_PARTY_SCOPE, client_id)
    now = services.clock.now()
    body = TokenResponse(
        access_token=access,
        expires_in=int(claims.exp - claims.iat),
        refresh_token=refresh.refresh_token,
        refresh_expires_in=max(0, int(refresh.expires_at - now)),
        scope=claims.scope,
    )
    return JSONResponse(body.model_dump(), headers=TOKEN_HEADERS)


async def end_token_session(
    services: Services,
    user_id: str,
    sid: str,
    kind: EventKind,
    *,
    request: Request | None = None,
    detail: Mapping[str, DetailValue] | None = None,
) -> None:
    """End an app's session: the session record, its refresh families, its access tokens.

    ``sid`` comes from a verified token or a refresh family, so it is trusted to be the user's
    (no ownership check, unlike :meth:`Services.revoke_session`).
    """
    await services.sessions.store.delete(sid)
    await services.revoker.end_session_tokens(
        user_id,
        sid,
        kind,
        ip=client_ip(request) if request is not None else None,
        user_agent=user_agent(request) if request is not None else None,
        detail=detail,
    )


def _bearer_caller(request: Request) -> Principal | None:
    """The caller if it authenticated with a Bearer access token (cookies do not count here)."""
    principal = current_principal(request)
    if principal is None or principal.method != "bearer" or principal.session_id is None:
        return None
    return principal


def _needs_bearer(what: str) -> JSONResponse:
    return error(
        401,
        "unauthorized",
        f"{what} needs the app's access token (Authorization: Bearer)",
        headers={"www-authenticate": BEARER_CHALLENGE},
    )


# --- the first-party token API ----------------------------------------------------------------


@router.post(
    "/api/v1/auth/login",
    response_model=TokenResponse,
    responses=_errors(400, 401, 413, 429),
    summary="Log an app in: username and password for a token pair",
)
async def login(body: LoginRequest, request: Request) -> Response:
    """Wrong credentials (or a disabled account) give 401 ``invalid_credentials``; too many
    failures give 429 ``too_many_requests`` with ``Retry-After``, as the browser login does."""
    services = services_of(request)
    ip = client_ip(request)
    agent = body.device_name or user_agent(request)
    decision = await services.throttle.check(body.username, ip)
    if not decision.allowed:
        await services.events.record(
            EventKind.THROTTLED, ip=ip, user_agent=agent, detail={"method": "token"}
        )
        return error(
            429,
            "too_many_requests",
            f"too many failed logins; try again in {decision.retry_after} s",
            headers={"retry-after": str(decision.retry_after)},
        )
    user = await services.users.authenticate(body.username, body.password)
    if user is None:
        await services.throttle.record_failure(body.username, ip)
        # Attribute the failure to the account when there is one, so its owner can see it.
        known = await services.users.store.get_by_username(body.username)
        await services.events.record(
            EventKind.LOGIN_FAILED,
            user_id=known.id if known is not None else None,
            ip=ip,
            user_agent=agent,
            detail={"method": "token"},
        )
        return error(
            401,
            "invalid_credentials",
            "wrong username or password",
            headers={"www-authenticate": BEARER_CHALLENGE},
        )
    await services.throttle.record_success(body.username, ip)
    ttl = services.settings.refresh_token_ttl
    session = await services.sessions.create(
        user_id=user.id,
        kind="token",
        ip=ip,
        user_agent=agent,
        absolute_timeout=ttl,
        idle_timeout=ttl,
    )
    sid = session.id
    if sid is None:  # create() stores the session; a store that did not is a bug, not input
        raise RuntimeError("session store returned an unsaved session")
    refresh = await services.refresh.issue(user.id, sid, body.client_id)
    await services.events.record(
        EventKind.LOGIN_SUCCEEDED,
        user_id=user.id,
        ip=ip,
        user_agent=agent,
        detail={"method": "token", "client_id": body.client_id},
    )
    return await _token_pair(services, user.id, sid, body.client_id, refresh)


_GRANT_MESSAGES: Final = {
    "expired": "the refresh token expired; log in again",
    "revoked": "the refresh token was revoked; log in again",
    "wrong_client": "the refresh token belongs to another client",
    "malformed": "not a refresh token",
    "unknown": "unknown refresh token; log in again",
}


@router.post(
    "/api/v1/auth/refresh",
    response_model=TokenResponse,
    responses=_errors(400, 413),
    summary="Rotate a refresh token: a new pair for the old refresh token",
)
async def refresh(body: RefreshRequest, request: Request) -> Response:
    """Every refresh rotates. Two refreshes of one token within a few seconds get the same
    successor; a spent token coming back later is treated as theft and ends the session.
    Every refusal is 400 ``invalid_grant`` with a ``reason``."""
    services = services_of(request)
    try:
        result = await services.refresh.rotate(body.refresh_token, body.client_id)
    except RefreshTokenReused as exc:
        log.warning("refresh token reuse for session %s; ending it", exc.sid[:12])
        await end_token_session(
            services,
            exc.user_id,
            exc.sid,
            EventKind.SESSION_REVOKED,
            request=request,
            detail={"reason": "refresh_token_reused"},
        )
        return error(
            400,
            "invalid_grant",
            "refresh token reused; the session was ended, log in again",
            reason="reused",
        )
    except InvalidGrant as exc:
        message = _GRANT_MESSAGES.get(exc.reason, exc.message)
        return error(400, "invalid_grant", message, reason=exc.reason)
    # The family is live, but the session may have been ended (revoked from the sessions list,
    # logout elsewhere) and the user disabled: the session decides. Loading it also slides its
    # last-seen time, at most once per renewal interval like a browser session.
    found = await services.sessions.store.load(
        result.sid, services.clock.now(), services.sessions.renewal_interval
    )
    user = await services.users.store.get_by_id(result.user_id)
    if found is None or user is None or user.disabled:
        await services.refresh.revoke_session(result.sid)
        return error(
            400, "invalid_grant", "the session has ended; log in again", reason="session_ended"
        )
    return await _token_pair(services, result.user_id, result.sid, result.client_id, result)


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    response_class=Response,
    responses=_errors(401),
    summary="End the app's session (its refresh token and access tokens die at once)",
)
async def logout(request: Request) -> Response:
    """Needs the Bearer access token of the session to end; cookies are not accepted here
    (this path is CSRF-exempt, so a cookie logout would be forgeable)."""
    caller = _bearer_caller(request)
    if caller is None or caller.session_id is None:
        return _needs_bearer("logging out")
    await end_token_session(
        services_of(request), caller.user_id, caller.session_id, EventKind.LOGOUT, request=request
    )
    return Response(status_code=204, headers=TOKEN_HEADERS)


@router.get(
    "/.well-known/jwks.json",
    response_model=JwksResponse,
    summary="Public keys that verify access tokens (RFC 7517)",
)
async def jwks(request: Request) -> Response:
    """The live asymmetric signing keys, public members only (HS256 keys never appear)."""
    services = services_of(request)
    return JSONResponse(
        services.keys.ring.public_jwks(),
        headers={"cache-control": f"public, max-age={JWKS_MAX_AGE}"},
    )


# --- RFC 7009 revocation and RFC 7662 introspection -------------------------------------------

TokenField = Annotated[str, Form(min_length=1, max_length=MAX_BODY_BYTES)]
HintField = Annotated[str | None, Form(max_length=64)]


@router.post(
    "/oauth/revoke",
    responses=_errors(400, 401, 413),
    summary="Revoke a refresh or access token of the caller's user (RFC 7009)",
)
async def revoke(
    request: Request, token: TokenField, token_type_hint: HintField = None
) -> Response:
    """A refresh token ends its whole session (RFC 7009 §2.1: tokens of the same grant die
    too); an access token ends every access token of its session issued so far, leaving its
    refresh token usable. Unknown, invalid or foreign tokens: 200, nothing happens."""
    del token_type_hint  # the shapes differ (opaque vs JWT); the hint cannot help
    caller = _bearer_caller(request)
    if caller is None:
        return _needs_bearer("revocation")
    services = services_of(request)
    if _REFRESH_SHAPE.fullmatch(token) is not None:
        await _revoke_refresh(services, caller, token, request)
    else:
        try:
            claims = services.verifier.verify(token)
        except InvalidToken:
            pass  # expired, forged or already revoked: nothing left to revoke
        else:
            if claims.sub == caller.user_id:
                await services.revocations.revoke_session(claims.sid, services.clock.now())
    return Response(status_code=200, headers=TOKEN_HEADERS)


async def _revoke_refresh(
    services: Services, caller: Principal, token: str, request: Request
) -> None:
    """Find the family by spending the token (stores look tokens up only by rotating them)."""
    client_id = caller.client_id or DEFAULT_CLIENT_ID
    try:
        result = await services.refresh.rotate(token, client_id)
    except RefreshTokenReused as exc:
        # The family is revoked by now; end its session as the refresh endpoint would.
        await end_token_session(
            services,
            exc.user_id,
            exc.sid,
            EventKind.SESSION_REVOKED,
            request=request,
            detail={"reason": "refresh_token_reused"},
        )
        return
    except InvalidGrant:
        return  # unknown, expired, revoked, or another client's token: nothing to do
    if result.user_id != caller.user_id:
        # Someone else's token, now spent: retire its family so no live successor lingers.
        await services.refresh.revoke_family(result.family_id)
        return
    await end_token_session(
        services,
        result.user_id,
        result.sid,
        EventKind.SESSION_REVOKED,
        request=request,
        detail={"reason": "token_revoked"},
    )


@router.post(
    "/oauth/introspect",
    response_model=IntrospectionResponse,
    response_model_exclude_none=True,
    responses=_errors(400, 401, 413),
    summary="Is this access token active? (RFC 7662; the caller's own tokens only)",
)
async def introspect(request: Request, token: TokenField) -> Response:
    """``{"active": false}`` for anything invalid, expired, revoked, for another user's token
    and for refresh tokens; the claims of the caller's own live access tokens otherwise."""
    caller = _bearer_caller(request)
    if caller is None:
        return _needs_bearer("introspection")
    services = services_of(request)
    inactive = JSONResponse({"active": False}, headers=TOKEN_HEADERS)
    try:
        claims = services.verifier.verify(token)
    except InvalidToken:
        return inactive
    if claims.sub != caller.user_id:
        return inactive
    body = IntrospectionResponse(
        active=True,
        token_type="access_token",  # noqa: S106 - a token kind, not a secret
        scope=claims.scope,
        client_id=claims.client_id,
        sub=claims.sub,
        sid=claims.sid,
        iss=claims.iss,
        aud=list(claims.aud),
        exp=int(claims.exp),
        iat=int(claims.iat),
        jti=claims.jti,
    )
    return JSONResponse(body.model_dump(exclude_none=True), headers=TOKEN_HEADERS)
