"""``GET /healthz``: 200 when every store answers, 503 naming the part that does not."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from tessera.server.services import Services


async def healthz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    parts = await services.check_health()
    failing = {name: reason for name, reason in parts.items() if reason != "ok"}
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
    return JSONResponse({"status": "ok"})
