"""The git store: the controller's own clone of the fleet repository.

The engine calls it to sync (clone or fetch), to read trees, blobs and tree
diffs of the fleet repository, and to commit and push each reconcile pass's
status files. With write.py (status commits), remote.py (the git command) and
common.py it is the package that alone imports pygit2 (remote.py needs none).

The clone lives in `<state_dir>/fleet.git` (bare); a person's working tree is
never touched. Network operations (fetch, push) run the real `git` command, so
the user's SSH config, credential helpers and known_hosts apply; everything
local (trees, blobs, diffs, building the status commit) runs in-process with
pygit2, much faster than a git process per step. One exception: a large batch
of status blobs goes through `git fast-import`, one pack instead of a file per
blob. Figures at 100k tasks: tests/test_gitstore.py::test_bench_100k.

A source on this machine is cloned sharing its object store (a fetch copies
nothing); when it is also bare and has no server hooks, status objects are
written straight into it and the branch moves by compare-and-swap (`git
update-ref NEW OLD`, the lock a push takes too) instead of a push, which would
pack and unpack the whole status/ tree. A person's concurrent push makes the
swap fail exactly as it makes a push fail: we fetch and re-apply on theirs.

The source may be a URL (https, ssh): git itself authenticates (SSH keys, a
credential helper); a URL with credentials in it is refused. With a status
branch (fleet.yaml's status_branch, use_status_branch) status is read and
committed there, and the main branch, whose specs are read, never moves by us.

`fleet plan` clones into a scratch directory instead, borrowing (read-only)
the objects of the state directory's clone, so it costs one small fetch and
leaves that clone, which a running controller may be using, as it was.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pygit2

from controller.gitstore.common import (BLOB_MODES, DIRS, SPEC_DIRS, TOP_FILES, GitError, _blob, _blobs_of,
                                        _is_local, _subtree, _tip, _tree_of, cache_trees, tracking_ref)
from controller.gitstore.remote import Remote
from controller.gitstore.write import StatusWriter
from controller.text import has_credentials, redact


class GitStore:
    """The controller's clone of one branch of the fleet repository.

    It owns a Remote (the git command: fetch, push) and, once the clone exists,
    a StatusWriter for status commits, handing each what it needs.
    Not thread-safe: the engine calls it from one thread at a time."""

    def __init__(self, source: str, state_dir: Path, branch: str = "main",
                 timeout: float = 600.0, push_attempts: int = 5, borrow: Path | None = None):
        if not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
            raise GitError(f"{branch!r} is not a valid branch name")
        if has_credentials(source):
            raise GitError(f"the fleet repository URL {redact(source)!r} has credentials in it: "
                           "remove them (from --repo, `repo:` in the config, or the clone's origin "
                           "with git remote set-url); git authenticates with an SSH key or a git "
                           "credential helper (git config credential.helper), never a token in the URL")
        cache_trees()
        self.source = _normalize_source(source)
        self.branch = branch
        self.path = Path(state_dir).expanduser() / "fleet.git"
        self._local = _is_local(source) or source.startswith("file://")
        self._borrow = borrow               # another clone whose objects ours may read
        self._push_attempts = push_attempts
        self._tracking = tracking_ref(branch)
        self._timeout = timeout
        self._remote = Remote(self.source, branch, timeout, self._local)
        self._repo: pygit2.Repository | None = None
        self._writers: dict[str, StatusWriter] = {}   # by branch: main, or the status branch
        self.status_branch: str | None = None         # fleet.yaml's status_branch, if other than branch
        self._status_remote: Remote | None = None

    def commit_statuses(self, writes: Mapping[str, bytes | None], message: str,
                        author: tuple[str, str] = ("fleet", "fleet@localhost")) -> str | None:
        """One commit on the tip of origin/<branch> that sets status/<id>.yaml to
        the bytes (None deletes it), touching only status/, then pushed. Returns
        the new commit hex, or None when the tree would not change (nothing is
        committed or pushed). A push rejected because someone pushed meanwhile is
        retried on the new tip; people's commits are never rewritten (no force).
        With a status branch, the commit goes there instead, its first one
        seeded from status/ of the main branch's tip."""
        if self._status_remote is None:
            return self._status_writer(self.branch, self._remote).commit(writes, message, author)
        writer = self._status_writer(self._status_remote.branch, self._status_remote)
        if not self.status_tip(own=True):
            writer.seed(self.status_tree(self.tip()),
                        f"fleet: status branch, seeded from status/ of {self.branch} at "
                        f"{self.tip()[:12] or 'its start'}\n", author)
        return writer.commit(writes, message, author)

    @property
    def push_retries(self) -> int:
        """Status pushes rejected (someone pushed first) and retried, since this store was made."""
        return sum(w.push_retries for w in self._writers.values())

    def _status_writer(self, branch: str, remote: Remote) -> StatusWriter:
        if branch not in self._writers:     # made on first use: it needs the clone
            self._writers[branch] = StatusWriter(self.repo, self.path, remote, source=self.source,
                                                 branch=branch, local=self._local,
                                                 push_attempts=self._push_attempts)
        return self._writers[branch]

    # ---- the status branch (fleet.yaml's status_branch) --------------------------------
    def use_status_branch(self, name: str | None) -> str:
        """Read and write status on branch `name` from now on (None, or the main
        branch itself: on the main branch, the default), fetching it when it is
        new to us. Writes nothing: a branch the source does not have yet is
        seeded by the first status commit. Returns status_tip()."""
        name = None if name == self.branch else name
        if name is not None and not pygit2.reference_is_valid_name(f"refs/heads/{name}"):
            raise GitError(f"status_branch {name!r} is not a valid branch name")
        if name != self.status_branch:
            self.status_branch = name
            self._status_remote = None
            if name is not None:
                self._status_remote = Remote(self.source, name, self._timeout, self._local)
                self._status_remote.fetch(self.path, had_tip=bool(self.status_tip(own=True)))
        return self.status_tip()

    def status_tip(self, own: bool = False) -> str:
        """The commit whose status/ is the status of record: the status branch's
        last fetched or pushed tip; the main branch's without one, or while the
        status branch does not exist yet (its seed is that status/). `own`:
        the status branch's tip only, "" when there is none."""
        if self.status_branch is not None:
            tip = _tip(self.repo, tracking_ref(self.status_branch))
            if tip or own:
                return tip
        return "" if own else self.tip()

    # ---- network: the real git command, through Remote -------------------------
    def sync(self) -> str:
        """Clone on first use, else fetch. Returns the tip of origin/<branch>,
        or "" while the branch has no commits yet."""
        if not (self.path / "HEAD").exists():
            self._clone()
        else:
            if self.repo.remotes["origin"].url != self.source:
                self.repo.remotes.set_url("origin", self.source)   # --repo changed
            status = self._status_remote
            both = status is not None and bool(self.status_tip(own=True))
            self._remote.fetch(self.path, had_tip=bool(self.tip()), also=status if both else None)
            if status is not None and not both:
                status.fetch(self.path, had_tip=False)    # seeded meanwhile by another controller?
        return self.tip()

    def _clone(self) -> None:
        # Init and fetch into a temporary directory, then rename: a clone that
        # failed half way never looks like a usable one on the next start.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".fleet.git.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        repo = pygit2.init_repository(str(tmp), bare=True)
        repo.remotes.create("origin", self.source,
                            f"+refs/heads/{self.branch}:{self._tracking}")
        self._share_objects(tmp)
        try:
            self._remote.fetch(tmp, had_tip=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        tmp.rename(self.path)

    def _share_objects(self, clone: Path) -> None:
        """For a source on this machine, read its objects in place (`git clone
        --shared`): a fetch then copies nothing and costs ~10 ms instead of a
        pack of the 100k-entry tasks/ tree (~300 ms). Our own status objects
        still live in our clone and reach the source by push. A borrowed
        clone's objects are read in place the same way."""
        shared = [self._source_objects()] if self._local else []
        if self._borrow is not None:
            shared.append(Path(self._borrow).expanduser() / "objects")
        lines = [f"{d.resolve()}\n" for d in shared if d is not None and d.is_dir()]
        if lines:
            alternates = clone / "objects" / "info" / "alternates"
            alternates.parent.mkdir(parents=True, exist_ok=True)
            alternates.write_text("".join(lines))

    def _source_objects(self) -> Path | None:
        source = Path(self.source.removeprefix("file://")).expanduser()
        for objects in (source / "objects", source / ".git" / "objects"):   # bare or not
            if objects.is_dir():
                return objects
        return None

    # ---- reading: pygit2 in-process ------------------------------------------------
    @property
    def repo(self) -> pygit2.Repository:
        if self._repo is None:
            if not (self.path / "HEAD").exists():
                self._clone()   # first use before any sync
            try:
                self._repo = pygit2.Repository(str(self.path))
            except pygit2.GitError as e:
                raise GitError(f"the controller's clone {self.path} is unreadable ({e}): "
                               "remove it and it will be cloned afresh") from None
        return self._repo

    def tip(self) -> str:
        """The last fetched or pushed tip of origin/<branch>, without fetching; "" if none."""
        return _tip(self.repo, self._tracking)

    def list_files(self, commit: str) -> dict[str, str]:
        """Repo-relative path -> blob hex for fleet.yaml and the files of hosts/,
        agents/, tasks/ and status/ (one level; other files are not ours)."""
        return _fleet_blobs(self._tree(commit))

    def changes(self, old: str | None, new: str,
                dirs: tuple[str, ...] = DIRS) -> list[tuple[str, str | None]]:
        """What changed from old to new among list_files' paths: (path, blob hex)
        for added or modified, (path, None) for deleted. old=None: everything.
        `dirs` limits the folders looked at (the engine skips its own status/)."""
        if not old:
            return sorted((p, b) for p, b in self.list_files(new).items()
                          if "/" not in p or p.split("/", 1)[0] in dirs)
        if old == new:
            return []
        a, b = self._tree(old), self._tree(new)
        out = [(name, _blob(b, name)) for name in TOP_FILES if _blob(a, name) != _blob(b, name)]
        for d in dirs:
            out += self._dir_changes(d, _subtree(a, d), _subtree(b, d))
        return sorted(out)

    def _dir_changes(self, d: str, a: pygit2.Tree | None,
                     b: pygit2.Tree | None) -> list[tuple[str, str | None]]:
        # Whole directories are compared by id first: libgit2 would read both
        # 100k-entry trees even when they are the same, costing tens of ms each.
        # (Never test a Tree for truth: that is len(), which loads it.)
        if a is None:
            return [] if b is None else [(f"{d}/{name}", blob) for name, blob in _blobs_of(b)]
        if b is None:
            return [(f"{d}/{name}", None) for name, _ in _blobs_of(a)]
        if a.id == b.id:
            return []
        out: list[tuple[str, str | None]] = []
        # What repo.diff(a, b) does for two trees (its types do not take a Tree).
        for delta in a.diff_to_tree(b, interhunk_lines=0).deltas:
            if delta.status == pygit2.GIT_DELTA_DELETED:
                path, blob = delta.old_file.path, None
            else:
                f = delta.new_file
                path, blob = f.path, str(f.id) if f.mode in BLOB_MODES else None
            if "/" not in path:          # deeper files are not fleet files
                out.append((f"{d}/{path}", blob))
        return out

    def read(self, blob: str) -> bytes:
        try:
            _, data = self.repo.odb.read(blob)   # no Blob object: faster for many reads
        except (KeyError, ValueError):
            raise GitError(f"blob {blob} is not in the controller's clone {self.path}; "
                           "sync first, or remove the clone to fetch it afresh") from None
        return data

    def read_statuses(self, commit: str) -> dict[str, bytes]:
        """Task id -> bytes of status/<id>.yaml at commit."""
        odb = self.repo.odb
        return {task: odb.read(oid)[1] for task, oid in self._status_oids(commit)}

    def status_tree(self, commit: str) -> str | None:
        """The id of status/ at commit: cheap to compare, it changes with any status file."""
        entry = _subtree(self._tree(commit), "status")
        return str(entry.id) if entry is not None else None

    def status_blobs(self, commit: str) -> dict[str, str]:
        """Task id -> blob hex of status/<id>.yaml at commit (read them with read())."""
        return dict(self._status_oids(commit))

    def _status_oids(self, commit: str) -> list[tuple[str, str]]:
        """(task id, blob hex) of the status files at commit."""
        status = _subtree(self._tree(commit), "status")
        return [(name[:-5], oid) for name, oid in (_blobs_of(status) if status is not None else [])
                if name.endswith(".yaml")]

    def parent(self, commit: str) -> str | None:
        """The first parent of commit: the tip a status commit was made on."""
        parents = self.repo[commit].peel(pygit2.Commit).parent_ids
        return str(parents[0]) if parents else None

    def is_ancestor(self, commit: str, of: str) -> bool:
        """True when commit is of or reachable from of; False also when either is unknown."""
        if commit == of:
            return True
        try:
            return self.repo.descendant_of(of, commit)
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def _tree(self, commit: str) -> pygit2.Tree:
        return _tree_of(self.repo, commit, self.path)

def files_at(path: Path | str, rev: str | None) -> dict[str, bytes]:
    """The fleet files of `rev` in the local repository at `path` (bare or not),
    as repo-relative path -> bytes; {} for no revision or an unborn HEAD.
    For `fleet validate --rev`. A branch name also matches origin/<name>, so
    the controller's own clone answers to the names people use."""
    repo, root = _tree_at(path, rev)
    if root is None:
        return {}
    return {p: repo.odb.read(blob)[1] for p, blob in _fleet_blobs(root).items()}


def unread_at(path: Path | str, rev: str | None) -> list[tuple[str, str]]:
    """(path, what it is) of the entries where fleet files go that files_at, and
    so the controller, does not read: "symlink", "folder" or "submodule"."""
    repo, root = _tree_at(path, rev)
    if root is None:
        return []
    return _unread(root)


def _tree_at(path: Path | str, rev: str | None) -> tuple[pygit2.Repository, pygit2.Tree | None]:
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError:
        raise GitError(f"{path} is not a git repository") from None
    if not rev or (rev == "HEAD" and repo.head_is_unborn):
        return repo, None
    for candidate in (rev, f"refs/remotes/origin/{rev}"):
        try:
            return repo, repo.revparse_single(candidate).peel(pygit2.Tree)
        except (KeyError, ValueError, pygit2.GitError):
            continue
    raise GitError(f"{path} has no revision {rev!r}: give a branch, tag or commit")


_KIND_OF_MODE = {pygit2.GIT_FILEMODE_LINK: "symlink", pygit2.GIT_FILEMODE_TREE: "folder",
                 pygit2.GIT_FILEMODE_COMMIT: "submodule"}


def _unread(root: pygit2.Tree) -> list[tuple[str, str]]:
    out = [(name, _KIND_OF_MODE[root[name].filemode]) for name in TOP_FILES
           if name in root and root[name].filemode in _KIND_OF_MODE]
    for d in SPEC_DIRS:
        if d not in root:
            continue
        if (sub := _subtree(root, d)) is None:
            out.append((d, _KIND_OF_MODE.get(root[d].filemode, "file")))
            continue
        out += [(f"{d}/{e.name}", _KIND_OF_MODE[e.filemode]) for e in sub
                if e.filemode in _KIND_OF_MODE]
    return sorted(out)


def remote_url(path: Path | str, name: str = "origin") -> str | None:
    """The URL of remote `name` of the repository at `path`, as fetch would use it
    (a relative local path made absolute); None when it has no such remote."""
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError:
        raise GitError(f"{path} is not a git repository") from None
    try:
        url = repo.remotes[name].url
    except (KeyError, ValueError):
        return None
    if url and _is_local(url) and not Path(url).expanduser().is_absolute():
        # git resolves a relative remote path from the working tree's top
        url = str((Path(repo.workdir or repo.path) / url).resolve())
    return url or None


def _fleet_blobs(root: pygit2.Tree) -> dict[str, str]:
    out = {name: blob for name in TOP_FILES if (blob := _blob(root, name))}
    for d in DIRS:
        if (sub := _subtree(root, d)) is not None:
            out.update((f"{d}/{name}", blob) for name, blob in _blobs_of(sub))
    return out


def _normalize_source(source: str) -> str:
    # The clone runs git from its own directory, so a relative path must be absolute.
    return str(Path(source).expanduser().resolve()) if _is_local(source) else source
