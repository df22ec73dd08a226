"""Noticing merges from git alone (controller/observe/merges.py), against real repos.

A target repository (bare, the "remote"), a person's clone of it who pushes
`task/<id>` and merges it into main in every way a forge or a person does, and a
Targets cache under tmp_path that is asked, as the engine asks, whether the
pushed commit is in main. The end-to-end test at the bottom runs `fleet run
--once` after a person squash-merged the branch.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.observe import merges
from controller.observe.merges import MergeCheck, Targets

from .conftest import git
from .fleetkit import World

LINES = "".join(f"{n}\n" for n in range(1, 10))


class Repo:
    """A bare target repository and Pat's clone of it, main seeded with f.txt."""

    def __init__(self, root: Path):
        self.remote = root / "target.git"
        git("init", "-q", "--bare", "--initial-branch=main", str(self.remote), cwd=root)
        self.work = root / "pat"
        git("clone", "-q", str(self.remote), str(self.work), cwd=root)
        git("checkout", "-q", "-B", "main", cwd=self.work)
        self.commit({"f.txt": LINES}, "initial")
        git("push", "-q", "origin", "main", cwd=self.work)

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.work)

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            (self.work / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def edit(self, name: str, old: str, new: str, message: str) -> str:
        text = (self.work / name).read_text().replace(f"{old}\n", f"{new}\n")
        return self.commit({name: text}, message)

    def branch(self, task: str = "t", *edits: tuple[str, str]) -> str:
        """Push task/<task> off main with one commit per (old line, new line) of f.txt."""
        self.git("checkout", "-q", "-B", f"task/{task}", "main")
        head = ""
        for old, new in edits or (("2", "two"), ("3", "three")):
            head = self.edit("f.txt", old, new, f"{task}: {old} -> {new}")
        self.git("push", "-q", "-f", "origin", f"task/{task}")
        self.git("checkout", "-q", "main")
        return head

    def on_main(self, *args: str) -> None:
        """Run a git command on main, then push main."""
        self.git("checkout", "-q", "main")
        self.git(*args)
        self.git("push", "-q", "origin", "main")

    def squash(self, task: str = "t") -> None:
        self.git("checkout", "-q", "main")
        self.git("merge", "-q", "--squash", f"task/{task}")
        self.git("commit", "-q", "-m", f"{task} (squashed)")
        self.git("push", "-q", "origin", "main")


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path)


@pytest.fixture
def targets(tmp_path):
    return Targets(tmp_path / "cache")


def merged(targets: Targets, repo: Repo, commit: str, task: str = "t") -> bool:
    targets.refresh()
    return task in targets.merged([MergeCheck(task, str(repo.remote), "main", commit)])


def test_a_merge_commit_counts(repo, targets):
    head = repo.branch()
    assert not merged(targets, repo, head)
    repo.on_main("merge", "-q", "--no-ff", "-m", "merge t", "task/t")
    assert merged(targets, repo, head)


def test_a_squash_merge_counts(repo, targets):
    head = repo.branch()
    assert not merged(targets, repo, head)
    repo.squash()
    assert merged(targets, repo, head)


def test_a_rebase_merge_counts_after_base_moved_on_first(repo, targets):
    head = repo.branch()
    repo.commit({"other.txt": "x\n"}, "someone else's work")
    repo.git("push", "-q", "origin", "main")
    # What a forge's "rebase and merge" does: the branch's commits re-applied on base.
    repo.git("checkout", "-q", "-b", "rebased", "task/t")
    repo.git("rebase", "-q", "main")
    repo.on_main("merge", "-q", "--ff-only", "rebased")
    assert repo.git("rev-parse", "main") != head
    assert merged(targets, repo, head)


def test_a_cherry_pick_of_a_one_commit_branch_counts(repo, targets):
    head = repo.branch("t", ("2", "two"))
    repo.commit({"other.txt": "x\n"}, "base moves on")     # else the pick is the same commit
    repo.on_main("cherry-pick", head)
    assert repo.git("rev-parse", "main") != head
    assert merged(targets, repo, head)


def test_a_branch_merged_only_in_part_is_not_merged(repo, targets):
    head = repo.branch()
    repo.on_main("cherry-pick", f"{head}~1")       # the first of its two commits
    assert not merged(targets, repo, head)


def test_a_squash_then_unrelated_commits_on_base_still_counts(repo, targets):
    head = repo.branch()
    repo.squash()
    repo.commit({"other.txt": "x\n"}, "another file")
    repo.edit("f.txt", "8", "eight", "same file, other lines")
    repo.git("push", "-q", "origin", "main")
    assert merged(targets, repo, head)


def test_a_squash_whose_lines_base_changed_again_is_not_seen(repo, targets):
    """Documented limit: merge-tree then conflicts (the branch says `two`, base
    now `TWO`), so only the tips the cache saw in between can tell. A person
    records such a merge with `git merge -s ours task/<id>`."""
    head = repo.branch()
    repo.squash()
    repo.edit("f.txt", "two", "TWO", "rework line 2")
    repo.git("push", "-q", "origin", "main")
    assert not merged(targets, repo, head)
    repo.on_main("merge", "-q", "-s", "ours", "-m", "record t as merged", "task/t")
    assert merged(targets, repo, head)


def test_a_conflicting_branch_is_not_merged(repo, targets):
    head = repo.branch("t", ("2", "two"))
    repo.edit("f.txt", "2", "deux", "base changed line 2 its own way")
    repo.git("push", "-q", "origin", "main")
    assert not merged(targets, repo, head)


def test_an_empty_branch_is_merged_only_when_it_is_an_ancestor(repo, targets):
    """Merging a branch with no changes changes nothing, so merge-tree alone
    would call it merged the moment it is pushed. The planner handles "the run
    changed nothing" itself; here it counts only once base contains the commit."""
    repo.git("checkout", "-q", "-B", "task/t", "main")
    empty = repo.commit({}, "nothing to do")
    repo.git("push", "-q", "origin", "task/t")
    repo.git("checkout", "-q", "main")
    repo.commit({"other.txt": "x\n"}, "base moves on")
    repo.git("push", "-q", "origin", "main")
    assert not merged(targets, repo, empty)
    repo.on_main("merge", "-q", "--no-ff", "-m", "merge t", "task/t")
    assert merged(targets, repo, empty)


def test_a_branch_whose_commits_cancel_out_is_not_merged(repo, targets):
    head = repo.branch("t", ("2", "two"), ("two", "2"))
    repo.commit({"other.txt": "x\n"}, "base moves on")
    repo.git("push", "-q", "origin", "main")
    assert not merged(targets, repo, head)


def test_a_squash_merged_then_deleted_branch_stays_merged_after_prune_and_gc(repo, targets):
    head = repo.branch()
    assert not merged(targets, repo, head)          # the cache has seen it
    repo.squash()
    repo.git("push", "-q", "origin", "--delete", "task/t")
    mirror = targets._mirror(str(repo.remote))
    # A fetch prunes origin/task/t; the pin keeps the commit through a gc.
    subprocess.run(["git", "-C", str(mirror), "fetch", "-q", "--prune", str(repo.remote),
                    "+refs/heads/*:refs/remotes/origin/*"], check=True)
    assert git("for-each-ref", "refs/remotes/origin/task", cwd=mirror) == ""
    assert git("rev-parse", "refs/fleet/t", cwd=mirror) == head
    git("gc", "-q", "--prune=now", cwd=mirror)
    git("cat-file", "-e", f"{head}^{{commit}}", cwd=mirror)
    assert merged(targets, repo, head)


def test_a_commit_the_cache_never_saw_is_fetched_by_id(repo, targets):
    head = repo.branch()
    repo.squash()
    repo.git("push", "-q", "origin", "--delete", "task/t")  # before fleet ever fetched
    assert merged(targets, repo, head)


def test_a_commit_that_is_gone_everywhere_is_not_merged_and_says_why(repo, targets, caplog):
    missing = "0123456789abcdef0123456789abcdef01234567"
    with caplog.at_level(logging.WARNING, logger="fleet"):
        assert not merged(targets, repo, missing)
    assert "t: commit 0123456789ab is gone from" in caplog.text


def test_one_pass_over_many_tasks_and_two_bases_answers_each(repo, targets):
    real = repo.branch("real", ("1", "one"))
    squashed = repo.branch("squashed", ("3", "three"))
    open_ = repo.branch("open", ("5", "five"))
    on_dev = repo.branch("dev", ("7", "seven"))
    repo.git("push", "-q", "origin", "main:develop")
    repo.on_main("merge", "-q", "--no-ff", "-m", "merge real", "task/real")
    repo.squash("squashed")
    repo.git("checkout", "-q", "-b", "develop", "origin/develop")
    repo.git("merge", "-q", "--squash", "task/dev")
    repo.git("commit", "-q", "-m", "dev (squashed)")
    repo.git("push", "-q", "origin", "develop")
    remote = str(repo.remote)
    checks = [MergeCheck("real", remote, "main", real), MergeCheck("squashed", remote, "main", squashed),
              MergeCheck("open", remote, "main", open_), MergeCheck("dev", remote, "develop", on_dev),
              MergeCheck("dev-on-main", remote, "main", on_dev),
              MergeCheck("gone", remote, "main", "0" * 40), MergeCheck("no-base", remote, "nope", real)]
    assert targets.merged(checks) == {"real", "squashed", "dev"}
    assert targets.merged(checks) == {"real", "squashed", "dev"}   # from the cache


def test_pins_follow_the_tasks_checked(repo, targets):
    a = repo.branch("a")
    b = repo.branch("b", ("5", "five"))
    checks = [MergeCheck("a", str(repo.remote), "main", a), MergeCheck("b", str(repo.remote), "main", b)]
    targets.merged(checks)
    mirror = targets._mirror(str(repo.remote))
    pins = lambda: git("for-each-ref", "--format=%(refname) %(objectname)", "refs/fleet/", cwd=mirror)
    assert pins() == f"refs/fleet/a {a}\nrefs/fleet/b {b}"
    targets.refresh()
    targets.merged(checks[1:])                      # a finished: its pin goes
    assert pins() == f"refs/fleet/b {b}"


def test_merge_tree_leaves_no_objects_in_the_cache(repo, targets, tmp_path):
    head = repo.branch("t", ("2", "two"))
    repo.edit("f.txt", "8", "eight", "base moves on")
    repo.git("push", "-q", "origin", "main")
    assert not merged(targets, repo, head)
    result = repo.git("merge-tree", "--write-tree", "main", head).splitlines()[0]
    mirror = targets._mirror(str(repo.remote))
    missing = subprocess.run(["git", "-C", str(mirror), "cat-file", "-e", result])
    assert missing.returncode != 0                  # merge-tree wrote into a scratch dir
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [mirror.name]


def test_a_borrowing_cache_touches_nothing_of_the_cache_it_borrows(repo, targets, tmp_path):
    """`fleet plan`'s scratch cache: merge-tree would freshen (touch) objects of
    the state dir's cache that it writes again, so there only ancestors count."""
    real, squashed = repo.branch("real", ("2", "two")), repo.branch("squashed", ("5", "five"))
    checks = [MergeCheck("real", str(repo.remote), "main", real),
              MergeCheck("squashed", str(repo.remote), "main", squashed)]
    assert targets.merged(checks) == set()
    repo.on_main("merge", "-q", "--no-ff", "-m", "merge real", "task/real")
    repo.squash("squashed")
    shown = lambda: {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*")}
    before = shown()
    borrower = Targets(tmp_path / "scratch", borrow=tmp_path / "cache")
    assert borrower.merged(checks) == {"real"}
    assert shown() == before
    targets.refresh()
    assert targets.merged(checks) == {"real", "squashed"}


def test_a_pass_where_nothing_moved_runs_no_git(repo, tmp_path, monkeypatch):
    targets = Targets(tmp_path / "cache", min_interval=3600)
    heads = [repo.branch(f"t{n}", (str(n), f"n{n}")) for n in range(1, 4)]
    checks = [MergeCheck(f"t{n}", str(repo.remote), "main", h) for n, h in enumerate(heads, 1)]
    assert targets.merged(checks) == set()
    calls = []
    real = subprocess.run
    monkeypatch.setattr(merges.subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert targets.merged(checks) == set()
    assert calls == []


def test_an_old_git_notices_only_merges_that_keep_the_commit(repo, targets, monkeypatch, caplog):
    monkeypatch.setattr(merges, "_git_version", lambda: (2, 37))
    head = repo.branch()
    repo.squash()
    with caplog.at_level(logging.WARNING, logger="fleet"):
        assert not merged(targets, repo, head)
        assert not merged(targets, repo, head)
    assert caplog.text.count("older than 2.38") == 1
    assert "squash and rebase merges are not noticed" in caplog.text
    repo.on_main("merge", "-q", "--no-ff", "-m", "merge t", "task/t")
    assert merged(targets, repo, head)


def test_git_version_is_read_from_git():
    assert merges._git_version() >= (2, 0)


# End to end: the demo flow, a person squash-merges, `fleet run --once` completes.

def fleet(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "controller", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_a_squash_merge_completes_the_task_with_fleet_run_once(tmp_path):
    w = World(tmp_path)
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    w.task("fix-login")
    w.push("add fix-login")
    ran = fleet("run", "--repo", w.fleet, "--config", config, "--once")
    assert ran.returncode == 0, ran.stderr
    assert w.status("fix-login")["state"] == "review_pending"
    # Pat squash-merges on the command line, as a new user would, and deletes the branch.
    pat = tmp_path / "reviewer"
    git("clone", "-q", str(w.target), str(pat), cwd=tmp_path)
    git("merge", "-q", "--squash", "origin/task/fix-login", cwd=pat)
    git("commit", "-q", "-m", "fix login (squashed)", cwd=pat)
    git("push", "-q", "origin", "HEAD:main", ":task/fix-login", cwd=pat)
    ran = fleet("run", "--repo", w.fleet, "--config", config, "--once")
    assert ran.returncode == 0, ran.stderr
    st = w.status("fix-login")
    assert st["state"] == "completed", st["message"]
    assert st["message"] == "task/fix-login merged into main"
