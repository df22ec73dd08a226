"""Fleet-state repositories of any size for the benchmarks, generated fast and cached.

`ensure(size)` returns a bare repository under `.cache/bench/` (gitignored) with
50 hosts, two agent profiles, `size` task files and one status file per task:
1% of the tasks unfinished (created, blocked, assigned, running, review_pending),
the rest completed. The whole repository is one `git fast-import` stream (one
pack, no index, no working tree), so 100k tasks take seconds rather than the
minutes of 100k `git add`s. A READY marker is written last, so an interrupted
build is redone rather than reused. Called by `benchmarks.__main__` before
each size's measuring subprocess starts.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from controller.status import statusfile
from controller.model import Result, State, Status, Tokens, Transition

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
VERSION = 2                 # bump when the generated content changes: old caches are ignored
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)   # the benchmarks' fixed clock
N_HOSTS = 50
N_TARGETS = 4
PERSON = "Pat Person <pat@example.invalid>"
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
# Every 100th task is unfinished; which state it is in cycles through this mix
# (30% created, 20% blocked, 10% assigned, 20% running, 20% review_pending).
ACTIVE_MIX = (State.CREATED, State.CREATED, State.CREATED, State.BLOCKED, State.BLOCKED,
              State.ASSIGNED, State.RUNNING, State.RUNNING, State.REVIEW_PENDING,
              State.REVIEW_PENDING)
HOST_CAPS = (["codex"], ["claude-code"], ["codex", "claude-code"], ["codex", "gpu"],
             ["claude-code", "gpu"])


def task_id(i: int) -> str:
    return f"task-{i:06d}"


def state_of(i: int) -> State:
    """The generated state of task i."""
    if i % 100:
        return State.COMPLETED
    return ACTIVE_MIX[(i // 100) % len(ACTIVE_MIX)]


def host_of(i: int) -> str:
    return f"host-{i % N_HOSTS:02d}"


# ---- the cache -------------------------------------------------------------

def ensure(size: int, log=print) -> Path:
    """The cached fleet repository of `size` tasks, built first if missing."""
    path = CACHE / f"fleet-{size}-v{VERSION}.git"
    if (path / "READY").exists():
        return path
    targets = ensure_targets()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"generating a fleet repository of {size:,} tasks in {path} ...")
    _git("init", "-q", "--bare", "--initial-branch=main", str(tmp))
    specs, statuses = _files(size, targets)
    # fast-import writes the blobs straight into one pack; the trees are built
    # with pygit2 because fast-import's own tree code is quadratic in the size
    # of a directory (about 65 s for 100k files in tasks/ alone).
    _fast_import(tmp, [*(_blob(data) for _, data in specs + statuses), b"done\n"])
    _commit_trees(tmp, specs, statuses, size)
    # A server's repository is normally packed with bitmaps by gc; doing the
    # same keeps clone figures honest rather than penalised by loose trees.
    _git("-C", str(tmp), "repack", "-a", "-d", "-q", "--write-bitmap-index")
    (tmp / "READY").write_text(f"{size}\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def ensure_targets() -> list[tuple[str, str]]:
    """(path, unmerged commit) of each small target repository the tasks point at.

    review_pending statuses name the unmerged commit, so the engine's merge
    checks do their real work (fetch, is-ancestor) and find nothing merged."""
    out = []
    for k in range(N_TARGETS):
        path = CACHE / f"target-{k}-v{VERSION}.git"
        if not (path / "READY").exists():
            shutil.rmtree(path, ignore_errors=True)
            _git("init", "-q", "--bare", "--initial-branch=main", str(path))
            _fast_import(path, _target_stream(k))
            (path / "READY").write_text("ok\n")
        side = _git("-C", str(path), "rev-parse", "refs/heads/task/work").strip()
        out.append((str(path), side))
    return out


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, env=GIT_ENV)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


def _fast_import(repo: Path, chunks) -> None:
    proc = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE, env=GIT_ENV)
    with proc.stdin:
        for chunk in chunks:
            proc.stdin.write(chunk)
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import into {repo} failed")


# ---- the fast-import streams ---------------------------------------------------------

def _commit(ref: str, message: str, when: datetime) -> bytes:
    stamp = f"{int(when.timestamp())} +0000"
    msg = message.encode()
    return (f"commit {ref}\nauthor {PERSON} {stamp}\ncommitter {PERSON} {stamp}\n"
            f"data {len(msg)}\n").encode() + msg + b"\n"


def _file(path: str, data: bytes) -> bytes:
    return f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n"


def _blob(data: bytes) -> bytes:
    return f"blob\ndata {len(data)}\n".encode() + data + b"\n"


def _files(size: int, targets: list[tuple[str, str]]):
    """(path, bytes) of a person's spec files, and of fleet's status files."""
    specs = [("fleet.yaml", FLEET_YAML)]
    specs += [(f"agents/{name}.yaml", body) for name, body in AGENTS.items()]
    specs += [(f"hosts/{host_of(h)}.yaml", host_yaml(h)) for h in range(N_HOSTS)]
    specs += [(f"tasks/{task_id(i)}.yaml", task_yaml(i, targets)) for i in range(1, size + 1)]
    statuses = [(f"status/{task_id(i)}.yaml", statusfile.dumps(status_of(i, targets)))
                for i in range(1, size + 1)]
    return specs, statuses


def _commit_trees(repo_path: Path, specs, statuses, size: int) -> None:
    """Two commits, as a real repository has them: a person's specs, then fleet's statuses."""
    import pygit2    # only here: the benchmarks otherwise reach git through GitStore

    repo = pygit2.Repository(str(repo_path))
    dirs: dict[str, pygit2.TreeBuilder] = {}
    root = repo.TreeBuilder()

    def add(path: str, data: bytes) -> None:
        oid = pygit2.hash(data)    # the blob is already in the pack fast-import wrote
        head, _, name = path.rpartition("/")
        builder = dirs.setdefault(head, repo.TreeBuilder()) if head else root
        builder.insert(name, oid, pygit2.GIT_FILEMODE_BLOB)

    def tree() -> pygit2.Oid:
        for name, builder in dirs.items():
            root.insert(name, builder.write(), pygit2.GIT_FILEMODE_TREE)
        return root.write()

    def commit(message: str, when: datetime, parents: list) -> pygit2.Oid:
        who = pygit2.Signature("Pat Person", "pat@example.invalid", int(when.timestamp()), 0)
        return repo.create_commit("refs/heads/main", who, who, message, tree(), parents)

    for path, data in specs:
        add(path, data)
    first = commit(f"{size} tasks", NOW - timedelta(days=2), [])
    for path, data in statuses:
        add(path, data)
    commit(f"fleet: {size} status changes", NOW - timedelta(days=1), [first])


def _target_stream(k: int):
    yield _commit("refs/heads/main", "initial", NOW - timedelta(days=30))
    yield _file("README.md", f"# target {k}\n".encode())
    yield b"\n"
    yield _commit("refs/heads/task/work", "an agent's unmerged work", NOW - timedelta(days=1))
    yield b"from refs/heads/main\n"
    yield _file("NOTES.md", b"work in progress\n")
    yield b"\ndone\n"


# ---- file contents ----------------------------------------------------------------

FLEET_YAML = b"""\
poll_interval: 10s
backoff:
  base: 10s
  max: 5m
cancel_grace: 10s
defaults:
  base: main
  timeout: 1h
  stall_timeout: 10m
  max_attempts: 3
  max_reviews: 3
"""

AGENTS = {
    "codex": b"""\
name: codex
command: [codex, -a, never, exec, --json, --sandbox, workspace-write, -C, "{workdir}", "-"]
prompt: stdin
output: codex-jsonl
requires: [codex]
version: [codex, --version]
""",
    "claude-code": b"""\
name: claude-code
command: [claude, -p, --output-format, json, --permission-mode, acceptEdits]
prompt: stdin
output: claude-json
requires: [claude-code]
version: [claude, --version]
""",
}


def host_yaml(h: int) -> bytes:
    caps = ", ".join(HOST_CAPS[h % len(HOST_CAPS)])
    return (f"name: {host_of(h)}\naddress: local\ncapabilities: [{caps}]\n"
            f"max_concurrent: 2\nworkdir: /srv/fleet/{host_of(h)}\n").encode()


def task_yaml(i: int, targets: list[tuple[str, str]]) -> bytes:
    lines = [
        f"id: {task_id(i)}",
        f"title: Fix the flaky integration test of module {i}",
        f"agent: {'codex' if i % 2 else 'claude-code'}",
        "goal: |",
        f"  The integration test of module {i} fails about one run in twenty on CI.",
        "  Find the cause, fix it, and keep the test enabled.",
        "constraints:",
        "  - Keep the public API unchanged.",
        "  - Add no new dependencies.",
        "validation:",
        "  - make test",
        "  - make lint",
        f"repo: {targets[i % len(targets)][0]}",
        "base: main",
        f"priority: {i % 5}",
    ]
    if state_of(i) == State.BLOCKED:
        lines.append("requires: [tpu]")          # no host has it: blocked for a reason
    elif i % 7 == 0:
        lines.append("requires: [gpu]")
    if i % 50 == 7:
        lines.append(f"depends_on: [{task_id(i - 1)}]")
    return ("\n".join(lines) + "\n").encode()


def status_of(i: int, targets: list[tuple[str, str]]) -> Status:
    """A status as the planner would have left it for a task in state_of(i)."""
    tid, state, host = task_id(i), state_of(i), host_of(i)
    created = NOW - timedelta(hours=3, seconds=i % 3600)
    hist = [Transition(created, None, State.CREATED, "task file added")]
    base = dict(task=tid, branch=f"task/{tid}", spec_commit="0" * 40, created_at=created,
                last_activity_at=created)
    if state == State.CREATED:
        return Status(state=state, message="waiting for a free slot on an eligible host",
                      history=tuple(hist), **base)
    if state == State.BLOCKED:
        why = "no eligible host: none has capabilities [codex, tpu]"
        hist.append(Transition(created, State.CREATED, State.BLOCKED, why))
        return Status(state=state, message=why, history=tuple(hist), **base)
    # Unfinished runs started minutes ago (well inside timeout and stall_timeout);
    # finished ones long before the benchmarks' clock.
    started = NOW - timedelta(minutes=5) if state != State.COMPLETED else created + timedelta(minutes=10)
    run = dict(host=host, run_id=f"{tid}-20250601115500-1", runs=1, attempt=1, started_at=started)
    assigned = f"assigned to {host} (attempt 1 of 3)"
    hist.append(Transition(started, State.CREATED, State.ASSIGNED, assigned))
    if state == State.ASSIGNED:
        return Status(state=state, message=assigned, history=tuple(hist), **base, **run)
    hist.append(Transition(started, State.ASSIGNED, State.RUNNING, f"run started on {host}"))
    if state == State.RUNNING:
        return Status(state=state, message=f"run started on {host}", history=tuple(hist),
                      **base, **run)
    done = started + timedelta(minutes=3)
    result = Result(outcome="success", exit_code=0, session_id=f"s-{i}", cost_usd=0.42,
                    summary=f"Fixed a race in module {i}'s test setup; the test passes 200/200.",
                    tokens=Tokens(51234, 4321, 20480), commit=targets[i % len(targets)][1])
    pushed = f"branch task/{tid} pushed"
    hist.append(Transition(done, State.RUNNING, State.REVIEW_PENDING, pushed))
    if state == State.REVIEW_PENDING:
        return Status(state=state, message=pushed, history=tuple(hist), result=result,
                      finished_at=done, **base, **run)
    merged = f"task/{tid} merged into main"
    hist.append(Transition(done + timedelta(hours=1), State.REVIEW_PENDING, State.COMPLETED, merged))
    return Status(state=State.COMPLETED, message=merged, history=tuple(hist), result=result,
                  finished_at=done + timedelta(hours=1), **base, **run)


# ---- a person at work ---------------------------------------------------------------

def cached(size: int) -> Path:
    """The cached repository of `size` tasks; ensure() must have built it."""
    path = CACHE / f"fleet-{size}-v{VERSION}.git"
    if not (path / "READY").exists():
        raise SystemExit(f"no cached repository for {size} tasks: run `python -m benchmarks`")
    return path


def push_edit(source: Path, path: str, extra: bytes, message: str) -> str:
    """A person appends `extra` to one file and pushes: one commit on main of `source`.

    Written with pygit2 straight into the bare repository, which leaves it exactly
    as a push would, in milliseconds, so the timed pass sees only fleet's work."""
    import pygit2

    repo = pygit2.Repository(str(source))
    parent = repo[repo.references["refs/heads/main"].target]
    folder, name = path.split("/")
    sub = repo[parent.tree[folder].id]
    blob = repo.create_blob(repo[sub[name].id].data + extra)
    inner = repo.TreeBuilder(sub)
    inner.insert(name, blob, pygit2.GIT_FILEMODE_BLOB)
    top = repo.TreeBuilder(parent.tree)
    top.insert(folder, inner.write(), pygit2.GIT_FILEMODE_TREE)
    who = pygit2.Signature("Pat Person", "pat@example.invalid")
    return str(repo.create_commit("refs/heads/main", who, who, message, top.write(), [parent.id]))
