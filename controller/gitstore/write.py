"""Status commits: the git store's writing half (a mixin of store.GitStore).

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
from pathlib import Path
from typing import Mapping

import pygit2

from controller.gitstore.common import GitError, StatusConflict, _last_lines, _status_name, _subtree

PACK_AT = 100         # status writes from which blobs go into one pack, not loose files
REPACK_EVERY = 100    # status commits between background repacks of our clone


class StatusWriter:
    def commit_statuses(self, writes: Mapping[str, bytes | None], message: str,
                        author: tuple[str, str] = ("fleet", "fleet@localhost")) -> str | None:
        """One commit on the tip of origin/<branch> that sets status/<id>.yaml to
        the bytes (None deletes it), touching only status/, then pushed. Returns
        the new commit hex, or None when the tree would not change (nothing is
        committed or pushed). A push rejected because someone pushed meanwhile is
        retried on the new tip; people's commits are never rewritten (no force)."""
        writer = self._writer()
        names = [_status_name(task) for task in writes]
        blobs = dict(zip(names, self._write_blobs(writer, list(writes.values()))))
        for _ in range(self.push_attempts):
            base = self.tip()
            tree = self._with_statuses(writer, base, blobs)
            if tree == self._tree(base).id:
                return None
            who = pygit2.Signature(*author)
            commit = writer.create_commit(None, who, who, message, tree, [base] if base else [])
            if self._publish(writer, str(commit), base):
                self.repo.references.create(self._tracking, commit, force=True)
                self._housekeep()
                return str(commit)
            self._fetch(self.path)    # someone pushed first: re-apply the same writes on theirs
            changed = self._changed_entries(base, self.tip(), blobs)
            if changed:
                # Someone else wrote the very status files we are writing (another
                # controller?): re-applying ours would overwrite theirs unseen.
                raise StatusConflict(f"status/{changed[0]} in {self.branch} of {self.source} was "
                                     "changed by someone else; re-reading status/ before writing again")
        raise GitError(f"status push to {self.branch} of {self.source} was rejected "
                       f"{self.push_attempts} times because others kept pushing; "
                       "it will be retried on the next pass")

    def _writer(self) -> pygit2.Repository:
        """Where status objects are written. The source itself when it is a bare
        repository on this machine that our clone shares objects with and that
        has no server hooks: publishing is then a compare-and-swap of its branch
        (git update-ref), not a push, which at 100k tasks would pack and unpack
        the 4 MB status/ tree (~250 ms). Else our own clone, and a push."""
        # Asked again each time: a hook or a worktree added later must be honoured.
        before = self._direct
        self._direct = _direct_target(self.source, self.path, self._direct) if self._local else False
        if bool(before) != bool(self._direct):
            self._builder = None    # the cached status tree builder belongs to the other repo
        return self._direct or self.repo

    def _publish(self, writer: pygit2.Repository, commit: str, base: str) -> bool:
        """Make commit the source's branch tip; False when someone moved it first."""
        if writer is self.repo:
            return self._push(commit)
        old = base or "0" * 40
        proc = self._git(Path(writer.path), "update-ref", "-m", "fleet: status",
                         f"refs/heads/{self.branch}", commit, old)
        if proc.returncode == 0:
            return True
        if "but expected" in proc.stderr or "cannot lock ref" in proc.stderr:
            return False
        raise GitError(f"cannot update {self.branch} of {self.source}: {_last_lines(proc.stderr)}. "
                       "Check write access to the fleet repository")

    def _write_blobs(self, writer: pygit2.Repository,
                     datas: list[bytes | None]) -> list[pygit2.Oid | None]:
        """Store the status file contents; None (a delete) stays None."""
        new = [d for d in datas if d is not None]
        if len(new) < PACK_AT:
            return [None if d is None else writer.create_blob(d) for d in datas]
        # Many at once: one `git fast-import` pack costs one file, where libgit2
        # would create a loose file per blob (1,000 files: 100-300 ms on a busy disk).
        stream = []
        for d in new:
            stream += [b"blob\ndata %d\n" % len(d), d, b"\n"]
        stream.append(b"done\n")
        proc = self._git(Path(writer.path), "-c", f"fastimport.unpackLimit={PACK_AT}", "fast-import",
                         "--quiet", "--done", stdin=b"".join(stream))
        if proc.returncode != 0:
            raise GitError(f"cannot store status files in {writer.path}: "
                           f"{_last_lines(proc.stderr)}. Is the disk full?")
        return [None if d is None else pygit2.hash(d) for d in datas]

    def _with_statuses(self, repo: pygit2.Repository, base: str,
                       blobs: Mapping[str, pygit2.Oid | None]) -> pygit2.Oid:
        """The root tree of base with only status/ changed by blobs, written to repo."""
        root = self._tree(base)
        entry = root["status"] if "status" in root else None
        if entry is not None and entry.filemode != pygit2.GIT_FILEMODE_TREE:
            raise GitError(f"'status' in {self.branch} of {self.source} is not a directory: "
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

    def _changed_entries(self, old: str, new: str, names) -> list[str]:
        """Those of `names` whose entry in status/ differs between two commits."""
        a, b = _subtree(self._tree(old), "status"), _subtree(self._tree(new), "status")
        if (a.id if a is not None else None) == (b.id if b is not None else None):
            return []
        a, b = (self.repo[t.id] if t is not None else None for t in (a, b))
        def entry(tree, name):
            return tree[name].id if tree is not None and name in tree else None
        return [n for n in names if entry(a, n) != entry(b, n)]

    def _housekeep(self) -> None:
        # Each status commit leaves a new status tree (megabytes at 100k tasks) as a
        # loose object; git's auto gc counts objects, not bytes: repack now and then.
        self._commits += 1
        if self._commits % REPACK_EVERY or (self._repack and self._repack.poll() is None):
            return
        if self._direct:
            # Status objects went into the source itself: tidy it as a push would
            # (receive-pack runs `gc --auto` after each push).
            command = ["git", "-C", self._direct.path, "gc", "--auto", "--quiet"]
        else:
            command = ["git", "-C", str(self.path), "repack", "-d", "-q"]
        self._repack = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)


def _direct_target(source: str, clone: Path, known=None) -> pygit2.Repository | bool:
    """The source repository when status may be written into it directly: bare
    (no one's checked-out branch moves under them), shared with our clone (so
    we see what we write), and without server hooks (a push would run them)."""
    path = Path(source.removeprefix("file://")).expanduser()
    if not (clone / "objects" / "info" / "alternates").exists():
        return False
    try:
        repo = known if isinstance(known, pygit2.Repository) else pygit2.Repository(str(path))
    except pygit2.GitError:
        return False
    configured = repo.config["core.hooksPath"] if "core.hooksPath" in repo.config else "hooks"
    hooks = Path(repo.path) / Path(configured).expanduser()   # relative: to the git dir
    active = [h for h in (hooks.iterdir() if hooks.is_dir() else ())
              if not h.name.endswith(".sample") and os.access(h, os.X_OK)]
    worktrees = Path(repo.path) / "worktrees"
    if worktrees.is_dir() and any(worktrees.iterdir()):
        return False    # a linked worktree may have the branch checked out: push refuses that
    if "core.sharedRepository" in repo.config:
        return False    # group-writable objects: let git create them with its own modes
    return repo if repo.is_bare and not active else False
