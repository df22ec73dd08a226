"""Small pure helpers on text, shared across layers: no IO, no state.

Part of the vocabulary: imports nothing of ours, and any module may import it.
"""
from __future__ import annotations

import re


def first_line(text: str | bytes, limit: int | None = None, *, sep: str | None = None) -> str:
    """The first non-blank line of `text`, stripped, cut to `limit` characters.

    Bytes (a command's stdout or stderr) are decoded as UTF-8, bad bytes
    replaced. Lines end at every boundary str.splitlines() knows, or only at
    `sep` when it is given.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = text.splitlines() if sep is None else text.split(sep)
    line = next((ln.strip() for ln in lines if ln.strip()), "")
    return line if limit is None else line[:limit]


# ---- URLs: credentials never shown ------------------------------------------------
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)
_SECRET_QUERY = re.compile(r"(?i)([?&](?:access_)?token=)[^&#\s'\"]*")
# A URL inside a longer text (git's own messages echo the URL it was given):
# scheme://USERINFO@, the userinfo up to the last @ before the host.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^\s/?#'\"]*)@")


def redact(url: str) -> str:
    """`url` with any userinfo password (and the whole userinfo of http URLs) hidden.

    Safe on any string: what does not look like a URL comes back unchanged,
    apart from `token=` query values, which are always hidden.
    """
    text = _SECRET_QUERY.sub(r"\1***", url)
    match = _SCHEME.match(text)
    if match:
        scheme, rest = match["scheme"], match["rest"]
        slash = rest.find("/")
        authority, tail = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        if "@" not in authority:
            return text
        userinfo, host = authority.rsplit("@", 1)
        return f"{scheme}://{_shown(scheme, userinfo)}@{host}{tail}"
    head, at, host_and_path = text.rpartition("@")
    if at and "/" not in head and (":" in head or "@" in head):
        return f"***@{host_and_path}"
    return text


def redact_text(text: str) -> str:
    """`text` (a message, git's stderr) with the userinfo of every URL in it
    hidden as redact() hides it, and `token=` query values."""
    text = _SECRET_QUERY.sub(r"\1***", text)
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}://{_shown(m['scheme'], m['userinfo'])}@",
                             text)


def has_credentials(url: str) -> bool:
    """Whether a clone URL carries credentials: any userinfo of an http(s) (or
    other non-ssh) URL, `https://token@host/...` included, or a password in an
    ssh or scp-like one. An ssh user name (`git@host:x`, `ssh://git@host/x`)
    is no credential."""
    match = _SCHEME.match(url)
    if match:
        authority = match["rest"].split("/", 1)[0]
        if "@" not in authority:
            return False
        userinfo = authority.rsplit("@", 1)[0]
        return match["scheme"].lower() != "ssh" or ":" in userinfo or "@" in userinfo
    head, at, _ = url.split("/", 1)[0].rpartition("@")
    return bool(at) and (":" in head or "@" in head)


def _shown(scheme: str, userinfo: str) -> str:
    # An ssh user name (git@) is no secret; anything else in userinfo may be.
    user, colon, _ = userinfo.partition(":")
    if scheme.lower() == "ssh" and "@" not in userinfo:
        return f"{user}:***" if colon else user
    return "***"
