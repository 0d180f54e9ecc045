"""Tessera: cookies, server-side sessions and tokens for ASGI apps."""

from tessera.errors import TesseraError

__all__ = ["TesseraError", "__version__"]
__version__ = "0.1.0"
