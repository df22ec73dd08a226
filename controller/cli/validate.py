"""`fleet validate`: every problem in a fleet repository, one `path:line: message` each.

Checks the files on disk of a working tree (so people can validate before they
commit), or a revision of a repository (`--rev`, or any bare path or URL).

What the controller will not read is said too, so nothing is skipped without a
word: a hidden file or a folder where fleet files go is a warning (`path:
skipped: why`, exit code unchanged); a symlink is a problem, because on disk it
looks like the file it points to, but the controller reads git, where it is
only a link, so the task, host or agent would silently not exist.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from controller.desired.builder import validate_files
from controller.gitstore import GitError, GitStore, files_at, unread_at
from controller.model import Problem
from controller.cli.workspace import FLEET_DIRS, looks_like_fleet, worktree_root

MAX_FILES = 1_000_000
Found = tuple[dict[str, bytes], list[tuple[str, str]]]   # (files, [(path, "symlink"|"folder"|...)])


def validate(repo: str | None, rev: str | None) -> tuple[list[Problem], list[str], str]:
    """(problems, warnings about what was skipped, a one-line summary for stderr)."""
    files, unread = _files(repo or ".", rev)
    hidden = sorted(p for p in files if _is_hidden(p))
    problems = sorted(validate_files(files) + [_symlink(p) for p, what in unread
                                               if what == "symlink"],
                      key=lambda p: (p.path, p.line or 0, p.message))
    warnings = [f"{p}: skipped: a hidden file (its name starts with '.'): fleet does not read it"
                for p in hidden]
    warnings += [f"{p}: skipped: a {what}: fleet reads only the files directly in "
                 f"{p.partition('/')[0]}/" for p, what in unread if what != "symlink"]
    read = [p for p in files if p not in hidden]
    counts = {d: sum(1 for p in read if p.startswith(d + "/")) for d in FLEET_DIRS}
    summary = (f"{_count(len(problems), 'problem')} in {_count(counts['tasks'], 'task')}, "
               f"{_count(counts['hosts'], 'host')}, {_count(counts['agents'], 'agent')}")
    return problems, sorted(warnings), summary


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _is_hidden(path: str) -> bool:
    top, _, name = path.partition("/")
    return top in FLEET_DIRS and name.startswith(".")


def _symlink(path: str) -> Problem:
    return Problem(path, None, "a symlink: the controller reads git, where this is only a link, "
                   "not the file it points to: put the file itself here")


def _files(repo: str, rev: str | None) -> Found:
    path = Path(repo).expanduser()
    if rev is None and path.is_dir():
        path = worktree_root(path)
    if path.is_dir() and (path / ".git").exists() and rev is None:
        return _from_disk(path)
    if path.is_dir() and not (path / ".git").exists() and rev is None and looks_like_fleet(path):
        return _from_disk(path)
    if path.is_dir():
        return files_at(path, rev or "HEAD"), unread_at(path, rev or "HEAD")
    with tempfile.TemporaryDirectory(prefix="fleet-validate-") as state:
        store = GitStore(repo, Path(state))
        tip = store.sync() if rev is None else None
        clone = Path(state) / "fleet.git"
        return files_at(clone, rev or tip), unread_at(clone, rev or tip)


def _from_disk(root: Path) -> Found:
    """The fleet files of a working tree, as repo-relative path -> bytes, and the
    entries git would not hand the controller as files (symlinks, folders)."""
    files: dict[str, bytes] = {}
    unread: list[tuple[str, str]] = []
    for name in ("fleet.yaml", *FLEET_DIRS):
        if (root / name).is_symlink():
            unread.append((name, "symlink"))
    if (root / "fleet.yaml").is_file() and not (root / "fleet.yaml").is_symlink():
        files["fleet.yaml"] = (root / "fleet.yaml").read_bytes()
    for d in FLEET_DIRS:
        folder = root / d
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in sorted(folder.iterdir()):
            rel = f"{d}/{entry.name}"
            if entry.is_symlink():
                unread.append((rel, "symlink"))
            elif entry.is_dir():
                unread.append((rel, "folder"))
            elif entry.is_file() and len(files) < MAX_FILES:
                files[rel] = entry.read_bytes()
    if not files and not unread:
        raise GitError(f"{root}: no fleet.yaml, hosts/, agents/ or tasks/ here; "
                       "run fleet validate inside a clone of the fleet repository or pass --repo")
    return files, unread
