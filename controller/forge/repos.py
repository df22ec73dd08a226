"""Which forge repository a task's `repo` names: pure parsing of clone URLs.

A task may name its repository in any clone form people paste:
`https://host[:port]/OWNER/REPO(.git)`, `ssh://git@host[:port]/OWNER/REPO.git`
or scp-like `git@host:OWNER/REPO.git`. `parse_repo_url` turns each into a
RepoRef; `on_forge` says whether it lives on the configured forge;
`matches_full_name` compares it with a webhook's `repository.full_name`.
Credentials in a URL are refused (git authenticates with SSH keys or a
credential helper), and `redact` (controller.text, re-exported here) hides
them from any message. No IO.
"""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from controller.text import redact as redact   # re-exported: the forge package names it

_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22}
# Owner and repository names as Forgejo, Gitea and GitHub allow them.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_IPV6 = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
# scp-like syntax: [user@]host:path, where the host has no slash or colon.
_SCP = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[^@/:\s]+):(?P<path>[^\s]+)$")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)


class RepoURLError(ValueError):
    """A repository URL that cannot be used; the message says why (and is redacted)."""


@dataclass(frozen=True)
class RepoRef:
    """A repository on a forge: host (lower case), port, owner and name.

    `port` is the effective port of `scheme` (443 for https without one), so
    two spellings of the same address compare equal. Owner and name keep
    the case they were written in; compare them with `matches_full_name`.
    """
    host: str
    port: int
    owner: str
    name: str
    scheme: str = "https"

    @property
    def full_name(self) -> str:
        """`OWNER/REPO`, as the forge's API paths and webhooks spell it."""
        return f"{self.owner}/{self.name}"


def parse_repo_url(url: str, base_path: str = "") -> RepoRef:
    """Parse a clone URL into a RepoRef; raise RepoURLError when it is not one.

    `base_path` is a forge's sub-path (`https://host/git/OWNER/REPO` has
    base path `/git`), stripped before OWNER/REPO is read.
    """
    if not isinstance(url, str) or not url or url != url.strip() or any(
            ord(c) < 0x20 or c == "\x7f" for c in url):
        raise RepoURLError(f"not a repository URL: {redact(str(url))!r}")
    match = _SCHEME.match(url)
    if match:
        return _parse_scheme_url(url, match["scheme"].lower(), match["rest"], base_path)
    userinfo, at, _ = url.split("/", 1)[0].rpartition("@")
    if at and (":" in userinfo or "@" in userinfo):
        raise _credentials_error(url)
    scp = _SCP.match(url)
    if scp and not url.startswith(("/", ".", "~")):
        host = _check_host(scp["host"], url)
        owner, name = _owner_and_name(scp["path"].lstrip("/"), url, base_path)
        return RepoRef(host, _DEFAULT_PORTS["ssh"], owner, name, "ssh")
    raise RepoURLError(f"not a repository URL (a local path?): {redact(url)!r}")


def on_forge(repo_url: str, forge_url: str) -> RepoRef | None:
    """The RepoRef of `repo_url` when it is a repository on the forge at `forge_url`.

    The host is compared case-insensitively. The port is compared for http(s)
    clone URLs (a forge serving git and its web UI from one address); an SSH
    clone URL runs on its own port, so only its host counts. Local paths and
    other hosts give None; credentials in `repo_url` raise RepoURLError even
    then, because they must never be used or shown.
    """
    forge = urllib.parse.urlsplit(forge_url)
    forge_scheme = (forge.scheme or "").lower()
    if forge_scheme not in ("http", "https") or not forge.hostname:
        raise RepoURLError(f"forge url must be http(s)://HOST[:PORT]: {redact(forge_url)!r}")
    forge_host = forge.hostname.lower()
    forge_port = forge.port or _DEFAULT_PORTS[forge_scheme]
    try:
        ref = parse_repo_url(repo_url, base_path=forge.path)
    except RepoURLError as err:
        if "credentials" in str(err) or _names_host(repo_url, forge_host):
            raise
        return None
    if ref.host != forge_host:
        return None
    if ref.scheme in ("http", "https") and ref.port != forge_port:
        return None
    return ref


def matches_full_name(ref: RepoRef, full_name: str) -> bool:
    """Whether a webhook's `repository.full_name` ("OWNER/REPO") names `ref`."""
    owner, slash, name = full_name.partition("/")
    if not slash or "/" in name:
        return False
    return owner.lower() == ref.owner.lower() and name.lower() == ref.name.lower()


def _parse_scheme_url(url: str, scheme: str, rest: str, base_path: str) -> RepoRef:
    if scheme not in _DEFAULT_PORTS:
        raise RepoURLError(f"unsupported scheme {scheme!r} in {redact(url)!r}: "
                           "use https://, http:// or ssh://")
    if "?" in url or "#" in url:
        raise RepoURLError(f"a repository URL has no query or fragment: {redact(url)!r}")
    authority, _, path = _split_authority(rest)
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
        if scheme != "ssh" or ":" in userinfo or "@" in userinfo:
            raise _credentials_error(url)
        authority = authority.rsplit("@", 1)[1]
    host, port = _host_and_port(authority, scheme, url)
    owner, name = _owner_and_name(urllib.parse.unquote(path), url, base_path)
    return RepoRef(host, port, owner, name, scheme)


def _split_authority(rest: str) -> tuple[str, str, str]:
    slash = rest.find("/")
    if slash < 0:
        return rest, "", ""
    return rest[:slash], "/", rest[slash + 1:]


def _host_and_port(authority: str, scheme: str, url: str) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, port_text = authority.partition("]")
        host += "]"
        port_text = port_text[1:] if port_text.startswith(":") else port_text
    else:
        host, _, port_text = authority.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise RepoURLError(f"bad port {port_text!r} in {redact(url)!r}")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme]
    return _check_host(host, url), port


def _check_host(host: str, url: str) -> str:
    if not (_HOST.match(host) or _IPV6.match(host)):
        raise RepoURLError(f"bad host {host!r} in {redact(url)!r}")
    return host.lower().strip("[]")  # IPv6 without brackets, as urlsplit's hostname


def _owner_and_name(path: str, url: str, base_path: str) -> tuple[str, str]:
    prefix = base_path.strip("/")
    path = path.strip("/")
    if prefix:
        if not path.lower().startswith(prefix.lower() + "/"):
            raise RepoURLError(f"{redact(url)!r} is not under the forge's path /{prefix}")
        path = path[len(prefix) + 1:]
    parts = path.split("/")
    if len(parts) != 2:
        raise RepoURLError(f"expected OWNER/REPO in {redact(url)!r}")
    owner, name = parts
    if name.endswith(".git"):
        name = name[:-4]
    for part in (owner, name):
        if not _NAME.match(part) or part in (".", "..") or part.startswith("-"):
            raise RepoURLError(f"bad owner or repository name {part!r} in {redact(url)!r}")
    return owner, name


def _names_host(url: str, host: str) -> bool:
    """Whether an unparsable `url` still points at `host` (so its error matters)."""
    match = _SCHEME.match(url)
    if match:
        authority = _split_authority(match["rest"])[0].rsplit("@", 1)[-1]
        return authority.split(":", 1)[0].lower() == host
    scp = _SCP.match(url)
    return bool(scp and scp["host"].lower() == host)


def _credentials_error(url: str) -> RepoURLError:
    return RepoURLError(
        f"credentials in repository URL {redact(url)!r}: remove them; git authenticates "
        "with an SSH key or a git credential helper, never a token in the URL")
