"""The JSON API for browsers and scripts (cookie or Bearer authenticated): ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["account"])
