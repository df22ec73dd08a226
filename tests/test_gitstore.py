"""The git store against real repositories: a bare source of truth in tmp_path,
a person who clones, commits and pushes with the real git, and our store."""
from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from controller.status import statusfile
from controller import gitstore
from controller.gitstore import GitError, GitStore, files_at
from controller.model import Result, State, Status, Transition
from tests.conftest import git


def write(person: Path, files: dict[str, str | None], message: str = "edit") -> str:
    """Commit file contents (None deletes) as the person and push; returns the commit."""
    for path, text in files.items():
        target = person / path
        if text is None:
            git("rm", "--quiet", path, cwd=person)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            git("add", path, cwd=person)
    git("commit", "--quiet", "-m", message, cwd=person)
    git("push", "--quiet", "origin", "HEAD:main", cwd=person)
    return git("rev-parse", "HEAD", cwd=person)


def pull(person: Path) -> str:
    git("pull", "--quiet", "--rebase=false", "origin", "main", cwd=person)
    return git("rev-parse", "HEAD", cwd=person)


SEED = {"fleet.yaml": "poll_interval: 5s\n", "hosts/h1.yaml": "name: h1\n",
        "agents/codex.yaml": "name: codex\n", "tasks/a.yaml": "id: a\n",
        "tasks/b.yaml": "id: b\n", "README.md": "hello\n", "docs/notes.yaml": "x: 1\n"}


@pytest.fixture
def seeded(person: Path) -> str:
    return write(person, SEED, "seed")


@pytest.fixture
def store(bare_repo: Path, tmp_path: Path) -> GitStore:
    return GitStore(str(bare_repo), tmp_path / "state")


def test_first_sync_clones_bare_into_the_state_dir(store, seeded, tmp_path):
    assert store.sync() == seeded
    assert git("rev-parse", "--is-bare-repository", cwd=tmp_path / "state" / "fleet.git") == "true"
    files = store.list_files(seeded)
    assert sorted(files) == ["agents/codex.yaml", "fleet.yaml", "hosts/h1.yaml",
                             "tasks/a.yaml", "tasks/b.yaml"]
    assert store.read(files["tasks/a.yaml"]) == b"id: a\n"


def test_an_empty_repository_syncs_to_nothing(store):
    assert store.sync() == ""
    assert store.list_files("") == {} and store.read_statuses("") == {}
    assert store.changes(None, "") == []


def test_a_persons_push_is_seen_by_the_next_sync(store, seeded, person):
    assert store.sync() == seeded
    newer = write(person, {"tasks/c.yaml": "id: c\n"})
    assert store.sync() == newer
    assert "tasks/c.yaml" in store.list_files(newer)


def test_changes_are_exactly_the_changed_files(store, seeded, person):
    store.sync()
    newer = write(person, {"tasks/a.yaml": "id: a\ntitle: new\n", "tasks/c.yaml": "id: c\n",
                           "hosts/h1.yaml": None, "README.md": "changed\n",
                           "tasks/nested/deep.yaml": "ignored\n", "docs/notes.yaml": None})
    store.sync()
    files = store.list_files(newer)
    assert store.changes(seeded, newer) == [
        ("hosts/h1.yaml", None),
        ("tasks/a.yaml", files["tasks/a.yaml"]),
        ("tasks/c.yaml", files["tasks/c.yaml"]),
    ]
    assert store.changes(newer, newer) == []
    assert store.changes(None, newer) == sorted(files.items())


def test_status_commit_touches_only_status_and_a_person_sees_it(store, seeded, person, bare_repo):
    store.sync()
    a = statusfile.dumps(Status(task="a", state=State.ASSIGNED, host="h1"))
    b = statusfile.dumps(Status(task="b", state=State.BLOCKED, message="no host has gpu"))
    commit = store.commit_statuses({"a": a, "b": b}, "fleet: 2 status changes\n\na: assigned")
    assert commit == store.tip() == git("rev-parse", "main", cwd=bare_repo)
    assert pull(person) == commit
    assert (person / "status/a.yaml").read_bytes() == a
    assert (person / "status/b.yaml").read_bytes() == b
    assert git("rev-parse", "HEAD^", cwd=person) == seeded
    touched = git("show", "--name-only", "--format=", "HEAD", cwd=person).split()
    assert touched == ["status/a.yaml", "status/b.yaml"]
    assert git("log", "-1", "--format=%an <%ae>|%B", cwd=person) == \
        "fleet <fleet@localhost>|fleet: 2 status changes\n\na: assigned"
    assert store.read_statuses(commit) == {"a": a, "b": b}
    assert store.sync() == commit


def test_nothing_changed_commits_nothing(store, seeded, bare_repo):
    store.sync()
    data = statusfile.dumps(Status(task="a", state=State.CREATED))
    first = store.commit_statuses({"a": data}, "first")
    assert store.commit_statuses({"a": data}, "again") is None
    assert store.commit_statuses({"zz": None}, "delete a missing file") is None
    assert store.commit_statuses({}, "no writes") is None
    assert git("rev-parse", "main", cwd=bare_repo) == first


def test_a_persons_push_during_our_pass_is_kept(store, seeded, person, bare_repo):
    store.sync()
    theirs = write(person, {"tasks/a.yaml": "id: a\ntitle: edited meanwhile\n"}, "edit a")
    data = statusfile.dumps(Status(task="a", state=State.ASSIGNED))
    ours = store.commit_statuses({"a": data}, "fleet: a assigned")
    assert git("rev-parse", "main^", cwd=bare_repo) == theirs
    assert git("log", "--format=%H", "main", cwd=bare_repo).split() == [ours, theirs, seeded]
    assert pull(person) == ours
    assert (person / "tasks/a.yaml").read_text() == "id: a\ntitle: edited meanwhile\n"
    assert (person / "status/a.yaml").read_bytes() == data


def test_deleting_status_files(store, seeded, person):
    store.sync()
    one = statusfile.dumps(Status(task="a", state=State.CREATED))
    store.commit_statuses({"a": one, "b": one}, "two")
    store.commit_statuses({"a": None}, "fleet: a deleted")
    pull(person)
    assert not (person / "status/a.yaml").exists() and (person / "status/b.yaml").exists()
    assert git("show", "--name-status", "--format=", "HEAD", cwd=person) == "D\tstatus/a.yaml"
    store.commit_statuses({"b": None}, "fleet: b deleted")
    pull(person)
    assert not (person / "status").exists()
    assert store.list_files(store.tip()) == store.list_files(seeded)


def test_a_hostile_summary_survives_git(store, seeded, person):
    store.sync()
    summary = ('yes\n--- \n- "quoted" \'single\' # not a comment\nkey: value\n'
               "\\u0041 \x1b[31m 010 null ~ é 😀 \u2028 \t end ")
    status = Status(task="a", state=State.COMPLETED, message="no: problem",
                    finished_at=datetime(2024, 5, 1, tzinfo=timezone.utc),
                    result=Result("success", 0, summary, cost_usd=1e-05))
    store.commit_statuses({"a": statusfile.dumps(status)}, "fleet: a completed")
    pull(person)
    assert statusfile.loads((person / "status/a.yaml").read_bytes()) == status
    assert statusfile.loads(store.read_statuses(store.sync())["a"]) == status


def test_the_first_status_commit_of_an_empty_repository(store, person, bare_repo):
    assert store.sync() == ""
    data = statusfile.dumps(Status(task="a", state=State.CREATED))
    commit = store.commit_statuses({"a": data}, "fleet: first")
    assert git("rev-list", "--count", "main", cwd=bare_repo) == "1"
    assert pull(person) == commit
    assert (person / "status/a.yaml").read_bytes() == data


def test_commit_before_any_sync_clones_first(store, seeded, bare_repo):
    commit = store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    assert git("rev-parse", "main^", cwd=bare_repo) == seeded
    assert git("rev-parse", "main", cwd=bare_repo) == commit


def test_a_missing_source_is_named(tmp_path):
    missing = tmp_path / "nowhere.git"
    with pytest.raises(GitError, match=str(missing)):
        GitStore(str(missing), tmp_path / "state").sync()
    assert not (tmp_path / "state" / "fleet.git").exists()


def test_a_source_that_is_not_a_repository_is_named(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match=f"cannot fetch main from {plain}"):
        GitStore(str(plain), tmp_path / "state").sync()
    assert not (tmp_path / "state" / "fleet.git").exists()


def test_a_relative_source_path_works(seeded, bare_repo, tmp_path, monkeypatch):
    monkeypatch.chdir(bare_repo.parent)
    assert GitStore(bare_repo.name, tmp_path / "state").sync() == seeded


def test_a_push_refused_by_the_server_is_an_error(store, seeded, bare_repo):
    store.sync()
    hook = bare_repo / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'status writes are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(GitError, match="cannot push status commit"):
        store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    assert git("rev-parse", "main", cwd=bare_repo) == seeded


def test_a_status_file_in_place_of_the_directory_is_an_error(store, person):
    write(person, {"status": "not a directory\n"})
    store.sync()
    with pytest.raises(GitError, match="not a directory"):
        store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")


def test_bad_task_ids_cannot_escape_status(store, seeded):
    store.sync()
    for bad in ["../tasks/a", "a/b", "A", "", "a\n"]:
        with pytest.raises(ValueError, match="task id"):
            store.commit_statuses({bad: b"x"}, "nope")


def test_is_ancestor(store, seeded, person):
    store.sync()
    newer = write(person, {"tasks/c.yaml": "id: c\n"})
    store.sync()
    assert store.is_ancestor(seeded, newer) and store.is_ancestor(newer, newer)
    assert not store.is_ancestor(newer, seeded)
    assert not store.is_ancestor("0" * 40, newer)


def test_unknown_commits_and_blobs_are_errors(store, seeded):
    store.sync()
    with pytest.raises(GitError, match="sync first"):
        store.list_files("1" * 40)
    with pytest.raises(GitError, match="not in the controller's clone"):
        store.read("1" * 40)


def test_a_large_batch_is_stored_as_one_pack(store, seeded, person, bare_repo):
    store.sync()
    writes = {f"t{i:03d}": statusfile.dumps(Status(task=f"t{i:03d}", state=State.CREATED,
                                                   message=f"number {i}"))
              for i in range(gitstore.PACK_AT + 10)}
    writes["a"] = None
    loose_before = _loose(store.path)
    commit = store.commit_statuses(writes, "fleet: many")
    assert _loose(store.path) - loose_before <= 3          # two trees and the commit
    assert store.read_statuses(commit) == {k: v for k, v in writes.items() if v is not None}
    git("fsck", "--no-progress", cwd=store.path)
    git("fsck", "--no-progress", cwd=bare_repo)
    pull(person)
    assert (person / "status/t005.yaml").read_bytes() == writes["t005"]


def test_a_persons_edit_under_status_is_kept(store, seeded, person):
    store.sync()
    store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    pull(person)
    write(person, {"status/b.yaml": b"task: b\nstate: created\n# hand edit\n".decode()})
    # Our next commit starts from our own last status tree unless the tip moved
    # under it: it did, so the hand edit must survive, rejected push or not.
    store.commit_statuses({"a": b"task: a\nstate: assigned\n"}, "fleet: a assigned")
    pull(person)
    assert (person / "status/b.yaml").read_text().endswith("# hand edit\n")
    assert (person / "status/a.yaml").read_text() == "task: a\nstate: assigned\n"


def test_the_clone_is_repacked_now_and_then(store, seeded, monkeypatch):
    monkeypatch.setattr(gitstore.write, "REPACK_EVERY", 2)
    store.sync()
    for i in range(2):
        store.commit_statuses({"a": f"task: a\nstate: created\nattempt: {i}\n".encode()}, "fleet")
    repack = store._writers["main"]._repack
    assert repack is not None and repack.wait(timeout=60) == 0
    assert _loose(store.path) <= 1        # at most the empty tree, which nothing references


def _loose(repo: Path) -> int:
    counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=repo).splitlines())
    return int(counts["count"])


def test_files_at_reads_any_local_repository(store, seeded, person, bare_repo, tmp_path):
    expect = {p: t.encode() for p, t in SEED.items() if p not in ("README.md", "docs/notes.yaml")}
    assert files_at(person, "HEAD") == expect                 # a working clone
    assert files_at(bare_repo, "main") == expect              # the bare source
    store.sync()
    assert files_at(store.path, "main") == expect             # our clone: origin/main
    assert files_at(store.path, seeded[:10]) == expect
    assert files_at(bare_repo, "") == {}
    with pytest.raises(GitError, match="no revision 'nope'"):
        files_at(bare_repo, "nope")
    with pytest.raises(GitError, match="not a git repository"):
        files_at(tmp_path, "HEAD")


def test_files_at_an_empty_repository(bare_repo):
    assert files_at(bare_repo, "HEAD") == {}


@pytest.mark.opt_in
@pytest.mark.skipif(not os.environ.get("FLEET_BENCH"),
                    reason="set FLEET_BENCH=1 to build a 100k-task repository and time the store")
def test_bench_100k(tmp_path):
    """Figures at scale: 100k task files and 100k status files in the source."""
    n, t0 = 100_000, datetime(2025, 6, 1, tzinfo=timezone.utc)
    src = tmp_path / "src.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(src), cwd=tmp_path)

    def status(i: int, rnd: int) -> bytes:
        return statusfile.dumps(Status(
            task=f"t{i:06d}", state=State.RUNNING, message=f"running on host-{i % 50}",
            attempt=rnd, host=f"host-{i % 50}", run_id=f"t{i:06d}-{rnd}", created_at=t0,
            history=tuple(Transition(t0, State.CREATED, State.ASSIGNED, f"pass {k}")
                          for k in range(rnd % 5))))

    def person_commit(files: dict[str, bytes], first: bool = False) -> None:
        # A person's push, made with git plumbing: a 100k-file checkout would take minutes.
        out = [b"commit refs/heads/main\ncommitter Pat <pat@example.com> 1700000000 +0000\n"
               b"data 5\nedit\n\n"]
        if not first:
            out.append(b"from refs/heads/main^0\n")
        for path, data in files.items():
            out += [b"M 100644 inline %s\ndata %d\n" % (path.encode(), len(data)), data, b"\n"]
        subprocess.run(["git", "-C", str(src), "fast-import", "--quiet"], check=True,
                       input=b"".join(out))

    seed = {f"tasks/t{i:06d}.yaml": b"id: t%06d\ntitle: task %d\n" % (i, i) for i in range(n)}
    seed.update({f"status/t{i:06d}.yaml": status(i, 0) for i in range(n)})
    person_commit(seed, first=True)
    figures = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        figures.setdefault(name, []).append(round((time.perf_counter() - start) * 1000))
        return result

    store = GitStore(str(src), tmp_path / "state")
    tip = timed("first sync (clone), ms", store.sync)
    timed("changes(None, tip): cold start, ms", store.changes, None, tip)
    timed("read_statuses, ms", store.read_statuses, tip)
    for rnd in range(1, 6):
        writes = {f"t{i:06d}": status(i, rnd) for i in range(rnd, n, n // 1000)}
        new = timed("commit_statuses, 1,000 writes + push, ms", store.commit_statuses, writes, "fleet")
        timed("changes after our 1,000-write commit, ms", store.changes, tip, new)
        tip = new
        new = timed("commit_statuses, 1 write + push, ms", store.commit_statuses,
                    {"t000001": status(1, rnd + 10)}, "fleet")
        tip = new
        person_commit({"tasks/t000005.yaml": b"id: t000005\ntitle: edit %d\n" % rnd})
        new = timed("sync (fetch) after a person's one-file push, ms", store.sync)
        changed = timed("changes for that one file, ms", store.changes, tip, new)
        assert changed == [("tasks/t000005.yaml", changed[0][1])]
        tip = new
    for name, values in figures.items():
        print(f"{name:50} min {min(values):5}  median {sorted(values)[len(values) // 2]:5}  {values}")
    assert min(figures["commit_statuses, 1,000 writes + push, ms"]) < 1000


def test_a_bare_source_on_this_machine_gets_status_by_compare_and_swap(store, seeded, person, bare_repo):
    store.sync()
    assert (store.path / "objects/info/alternates").read_text().strip() == str((bare_repo / "objects").resolve())
    loose = _loose(store.path)
    ours = store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    assert _loose(store.path) == loose              # written into the source, not copied by a push
    assert git("rev-parse", "main", cwd=bare_repo) == ours
    git("fsck", "--no-progress", cwd=bare_repo)
    git("fsck", "--no-progress", cwd=store.path)
    assert pull(person) == ours


def test_a_source_with_server_hooks_is_pushed_to_so_the_hooks_run(store, seeded, bare_repo, tmp_path):
    ran = tmp_path / "post-receive-ran"
    hook = bare_repo / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ntouch {ran}\n")
    hook.chmod(0o755)
    store.sync()
    ours = store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    assert ran.exists() and git("rev-parse", "main", cwd=bare_repo) == ours


def test_a_bare_source_with_a_linked_worktree_is_pushed_to(store, seeded, bare_repo, tmp_path):
    git("worktree", "add", "-q", str(tmp_path / "wt"), "main", cwd=bare_repo)
    store.sync()
    with pytest.raises(GitError, match="cannot push"):     # git refuses a checked-out branch
        store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    assert git("rev-parse", "main", cwd=bare_repo) == seeded


def test_a_shared_repository_is_pushed_to(store, seeded, bare_repo):
    git("config", "core.sharedRepository", "group", cwd=bare_repo)
    store.sync()
    loose = _loose(store.path)
    ours = store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")
    assert git("rev-parse", "main", cwd=bare_repo) == ours and _loose(store.path) > loose


def test_a_hook_added_later_is_honoured_without_a_restart(store, seeded, bare_repo, tmp_path):
    store.sync()
    store.commit_statuses({"a": b"task: a\nstate: created\n"}, "fleet: a")     # direct
    ran = tmp_path / "hook-ran"
    hook = bare_repo / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ntouch {ran}\n")
    hook.chmod(0o755)
    ours = store.commit_statuses({"a": b"task: a\nstate: assigned\n"}, "fleet: a assigned")
    assert ran.exists() and git("rev-parse", "main", cwd=bare_repo) == ours
