"""Small request helpers shared by the routes: JSON errors, bounded body reads, log-safe text.

Called by app.py and webhooks.py inside a request. fail() raises the HTTPError
that the app's error handler turns into `{"error": "..."}`; read_body() answers
413 from the Content-Length alone, before reading a byte of the body.
"""
from __future__ import annotations

from typing import NoReturn

import bottle

REQUEST_ID = "fleet.request_id"      # environ keys set by the app's before_request hook
STARTED = "fleet.started"


def fail(status: int, message: str) -> NoReturn:
    """Stop the request with `status` and `{"error": message}`."""
    raise bottle.HTTPError(status, message)


def request_id() -> str:
    return str(bottle.request.environ.get(REQUEST_ID, "-"))


def header(name: str) -> str | None:
    """A request header as WSGI gives it (latin-1 text), or None.

    Not bottle's get_header(), which decodes the bytes again as UTF-8 and raises
    on a header that is not: any header is input, and input is never a 500.
    """
    key = "HTTP_" + name.upper().replace("-", "_")
    value = bottle.request.environ.get(key)
    return value if isinstance(value, str) else None


def read_body(limit: int) -> bytes:
    """The raw request body, refused with 413 when Content-Length says it is over `limit`."""
    declared = bottle.request.environ.get("CONTENT_LENGTH") or "0"
    try:
        length = int(declared)
    except ValueError:
        fail(400, "Content-Length: not a number")
    if length < 0:
        fail(400, "Content-Length: negative")
    if length > limit:
        fail(413, f"body of {length} bytes is over the limit of {limit} bytes")
    if length == 0:
        return b""
    data: bytes = bottle.request.environ["wsgi.input"].read(length)
    if len(data) != length:
        fail(400, f"body: {len(data)} bytes received of the {length} announced")
    return data


def loggable(text: str, limit: int = 200) -> str:
    """`text` with control characters escaped and cut to `limit`, for one log line."""
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])
    return safe + ("..." if len(text) > limit else "")
