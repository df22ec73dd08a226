"""The git store with a fleet repository that is a URL: smart HTTP, served by the
real `git http-backend` (tests/githttp.py) on 127.0.0.1.

A push rejected because someone moved the branch is the same race over HTTP
as on this machine, whichever side of the wire noticed it: git before sending
("fetch first", "non-fast-forward") or the server between its advertisement
and its ref update ("failed to update ref"). Each is fetched, re-applied on
the new tip and pushed again in the same call; people's commits are kept.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.gitstore import GitError, GitStore
from controller.gitstore.remote import _is_race
from controller.model import State, Status
from controller.status import statusfile
from tests.conftest import git
from tests.githttp import GitHTTPServer

SEED = {"fleet.yaml": "poll_interval: 5s\n", "tasks/a.yaml": "id: a\n", "tasks/b.yaml": "id: b\n"}


def commit(person: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (person / path).parent.mkdir(parents=True, exist_ok=True)
        (person / path).write_text(text)
        git("add", path, cwd=person)
    git("commit", "--quiet", "-m", message, cwd=person)
    return git("rev-parse", "HEAD", cwd=person)


@pytest.fixture
def forge(tmp_path: Path):
    root = tmp_path / "forge"
    bare = root / "team" / "fleet.git"
    bare.parent.mkdir(parents=True)
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=root)
    with GitHTTPServer(root) as server:
        yield server, bare


@pytest.fixture
def person(forge, tmp_path: Path) -> Path:
    """A person's clone over HTTP, seeded and pushed."""
    server, bare = forge
    path = tmp_path / "person"
    git("clone", "--quiet", server.url_of(bare), str(path), cwd=tmp_path)
    git("checkout", "--quiet", "-B", "main", cwd=path)
    commit(path, SEED, "seed")
    git("push", "--quiet", "origin", "HEAD:main", cwd=path)
    return path


@pytest.fixture
def store(forge, tmp_path: Path) -> GitStore:
    server, bare = forge
    return GitStore(server.url_of(bare), tmp_path / "state")


def status(task: str, state: State = State.ASSIGNED) -> bytes:
    return statusfile.dumps(Status(task=task, state=state))


def hook(bare: Path, body: str) -> None:
    path = bare / "hooks" / "pre-receive"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def person_pushes_first(bare: Path, person: Path, every_time: bool = False) -> None:
    """A pre-receive hook that lands a commit of the person on main just before
    the push it is running for, so the server refuses that push's ref update."""
    once = "" if every_time else f'[ -e "{bare}/raced" ] && exit 0; touch "{bare}/raced"\n'
    hook(bare, f"""cat >/dev/null
[ -n "$NESTED" ] && exit 0
{once}unset GIT_DIR GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
cd "{person}" && echo "x$$" >> notes.txt && git add notes.txt && git commit -qm "edit meanwhile" &&
NESTED=1 git push -q "{bare}" HEAD:main >&2
exit 0
""")


def test_clone_fetch_and_push_over_smart_http(forge, person, store, tmp_path):
    server, bare = forge
    seed = git("rev-parse", "main", cwd=bare)
    assert store.sync() == seed
    assert not (tmp_path / "state" / "fleet.git" / "objects" / "info" / "alternates").exists()
    ours = store.commit_statuses({"a": status("a")}, "fleet: a assigned")
    assert git("rev-parse", "main", cwd=bare) == ours
    assert any(r.endswith("/git-receive-pack") for r in server.requests)
    theirs = commit(person, {"tasks/c.yaml": "id: c\n"}, "add c")
    git("pull", "--quiet", "--rebase", "origin", "main", cwd=person)
    git("push", "--quiet", "origin", "HEAD:main", cwd=person)
    assert store.sync() == git("rev-parse", "main", cwd=bare) != theirs   # rebased onto ours
    assert [p for p, _ in store.changes(seed, store.tip(), ("tasks",))] == ["tasks/c.yaml"]
    assert (person / "status" / "a.yaml").read_bytes() == status("a")


def test_a_push_over_http_after_our_fetch_is_fetched_and_kept(forge, person, store):
    _, bare = forge
    seed = store.sync()
    theirs = commit(person, {"tasks/a.yaml": "id: a\ntitle: edited\n"}, "edit a")
    git("push", "--quiet", "origin", "HEAD:main", cwd=person)    # over HTTP; ours says "fetch first"
    assert store.push_retries == 0
    ours = store.commit_statuses({"a": status("a")}, "fleet: a assigned")
    assert git("log", "--format=%H", "main", cwd=bare).split() == [ours, theirs, seed]
    assert store.push_retries == 1      # the engine adds it to telemetry.status_push_retry


def test_a_non_fast_forward_rejection_is_the_same_race(forge, person, store, tmp_path):
    _, bare = forge
    seed = store.sync()
    theirs = commit(person, {"tasks/b.yaml": "id: b\ntitle: edited\n"}, "edit b")
    git("push", "--quiet", "origin", "HEAD:main", cwd=person)
    # Our clone has their commit (fetched elsewhere) but our branch is behind it:
    # git then says "non-fast-forward", not "fetch first".
    git("fetch", "--quiet", "origin", "main:refs/side", cwd=tmp_path / "state" / "fleet.git")
    ours = store.commit_statuses({"b": status("b")}, "fleet: b assigned")
    assert git("log", "--format=%H", "main", cwd=bare).split() == [ours, theirs, seed]


def test_the_server_refusing_our_ref_update_is_the_same_race(forge, person, store):
    _, bare = forge
    seed = store.sync()
    person_pushes_first(bare, person)
    ours = store.commit_statuses({"a": status("a"), "b": status("b")}, "fleet: 2 status changes")
    log = git("log", "--format=%H %s", "main", cwd=bare).splitlines()
    assert [line.split(" ", 1)[1] for line in log] == ["fleet: 2 status changes", "edit meanwhile",
                                                       "seed"]
    assert log[0].startswith(ours) and log[-1].startswith(seed)
    assert git("show", "main:notes.txt", cwd=bare)          # theirs is kept
    assert git("show", "main:status/b.yaml", cwd=bare).encode() + b"\n" == status("b")


def test_someone_always_first_gives_up_with_gits_words(forge, person, tmp_path):
    server, bare = forge
    store = GitStore(server.url_of(bare), tmp_path / "state", push_attempts=3)
    store.sync()
    person_pushes_first(bare, person, every_time=True)
    with pytest.raises(GitError, match=r"rejected 3 times .*failed to update ref"):
        store.commit_statuses({"a": status("a")}, "fleet: a")
    assert "status/a.yaml" not in git("ls-tree", "-r", "--name-only", "main", cwd=bare)


def test_a_hook_declining_our_push_is_an_error_not_a_race(forge, person, store):
    _, bare = forge
    seed = store.sync()
    hook(bare, "cat >/dev/null\necho 'main is protected' >&2\nexit 1\n")
    with pytest.raises(GitError, match="main is protected") as info:
        store.commit_statuses({"a": status("a")}, "fleet: a")
    assert "pre-receive hook declined" in str(info.value)
    assert git("rev-parse", "main", cwd=bare) == seed


@pytest.mark.parametrize("line, race", [
    ("!\tabc:refs/heads/main\t[rejected] (fetch first)", True),
    ("!\tabc:refs/heads/main\t[rejected] (non-fast-forward)", True),
    ("!\tabc:refs/heads/main\t[remote rejected] (failed to update ref)", True),
    ("!\tabc:refs/heads/main\t[remote rejected] (cannot lock ref 'refs/heads/main': "
     "is at 1 but expected 2)", True),
    ("!\tabc:refs/heads/main\t[remote rejected] (incorrect old value provided)", True),
    ("!\tabc:refs/heads/main\t[remote rejected] (pre-receive hook declined)", False),
    ("!\tabc:refs/heads/main\t[remote rejected] (protected branch hook declined)", False),
    ("!\tabc:refs/heads/main\t[remote rejected] (shallow update not allowed)", False),
])
def test_rejections_are_classified_alike_whatever_the_transport(line, race):
    assert _is_race(line) is race


def test_credentials_come_from_a_credential_helper_and_are_never_shown(tmp_path, monkeypatch):
    root = tmp_path / "forge"
    bare = root / "fleet.git"
    root.mkdir()
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=root)
    seed = tmp_path / "seed"
    git("init", "--quiet", "--initial-branch=main", str(seed), cwd=tmp_path)
    commit(seed, SEED, "seed")
    git("push", "--quiet", str(bare), "HEAD:main", cwd=seed)
    secret = "s3cret-tok3n"
    with GitHTTPServer(root, auth=("fleet", secret)) as server:
        store = GitStore(server.url_of(bare), tmp_path / "state")
        with pytest.raises(GitError) as info:       # no helper: git may not ask anyone
            store.sync()
        assert "cannot fetch" in str(info.value) and secret not in str(info.value)
        for key, value in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper",
                           "GIT_CONFIG_VALUE_0": f"!f() {{ echo username=fleet; "
                                                 f"echo password={secret}; }}; f"}.items():
            monkeypatch.setenv(key, value)
        assert store.sync() == git("rev-parse", "main", cwd=bare)
        assert store.commit_statuses({"a": status("a")}, "fleet: a") == git("rev-parse", "main",
                                                                            cwd=bare)
        config = (tmp_path / "state" / "fleet.git" / "config").read_text()
        assert secret not in config and os.environ["GIT_CONFIG_KEY_0"] == "credential.helper"
