"""The controller's own config file: per-box and secret settings, outside the fleet repo.

Read by the CLI (`--config FILE` or `FLEET_CONFIG`). Every key is optional;
command-line flags win over the file, and secrets may come from environment
variables instead. Unknown keys are errors, so a typo is reported, not ignored.
Every value is checked here, at load, so a bad one is a ConfigError naming the
file, the key and what to write instead, never a traceback later in a run.
"""
from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.durations import parse_duration
from controller.model import ID_RE
from controller.text import has_credentials, redact

KEYS = {"repo", "branch", "state_dir", "listen", "admin_listen", "poll_interval", "ssh",
        "webhook_secret", "allowed_repos", "reviewers", "forge", "pull_agents", "lease_ttl"}
DEFAULT_STATE_DIR = "~/.local/state/fleet"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:8081"
DEFAULT_LEASE_TTL = 120.0
SSH_KEYS = {"known_hosts", "client_keys", "connect_timeout", "keepalive_interval",
            "keepalive_count_max", "command_timeout", "health_interval", "lost_grace"}
DEFAULT_FORGE_POLL = 180.0     # forge.poll_interval: 3 minutes
DEFAULT_FORGE_RETRY_MIN = 30.0     # forge.retry_min: the first wait after a failed PR call
DEFAULT_FORGE_RETRY_MAX = 600.0    # forge.retry_max: the longest (it doubles up to this)
FORGE_KEYS = {"type", "url", "api_url", "token_env", "poll_interval", "retry_min", "retry_max"}
PULL_AGENT_KEYS = {"name", "token_sha256", "capabilities", "max_concurrent"}
DEFAULT_TOKEN_ENV = "FLEET_FORGE_TOKEN"
WEBHOOK_SECRET_ENV = "FLEET_WEBHOOK_SECRET"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")   # a capability word, as in host.schema.json
_HOST_PORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})")


class ConfigError(Exception):
    """Says which file and key is wrong and what to write instead."""


class ForgeType(enum.StrEnum):
    """The forge APIs fleet speaks (`forge.type`)."""
    FORGEJO = "forgejo"
    GITEA = "gitea"
    GITHUB = "github"


@dataclass(frozen=True)
class SSHConfig:
    """The `ssh:` section: how the controller reaches and watches SSH hosts."""
    known_hosts: str = "~/.ssh/known_hosts"   # the only host keys trusted; no trust on first use
    client_keys: tuple[str, ...] | None = None  # None: the SSH agent and ~/.ssh/id_* keys
    connect_timeout: float = 15.0              # TCP connect plus login
    keepalive_interval: float = 15.0           # with count_max 3, a dead peer is noticed in ~1 min
    keepalive_count_max: int = 3
    command_timeout: float = 60.0              # one remote command (poll, upload, probe)
    health_interval: float = 60.0              # between host health checks
    lost_grace: float = 300.0                  # a host lost mid-run may come back within this


@dataclass(frozen=True, slots=True)
class ForgeConfig:
    """The `forge:` section: the forge that hosts the target repos. `fleet run` opens
    and comments on the tasks' PRs there and reads their state every `poll_interval`."""
    type: ForgeType
    url: str                       # the forge's web address, without a trailing /
    api_url: str                   # the REST API base; defaulted from type and url
    token_env: str = DEFAULT_TOKEN_ENV   # names the variable: the token never sits in a file
    poll_interval: float = DEFAULT_FORGE_POLL   # seconds between reads of PR states and reviews
    retry_min: float = DEFAULT_FORGE_RETRY_MIN   # backoff of PR calls that failed
    retry_max: float = DEFAULT_FORGE_RETRY_MAX


@dataclass(frozen=True, slots=True)
class PullAgent:
    """One `pull_agents:` entry. Checked, not used yet: there is no pull API so far."""
    name: str
    token_sha256: str              # the token itself is never stored, only its digest
    capabilities: tuple[str, ...] = ()   # the most this agent may claim
    max_concurrent: int = 1


@dataclass(frozen=True)
class Config:
    repo: str | None = None
    branch: str = "main"
    state_dir: Path = Path(DEFAULT_STATE_DIR).expanduser()
    listen: str | None = None
    # Served by `fleet run` (/healthz for now; metrics and the dashboard come later).
    admin_listen: str = DEFAULT_ADMIN_LISTEN
    poll_interval: float | None = None
    ssh: SSHConfig = field(default_factory=SSHConfig)
    webhook_secret: str | None = None
    # URL patterns (controller/repos.py) of the only repositories the controller
    # may clone, fetch or open PRs on; a task naming another is blocked. () allows all.
    allowed_repos: tuple[str, ...] = ()
    # Whose change requests count (on every forge); () means users with write access.
    reviewers: tuple[str, ...] = ()
    forge: ForgeConfig | None = None
    pull_agents: tuple[PullAgent, ...] = ()
    lease_ttl: float = DEFAULT_LEASE_TTL   # seconds; checked, not used yet (no pull API)

    @property
    def secret_env(self) -> frozenset[str]:
        """Names of the variables holding the controller's own secrets: never passed
        to a run, even when a host or agent lists them in pass_env."""
        token = self.forge.token_env if self.forge is not None else DEFAULT_TOKEN_ENV
        return frozenset({WEBHOOK_SECRET_ENV, token})


def load_config(path: str | None) -> Config:
    """Load FILE, or $FLEET_CONFIG, or nothing (all defaults)."""
    path = path or os.environ.get("FLEET_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            raw = Path(path).expanduser().read_bytes()
            data = yaml.load(raw, Loader=yaml.CSafeLoader) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a mapping of settings")
        _no_unknown(path, "", data, KEYS)
    return _build(path or "<defaults>", data)


def _build(path: str, data: dict[str, Any]) -> Config:
    def text(key: str, default: str | None = None) -> str | None:
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: must be a string, got {value!r}")
        return value

    repo = text("repo")
    if repo is not None and has_credentials(repo):
        raise ConfigError(f"{path}: repo: {redact(repo)!r} has credentials in it: remove them; "
                          "git authenticates with an SSH key or a git credential helper "
                          "(git config credential.helper), never a token in the URL")
    return Config(
        repo=repo, branch=text("branch", "main") or "main",
        state_dir=Path(text("state_dir", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR).expanduser(),
        listen=_address(path, "listen", data, None),
        admin_listen=(_address(path, "admin_listen", data, DEFAULT_ADMIN_LISTEN)
                      or DEFAULT_ADMIN_LISTEN),
        poll_interval=_duration(path, "poll_interval", data.get("poll_interval")),
        ssh=_ssh(path, data.get("ssh")),
        webhook_secret=text("webhook_secret") or os.environ.get(WEBHOOK_SECRET_ENV),
        allowed_repos=_strings(path, "allowed_repos", data.get("allowed_repos"),
                               "URL patterns like [https://forge.example/team/*]"),
        reviewers=_strings(path, "reviewers", data.get("reviewers"),
                           "forge user names like [alice, bob]"),
        forge=_forge(path, data.get("forge")),
        pull_agents=_pull_agents(path, data.get("pull_agents")),
        lease_ttl=_duration(path, "lease_ttl", data.get("lease_ttl")) or DEFAULT_LEASE_TTL)


# ---- shared checks -----------------------------------------------------------

def _no_unknown(path: str, where: str, data: dict[Any, Any], keys: set[str]) -> None:
    unknown = sorted(set(map(str, data)) - keys)
    if unknown:
        raise ConfigError(f"{path}: {where}unknown key {unknown[0]!r}; "
                          f"allowed: {', '.join(sorted(keys))}")


def _duration(path: str, key: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        raise ConfigError(f"{path}: {key}: {e}") from None


def _strings(path: str, key: str, value: object, like: str) -> tuple[str, ...]:
    """A list of non-empty strings, each once; absent means empty."""
    if value is None:
        return ()
    if (not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value)):
        raise ConfigError(f"{path}: {key}: must be a list of {like}, got {value!r}")
    twice = sorted({v for v in value if value.count(v) > 1})
    if twice:
        raise ConfigError(f"{path}: {key}: {twice[0]!r} is listed twice; list it once")
    return tuple(value)


def _address(path: str, key: str, data: dict[str, Any], default: str | None) -> str | None:
    """HOST:PORT to listen on ([::1]:8081 for IPv6; port 0 picks a free one, for tests)."""
    value = data.get(key)
    if value is None:
        return default
    m = _HOST_PORT_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None or not 0 <= int(m.group("port")) <= 65535:
        raise ConfigError(f"{path}: {key}: must be HOST:PORT like {DEFAULT_ADMIN_LISTEN}, "
                          f"got {value!r}")
    return str(value)


def _http_url(path: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ConfigError(f"{path}: {key}: must be an http(s) URL like https://forge.example, "
                          f"got {value!r}")
    return value.rstrip("/")


# ---- ssh ---------------------------------------------------------------------

def _ssh(path: str, data: object) -> SSHConfig:
    if data is None:
        return SSHConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: ssh: must be a mapping like `known_hosts: ~/.ssh/known_hosts`")
    _no_unknown(path, "ssh: ", data, SSH_KEYS)
    values: dict[str, Any] = {}
    known = data.get("known_hosts")
    if known is not None:
        if not isinstance(known, str) or not known:
            raise ConfigError(f"{path}: ssh.known_hosts: must be a file path")
        values["known_hosts"] = known
    keys = data.get("client_keys")
    if keys is not None:
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(f"{path}: ssh.client_keys: must be a list of key file paths")
        values["client_keys"] = tuple(keys)
    for key in ("connect_timeout", "keepalive_interval", "command_timeout",
                "health_interval", "lost_grace"):
        seconds = _duration(path, f"ssh.{key}", data.get(key))
        if seconds is not None:
            values[key] = seconds
    count = data.get("keepalive_count_max")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"{path}: ssh.keepalive_count_max: must be a whole number >= 1")
        values["keepalive_count_max"] = count
    return SSHConfig(**values)


# ---- forge -------------------------------------------------------------------

def _forge(path: str, data: object) -> ForgeConfig | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: forge: must be a mapping like "
                          f"`{{type: forgejo, url: https://forge.example}}`, got {data!r}")
    _no_unknown(path, "forge: ", data, FORGE_KEYS)
    given = data.get("type")
    if given not in tuple(ForgeType):
        raise ConfigError(f"{path}: forge.type: must be one of "
                          f"{', '.join(ForgeType)}, got {given!r}")
    kind = ForgeType(given)
    url = _http_url(path, "forge.url", data.get("url"))
    api = data.get("api_url")
    token_env = data.get("token_env", DEFAULT_TOKEN_ENV)
    if not isinstance(token_env, str) or not _ENV_NAME_RE.fullmatch(token_env):
        raise ConfigError(f"{path}: forge.token_env: must be the name of an environment "
                          f"variable like {DEFAULT_TOKEN_ENV}, got {token_env!r}")
    poll = _duration(path, "forge.poll_interval", data.get("poll_interval")) or DEFAULT_FORGE_POLL
    lo = _duration(path, "forge.retry_min", data.get("retry_min")) or DEFAULT_FORGE_RETRY_MIN
    hi = _duration(path, "forge.retry_max", data.get("retry_max")) or DEFAULT_FORGE_RETRY_MAX
    return ForgeConfig(type=kind, url=url, token_env=token_env, poll_interval=poll,
                       retry_min=lo, retry_max=max(lo, hi),
                       api_url=_default_api(kind, url) if api is None
                       else _http_url(path, "forge.api_url", api))


def _default_api(kind: ForgeType, url: str) -> str:
    if kind != ForgeType.GITHUB:
        return f"{url}/api/v1"             # Forgejo and Gitea serve their API under the site
    if re.fullmatch(r"https?://(www\.)?github\.com", url):
        return "https://api.github.com"
    return f"{url}/api/v3"                 # GitHub Enterprise Server's documented API base


# ---- pull agents -------------------------------------------------------------

def _pull_agents(path: str, data: object) -> tuple[PullAgent, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{path}: pull_agents: must be a list of agents like "
                          f"`- {{name: jeeves, token_sha256: ..., capabilities: [codex]}}`, "
                          f"got {data!r}")
    agents = tuple(_pull_agent(path, f"pull_agents[{i}]", item) for i, item in enumerate(data))
    for attr, what in (("name", "name"), ("token_sha256", "token")):
        values = [getattr(a, attr) for a in agents]
        twice = next((i for i, v in enumerate(values) if v in values[:i]), None)
        if twice is not None:
            raise ConfigError(f"{path}: pull_agents[{twice}].{attr}: the same {what} as an "
                              f"earlier agent; each pull agent needs its own")
    return agents


def _pull_agent(path: str, where: str, data: object) -> PullAgent:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {where}: must be a mapping with name and token_sha256, "
                          f"got {data!r}")
    _no_unknown(path, f"{where}: ", data, PULL_AGENT_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not ID_RE.match(name):
        raise ConfigError(f"{path}: {where}.name: must be a name like jeeves (lowercase "
                          f"letters, digits and '-'), got {name!r}")
    digest = data.get("token_sha256")
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        raise ConfigError(f"{path}: {where}.token_sha256: must be the token's sha256 as 64 "
                          f"lowercase hex digits (`printf %s TOKEN | sha256sum`), got {digest!r}")
    caps = data.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) and _WORD_RE.fullmatch(c)
                                             for c in caps):
        raise ConfigError(f"{path}: {where}.capabilities: must be a list of capability words "
                          f"like [codex, gpu], got {caps!r}")
    most = data.get("max_concurrent", 1)
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise ConfigError(f"{path}: {where}.max_concurrent: must be a whole number >= 1, "
                          f"got {most!r}")
    # A capability listed twice means nothing more: keep it once, in order.
    return PullAgent(name=name, token_sha256=digest, capabilities=tuple(dict.fromkeys(caps)),
                     max_concurrent=most)
