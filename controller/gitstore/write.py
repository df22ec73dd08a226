"""Status commits: the git store's writing half, owned by store.GitStore.

All status transitions of one reconcile pass become one commit on the current
tip that touches only status/. It is pushed; or, for a bare source on this
machine without server hooks whose objects our clone shares, written straight
into it with the branch moved by compare-and-swap (`git update-ref NEW OLD`,
the lock a push takes too). A person's concurrent push makes either fail: we
fetch and re-apply on their commit, unless they wrote the same status files.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pygit2

from controller.gitstore.common import (GitError, StatusConflict, _git_dir, _last_lines, _status_name,
                                        _subtree, _tip, _tree_of, tracking_ref)
from controller.gitstore.remote import Remote

PACK_AT = 100         # status writes from which blobs go into one pack, not loose files
REPACK_EVERY = 100    # status commits between background repacks of our clone


class StatusWriter:
    """Writes status commits for one branch of `source` from our clone `repo` at
    `clone`, and publishes them through `remote` (a push, or a compare-and-swap
    of the source's branch). Not thread-safe, like the GitStore that owns it."""

    def __init__(self, repo: pygit2.Repository, clone: Path, remote: Remote, *,
                 source: str, branch: str, local: bool, push_attempts: int):
        self._repo = repo
        self._clone = clone
        self._remote = remote
        self._source = source      # for messages, and to find a bare source on this machine
        self._branch = branch
        self._tracking = tracking_ref(branch)
        self._local = local
        self._push_attempts = push_attempts
        self._builder: tuple[pygit2.Oid, pygit2.TreeBuilder] | None = None  # last status tree
        self._commits = 0
        self._repack: subprocess.Popen[bytes] | None = None
        self._direct: pygit2.Repository | None = None   # see _writer()
        self.push_retries = 0      # pushes rejected and tried again on a newer tip, ever

    def commit(self, writes: Mapping[str, bytes | None], message: str,
               author: tuple[str, str]) -> str | None:
        """GitStore.commit_statuses: the commit hex, or None when nothing changed."""
        writer = self._writer()
        names = [_status_name(task) for task in writes]
        blobs = dict(zip(names, self._write_blobs(writer, list(writes.values()))))
        for _ in range(self._push_attempts):
            base = _tip(self._repo, self._tracking)
            tree = self._with_statuses(writer, base, blobs)
            if tree == self._tree(base).id:
                return None
            who = pygit2.Signature(*author)
            commit = writer.create_commit(None, who, who, message, tree, [base] if base else [])
            if self._publish(writer, str(commit), base):
                self._repo.references.create(self._tracking, commit, force=True)
                self._housekeep()
                return str(commit)
            # Someone pushed first: re-apply the same writes on theirs.
            self.push_retries += 1
            self._remote.fetch(self._clone, had_tip=bool(base))
            changed = self._changed_entries(base, _tip(self._repo, self._tracking), blobs)
            if changed:
                # Someone else wrote the very status files we are writing (another
                # controller?): re-applying ours would overwrite theirs unseen.
                raise StatusConflict(f"status/{changed[0]} in {self._branch} of {self._source} was "
                                     "changed by someone else; re-reading status/ before writing again")
        raise GitError(f"status push to {self._branch} of {self._source} was rejected "
                       f"{self._push_attempts} times because others kept pushing "
                       f"(last: {self._remote.last_rejection}); it will be retried on the next pass")

    def seed(self, status: str | None, message: str, author: tuple[str, str]) -> None:
        """Create the branch as an orphan commit holding only status/ with the tree
        `status` (None: no status/ yet), unless the source has the branch already
        (another controller seeded it first): then fetch theirs and use that."""
        writer = self._writer()
        top = writer.TreeBuilder()
        if status is not None:
            top.insert("status", pygit2.Oid(hex=status), pygit2.GIT_FILEMODE_TREE)
        who = pygit2.Signature(*author)
        commit = writer.create_commit(None, who, who, message, top.write(), [])
        if self._publish(writer, str(commit), ""):
            self._repo.references.create(self._tracking, commit, force=True)
        else:
            self._remote.fetch(self._clone, had_tip=True)

    def _writer(self) -> pygit2.Repository:
        """Where status objects are written. The source itself when it is a bare
        repository on this machine that our clone shares objects with and that
        has no server hooks: publishing is then a compare-and-swap of its branch
        (git update-ref), not a push, which at 100k tasks would pack and unpack
        the 4 MB status/ tree (~250 ms). Else our own clone, and a push."""
        # Asked again each time: a hook or a worktree added later must be honoured.
        before = self._direct
        self._direct = _direct_target(self._source, self._clone, self._direct) if self._local else None
        if (before is None) != (self._direct is None):
            self._builder = None    # the cached status tree builder belongs to the other repo
        return self._direct or self._repo

    def _publish(self, writer: pygit2.Repository, commit: str, base: str) -> bool:
        """Make commit the source's branch tip; False when someone moved it first."""
        if writer is self._repo:
            return self._remote.push(self._clone, commit)
        return self._remote.swap(_git_dir(writer), commit, base)

    def _tree(self, commit: str) -> pygit2.Tree:
        return _tree_of(self._repo, commit, self._clone)

    def _write_blobs(self, writer: pygit2.Repository,
                     datas: list[bytes | None]) -> list[pygit2.Oid | None]:
        """Store the status file contents; None (a delete) stays None."""
        new = [d for d in datas if d is not None]
        if len(new) < PACK_AT:
            return [None if d is None else writer.create_blob(d) for d in datas]
        # Many at once: one `git fast-import` pack costs one file, where libgit2
        # would create a loose file per blob (1,000 files: 100-300 ms on a busy disk).
        stream: list[bytes] = []
        for d in new:
            stream += [b"blob\ndata %d\n" % len(d), d, b"\n"]
        stream.append(b"done\n")
        where = _git_dir(writer)
        proc = self._remote.git(where, "-c", f"fastimport.unpackLimit={PACK_AT}", "fast-import",
                                "--quiet", "--done", stdin=b"".join(stream))
        if proc.returncode != 0:
            raise GitError(f"cannot store status files in {where}: "
                           f"{_last_lines(proc.stderr)}. Is the disk full?")
        return [None if d is None else pygit2.hash(d) for d in datas]

    def _with_statuses(self, repo: pygit2.Repository, base: str,
                       blobs: Mapping[str, pygit2.Oid | None]) -> pygit2.Oid:
        """The root tree of base with only status/ changed by blobs, written to repo."""
        root = self._tree(base)
        entry = root["status"] if "status" in root else None
        if entry is not None and entry.filemode != pygit2.GIT_FILEMODE_TREE:
            raise GitError(f"'status' in {self._branch} of {self._source} is not a directory: "
                           "move it away, status/ belongs to the controller")
        # TreeBuilder edits the existing entries in place: no listing of status/.
        # Loading 100k entries into one costs tens of ms, so the last builder is
        # kept and reused while base still has the status tree it wrote.
        cached, self._builder = self._builder, None
        if entry is None:
            status = repo.TreeBuilder()
        elif cached is not None and cached[0] == entry.id:
            status = cached[1]
        else:
            status = repo.TreeBuilder(entry.id)
        for name, blob in blobs.items():
            if blob is not None:
                status.insert(name, blob, pygit2.GIT_FILEMODE_BLOB)
            elif status.get(name) is not None:
                status.remove(name)
        top = repo.TreeBuilder(root.id)
        if len(status):
            written = status.write()
            self._builder = (written, status)
            top.insert("status", written, pygit2.GIT_FILEMODE_TREE)
        elif entry is not None:
            top.remove("status")     # git has no empty directories
        return top.write()

    def _changed_entries(self, old: str, new: str, names: Iterable[str]) -> list[str]:
        """Those of `names` whose entry in status/ differs between two commits."""
        a, b = _subtree(self._tree(old), "status"), _subtree(self._tree(new), "status")
        if (a.id if a is not None else None) == (b.id if b is not None else None):
            return []
        return [n for n in names if _entry_id(a, n) != _entry_id(b, n)]

    def _housekeep(self) -> None:
        # Each status commit leaves a new status tree (megabytes at 100k tasks) as a
        # loose object; git's auto gc counts objects, not bytes: repack now and then.
        self._commits += 1
        if self._commits % REPACK_EVERY or (self._repack and self._repack.poll() is None):
            return
        if self._direct is not None:
            # Status objects went into the source itself: tidy it as a push would
            # (receive-pack runs `gc --auto` after each push).
            command = ["git", "-C", str(_git_dir(self._direct)), "gc", "--auto", "--quiet"]
        else:
            command = ["git", "-C", str(self._clone), "repack", "-d", "-q"]
        self._repack = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)


def _entry_id(tree: pygit2.Tree | None, name: str) -> pygit2.Oid | None:
    return tree[name].id if tree is not None and name in tree else None


def _direct_target(source: str, clone: Path,
                   known: pygit2.Repository | None) -> pygit2.Repository | None:
    """The source repository when status may be written into it directly: bare
    (no one's checked-out branch moves under them), shared with our clone (so
    we see what we write), and without server hooks (a push would run them).
    None: push instead. `known`: the answer of last time, reopened otherwise."""
    path = Path(source.removeprefix("file://")).expanduser()
    if not (clone / "objects" / "info" / "alternates").exists():
        return None
    try:
        repo = known if known is not None else pygit2.Repository(str(path))
    except pygit2.GitError:
        return None
    git_dir = _git_dir(repo)
    configured = repo.config["core.hooksPath"] if "core.hooksPath" in repo.config else "hooks"
    if configured is None:
        return None     # a valueless hooksPath: git will not run a push with it, so push and say so
    hooks = git_dir / Path(configured).expanduser()   # relative: to the git dir
    active = [h for h in (hooks.iterdir() if hooks.is_dir() else ())
              if not h.name.endswith(".sample") and os.access(h, os.X_OK)]
    worktrees = git_dir / "worktrees"
    if worktrees.is_dir() and any(worktrees.iterdir()):
        return None     # a linked worktree may have the branch checked out: push refuses that
    if "core.sharedRepository" in repo.config:
        return None     # group-writable objects: let git create them with its own modes
    return repo if repo.is_bare and not active else None
