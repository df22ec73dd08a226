"""Shared pieces of the git store package: its errors and small tree helpers.

The package (store.py, write.py, this) is the only place that imports pygit2.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from controller.model import ID_RE
from controller.text import redact_text

SPEC_DIRS = ("hosts", "agents", "tasks")
DIRS = SPEC_DIRS + ("status",)
TOP_FILES = ("fleet.yaml",)
BLOB_MODES = (pygit2.GIT_FILEMODE_BLOB, pygit2.GIT_FILEMODE_BLOB_EXECUTABLE)


@functools.cache
def cache_trees() -> None:
    """Let libgit2's object cache keep large trees; process-wide, done once.

    libgit2 caches no tree larger than 4 KiB by default; a 100k-file tasks/ or
    status/ tree is megabytes and is read again on every pass (diff, status
    commit). Called by GitStore's constructor, not at import: importing the
    package changes nothing.
    """
    pygit2.settings.cache_object_limit(ObjectType.TREE, 256 << 20)


class GitError(Exception):
    """A git operation failed; the message says what failed and what to do."""


class StatusConflict(GitError):
    """status/ changed under us: the caller re-reads it before it writes again."""


def _status_name(task: str) -> str:
    # Ids become file names: anything else could write outside status/.
    if not ID_RE.match(task):
        raise ValueError(f"not a valid task id for a status file: {task!r}")
    return f"{task}.yaml"


def _blob(root: pygit2.Tree, name: str) -> str | None:
    """The blob hex of a file entry of root, None if absent or not a file."""
    if name in root and (entry := root[name]).filemode in BLOB_MODES:
        return str(entry.id)
    return None


def _subtree(root: pygit2.Tree, name: str) -> pygit2.Tree | None:
    """The tree of directory `name` in root, None if absent or not a directory.

    pygit2 makes an entry a Tree exactly when its mode is GIT_FILEMODE_TREE;
    the Tree is read from the object database only when it is looked into."""
    if name in root and isinstance(entry := root[name], pygit2.Tree):
        return entry
    return None


def _blobs_of(tree: pygit2.Tree) -> list[tuple[str, str]]:
    """(name, blob hex) of the files directly in tree."""
    # An entry of a tree always has a name; only the type of Object.name allows None.
    return [(name, str(e.id)) for e in tree
            if e.filemode in BLOB_MODES and (name := e.name) is not None]


def _tree_of(repo: pygit2.Repository, commit: str, clone: Path) -> pygit2.Tree:
    """The root tree of commit ("": the empty tree) in repo, the clone at `clone`."""
    if not commit:
        return repo[repo.TreeBuilder().write()].peel(pygit2.Tree)
    try:
        return repo[commit].peel(pygit2.Tree)
    except (KeyError, ValueError, pygit2.InvalidSpecError):
        raise GitError(f"commit {commit} is not in the controller's clone {clone}: "
                       "sync first") from None


def tracking_ref(branch: str) -> str:
    """Where our clone keeps the source's <branch>: what we fetched or pushed last."""
    return f"refs/remotes/origin/{branch}"


def _tip(repo: pygit2.Repository, tracking: str) -> str:
    """The commit hex of the tracking ref, "" while there is none."""
    ref = repo.references.get(tracking)
    return str(ref.target) if ref is not None else ""


def _git_dir(repo: pygit2.Repository) -> Path:
    # Only a repository without a backing directory has no path; ours all have one.
    if repo.path is None:
        raise GitError("a git repository without a directory cannot be written by git")
    return Path(repo.path)


def _is_local(source: str) -> bool:
    # git's own rule: a URL has "://", an scp-like address a colon before any slash.
    return "://" not in source and not re.match(r"^[^/]+:", source)


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines()
             if ln.strip() and not ln.startswith("hint:")]
    # git echoes the URLs it was given: never show the userinfo of one.
    return redact_text(" / ".join(lines[-n:])) or "no message from git"
