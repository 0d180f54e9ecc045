"""Browser login, logout and re-authentication pages.

``POST /login`` checks the throttle before any password work, answers unknown users and wrong
passwords with the same page (the user service spends one argon2 verification either way),
rotates the session ID on success and redirects only to paths on this site. Every outcome is
a security event. ``/reauth`` asks for the password again in a session that a remember-me
cookie restored, before sensitive changes.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tessera.asgi.remember import remember_cookie_value
from tessera.errors import InvalidInput
from tessera.identity.events import EventKind
from tessera.identity.passwords import MAX_PASSWORD_BYTES
from tessera.identity.remember import SESSION_KEY as REMEMBER_SESSION_KEY
from tessera.identity.remember import link_session
from tessera.identity.users import User
from tessera.server.deps import client_ip, services_of, session_of, user_agent
from tessera.server.pages import (
    PAGE_METHODS,
    delete_cookie,
    forget_presession,
    login_url,
    read_form,
    render,
    request_cookie,
    safe_next,
    text_field,
)
from tessera.server.services import REMEMBER_COOKIE, Services

router = APIRouter(include_in_schema=False)

REMEMBER_MAX_AGE: Final = 30 * 86400
MAX_USERNAME_CHARS: Final = 256
"""Longer than any valid username (64) plus room for NFKC; anything longer is noise."""
BAD_CREDENTIALS: Final = "Wrong username or password."
LIMITS: Final = {
    "username": MAX_USERNAME_CHARS,
    "password": MAX_PASSWORD_BYTES,
    "next": 2048,
    "remember": 16,
}


def _login_page(
    request: Request,
    status: int = 200,
    *,
    error: str | None = None,
    notice: str | None = None,
    username: str = "",
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "login.html",
        status,
        headers=headers,
        error=error,
        notice=notice,
        username=username,
        next_path=next_path or "",
    )


@router.api_route("/login", methods=PAGE_METHODS)
async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if session_of(request).user_id is not None:
        return RedirectResponse(next_path or "/account", status_code=303)
    notice = "You have logged out." if request.query_params.get("logged_out") else None
    return _login_page(request, next_path=next_path, notice=notice)


async def _account_id(services: Services, username: str) -> str | None:
    """The user id a login attempt names, for the owner's event list (None if unknown)."""
    user = await services.users.store.get_by_username(username)
    return user.id if user is not None else None


async def check_password(
    request: Request, username: str, password: str
) -> tuple[User | None, int | None]:
    """Throttle, then verify: ``(user, None)``, ``(None, None)`` or ``(None, retry_after)``.

    Records the throttle outcome and the security events of failures; the caller records
    the success, since it knows what the login was for.
    """
    services = services_of(request)
    ip = client_ip(request)
    agent = user_agent(request)
    decision = await services.throttle.check(username, ip)
    if not decision.allowed:
        await services.events.record(
            EventKind.THROTTLED,
            user_id=await _account_id(services, username),
            ip=ip,
            user_agent=agent,
            detail={"retry_after": decision.retry_after},
        )
        return None, decision.retry_after
    user = await services.users.authenticate(username, password)
    if user is None:
        await services.throttle.record_failure(username, ip)
        # Looked up after the verification, for known and unknown names alike: the answer
        # time stays the same, and the owner of a targeted account sees the attempts.
        await services.events.record(
            EventKind.LOGIN_FAILED,
            user_id=await _account_id(services, username),
            ip=ip,
            user_agent=agent,
            detail={"method": "password"},
        )
        return None, None
    await services.throttle.record_success(username, ip)
    return user, None


def _throttled_headers(retry_after: int) -> dict[str, str]:
    return {"retry-after": str(retry_after)}


def _throttled_message(retry_after: int) -> str:
    return f"Too many failed attempts. Try again in {retry_after} seconds."


@router.post("/login")
async def login_submit(request: Request) -> Response:
    services = services_of(request)
    session = session_of(request)
    try:
        form = await read_form(request, LIMITS)
    except InvalidInput as exc:
        return _login_page(request, exc.http_status, error=f"The form was not accepted: {exc}")
    username = text_field(form, "username").strip()
    password = text_field(form, "password")
    next_path = safe_next(text_field(form, "next"))
    if not username or not password:
        return _login_page(
            request,
            400,
            error="Enter your username and password.",
            username=username,
            next_path=next_path,
        )
    user, retry_after = await check_password(request, username, password)
    if retry_after is not None:
        return _login_page(
            request,
            429,
            error=_throttled_message(retry_after),
            username=username,
            next_path=next_path,
            headers=_throttled_headers(retry_after),
        )
    if user is None:
        return _login_page(
            request, 401, error=BAD_CREDENTIALS, username=username, next_path=next_path
        )
    remember = text_field(form, "remember") in ("on", "1", "true", "yes")
    services.csrf.reset(session)  # tokens issued before the login die with the old ID
    session.pop(REMEMBER_SESSION_KEY, None)  # a remember-me login of whoever was here before
    session.login(user.id)
    await services.events.record(
        EventKind.LOGIN_SUCCEEDED,
        user_id=user.id,
        ip=client_ip(request),
        user_agent=user_agent(request),
        detail={"method": "password", "remember": remember},
    )
    response = RedirectResponse(next_path or "/account", status_code=303)
    response.headers["cache-control"] = "no-store"
    forget_presession(request, response)
    if remember:
        name = services.cookie_name(REMEMBER_COOKIE)
        old = request_cookie(request, name)
        if old is not None:
            await services.remember.forget(old)
        value = await services.remember.issue(user.id)
        link_session(session, value)
        response.headers.append(
            "set-cookie",
            remember_cookie_value(services.cookie_policy, name, value, REMEMBER_MAX_AGE),
        )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End this browser's session and forget its remember-me token; CSRF-checked."""
    services = services_of(request)
    session = session_of(request)
    if session.user_id is not None:
        await services.events.record(
            EventKind.LOGOUT,
            user_id=session.user_id,
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
    session.destroy()
    response = RedirectResponse("/login?logged_out=1", status_code=303)
    response.headers["cache-control"] = "no-store"
    forget_presession(request, response)
    remembered = delete_cookie(request, response, REMEMBER_COOKIE)
    if remembered is not None:
        await services.remember.forget(remembered)
    return response


def _reauth_page(
    request: Request,
    status: int = 200,
    *,
    error: str | None = None,
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request, "reauth.html", status, headers=headers, error=error, next_path=next_path or ""
    )


@router.api_route("/reauth", methods=PAGE_METHODS)
async def reauth_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next")) or "/account"
    if session_of(request).user_id is None:
        return RedirectResponse(login_url(next_path), status_code=303)
    return _reauth_page(request, next_path=next_path)


@router.post("/reauth")
async def reauth_submit(request: Request) -> Response:
    """Confirm the password of the logged-in user; the session stops being "remembered"."""
    services = services_of(request)
    session = session_of(request)
    try:
        form = await read_form(request, LIMITS)
    except InvalidInput as exc:
        return _reauth_page(request, exc.http_status, error=f"The form was not accepted: {exc}")
    next_path = safe_next(text_field(form, "next")) or "/account"
    if session.user_id is None:
        return RedirectResponse(login_url(next_path), status_code=303)
    account = await services.users.store.get_by_id(session.user_id)
    password = text_field(form, "password")
    if account is None or not password:
        return _reauth_page(request, 400, error="Enter your password.", next_path=next_path)
    user, retry_after = await check_password(request, account.username, password)
    if retry_after is not None:
        return _reauth_page(
            request,
            429,
            error=_throttled_message(retry_after),
            next_path=next_path,
            headers=_throttled_headers(retry_after),
        )
    if user is None or user.id != session.user_id:
        return _reauth_page(request, 401, error="Wrong password.", next_path=next_path)
    services.csrf.reset(session)
    session.login(user.id)  # a password login now: no longer "remembered"
    await services.events.record(
        EventKind.LOGIN_SUCCEEDED,
        user_id=user.id,
        ip=client_ip(request),
        user_agent=user_agent(request),
        detail={"method": "reauth"},
    )
    return RedirectResponse(next_path, status_code=303)
