"""The controller's own config file: per-box and secret settings, outside the fleet repo.

Read by the CLI (`--config FILE` or `FLEET_CONFIG`). Every key is optional;
command-line flags win over the file, and secrets may come from environment
variables instead. Unknown keys are errors, so a typo is reported, not ignored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from controller.durations import parse_duration

KEYS = {"repo", "branch", "state_dir", "listen", "poll_interval", "ssh",
        "webhook_secret", "forge", "pull_agents"}
DEFAULT_STATE_DIR = "~/.local/state/fleet"
SSH_KEYS = {"known_hosts", "client_keys", "connect_timeout", "keepalive_interval",
            "keepalive_count_max", "command_timeout", "health_interval", "lost_grace"}


class ConfigError(Exception):
    """Says which file and key is wrong and what to write instead."""


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


@dataclass(frozen=True)
class Config:
    repo: str | None = None
    branch: str = "main"
    state_dir: Path = Path(DEFAULT_STATE_DIR).expanduser()
    listen: str | None = None
    poll_interval: float | None = None
    ssh: SSHConfig = field(default_factory=SSHConfig)
    webhook_secret: str | None = None
    forge: dict | None = None
    pull_agents: tuple = ()


def load_config(path: str | None) -> Config:
    """Load FILE, or $FLEET_CONFIG, or nothing (all defaults)."""
    path = path or os.environ.get("FLEET_CONFIG")
    data: dict = {}
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
        unknown = sorted(set(map(str, data)) - KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(KEYS))}")
    return _build(path or "<defaults>", data)


def _build(path: str, data: dict) -> Config:
    def text(key, default=None):
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: must be a string, got {value!r}")
        return value

    poll = data.get("poll_interval")
    try:
        poll_s = parse_duration(poll) if poll is not None else None
    except ValueError as e:
        raise ConfigError(f"{path}: poll_interval: {e}") from None
    return Config(
        repo=text("repo"), branch=text("branch", "main"),
        state_dir=Path(text("state_dir", DEFAULT_STATE_DIR)).expanduser(),
        listen=text("listen"), poll_interval=poll_s, ssh=_ssh(path, data.get("ssh")),
        webhook_secret=text("webhook_secret") or os.environ.get("FLEET_WEBHOOK_SECRET"),
        forge=data.get("forge"), pull_agents=tuple(data.get("pull_agents") or ()))


def _ssh(path: str, data: object) -> SSHConfig:
    if data is None:
        return SSHConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: ssh: must be a mapping like `known_hosts: ~/.ssh/known_hosts`")
    unknown = sorted(set(map(str, data)) - SSH_KEYS)
    if unknown:
        raise ConfigError(f"{path}: ssh: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(SSH_KEYS))}")
    values: dict = {}
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
        if data.get(key) is not None:
            try:
                values[key] = parse_duration(data[key])
            except ValueError as e:
                raise ConfigError(f"{path}: ssh.{key}: {e}") from None
    count = data.get("keepalive_count_max")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"{path}: ssh.keepalive_count_max: must be a whole number >= 1")
        values["keepalive_count_max"] = count
    return SSHConfig(**values)
