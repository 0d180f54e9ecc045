"""The account page: who you are, your sessions (browsers and apps), security events, changes.

Every change is a CSRF-checked POST answered by a redirect back to the page (POST/redirect/GET,
so a reload never repeats it). A session restored by a remember-me cookie must confirm the
password (``/reauth``) before the password or the email address can change: a stolen laptop
with a remembered login must not be enough to take over the account.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tessera.asgi.remember import max_age_until, remember_cookie_value
from tessera.errors import Conflict, InvalidInput
from tessera.identity.events import EventKind
from tessera.identity.passwords import MAX_PASSWORD_BYTES, check_new_password
from tessera.identity.remember import SESSION_KEY as REMEMBER_SESSION_KEY
from tessera.identity.remember import RememberMe, RememberToken, TheftDetected, link_session
from tessera.identity.users import MAX_EMAIL_LENGTH, User
from tessera.server.deps import client_ip, services_of, session_of, user_agent
from tessera.server.pages import (
    PAGE_METHODS,
    delete_cookie,
    device_label,
    login_url,
    read_form,
    render,
    request_cookie,
    text_field,
)
from tessera.server.pages_login import check_password
from tessera.server.services import REMEMBER_COOKIE
from tessera.sessions.manager import SessionInfo

router = APIRouter(include_in_schema=False)

EVENTS_SHOWN: Final = 20
NOTICES: Final = {
    "revoked": "The session was ended.",
    "others": "Every other session was ended.",
    "password": "Your password was changed. Every other session was logged out.",
    "email": "Your email address was saved.",
}
PASSWORD_LIMITS: Final = {
    "current_password": MAX_PASSWORD_BYTES,
    "new_password": MAX_PASSWORD_BYTES,
    "new_password_confirm": MAX_PASSWORD_BYTES,
}


async def _logged_in_user(request: Request) -> User | None:
    """The session's user, if it still exists and is enabled."""
    user_id = session_of(request).user_id
    if user_id is None:
        return None
    user = await services_of(request).users.store.get_by_id(user_id)
    return user if user is not None and not user.disabled else None


def _to_login() -> Response:
    return RedirectResponse(login_url("/account"), status_code=303)


def _back(done: str) -> Response:
    return RedirectResponse(f"/account?done={done}", status_code=303)


async def account_page(
    request: Request, user: User, status: int = 200, *, error: str | None = None
) -> Response:
    services = services_of(request)
    session = session_of(request)
    sessions = await services.sessions.list_sessions(user.id, current=session)
    if not any(info.current for info in sessions):
        sessions.append(_unsaved_current(request))
    rows = [
        {"info": info, "device": device_label(info.user_agent)}
        for info in sorted(sessions, key=lambda i: (not i.current, -i.last_seen))
    ]
    events = await services.events.list_for_user(user.id, EVENTS_SHOWN)
    done = request.query_params.get("done", "")
    return render(
        request,
        "account.html",
        status,
        user=user,
        sessions=rows,
        events=events,
        remembered=session.remembered,
        error=error,
        notice=NOTICES.get(done),
    )


def _unsaved_current(request: Request) -> SessionInfo:
    """This browser's session when it is not stored yet (a remember-me login this request).

    The session middleware saves it when the response starts, after the page is rendered; it
    is shown anyway so that "this device" is never missing from the list.
    """
    services = services_of(request)
    session = session_of(request)
    now = services.clock.now()
    return SessionInfo(
        id="",
        user_id=session.user_id,
        kind="browser",
        created_at=now,
        last_seen=now,
        expires_at=now + services.sessions.idle_timeout,
        ip=client_ip(request),
        user_agent=user_agent(request),
        remembered=session.remembered,
        current=True,
    )


@router.api_route("/account", methods=PAGE_METHODS)
async def account(request: Request) -> Response:
    user = await _logged_in_user(request)
    if user is None:
        return _to_login()
    return await account_page(request, user)


@router.post("/account/sessions/{public_id}/revoke")
async def revoke_session(request: Request, public_id: str) -> Response:
    """End one of the caller's sessions (and that session's tokens); 404 for anyone else's."""
    services = services_of(request)
    user = await _logged_in_user(request)
    if user is None:
        return _to_login()
    current = session_of(request).id
    revoked = await services.revoker.revoke_session(
        user.id, public_id, ip=client_ip(request), user_agent=user_agent(request)
    )
    if not revoked:
        return await account_page(request, user, 404, error="No such session of yours.")
    if public_id == current:
        return RedirectResponse("/login", status_code=303)
    return _back("revoked")


@router.post("/account/sessions/revoke-others")
async def revoke_others(request: Request) -> Response:
    """ "Log out everywhere else": every other session, app token and remember-me token.

    This browser stays logged in, and stays remembered if it was, under a new token that ends
    when the old one would have: keeping the old token would keep a thief whose copy of the
    cookie was used since (same selector, current validator). A cookie whose validator is stale
    gets no new token; it is no proof of theft here (a browser whose tab lost the response that
    rotated it holds one too), and any copy of it dies with the other tokens either way.
    """
    services = services_of(request)
    session = session_of(request)
    user = await _logged_in_user(request)
    if user is None or session.id is None:
        return _to_login()
    name = services.cookie_name(REMEMBER_COOKIE)
    cookie = request_cookie(request, name)
    parsed = RememberMe.parse(cookie) if cookie is not None else None
    token: RememberToken | None = None
    # Remembered: its session was logged in with (or restored by) the cookie it still sends.
    if cookie is not None and parsed is not None and session.get(REMEMBER_SESSION_KEY) == parsed[0]:
        with suppress(TheftDetected):
            token = await services.remember.check(cookie)
    if token is not None and token.user_id != user.id:
        token = None
    await services.revoker.revoke_user_everywhere(user.id, keep_session=session.id)
    await services.events.record(
        EventKind.SESSION_REVOKED,
        user_id=user.id,
        ip=client_ip(request),
        user_agent=user_agent(request),
        detail={"session": "all_others", "remember": "reissued" if token else "none"},
    )
    response = _back("others")
    if token is None:
        _delete_remember_cookie(request, response)  # its token, if any, died with the others
        return response
    value = await services.remember.issue(user.id, expires_at=token.expires_at)
    link_session(session, value)
    max_age = max_age_until(token.expires_at, services.clock.now())
    response.headers.append(
        "set-cookie", remember_cookie_value(services.cookie_policy, name, value, max_age)
    )
    return response


def _delete_remember_cookie(request: Request, response: Response) -> None:
    """The browser's remember-me token was revoked: drop the dead cookie."""
    delete_cookie(request, response, REMEMBER_COOKIE)


def _reauth_first() -> Response:
    return RedirectResponse("/reauth?next=/account", status_code=303)


@router.post("/account/password")
async def change_password(request: Request) -> Response:
    """Change the password; every other session and token dies, this browser stays in."""
    services = services_of(request)
    session = session_of(request)
    user = await _logged_in_user(request)
    if user is None:
        return _to_login()
    if session.remembered:
        return _reauth_first()
    try:
        form = await read_form(request, PASSWORD_LIMITS)
        new = text_field(form, "new_password")
        if new != text_field(form, "new_password_confirm"):
            raise InvalidInput("the two new passwords differ")
        check_new_password(new)
    except InvalidInput as exc:
        return await account_page(
            request, user, exc.http_status, error=f"Password not changed: {exc}."
        )
    checked, retry_after = await check_password(
        request, user.username, text_field(form, "current_password")
    )
    if retry_after is not None:
        response = await account_page(
            request, user, 429, error=f"Too many attempts. Try again in {retry_after} seconds."
        )
        response.headers["retry-after"] = str(retry_after)
        return response
    if checked is None or checked.id != user.id:
        return await account_page(
            request, user, 401, error="Password not changed: the current password is wrong."
        )
    # The server's callback revokes everything of the user, this session's record included;
    # destroy-then-login creates a fresh session under a new ID instead of rotating a deleted
    # one (a rotation of a vanished record would log this browser out).
    await services.users.change_password(user.id, new)
    session.destroy()
    services.csrf.reset(session)  # a login: the new session's secret is stored with it
    session.login(user.id)
    response = _back("password")
    _delete_remember_cookie(request, response)
    return response


@router.post("/account/email")
async def change_email(request: Request) -> Response:
    """Set or clear the email address; a remembered session confirms the password first."""
    services = services_of(request)
    user = await _logged_in_user(request)
    if user is None:
        return _to_login()
    if session_of(request).remembered:
        return _reauth_first()
    try:
        form = await read_form(request, {"email": MAX_EMAIL_LENGTH})
        email = text_field(form, "email").strip()
        await services.users.set_email(user.id, email or None)
    except (InvalidInput, Conflict) as exc:
        return await account_page(
            request, user, exc.http_status, error=f"Email not changed: {exc}."
        )
    return _back("email")
