"""`fleet validate`: every problem in a fleet repository, one `path:line: message` each.

Checks the files on disk of a working tree (so people can validate before they
commit), or a revision of a repository (`--rev`, or any bare path or URL).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from .desired import validate_files
from .gitstore import GitError, GitStore, files_at
from .model import Problem
from .workspace import FLEET_DIRS, looks_like_fleet, worktree_root

MAX_FILES = 1_000_000


def validate(repo: str | None, rev: str | None) -> tuple[list[Problem], str]:
    """(problems, a one-line summary for stderr)."""
    files = _files(repo or ".", rev)
    problems = validate_files(files)
    counts = {d: sum(1 for p in files if p.startswith(d + "/")) for d in FLEET_DIRS}
    summary = (f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in "
               f"{counts['tasks']} tasks, {counts['hosts']} hosts, {counts['agents']} agents")
    return problems, summary


def _files(repo: str, rev: str | None) -> dict[str, bytes]:
    path = Path(repo).expanduser()
    if rev is None and path.is_dir():
        path = worktree_root(path)
    if path.is_dir() and (path / ".git").exists() and rev is None:
        return _from_disk(path)
    if path.is_dir() and not (path / ".git").exists() and rev is None and looks_like_fleet(path):
        return _from_disk(path)
    if path.is_dir():
        return files_at(path, rev or "HEAD")
    with tempfile.TemporaryDirectory(prefix="fleet-validate-") as state:
        store = GitStore(repo, Path(state))
        tip = store.sync() if rev is None else None
        return files_at(Path(state) / "fleet.git", rev or tip)


def _from_disk(root: Path) -> dict[str, bytes]:
    """The fleet files of a working tree, as repo-relative path -> bytes."""
    files: dict[str, bytes] = {}
    if (root / "fleet.yaml").is_file():
        files["fleet.yaml"] = (root / "fleet.yaml").read_bytes()
    for d in FLEET_DIRS:
        folder = root / d
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and len(files) < MAX_FILES:
                files[f"{d}/{entry.name}"] = entry.read_bytes()
    if not files:
        raise GitError(f"{root}: no fleet.yaml, hosts/, agents/ or tasks/ here; "
                       "run fleet validate inside a clone of the fleet repository or pass --repo")
    return files
