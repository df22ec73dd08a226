"""The composition root: builds the engine and its parts from the config.

The CLI (`fleet run`, `status`, `plan`, `hosts scan`, the demo) calls these;
they are the one place that decides which git store, state dir and merge
checker an engine gets, so commands and tests build it the same way. Imports
the engine and what it is made of; only cli/ imports this.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from controller.config import Config
from controller.engine.core import Engine
from controller.gitstore import GitStore
from controller.observe.merges import Targets


def state_dir(config: Config, repo: str) -> Path:
    """The state dir of one fleet repository: its clone, run records and caches."""
    key = hashlib.sha256(repo.encode()).hexdigest()[:12]
    return config.state_dir / "repos" / key


def build_engine(config: Config, repo: str, state: Path | None = None) -> Engine:
    """The controller's engine for `repo`, in its state dir (or `state`, for the demo)."""
    state = state or state_dir(config, repo)
    state.mkdir(parents=True, exist_ok=True)
    return Engine(GitStore(repo, state, config.branch), state, ssh=config.ssh)


def build_look_only_engine(config: Config, repo: str, scratch: Path) -> Engine:
    """An engine for `fleet plan`: it reads the state dir, and clones and fetches
    into `scratch`, borrowing the state dir's objects so that costs little."""
    state = state_dir(config, repo)
    store = GitStore(repo, scratch, config.branch, borrow=state / "fleet.git")
    targets = Targets(scratch / "targets", borrow=state / "targets")
    return Engine(store, state, ssh=config.ssh, targets=targets, read_only=True)
