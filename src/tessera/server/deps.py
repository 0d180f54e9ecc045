"""Request-time helpers shared by the server's pages and API."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from tessera.asgi.auth import Principal, current_principal
from tessera.consent import ConsentState
from tessera.server.services import Services
from tessera.sessions import Session


def services_of(request: HTTPConnection) -> Services:
    services: Services = request.app.state.services
    return services


def session_of(request: HTTPConnection) -> Session:
    session = request.scope.get("session")
    if not isinstance(session, Session):
        raise RuntimeError("SessionMiddleware is not installed")
    return session


def consent_of(request: HTTPConnection) -> ConsentState | None:
    consent = request.scope.get("tessera.consent")
    return consent if isinstance(consent, ConsentState) else None


def client_ip(request: HTTPConnection) -> str | None:
    return request.client.host if request.client else None


def user_agent(request: HTTPConnection) -> str | None:
    agent = request.headers.get("user-agent")
    return agent[:256] if agent else None


__all__ = [
    "Principal",
    "client_ip",
    "consent_of",
    "current_principal",
    "services_of",
    "session_of",
    "user_agent",
]
