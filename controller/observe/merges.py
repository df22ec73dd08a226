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
directory's cache so that a fetch costs only what is new; it runs no merge-tree
there (see `_merged_in`), so it does not foresee that a squash-merged task
completes; `fleet run` does.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

log = logging.getLogger("fleet")

_GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
FETCH_TIMEOUT = 20.0    # seconds; the engine waits for merge checks, so keep them short
MERGE_TREE_GIT = (2, 38)    # the first git with `merge-tree --write-tree`
PIN_PREFIX = "refs/fleet/"
WORKERS = min(4, os.cpu_count() or 1)   # merge-tree runs at a time, when a base moved


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
        self._have: dict[str, set[str]] = {}        # repo -> checked commits its cache holds
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
        tip) pair is asked of git once: a pass where no base moved costs no git.
        When a base moved, its repository's ancestors are found in one git run
        and merge-tree runs only for the other commits, a few at a time."""
        by_repo: dict[str, list[MergeCheck]] = {}
        for check in checks:
            by_repo.setdefault(check.repo, []).append(check)
        done: set[str] = set()
        answers: dict[tuple[str, str], bool] = {}
        try:
            for repo, group in by_repo.items():
                done |= self._merged_in(repo, group, answers)
        finally:
            if self._quarantine is not None:
                shutil.rmtree(self._quarantine, ignore_errors=True)
                self._quarantine = None
        self._answers = answers     # only the pairs still asked about: the cache stays small
        return done

    def _merged_in(self, repo: str, group: list[MergeCheck],
                   answers: dict[tuple[str, str], bool]) -> set[str]:
        tips = {base: self._base_tip(repo, base) for base in {c.base for c in group}}
        asked = [(c, tip) for c in group if (tip := tips[c.base]) is not None]
        if not asked:
            return set()
        mirror = self._mirror(repo)
        present = self._present(repo, group)
        self._pin(repo, {c.task: c.commit for c in group if c.commit in present})
        todo = [(c, tip) for c, tip in asked if c.commit in present
                and (c.commit, tip.commit) not in self._answers]
        for tip in {tip for _, tip in todo}:
            ancestors = self._ancestors(repo, tip, {c.commit for c, t in todo if t == tip})
            for c, t in todo:
                if t == tip and c.commit in ancestors:
                    answers[(c.commit, tip.commit)] = True
        rest = [(c, tip) for c, tip in todo if (c.commit, tip.commit) not in answers]
        # A cache that borrows another's objects leaves merge-tree alone: writing
        # an object that exists there "freshens" (touches) that cache's file, and
        # `fleet plan` must change nothing in the state dir. It sees ancestors only.
        if rest and not (mirror / "objects" / "info" / "alternates").exists() and self._merge_tree_ok():
            env = self._quarantined(mirror)
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                found = list(pool.map(lambda ct: _changes_in(mirror, ct[0].commit, ct[1], env), rest))
        else:
            found = [False] * len(rest)
        for (c, tip), answer in zip(rest, found):
            answers[(c.commit, tip.commit)] = answer
        for c, tip in asked:
            key = (c.commit, tip.commit)
            if key not in answers and key in self._answers:
                answers[key] = self._answers[key]
        return {c.task for c, tip in asked if answers.get((c.commit, tip.commit))}

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

    def _present(self, repo: str, group: list[MergeCheck]) -> set[str]:
        """The checked commits the cache holds. One the cache never saw (its branch
        deleted before any fetch of ours) is fetched by its id, once per fetch."""
        wanted = {c.commit for c in group}
        have = self._have.get(repo, set()) & wanted     # pinned since we saw them
        self._have[repo] = have
        unknown = wanted - have
        if not unknown:
            return have
        mirror = self._mirror(repo)
        have |= _commits_in(mirror, unknown)
        missing = sorted(unknown - have - {sha for r, sha in self._asked if r == repo})
        if missing:
            self._asked |= {(repo, sha) for sha in missing}
            # All at once; if one of them is refused, the others one by one.
            if (_git("-C", str(mirror), "fetch", "-q", "--", repo, *missing,
                     timeout=FETCH_TIMEOUT) is None and len(missing) > 1):
                for sha in missing:
                    _git("-C", str(mirror), "fetch", "-q", "--", repo, sha, timeout=FETCH_TIMEOUT)
            have |= _commits_in(mirror, set(missing))
            for c in group:
                if c.commit in missing and c.commit not in have:
                    log.warning("%s: commit %s is gone from %s (branch task/%s deleted before "
                                "fleet fetched it?): cannot tell whether it was merged",
                                c.task, c.commit[:12], repo, c.task)
        return have

    def _ancestors(self, repo: str, tip: _Tip, commits: set[str]) -> set[str]:
        """Which of `commits` are ancestors of the tip: one git run for the pinned
        ones (`for-each-ref --merged`), one each for any a failed pin left out."""
        mirror = self._mirror(repo)
        pinned = set(self._pins.get(repo, {}).values())
        found: set[str] = set()
        if commits & pinned:
            out = _git("-C", str(mirror), "for-each-ref", f"--merged={tip.commit}",
                       "--format=%(objectname)", PIN_PREFIX)
            found = set(out.split()) & commits if out else set()
        for commit in commits - pinned:
            if _run("-C", str(mirror), "merge-base", "--is-ancestor", commit, tip.commit)[0] == 0:
                found.add(commit)
        return found

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


def _changes_in(mirror: Path, commit: str, tip: _Tip, env: Mapping[str, str]) -> bool:
    """Are the changes of `commit` (not an ancestor of the tip) already in the tip?"""
    rc, out = _run("-C", str(mirror), "merge-tree", "--write-tree", "--no-messages",
                   tip.commit, commit, env=env)
    if rc != 0 or out.split("\n", 1)[0].strip() != tip.tree:
        return False            # a conflict (exit 1), or merging would change base
    # Merging changes nothing. That is "merged" only if the commit changes
    # something of its own: an empty branch is in every base.
    rc, fork = _run("-C", str(mirror), "merge-base", tip.commit, commit)
    if rc != 0:
        return False
    rc, out = _run("-C", str(mirror), "rev-parse", f"{commit}^{{tree}}", f"{fork.strip()}^{{tree}}")
    trees = out.split()
    return rc == 0 and len(trees) == 2 and trees[0] != trees[1]


def _commits_in(mirror: Path, commits: set[str]) -> set[str]:
    """Those of `commits` that the repository holds (one `cat-file --batch-check`)."""
    rc, out = _run("-C", str(mirror), "cat-file", "--batch-check=%(objectname) %(objecttype)",
                   input="".join(f"{sha}\n" for sha in commits))
    return {line.split()[0] for line in out.splitlines() if line.endswith(" commit")} if rc == 0 else set()


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
