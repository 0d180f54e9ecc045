"""The token API for first-party apps (``/api/v1/auth``), OAuth revocation/introspection, JWKS."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tokens"])
