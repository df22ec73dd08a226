"""Target repositories: has a task's pushed commit reached its base branch?

The engine asks this for tasks in `review_pending`. Without a forge, polling git
is how a merge is noticed: each target repository is fetched (at most once per
`min_interval` seconds) into a bare cache under the state directory, and the
commit the run pushed counts as merged when

- it is an ancestor of `origin/<base>` (a merge commit, a fast-forward), or
- its changes are already in `origin/<base>`: merging it there would change
  nothing (`git merge-tree --write-tree <tip> <commit>` gives the tip's own
  tree), which is what a squash merge, a rebase merge or a cherry-pick leaves.
  A commit with no changes of its own (its tree is its merge base's) is not
  merged this way: merging nothing always "changes nothing". Needs git 2.38;
  with an older git only the first rule holds, and a warning says so.

The commit comes from the status file, so deleting the branch after a merge
must not hide the merge: each pushed commit is kept in the cache by a ref of
its own (`refs/fleet/<task>`) while its task is checked, and a commit the cache
never saw (the branch was deleted before a fetch) is fetched by its id. Uses the
real `git` command, so any URL git can fetch works. `fleet plan` fetches into a
scratch cache instead, borrowing (read-only) the objects of the state
directory's cache so that a fetch costs only what is new.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

log = logging.getLogger("fleet")

_GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
FETCH_TIMEOUT = 20.0    # seconds; the engine waits for merge checks, so keep them short
MERGE_TREE_GIT = (2, 38)    # the first git with `merge-tree --write-tree`
PIN_PREFIX = "refs/fleet/"


@dataclass(frozen=True, slots=True)
class MergeCheck:
    """Is `commit`, pushed by the run of `task`, in `base` of `repo` yet?"""
    task: str
    repo: str
    base: str
    commit: str


@dataclass(frozen=True, slots=True)
class _Tip:
    commit: str
    tree: str


class Targets:
    def __init__(self, cache_dir: Path, min_interval: float = 0.0, borrow: Path | None = None):
        self.cache_dir = cache_dir
        self.borrow = borrow        # another cache whose objects ours may read, never write
        self.min_interval = min_interval
        self._fetched: dict[str, float] = {}
        self._answers: dict[tuple[str, str], bool] = {}   # (commit, base tip) -> merged
        self._tips: dict[tuple[str, str], _Tip | None] = {}  # (repo, base) -> tip at last fetch
        self._pins: dict[str, dict[str, str]] = {}  # repo -> {task: commit} under refs/fleet/
        self._asked: set[tuple[str, str]] = set()   # (repo, commit) fetched by id since the last fetch
        self._merge_tree: bool | None = None        # None: git's version not asked yet
        self._quarantine: Path | None = None        # merge-tree's scratch objects, one call's
        self.errors: dict[str, str] = {}    # repo -> last fetch error, for `fleet status`

    def refresh(self) -> None:
        """Fetch every repository again on the next call, whatever min_interval says."""
        self._fetched.clear()

    def merged(self, checks: Iterable[MergeCheck]) -> set[str]:
        """Task ids whose commit is in base.

        Each repository is fetched once per call at most, and each (commit, base
        tip) pair is asked of git once: a pass where no base moved costs no git."""
        done: set[str] = set()
        tips: dict[tuple[str, str], _Tip | None] = {}
        pins: dict[str, dict[str, str]] = {}
        answers: dict[tuple[str, str], bool] = {}
        try:
            for check in checks:
                key = (check.repo, check.base)
                if key not in tips:
                    tips[key] = self._base_tip(check.repo, check.base)
                tip = tips[key]
                if tip is None:
                    continue
                answer = self._merged(check, tip)
                if answer is None:
                    continue        # the commit is not in the cache: nothing to pin or keep
                answers[(check.commit, tip.commit)] = answer
                pins.setdefault(check.repo, {})[check.task] = check.commit
                if answer:
                    done.add(check.task)
        finally:
            if self._quarantine is not None:
                shutil.rmtree(self._quarantine, ignore_errors=True)
                self._quarantine = None
        self._answers = answers     # only the pairs still asked about: the cache stays small
        for repo, wanted in pins.items():
            self._pin(repo, wanted)
        return done

    def _base_tip(self, repo: str, base: str) -> _Tip | None:
        fetched_at = self._fetched.get(repo)
        mirror = self._fresh(repo)
        if mirror is None:
            return None
        key = (repo, base)
        if self._fetched.get(repo) == fetched_at and key in self._tips:
            return self._tips[key]      # not fetched since: the tip cannot have moved
        ref = f"refs/remotes/origin/{base}"
        out = _git("-C", str(mirror), "rev-parse", "-q", f"{ref}^{{commit}}", f"{ref}^{{tree}}")
        lines = out.split() if out else []
        self._tips[key] = _Tip(lines[0], lines[1]) if len(lines) == 2 else None
        return self._tips[key]

    def _merged(self, check: MergeCheck, tip: _Tip) -> bool | None:
        """Merged or not; None when the commit is not in the cache (it cannot be told)."""
        key = (check.commit, tip.commit)
        if key in self._answers:
            return self._answers[key]
        mirror = self._mirror(check.repo)
        rc, out = _run("-C", str(mirror), "merge-base", tip.commit, check.commit)
        if rc not in (0, 1) and self._fetch_commit(check):
            rc, out = _run("-C", str(mirror), "merge-base", tip.commit, check.commit)
        if rc not in (0, 1):
            return None
        if rc == 1:
            return False            # no history in common: base was replaced, say
        fork = out.strip()
        if fork == check.commit:
            return True             # an ancestor of base: merged for real or fast-forwarded
        return self._changes_in(check, tip, fork)

    def _changes_in(self, check: MergeCheck, tip: _Tip, fork: str) -> bool:
        """Are the commit's changes already in the tip, though the commit is not?"""
        if not self._merge_tree_ok():
            return False
        mirror = self._mirror(check.repo)
        rc, out = _run("-C", str(mirror), "merge-tree", "--write-tree", "--no-messages",
                       tip.commit, check.commit, env=self._quarantined(mirror))
        if rc != 0 or out.split("\n", 1)[0].strip() != tip.tree:
            return False            # a conflict (exit 1), or merging would change base
        # Merging changes nothing. That is "merged" only if the commit changes
        # something of its own: an empty branch is in every base.
        rc, out = _run("-C", str(mirror), "rev-parse", f"{check.commit}^{{tree}}", f"{fork}^{{tree}}")
        trees = out.split()
        return rc == 0 and len(trees) == 2 and trees[0] != trees[1]

    def _fetch_commit(self, check: MergeCheck) -> bool:
        """Bring a commit the cache never saw (its branch deleted before any fetch
        of ours) by its id; once per fetch of the repository. True if it came."""
        key = (check.repo, check.commit)
        if key in self._asked:
            return False
        self._asked.add(key)
        mirror = self._mirror(check.repo)
        if _git("-C", str(mirror), "fetch", "-q", "--", check.repo, check.commit,
                timeout=FETCH_TIMEOUT) is not None:
            return True
        log.warning("%s: commit %s is gone from %s (branch %s deleted before fleet fetched it?): "
                    "cannot tell whether it was merged", check.task, check.commit[:12],
                    check.repo, f"task/{check.task}")
        return False

    def _pin(self, repo: str, wanted: Mapping[str, str]) -> None:
        """Keep each checked commit in the cache by a ref of its own, so that a
        fetch that prunes its deleted branch (or a gc) does not drop it; drop the
        refs of tasks no longer checked."""
        mirror = self._mirror(repo)
        have = self._pins.get(repo)
        if have is None:
            out = _git("-C", str(mirror), "for-each-ref", "--format=%(refname) %(objectname)",
                       PIN_PREFIX)
            if out is None:
                return
            have = {ref[len(PIN_PREFIX):]: sha for ref, _, sha in
                    (line.partition(" ") for line in out.splitlines())}
        lines = [f"update {PIN_PREFIX}{task} {commit}\n" for task, commit in wanted.items()
                 if have.get(task) != commit]
        lines += [f"delete {PIN_PREFIX}{task}\n" for task in have.keys() - wanted.keys()]
        if lines and _git("-C", str(mirror), "update-ref", "--stdin",
                          input="".join(lines)) is None:
            self._pins.pop(repo, None)      # read them again next time
            return
        self._pins[repo] = dict(wanted)

    def _merge_tree_ok(self) -> bool:
        if self._merge_tree is None:
            version = _git_version()
            self._merge_tree = version is not None and version >= MERGE_TREE_GIT
            if not self._merge_tree:
                shown = ".".join(map(str, version)) if version else "of unknown version"
                log.warning("git %s is older than 2.38 (no `merge-tree --write-tree`): squash and "
                            "rebase merges are not noticed, only merges that keep the pushed "
                            "commit (merge commits, fast-forwards)", shown)
        return self._merge_tree

    def _quarantined(self, mirror: Path) -> dict[str, str]:
        """An environment whose new objects go to a scratch directory (removed at
        the end of the call) and that reads the mirror's: merge-tree writes its
        result tree, and 200 tasks a pass must not pile loose objects up."""
        if self._quarantine is None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._quarantine = Path(tempfile.mkdtemp(prefix="merge-tree-", dir=self.cache_dir))
        return {**_GIT_ENV, "GIT_OBJECT_DIRECTORY": str(self._quarantine),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str((mirror / "objects").resolve())}

    def _mirror(self, repo: str) -> Path:
        return self.cache_dir / (hashlib.sha256(repo.encode()).hexdigest()[:16] + ".git")

    def _fresh(self, repo: str) -> Path | None:
        mirror = self._mirror(repo)
        last = self._fetched.get(repo)
        if last is not None and time.monotonic() - last < self.min_interval:
            return mirror
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            if _git("init", "--bare", "-q", str(mirror)) is None:
                return None
            self._borrow_objects(mirror)
        out = _git("-C", str(mirror), "fetch", "-q", "--prune", "--", repo,
                   "+refs/heads/*:refs/remotes/origin/*", timeout=FETCH_TIMEOUT)
        # A failed fetch also waits min_interval before the next try: a dead
        # server must not cost a timeout on every pass.
        self._fetched[repo] = time.monotonic()
        self._asked = {key for key in self._asked if key[0] != repo}
        if out is None:
            self.errors[repo] = f"cannot fetch {repo}"
            return None
        self.errors.pop(repo, None)
        return mirror

    def _borrow_objects(self, mirror: Path) -> None:
        """Read the borrowed cache's objects in place (git alternates): its refs
        count as what we have, so the fetch brings only newer objects."""
        objects = self.borrow / mirror.name / "objects" if self.borrow else None
        if objects is not None and objects.is_dir():
            (mirror / "objects" / "info" / "alternates").write_text(f"{objects.resolve()}\n")


@functools.cache
def _git_version() -> tuple[int, int] | None:
    """(major, minor) of the git on PATH, or None when it cannot be told."""
    out = _git("--version")
    found = re.search(r"(\d+)\.(\d+)", out or "")
    return (int(found[1]), int(found[2])) if found else None


def _run(*args: str, timeout: float = 60, env: Mapping[str, str] | None = None,
         input: str | None = None) -> tuple[int, str]:
    """(exit code, stdout) of a git command; -1 when it could not run or timed out."""
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, input=input,
                              env=dict(env) if env is not None else _GIT_ENV, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return -1, ""
    return proc.returncode, proc.stdout


def _git(*args: str, timeout: float = 60, input: str | None = None) -> str | None:
    """stdout of a git command, or None when it failed (a normal answer here)."""
    rc, out = _run(*args, timeout=timeout, input=input)
    return out if rc == 0 else None
