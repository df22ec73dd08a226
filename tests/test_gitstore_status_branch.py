"""`status_branch: NAME` in fleet.yaml: status commits on a branch of their own.

An orphan branch holding only status/, seeded from status/ of the main branch
by the first status commit with the setting; from then on status is read
only from it and the main branch, which people edit (and a forge may
protect), never moves by the controller. Real repositories: a bare source on
this machine (written directly, or pushed to when it has hooks) and one served
over smart HTTP; the engine's passes with a FakeExecutor.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from controller.cli.output import print_status
from controller.engine.core import Engine
from controller.gitstore import GitError, GitStore
from controller.model import StartRun, State, Status
from controller.status import statusfile
from tests.conftest import git
from tests.fakes import SUCCESS
from tests.githttp import GitHTTPServer
from tests.test_engine_fake import Rig, drive

NAME = "fleet-status"
SEED = {"fleet.yaml": "poll_interval: 5s\n", "tasks/a.yaml": "id: a\n", "tasks/b.yaml": "id: b\n"}


def status(task: str, state: State = State.ASSIGNED) -> bytes:
    return statusfile.dumps(Status(task=task, state=state))


def push(person: Path, files: dict[str, str], message: str = "edit") -> str:
    for path, text in files.items():
        (person / path).parent.mkdir(parents=True, exist_ok=True)
        (person / path).write_text(text)
        git("add", path, cwd=person)
    git("commit", "--quiet", "-m", message, cwd=person)
    if git("ls-remote", "origin", "main", cwd=person):
        git("pull", "--quiet", "--rebase", "origin", "main", cwd=person)
    git("push", "--quiet", "origin", "HEAD:main", cwd=person)
    return git("rev-parse", "HEAD", cwd=person)


def protect_main(bare: Path) -> None:
    """A forge's protected main: a pre-receive hook refusing the controller's commits there."""
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do\n"
                    '  [ "$ref" = refs/heads/main ] || continue\n'
                    '  if git log --format=%ce "$old..$new" 2>/dev/null | grep -q fleet@localhost ||\n'
                    '     git log -1 --format=%ce "$new" | grep -q fleet@localhost; then\n'
                    '    echo "main is protected" >&2; exit 1\n  fi\ndone\nexit 0\n')
    hook.chmod(0o755)


@pytest.fixture(params=["local", "local-hooked", "http"])
def source(request, bare_repo: Path, tmp_path: Path):
    """(the URL or path the store uses, the bare repository behind it)."""
    if request.param == "local-hooked":
        protect_main(bare_repo)
    if request.param != "http":
        yield str(bare_repo), bare_repo
        return
    protect_main(bare_repo)
    with GitHTTPServer(bare_repo.parent) as server:
        yield server.url_of(bare_repo), bare_repo


@pytest.fixture
def seeded(person: Path) -> str:
    return push(person, SEED, "seed")


def branch_files(bare: Path, branch: str) -> list[str]:
    return git("ls-tree", "-r", "--name-only", branch, cwd=bare).split()


def test_the_first_status_commit_seeds_the_branch_and_main_never_moves(source, seeded, person,
                                                                       tmp_path):
    url, bare = source
    before = GitStore(url, tmp_path / "before")      # status on main, as before the setting
    before.sync()
    if (bare / "hooks" / "pre-receive").exists():
        (bare / "hooks" / "pre-receive").rename(bare / "hook.off")
    on_main = before.commit_statuses({"a": status("a", State.REVIEW_PENDING)}, "fleet: a done")
    if (bare / "hook.off").exists():
        (bare / "hook.off").rename(bare / "hooks" / "pre-receive")
    store = GitStore(url, tmp_path / "state")
    assert store.sync() == on_main
    assert store.use_status_branch(NAME) == on_main          # no branch yet: main's status/
    assert store.read_statuses(store.status_tip()) == {"a": status("a", State.REVIEW_PENDING)}
    assert git("branch", "--list", NAME, cwd=bare) == ""     # reading writes nothing
    ours = store.commit_statuses({"b": status("b")}, "fleet: b assigned")
    assert git("rev-parse", "main", cwd=bare) == on_main
    assert git("rev-parse", NAME, cwd=bare) == ours == store.status_tip()
    seed = git("rev-parse", f"{NAME}^", cwd=bare)
    assert git("rev-list", "--count", NAME, cwd=bare) == "2"  # an orphan: seed, then ours
    assert git("rev-parse", f"{seed}:status", cwd=bare) == git("rev-parse", f"{on_main}:status",
                                                               cwd=bare)
    assert branch_files(bare, NAME) == ["status/a.yaml", "status/b.yaml"]
    theirs = push(person, {"tasks/c.yaml": "id: c\n"}, "add c")   # people's pushes: no race
    assert store.sync() == theirs
    again = store.commit_statuses({"c": status("c")}, "fleet: c assigned")
    assert git("rev-parse", "main", cwd=bare) == theirs and git("rev-parse", NAME, cwd=bare) == again
    assert git("log", "--format=%ce", "main", cwd=bare).split().count("fleet@localhost") == 1
    if (bare / "hooks" / "pre-receive").exists():     # the hook is real: without the setting
        with pytest.raises(GitError, match="main is protected"):
            before.commit_statuses({"z": status("z")}, "fleet: z")


def test_a_push_to_the_status_branch_meanwhile_is_fetched_and_reapplied(source, seeded, tmp_path):
    url, bare = source
    a, b = GitStore(url, tmp_path / "a"), GitStore(url, tmp_path / "b")
    for store in (a, b):
        store.sync()
        store.use_status_branch(NAME)
    first = a.commit_statuses({"a": status("a")}, "fleet: a")       # a seeds the branch
    second = b.commit_statuses({"b": status("b")}, "fleet: b")      # b's seed loses: uses a's
    assert git("rev-parse", f"{NAME}^", cwd=bare) == first
    assert git("rev-parse", NAME, cwd=bare) == second
    assert git("rev-list", "--count", NAME, cwd=bare) == "3"
    assert branch_files(bare, NAME) == ["status/a.yaml", "status/b.yaml"]
    third = a.commit_statuses({"a": status("a", State.RUNNING)}, "fleet: a running")
    assert git("rev-parse", f"{NAME}^", cwd=bare) == second and a.status_tip() == third


def test_a_restart_reads_status_from_the_branch(source, seeded, tmp_path):
    url, bare = source
    store = GitStore(url, tmp_path / "state")
    store.sync()
    store.use_status_branch(NAME)
    ours = store.commit_statuses({"a": status("a")}, "fleet: a")
    for state in ("state", "fresh"):            # the same clone, and a new one
        again = GitStore(url, tmp_path / state)
        assert again.sync() == seeded
        assert again.use_status_branch(NAME) == ours
        assert again.read_statuses(ours) == {"a": status("a")}
    assert store.use_status_branch(None) == seeded     # the setting removed: main again


def test_a_status_branch_that_disappears_is_an_error(bare_repo, seeded, tmp_path):
    store = GitStore(str(bare_repo), tmp_path / "state")
    store.sync()
    store.use_status_branch(NAME)
    store.commit_statuses({"a": status("a")}, "fleet: a")
    git("branch", "-D", NAME, cwd=bare_repo)
    with pytest.raises(GitError, match=f"branch {NAME} has disappeared"):
        store.sync()
    with pytest.raises(GitError, match="not a valid branch name"):
        store.use_status_branch("bad..name")
    assert store.use_status_branch("main") == seeded    # the main branch itself: the default


# ---- the engine: status read and written on the status branch --------------------------
def branch_status(bare: Path, task: str) -> dict:
    return yaml.safe_load(git("show", f"{NAME}:status/{task}.yaml", cwd=bare))


def test_the_engine_moves_status_to_the_branch_without_running_anything_twice(tmp_path, capsys):
    r = Rig(tmp_path, hosts=("local", "other"))
    bare = r.w.fleet
    r.task("done")
    r.w.push()

    async def before():                  # status on main: done reaches review_pending
        await r.pass_()
        run_id = r.fake.starts[0].run_id
        await r.pass_()
        r.later(minutes=3)
        r.fake.exit(run_id, SUCCESS, changes=True)
        await r.pass_()
        assert r.status("done")["state"] == "review_pending"
    drive(before)
    protect_main(bare)
    settings = yaml.safe_load((r.w.person / "fleet.yaml").read_text())
    r.w.write("fleet.yaml", {**settings, "status_branch": NAME})
    r.task("new")
    r.w.push("status on a branch of its own")
    main = git("rev-parse", "main", cwd=bare)
    starts = len(r.fake.starts)

    async def after():
        result = await r.pass_()
        assert [a.task for a in result.actions if isinstance(a, StartRun)] == ["new"]
        assert result.written and result.commit == git("rev-parse", NAME, cwd=bare)
        r.task("later")                  # a person's push to main during the run
        r.w.push("add later")
        await r.pass_()
        await r.pass_()
    drive(after)
    assert len(r.fake.starts) == starts + 2          # new and later; done never again
    assert branch_status(bare, "done")["state"] == "review_pending"
    assert branch_status(bare, "new")["state"] == "running"
    assert git("rev-parse", "main^", cwd=bare) == main              # only the person's commit
    assert "fleet@localhost" not in git("log", "-1", "--format=%ce", "main", cwd=bare)
    assert r.w.status("new") is None                 # main's status/ stays as it was

    restarted = Engine(GitStore(str(bare), tmp_path / "state"), tmp_path / "state",
                       clock=lambda: r.now, executors=lambda host: r.fake)
    asyncio.run(restarted.sync())
    assert restarted.book["new"].state is State.RUNNING
    assert restarted.book["new"].run_id == branch_status(bare, "new")["run_id"]
    capsys.readouterr()
    asyncio.run(print_status(restarted, as_json=True))   # fleet status reads the branch
    rows = {row["task"]: row["state"] for row in json.loads(capsys.readouterr().out)["tasks"]}
    assert rows == {"done": "review_pending", "new": "running", "later": "running"}
