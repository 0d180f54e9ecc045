"""The JSON API for browsers and scripts (cookie or Bearer authenticated): ``/api/v1``.

Cookie callers are CSRF-checked on PUT and DELETE (``X-CSRF-Token`` from ``GET /api/v1/csrf``);
Bearer-only callers are exempt, since no page of another site can attach a Bearer token. Every
response model is a pydantic class so ``/openapi.json`` documents it; errors are
``{"error": code, "error_description": ...}`` from the app's handlers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tessera.asgi.auth import AuthError, Principal, require_user
from tessera.consent import Category, ConsentState
from tessera.errors import NotFound
from tessera.identity.users import User
from tessera.server.deps import client_ip, services_of, user_agent
from tessera.server.pages import csrf_binding, device_label, send_presession
from tessera.server.pages_consent import consent_cookies, current_consent

router = APIRouter(prefix="/api/v1", tags=["account"])

Caller = Annotated[Principal, Depends(require_user)]
"""The authenticated caller (cookie session or Bearer token); 401 otherwise."""


class ErrorOut(BaseModel):
    error: str
    error_description: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not logged in, or the Bearer token was refused."},
    403: {"model": ErrorOut, "description": "CSRF check failed (cookie callers)."},
}


class MeOut(BaseModel):
    """The caller."""

    sub: str = Field(description="The user's id.")
    username: str
    email: str | None
    method: Literal["session", "bearer"] = Field(description="How the caller authenticated.")
    remembered: bool = Field(description="A session restored by a remember-me cookie.")
    scopes: list[str] = Field(description="Scopes of a Bearer token; empty for a cookie session.")


class SessionOut(BaseModel):
    """One of the caller's sessions: a browser (cookie) or an app (tokens)."""

    id: str = Field(description="Public handle: revokes the session, cannot be used as a cookie.")
    kind: str = Field(description="browser or token")
    device: str = Field(description="A short label derived from the User-Agent.")
    user_agent: str | None
    ip: str | None
    created_at: float
    last_seen: float
    expires_at: float
    remembered: bool
    current: bool = Field(description="The session this request belongs to.")


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class ConsentCookieOut(BaseModel):
    name: str
    purpose: str


class ConsentCategoryOut(BaseModel):
    name: Category
    required: bool
    granted: bool
    cookies: list[ConsentCookieOut]


class ConsentOut(BaseModel):
    """The visitor's cookie consent."""

    version: int
    decided: bool
    granted: list[Category]
    categories: list[ConsentCategoryOut]


class ConsentIn(BaseModel):
    """A new choice: the categories granted (essential is always granted)."""

    granted: list[Category] = Field(max_length=2 * len(Category))


class CsrfOut(BaseModel):
    csrf_token: str = Field(description="Send as X-CSRF-Token on PUT/POST/DELETE with cookies.")


async def _user(request: Request, principal: Principal) -> User:
    user = await services_of(request).users.store.get_by_id(principal.user_id)
    if user is None or user.disabled:
        raise AuthError(401, "unauthorized", "the account is gone", 'Bearer realm="tessera"')
    return user


@router.get("/me", response_model=MeOut, responses=ERRORS)
async def me(request: Request, principal: Caller) -> MeOut:
    """Who is calling, by cookie session or Bearer token."""
    user = await _user(request, principal)
    return MeOut(
        sub=user.id,
        username=user.username,
        email=user.email,
        method=principal.method,
        remembered=principal.remembered,
        scopes=sorted(principal.scopes),
    )


@router.get("/sessions", response_model=SessionsOut, responses=ERRORS)
async def sessions(request: Request, principal: Caller) -> SessionsOut:
    """The caller's live sessions, browsers and apps, oldest first."""
    infos = await services_of(request).sessions.list_sessions(
        principal.user_id, current=principal.session_id
    )
    return SessionsOut(
        sessions=[
            SessionOut(
                id=info.id,
                kind=info.kind,
                device=device_label(info.user_agent),
                user_agent=info.user_agent,
                ip=info.ip,
                created_at=info.created_at,
                last_seen=info.last_seen,
                expires_at=info.expires_at,
                remembered=info.remembered,
                current=info.current,
            )
            for info in infos
        ]
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={**ERRORS, 404: {"model": ErrorOut, "description": "Not one of your sessions."}},
)
async def revoke_session(request: Request, session_id: str, principal: Caller) -> Response:
    """End one of the caller's sessions and its tokens at once."""
    revoked = await services_of(request).revoker.revoke_session(
        principal.user_id, session_id, ip=client_ip(request), user_agent=user_agent(request)
    )
    if not revoked:
        raise NotFound("no such session of yours", code="not_found")
    return Response(status_code=204)


def _consent_out(request: Request, state: ConsentState) -> ConsentOut:
    services = services_of(request)
    return ConsentOut(
        version=state.version,
        decided=state.decided,
        granted=sorted(state.granted),
        categories=[
            ConsentCategoryOut(
                name=category,
                required=category is Category.ESSENTIAL,
                granted=state.allows(category),
                cookies=[
                    ConsentCookieOut(name=services.cookie_name(d.name), purpose=d.purpose)
                    for d in services.consent_registry.in_category(category)
                ],
            )
            for category in Category
        ],
    )


@router.get("/consent", response_model=ConsentOut)
async def get_consent(request: Request) -> ConsentOut:
    """The visitor's cookie consent and every declared cookie by category."""
    return _consent_out(request, current_consent(request))


@router.put(
    "/consent",
    response_model=ConsentOut,
    responses={400: {"model": ErrorOut, "description": "Unknown category."}, **ERRORS},
)
async def put_consent(request: Request, body: ConsentIn) -> JSONResponse:
    """Save a choice: sets the consent cookie and deletes cookies of withdrawn categories."""
    state, cookies = consent_cookies(request, body.granted)
    response = JSONResponse(
        _consent_out(request, state).model_dump(mode="json"),
        headers={"cache-control": "no-store"},
    )
    for cookie in cookies:
        response.headers.append("set-cookie", cookie.serialize())
    return response


@router.get("/csrf", response_model=CsrfOut)
async def csrf(request: Request) -> JSONResponse:
    """A CSRF token for this browser: bound to its session, or to a pre-session cookie (set
    with the response) while it has no stored session."""
    binding = csrf_binding(request)
    token = services_of(request).csrf.token(binding)
    response = JSONResponse({"csrf_token": token}, headers={"cache-control": "no-store"})
    send_presession(request, binding, response)
    return response
