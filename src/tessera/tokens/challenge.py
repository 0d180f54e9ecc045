"""The ``WWW-Authenticate: Bearer`` challenge of RFC 6750 §3, built safely from an error.

Adapters answer a refused bearer token with 401 and this header. The values are quoted strings
whose allowed characters RFC 6750 restricts (``error_description``: %x20-21 / %x23-5B /
%x5D-7E, so no quote, no backslash, no control character, no non-ASCII); anything else is
replaced rather than escaped, because an escaped quote is still outside that grammar and a raw
CR/LF would split the header.
"""

from __future__ import annotations

import re
from typing import Final

from tessera.errors import InvalidInput, TesseraError

_NOT_ALLOWED: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_ERROR_CODE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


def _value(text: str) -> str:
    return _NOT_ALLOWED.sub("?", text.replace('"', "'").replace("\\", "/"))


def www_authenticate(
    error: TesseraError | None = None,
    *,
    realm: str | None = None,
    scope: str | None = None,
) -> str:
    """The challenge value: ``Bearer realm="...", error="invalid_token", error_description="..."``.

    Without ``error`` (the request carried no token at all) only the realm and scope are given,
    as RFC 6750 §3.1 asks: no error code for a client that did not try.
    """
    params: list[str] = []
    if realm is not None:
        params.append(f'realm="{_value(realm)}"')
    if scope is not None:
        params.append(f'scope="{_value(scope)}"')
    if error is not None:
        if _ERROR_CODE.fullmatch(error.code) is None:
            raise InvalidInput(f"error code {error.code!r} cannot appear in a challenge")
        params.append(f'error="{error.code}"')
        params.append(f'error_description="{_value(error.message)}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"
