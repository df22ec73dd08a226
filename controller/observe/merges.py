"""Target repositories: has a task's pushed commit reached its base branch?

The engine asks this for tasks in `review_pending`. Without a forge, polling git
is how a merge is noticed: each target repository is fetched (at most once per
`min_interval` seconds) into a bare cache under the state directory, and the
commit the run pushed is checked for being an ancestor of `origin/<base>`. The
commit comes from the status file, so deleting the branch after a merge does not
hide the merge. Uses the real `git` command, so any URL git can fetch works.
`fleet plan` fetches into a scratch cache instead, borrowing (read-only) the
objects of the state directory's cache so that a fetch costs only what is new.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

_GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
FETCH_TIMEOUT = 20.0    # seconds; the engine waits for merge checks, so keep them short


@dataclass(frozen=True, slots=True)
class MergeCheck:
    """Is `commit`, pushed by the run of `task`, in `base` of `repo` yet?"""
    task: str
    repo: str
    base: str
    commit: str


class Targets:
    def __init__(self, cache_dir: Path, min_interval: float = 0.0, borrow: Path | None = None):
        self.cache_dir = cache_dir
        self.borrow = borrow        # another cache whose objects ours may read, never write
        self.min_interval = min_interval
        self._fetched: dict[str, float] = {}
        self._answers: dict[tuple[str, str], bool] = {}   # (commit, base tip) -> merged
        self._tips: dict[tuple[str, str], str | None] = {}  # (repo, base) -> tip at last fetch
        self.errors: dict[str, str] = {}    # repo -> last fetch error, for `fleet status`

    def refresh(self) -> None:
        """Fetch every repository again on the next call, whatever min_interval says."""
        self._fetched.clear()

    def merged(self, checks: Iterable[MergeCheck]) -> set[str]:
        """Task ids whose commit is in base.

        Each repository is fetched once per call at most, and each (commit, base
        tip) pair is asked of git once: a pass where no base moved costs no git."""
        done: set[str] = set()
        tips: dict[tuple[str, str], str | None] = {}
        for check in checks:
            key = (check.repo, check.base)
            if key not in tips:
                tips[key] = self._base_tip(check.repo, check.base)
            tip = tips[key]
            if tip is not None and self._merged(check.repo, check.commit, tip):
                done.add(check.task)
        return done

    def _base_tip(self, repo: str, base: str) -> str | None:
        fetched_at = self._fetched.get(repo)
        mirror = self._fresh(repo)
        if mirror is None:
            return None
        key = (repo, base)
        if self._fetched.get(repo) == fetched_at and key in self._tips:
            return self._tips[key]      # not fetched since: the tip cannot have moved
        out = _git("-C", str(mirror), "rev-parse", "-q", "--verify",
                   f"refs/remotes/origin/{base}^{{commit}}")
        self._tips[key] = out.strip() if out else None
        return self._tips[key]

    def _merged(self, repo: str, commit: str, tip: str) -> bool:
        key = (commit, tip)
        if key not in self._answers:
            mirror = self._mirror(repo)
            self._answers[key] = _git("-C", str(mirror), "merge-base", "--is-ancestor",
                                      commit, tip) is not None
        return self._answers[key]

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


def _git(*args: str, timeout: float = 60) -> str | None:
    """stdout of a git command, or None when it failed (a normal answer here)."""
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True,
                              env=_GIT_ENV, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
