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

from .durations import parse_duration

KEYS = {"repo", "branch", "state_dir", "listen", "poll_interval", "ssh",
        "webhook_secret", "forge", "pull_agents"}
DEFAULT_STATE_DIR = "~/.local/state/fleet"


class ConfigError(Exception):
    """Says which file and key is wrong and what to write instead."""


@dataclass(frozen=True)
class Config:
    repo: str | None = None
    branch: str = "main"
    state_dir: Path = Path(DEFAULT_STATE_DIR).expanduser()
    listen: str | None = None
    poll_interval: float | None = None
    ssh: dict = field(default_factory=dict)
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
        listen=text("listen"), poll_interval=poll_s, ssh=data.get("ssh") or {},
        webhook_secret=text("webhook_secret") or os.environ.get("FLEET_WEBHOOK_SECRET"),
        forge=data.get("forge"), pull_agents=tuple(data.get("pull_agents") or ()))
