"""JSON over HTTP for the forge clients: the stdlib's urllib, a timeout, error kinds.

`Transport` is the one place a forge client talks to the network. It sends
JSON, reads JSON, turns every failure into a `ForgeError` that says whether
it is worth retrying, and keeps the token out of every message, repr and log
line: the token lives in a `Secret` and is scrubbed from any text the forge
echoes back. Redirects are not followed, so the Authorization header never
travels to another address. Used by forgejo.py and github.py only.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from controller.forge.base import ForgeError

log = logging.getLogger("controller.forge")

MAX_BODY = 16 * 1024 * 1024   # far above any PR list page; a bound on a broken server
MAX_PAGES = 20                # 20 pages of 50 (Forgejo) or 100 (GitHub) is plenty for one head
MESSAGE_CAP = 300             # the forge's own words, shortened, in our messages


class Secret:
    """A token that never shows itself: repr and str say "***"."""
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself, for the Authorization header only."""
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with every occurrence of the token replaced by "***"."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names) and the decoded JSON body."""
    status: int
    headers: Mapping[str, str]
    data: Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None  # urllib then raises HTTPError with the 3xx: we decide, not urllib


class Transport:
    """Requests against one API base URL with fixed headers and a timeout."""

    def __init__(self, api_url: str, headers: Mapping[str, str], token: Secret, *,
                 kind: str, auth_scheme: str, timeout: float = 20.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = dict(headers)
        self._token = token
        self._auth_scheme = auth_scheme
        self._kind = kind
        self._timeout = timeout
        self._clock = clock
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return f"Transport({self._kind}, {self.api_url!r})"

    def request(self, method: str, path: str, *, query: Mapping[str, str | int] | None = None,
                body: Mapping[str, Any] | None = None,
                accept: tuple[int, ...] = ()) -> Answer:
        """Send one request; return a 2xx answer (or one whose status is in `accept`).

        Any other answer, and any failure to get one, raises ForgeError.
        """
        url = self.api_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        what = f"{self._kind} {method} {path}"
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        req.add_unredirected_header("Authorization", self._auth_value())
        started = time.monotonic()
        status, answer_headers, raw = self._send(req, what)
        log.debug("%s -> %d (%.3fs)", what, status, time.monotonic() - started)
        parsed = _decode(raw)
        if 200 <= status < 300 or status in accept:
            if 200 <= status < 300 and parsed is _NOT_JSON:
                raise ForgeError(f"{what}: HTTP {status} but the answer is not JSON "
                                 "(does forge.api_url point at the API?)", transient=False,
                                 status=status)
            return Answer(status, answer_headers, None if parsed is _NOT_JSON else parsed)
        raise self._error(what, status, answer_headers, parsed)

    def error(self, method: str, path: str, answer: Answer) -> ForgeError:
        """The ForgeError for an answer that `request` accepted but the caller refuses."""
        return self._error(f"{self._kind} {method} {path}", answer.status, answer.headers,
                           answer.data)

    def pages(self, path: str, query: Mapping[str, str | int], *, size_param: str,
              size: int) -> Iterator[list[Any]]:
        """Each page of a list, from page 1, until a short page, an empty one or MAX_PAGES."""
        for page in range(1, MAX_PAGES + 1):
            answer = self.request("GET", path, query={**query, "page": page, size_param: size})
            items = answer.data
            if not isinstance(items, list):
                raise ForgeError(f"{self._kind} GET {path}: expected a list", transient=False)
            yield items
            link = answer.headers.get("link")
            if len(items) < size or (link is not None and 'rel="next"' not in link):
                return
        log.warning("%s GET %s: stopped after %d pages", self._kind, path, MAX_PAGES)

    def _auth_value(self) -> str:
        return f"{self._auth_scheme} {self._token.reveal()}"

    def _send(self, req: urllib.request.Request, what: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                return resp.status, _lower(resp.headers), resp.read(MAX_BODY)
        except urllib.error.HTTPError as err:
            try:
                raw = err.read(MAX_BODY)
            except (OSError, http.client.HTTPException):
                raw = b""
            return err.code, _lower(err.headers), raw
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise ForgeError(f"{what}: TLS certificate not trusted: {reason}",
                                 transient=False) from None
            raise ForgeError(f"{what}: cannot reach the forge: {self._scrub(reason)}",
                             transient=True) from None
        except (TimeoutError, socket.timeout):
            raise ForgeError(f"{what}: no answer within {self._timeout:g}s",
                             transient=True) from None
        except (http.client.HTTPException, OSError) as err:
            raise ForgeError(f"{what}: connection failed: {type(err).__name__}: "
                             f"{self._scrub(err)}", transient=True) from None

    def _error(self, what: str, status: int, headers: Mapping[str, str], data: Any) -> ForgeError:
        words = self._scrub(_forge_words(data))
        message = f"{what}: HTTP {status}" + (f": {words}" if words else "")
        retry_after = _retry_after(headers, self._clock())
        if 300 <= status < 400:
            where = self._scrub(headers.get("location", "?"))
            return ForgeError(f"{message}: redirected to {where}; set forge.api_url to the "
                              "address the forge names", transient=False, status=status)
        limited = status == 429 or (status == 403 and (
            retry_after is not None or headers.get("x-ratelimit-remaining") == "0"))
        if limited:
            return ForgeError(f"{message} (rate limited)", transient=True, status=status,
                              retry_after=retry_after)
        transient = status >= 500 or status == 408
        return ForgeError(message, transient=transient, status=status,
                          retry_after=retry_after if transient else None)

    def _scrub(self, value: object) -> str:
        return self._token.scrub(str(value))


_NOT_JSON = object()


def _decode(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _NOT_JSON


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()} if headers else {}


def _forge_words(data: Any) -> str:
    """The human part of an error body: `message`, plus GitHub's `errors[].message`."""
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or "")]
    for item in data.get("errors") or []:
        if isinstance(item, dict) and item.get("message"):
            parts.append(str(item["message"]))
        elif isinstance(item, str):
            parts.append(item)
    text = "; ".join(p for p in parts if p)
    return text if len(text) <= MESSAGE_CAP else text[:MESSAGE_CAP] + "..."


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait, from Retry-After (seconds or a date) or X-RateLimit-Reset."""
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = headers.get("x-ratelimit-reset", "").strip()
    if reset.isdigit() and headers.get("x-ratelimit-remaining") == "0":
        return max(0.0, float(reset) - now)
    return None
