"""The clone of a fleet repository a command runs in, if any.

`fleet validate` checks that clone's files on disk; `fleet status`, `plan`,
`run` and `hosts scan` without --repo (and without `repo:` in the config)
read the repository it was cloned from, its `origin` remote.
"""
from __future__ import annotations

from pathlib import Path

from controller.config import ConfigError
from controller.gitstore import remote_url

FLEET_DIRS = ("hosts", "agents", "tasks")


def worktree_root(path: Path) -> Path:
    """The top of the working tree holding `path` (run inside tasks/, a command
    means the whole clone); `path` itself when it is not in one."""
    for candidate in (path.resolve(), *path.resolve().parents):
        if (candidate / ".git").exists():
            return candidate
    return path


def looks_like_fleet(path: Path) -> bool:
    """True for a folder with the files of a fleet repository at its top."""
    return any((path / d).is_dir() for d in FLEET_DIRS) or (path / "fleet.yaml").exists()


def fleet_clone(cwd: Path | None = None) -> Path | None:
    """The top of the fleet repository clone `cwd` is in, or None."""
    root = worktree_root(cwd or Path.cwd())
    return root if (root / ".git").exists() and looks_like_fleet(root) else None


def origin_of_clone(cwd: Path | None = None) -> str | None:
    """The origin URL of the fleet clone `cwd` is in; None when not in one.

    A clone without an origin is an error, not None: the person is plainly
    working on a fleet repository, so "no fleet repository" would mislead.
    """
    root = fleet_clone(cwd)
    if root is None:
        return None
    url = remote_url(root)
    if url is None:
        raise ConfigError(f"{root} is a fleet repository clone without an `origin` remote: "
                          "pass --repo PATH_OR_URL (or `git remote add origin URL`)")
    return url
