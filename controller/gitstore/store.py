"""The git store: the controller's own clone of the fleet repository.

The engine calls it to sync (clone or fetch), to read trees, blobs and tree
diffs of the fleet repository, and to commit and push each reconcile pass's
status files. Together with write.py and common.py it is the only code that imports pygit2.

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

`fleet plan` clones into a scratch directory instead, borrowing (read-only)
the objects of the state directory's clone, so it costs one small fetch and
leaves that clone, which a running controller may be using, as it was.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pygit2

from controller.gitstore.common import (BLOB_MODES, DIRS, SPEC_DIRS, TOP_FILES, GitError, _blob, _blobs_of,
                     _last_lines, _subtree, cache_trees)
from controller.gitstore.write import StatusWriter


class GitStore(StatusWriter):
    """The controller's clone of one branch of the fleet repository.

    Not thread-safe: the engine calls it from one thread at a time."""

    def __init__(self, source: str, state_dir: Path, branch: str = "main",
                 timeout: float = 600.0, push_attempts: int = 5, borrow: Path | None = None):
        if not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
            raise GitError(f"{branch!r} is not a valid branch name")
        cache_trees()
        self.source = _normalize_source(source)
        self._local = _is_local(source) or source.startswith("file://")
        self.branch = branch
        self.path = Path(state_dir).expanduser() / "fleet.git"
        self.borrow = borrow                # another clone whose objects ours may read
        self.timeout = timeout              # seconds, for each fetch or push
        self.push_attempts = push_attempts
        self._tracking = f"refs/remotes/origin/{branch}"
        self._repo: pygit2.Repository | None = None
        self._builder: tuple[pygit2.Oid, pygit2.TreeBuilder] | None = None  # last status tree
        self._commits = 0
        self._repack: subprocess.Popen | None = None
        self._direct: pygit2.Repository | None | bool = None   # see _writer()

    # ---- network: the real git command -------------------------------------------
    def sync(self) -> str:
        """Clone on first use, else fetch. Returns the tip of origin/<branch>,
        or "" while the branch has no commits yet."""
        if not (self.path / "HEAD").exists():
            self._clone()
        else:
            if self.repo.remotes["origin"].url != self.source:
                self.repo.remotes.set_url("origin", self.source)   # --repo changed
            self._fetch(self.path)
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
            self._fetch(tmp)
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
        if self.borrow is not None:
            shared.append(Path(self.borrow).expanduser() / "objects")
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

    def _fetch(self, clone: Path) -> None:
        if _is_local(self.source) and not Path(self.source).exists():
            raise GitError(f"fleet repository {self.source} does not exist: "
                           "check --repo (a path to a bare repository, or a URL)")
        # Forced refspec: the controller follows the source even if it was rewritten.
        proc = self._git(clone, "fetch", "--quiet", "--no-tags", "origin",
                         f"+refs/heads/{self.branch}:{self._tracking}")
        if proc.returncode == 0:
            return
        if "couldn't find remote ref" in proc.stderr:
            if clone == self.path and self.tip():
                raise GitError(f"branch {self.branch} has disappeared from {self.source}; "
                               "the controller will not take that to mean 'no tasks'. "
                               "Restore the branch or point --repo elsewhere")
            return     # an empty repository: no commits on the branch yet
        raise GitError(f"cannot fetch {self.branch} from {self.source}: {_last_lines(proc.stderr)}. "
                       "Check that it is a git repository this machine can reach "
                       "(path, URL, SSH keys, credentials, known_hosts)")

    def _push(self, commit: str) -> bool:
        """Push commit as the new branch tip; False when someone pushed first."""
        # To a repository on this machine, compressing and delta-ing the pack only
        # burns CPU (a 100k-file status tree is 4 MB, the push's main cost): send it
        # as it is; the receiving repository's own gc compresses it later.
        fast = ("-c", "pack.compression=0", "-c", "pack.window=0") if self._local else ()
        proc = self._git(self.path, *fast, "push", *(("--no-thin",) if fast else ()),
                         "--porcelain", "origin", f"{commit}:refs/heads/{self.branch}")
        if proc.returncode == 0:
            return True
        rejected = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
        if rejected and all(_is_race(ln) for ln in rejected):
            return False
        detail = _last_lines("\n".join(rejected) + "\n" + proc.stderr)
        raise GitError(f"cannot push status commit to {self.branch} of {self.source}: {detail}. "
                       "Check write access to the fleet repository and its server-side hooks")

    def _git(self, cwd: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        # No terminal prompt (a controller has nobody to answer it); a new session
        # so ssh cannot open /dev/tty either; C locale so messages can be parsed.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}
        try:
            proc = subprocess.Popen(["git", "-C", str(cwd), *args], env=env,
                                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except FileNotFoundError:
            raise GitError("the git command was not found: install git") from None
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # git and its ssh child
            proc.communicate()
            raise GitError(f"git {args[0]} with {self.source} took longer than "
                           f"{self.timeout:.0f}s and was stopped: check the network") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                           err.decode(errors="replace"))

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
        ref = self.repo.references.get(self._tracking)
        return str(ref.target) if ref is not None else ""

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
        if not commit:
            return self.repo[self.repo.TreeBuilder().write()].peel(pygit2.Tree)   # the empty tree
        try:
            return self.repo[commit].peel(pygit2.Tree)
        except (KeyError, ValueError, pygit2.InvalidSpecError):
            raise GitError(f"commit {commit} is not in the controller's clone {self.path}: "
                           "sync first") from None

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




def _is_race(line: str) -> bool:
    # "[rejected] (fetch first)" / "(non-fast-forward)": someone pushed first;
    # a remote ref lock failure is the same race seen from the server side.
    return "[rejected]" in line or ("[remote rejected]" in line
                                    and ("lock" in line or "old value" in line))


def _is_local(source: str) -> bool:
    # git's own rule: a URL has "://", an scp-like address a colon before any slash.
    return "://" not in source and not re.match(r"^[^/]+:", source)


def _normalize_source(source: str) -> str:
    # The clone runs git from its own directory, so a relative path must be absolute.
    return str(Path(source).expanduser().resolve()) if _is_local(source) else source
