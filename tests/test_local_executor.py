"""The local executor end to end: real git, real bare repos, real processes.

A fake agent (a small sh script, or tests/fake_agents/replay for the real
Codex/Claude output formats) runs through runwrapper.sh exactly as a real CLI
would. Every wait is a bounded poll with a deadline; nothing sleeps for long.
"""
import asyncio
import dataclasses
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.executors import local
from controller.executors import rundir
from controller.executors.local import LocalExecutor
from controller.model import Host, Phase, RunSpec

HERE = Path(__file__).resolve().parent
REPLAY = HERE / "fake_agents" / "replay"
WRAPPER = HERE.parent / "controller" / "executors" / "runwrapper.sh"
HOST = Host(name="box", address="local", workdir="~/fleet")

FAKE_AGENT = r"""#!/bin/sh
# A fake agent: counts its calls, keeps its prompt and argv, edits the workspace.
printf '%s\n' "$FLEET_RUN_ID" >>"$FAKE_DIR/calls"
cat >"$FAKE_DIR/prompt.$FLEET_RUN_ID"
for a in "$@"; do printf '%s\0' "$a"; done >"$FAKE_DIR/argv.$FLEET_RUN_ID"
[ -e junk.txt ] && echo dirty >"$FAKE_DIR/saw-junk"
printf '%s\n' "${FAKE_LINE-change}" >>agent.txt
[ -n "$FAKE_JUNK" ] && echo junk >junk.txt
[ -n "$FAKE_SLEEP" ] && sleep "$FAKE_SLEEP"
echo "fake agent done"
echo "fake agent stderr" >&2
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    # HOME decides `~/fleet` and git's global config: both stay inside tmp_path.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    yield
    for pid in list(local._CHILDREN):            # leave no process behind on failure
        _kill_group(pid)


@pytest.fixture
def fake(tmp_path):
    d = tmp_path / "fake"
    d.mkdir()
    script = d / "agent.sh"
    script.write_text(FAKE_AGENT)
    return d


def git(*args, cwd=None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    res = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def make_repo(path: Path) -> str:
    """A bare repo with one commit on main: the task's target repository."""
    seed = path.parent / (path.name + ".seed")
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("hello\n")
    git("add", "README", cwd=seed)
    git("commit", "-q", "-m", "init", cwd=seed)
    git("clone", "-q", "--bare", str(seed), str(path))
    return str(path)


def branches(repo: str) -> dict[str, str]:
    out = git("--git-dir", repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads")
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in out.splitlines()}


def spec(repo: str, fake: Path, run_id="t1-1", task_id="t1", env=(), **kw) -> RunSpec:
    base = RunSpec(run_id=run_id, task_id=task_id, host=HOST,
                   command=("sh", str(fake / "agent.sh")), prompt="do the thing\n",
                   prompt_mode="stdin", output_format="raw", repo=repo, base="main",
                   branch=f"task/{task_id}", from_branch=False,
                   env=(("FAKE_DIR", str(fake)), *env))
    return dataclasses.replace(base, **kw)


def run_dir(run_id: str) -> Path:
    return Path(os.path.expanduser("~/fleet")) / "runs" / run_id


async def wait_for(ex, run_id, phases=(Phase.EXITED, Phase.LOST), deadline=20.0):
    for _ in range(int(deadline / 0.05)):
        report = await ex.poll(HOST, run_id)
        if report is not None and report.phase in phases:
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {phases}: {report}")


def run_to_end(s: RunSpec):
    async def go():
        ex = LocalExecutor()
        await ex.start(s)
        return await wait_for(ex, s.run_id)
    return asyncio.run(go())


async def wait_file(path: Path, deadline=10.0):
    for _ in range(int(deadline / 0.02)):
        if path.exists() and path.stat().st_size:
            return path
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _kill_group(pgid: int):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---- the main line -----------------------------------------------------------

def test_run_pushes_the_branch_and_reports_success(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    checks = ("test -f agent.txt", "grep -q change agent.txt")
    report = run_to_end(spec(repo, fake, validation=checks))
    assert report.phase == Phase.EXITED, report
    assert report.result.outcome == "success" and report.error == ""
    assert report.changes is True
    head = branches(repo)["refs/heads/task/t1"]
    assert report.result.commit == head
    assert git("--git-dir", repo, "show", f"{head}:agent.txt") == "change"
    assert git("--git-dir", repo, "log", "-1", "--format=%an: %s", head) == \
        "fleet: fleet: task t1, run t1-1"
    assert branches(repo)["refs/heads/main"] == git("--git-dir", repo, "rev-parse", f"{head}~1")
    assert report.last_output_at is not None
    assert (fake / "prompt.t1-1").read_text() == "do the thing\n"
    result = rundir.parse_result((run_dir("t1-1") / "result").read_bytes())
    assert result["pushed"] == "1" and result["changes"] == "1" and result["head"] == head


def test_claude_json_output_is_parsed(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    cmd = ("sh", "-c", 'echo edit >agent.txt && exec "$0" "$@"', sys.executable, str(REPLAY),
           "claude_p_json_bypass.json", "--save-prompt", str(fake / "saved"))
    report = run_to_end(spec(repo, fake, command=cmd, output_format="claude-json"))
    assert report.result.outcome == "success", report
    assert report.result.session_id and report.result.cost_usd is not None
    assert report.result.commit == branches(repo)["refs/heads/task/t1"]
    assert (fake / "saved").read_text() == "do the thing\n"


def test_agent_failure_pushes_nothing(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    report = run_to_end(spec(repo, fake, env=(("FAKE_EXIT", "1"),), validation=("touch ran",)))
    assert report.result.outcome == "failure" and report.result.exit_code == 1
    assert report.error == "agent exited 1: fake agent stderr"
    assert not report.changes and report.result.commit is None
    assert "refs/heads/task/t1" not in branches(repo)
    assert not (Path(os.path.expanduser("~/fleet/work/t1")) / "ran").exists()


def test_failed_validation_names_the_command_and_stops_there(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    checks = ("true", "echo first; echo 'it broke' >&2; exit 3", "touch never")
    report = run_to_end(spec(repo, fake, validation=checks))
    assert report.result.outcome == "failure"
    assert report.error == \
        "validation `echo first; echo 'it broke' >&2; exit 3` failed (exit 3): it broke"
    assert "refs/heads/task/t1" not in branches(repo) and not report.changes
    assert not Path(os.path.expanduser("~/fleet/work/t1/never")).exists()
    assert (run_dir("t1-1") / "validation.tail").read_text() == "first\nit broke\n"


def test_no_changes_is_success_without_a_push(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    report = run_to_end(spec(repo, fake, command=("true",)))
    assert report.result.outcome == "success" and not report.changes
    assert "refs/heads/task/t1" not in branches(repo)


def test_clone_failure_is_reported(tmp_path, fake):
    report = run_to_end(spec(str(tmp_path / "missing.git"), fake))
    assert report.phase == Phase.EXITED and report.result.outcome == "failure"
    assert report.error.startswith("workspace clone failed: git clone: ")
    assert not (fake / "calls").exists()


def test_from_branch_continues_and_otherwise_resets(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    # No branch yet: from_branch starts from base.
    first = run_to_end(spec(repo, fake, run_id="t1-1", from_branch=True,
                            env=(("FAKE_LINE", "one"),)))
    second = run_to_end(spec(repo, fake, run_id="t1-2", from_branch=True,
                             env=(("FAKE_LINE", "two"),)))
    head = branches(repo)["refs/heads/task/t1"]
    assert second.result.commit == head
    assert git("--git-dir", repo, "show", f"{head}:agent.txt") == "one\ntwo"
    assert git("--git-dir", repo, "rev-parse", f"{head}~1") == first.result.commit
    third = run_to_end(spec(repo, fake, run_id="t1-3", env=(("FAKE_LINE", "three"),)))
    assert git("--git-dir", repo, "show", f"{third.result.commit}:agent.txt") == "three"


def test_a_previous_attempt_leaves_nothing_behind(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    run_to_end(spec(repo, fake, run_id="t1-1", env=(("FAKE_JUNK", "1"), ("FAKE_EXIT", "2"))))
    assert Path(os.path.expanduser("~/fleet/work/t1/junk.txt")).exists()
    report = run_to_end(spec(repo, fake, run_id="t1-2"))
    assert report.result.outcome == "success"
    assert not (fake / "saw-junk").exists()
    assert git("--git-dir", repo, "show", f"{report.result.commit}:agent.txt") == "change"


# ---- idempotence, restarts, stopping -----------------------------------------

def test_starting_twice_runs_once(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    s = spec(repo, fake)

    async def go():
        ex = LocalExecutor()
        await asyncio.gather(ex.start(s), ex.start(s), LocalExecutor().start(s))
        await wait_for(ex, s.run_id)
        await ex.start(s)            # after the end: still a reattach, not a rerun
    asyncio.run(go())
    assert (fake / "calls").read_text() == "t1-1\n"
    # A wrapper started by hand on a claimed run leaves at once, touching nothing.
    before = sorted(os.listdir(run_dir("t1-1")))
    res = subprocess.run(["sh", str(WRAPPER), str(run_dir("t1-1"))])
    assert res.returncode == 75 and sorted(os.listdir(run_dir("t1-1"))) == before


def test_a_run_survives_its_controller(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    s = spec(repo, fake, env=(("FAKE_SLEEP", "1"),))
    # Start it from another process that then exits, as a controller that dies.
    code = ("import asyncio, pickle, sys\nfrom controller.executors.local import LocalExecutor\n"
            "asyncio.run(LocalExecutor().start(pickle.loads(sys.stdin.buffer.read())))\n")
    subprocess.run([sys.executable, "-c", code], input=pickle.dumps(s), check=True,
                   cwd=HERE.parent)

    async def go():
        ex = LocalExecutor()
        running = await wait_for(ex, s.run_id, phases=(Phase.RUNNING, Phase.EXITED))
        assert running.phase == Phase.RUNNING
        await ex.start(s)            # the restarted controller re-issues the start
        return await wait_for(LocalExecutor(), s.run_id)
    report = asyncio.run(go())
    assert report.phase == Phase.EXITED and report.result.outcome == "success"
    assert (fake / "calls").read_text() == "t1-1\n"


def test_poll_of_an_unknown_run_is_none():
    assert asyncio.run(LocalExecutor().poll(HOST, "nope-1")) is None


@pytest.mark.parametrize("ignore_term", [False, True], ids=["term", "kill"])
def test_stop_leaves_no_process_of_the_group(tmp_path, ignore_term):
    repo = make_repo(tmp_path / "target.git")
    agent = tmp_path / "stubborn.sh"
    trap = "trap '' TERM\n" if ignore_term else ""
    agent.write_text(f"{trap}sleep 300 &\necho $! >child.pid\necho started\nwait\n")
    s = spec(repo, tmp_path, command=("sh", str(agent)))

    async def go():
        ex = LocalExecutor()
        await ex.start(s)
        await wait_for(ex, s.run_id, phases=(Phase.RUNNING,))
        pidfile = await wait_file(Path(os.path.expanduser("~/fleet/work/t1/child.pid")))
        child = int(pidfile.read_text())
        pgid = int((run_dir(s.run_id) / "pid").read_text())
        assert os.getpgid(child) == pgid
        await ex.stop(HOST, s.run_id, grace=0.5)
        assert local.group_members(pgid) == []
        return await ex.poll(HOST, s.run_id)
    report = asyncio.run(go())
    assert report.phase == Phase.EXITED and report.result.outcome == "interrupted"
    # TERMed, the wrapper says so itself; KILLed, stop writes the result for it.
    why = "the run wrapper left no result" if ignore_term else "by a signal during agent"
    assert report.error.startswith("cancelled: ") and report.error.endswith(why), report.error
    assert "refs/heads/task/t1" not in branches(repo)


def test_stop_before_the_start_keeps_it_from_starting(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    s = spec(repo, fake)
    where = rundir.paths(os.path.expanduser("~/fleet"), s.task_id, s.run_id)
    assert local._create(where.run_dir, rundir.render(s, where))   # written, never launched

    async def go():
        ex = LocalExecutor()
        await ex.stop(HOST, s.run_id, grace=0.1)
        await ex.start(s)
        await ex.stop(HOST, s.run_id, grace=0.1)    # stopping it again is harmless
        return await ex.poll(HOST, s.run_id)
    report = asyncio.run(go())
    assert report.phase == Phase.EXITED and report.result.outcome == "interrupted"
    assert not (fake / "calls").exists()


def test_a_dead_wrapper_without_result_is_lost(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    s = spec(repo, fake, env=(("FAKE_SLEEP", "30"),))

    async def go():
        ex = LocalExecutor()
        await ex.start(s)
        await wait_for(ex, s.run_id, phases=(Phase.RUNNING,))
        pid = int((run_dir(s.run_id) / "pid").read_text())
        os.kill(pid, signal.SIGKILL)   # the wrapper alone, as an OOM killer would
        report = await wait_for(ex, s.run_id)
        _kill_group(pid)
        return report
    report = asyncio.run(go())
    assert report.phase == Phase.LOST and "left no result" in report.error


# ---- hostile input -------------------------------------------------------------

EVIL = "$(touch pwned1)`touch pwned2`'\"\n; touch pwned3 && touch pwned4 | touch pwned5 *"


def no_canary(*roots: Path):
    for root in roots:
        for _, _, files in os.walk(root):
            assert not [f for f in files if f.startswith("pwned")], "hostile input was executed"


def test_hostile_values_arrive_literally_and_never_run(tmp_path, fake):
    repo = make_repo(tmp_path / "re po $(touch pwned0) `touch pwned9` 'q\" ;&|.git")
    branch = "task/h$(touch${IFS}pwned6)'q\"`touch${IFS}pwned7`;&|<>"
    agent = tmp_path / "echoer.sh"
    agent.write_text('printf %s "$HOSTILE" >"$FAKE_DIR/env"\ncat >"$FAKE_DIR/prompt"\n'
                     'for a in "$@"; do printf "%s\\0" "$a"; done >"$FAKE_DIR/argv"\n'
                     'echo x >agent.txt\n')
    s = spec(repo, fake, branch=branch, prompt=EVIL, command=("sh", str(agent), EVIL, "{branch}"),
             env=(("HOSTILE", EVIL), ("FLEET_WORKSPACE", "/tmp/hijack")))
    report = run_to_end(s)
    assert report.result.outcome == "success", report.error
    assert (fake / "env").read_text() == EVIL
    assert (fake / "prompt").read_text() == EVIL
    assert (fake / "argv").read_bytes() == f"{EVIL}\0{branch}\0".encode()
    assert branches(repo)[f"refs/heads/{branch}"] == report.result.commit
    assert not os.path.exists("/tmp/hijack")
    no_canary(tmp_path, Path(os.path.expanduser("~")))


@pytest.mark.parametrize("field,value", [
    ("task_id", "t1$(touch pwned1)"), ("task_id", "../../etc"), ("task_id", "t1\n"),
    ("run_id", "r$(touch pwned1)"), ("run_id", ".."), ("run_id", "a/b"),
])
def test_hostile_ids_are_refused(tmp_path, fake, field, value):
    s = spec(str(tmp_path / "x.git"), fake, **{field: value})
    with pytest.raises(ValueError):
        asyncio.run(LocalExecutor().start(s))
    assert not os.path.exists(os.path.expanduser("~/fleet/runs"))
    no_canary(tmp_path)


def test_a_nul_in_an_env_value_is_refused(tmp_path, fake):
    s = spec(str(tmp_path / "x.git"), fake, env=(("BAD", "a\0b"),))
    with pytest.raises(ValueError):
        asyncio.run(LocalExecutor().start(s))


def test_a_one_megabyte_prompt_arrives_intact(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    prompt = "".join(f"line {i}: ünïcödé '$(x)' \"q\" \\ `y`\n" for i in range(25_000))
    assert len(prompt.encode()) > 1_000_000
    report = run_to_end(spec(repo, fake, prompt=prompt))
    assert report.result.outcome == "success"
    assert (fake / "prompt.t1-1").read_bytes() == prompt.encode()


def test_prompt_file_mode_gives_the_path_and_an_empty_stdin(tmp_path, fake):
    repo = make_repo(tmp_path / "target.git")
    report = run_to_end(spec(repo, fake, prompt="from a file", prompt_mode="file",
                             command=("sh", str(fake / "agent.sh"), "{prompt_file}", "{workdir}")))
    assert report.result.outcome == "success"
    assert (fake / "prompt.t1-1").read_text() == ""
    argv = (fake / "argv.t1-1").read_text().split("\0")
    assert Path(argv[0]).read_text() == "from a file"
    assert argv[1] == os.path.expanduser("~/fleet/work/t1")


# ---- rundir pieces -----------------------------------------------------------------

def test_substitution_is_one_pass_and_per_element():
    values = {"workdir": "/w/{branch}", "task_id": "t", "run_id": "r", "branch": "b",
              "prompt_file": "/p"}
    argv = rundir.substitute(("x{workdir}", "{task_id}-{run_id}", "{branch} {nope}", "{{branch}}"),
                             values)
    assert argv == ("x/w/{branch}", "t-r", "b {nope}", "{b}")


def test_wrapper_is_posix_sh(tmp_path):
    checkers = [c for c in ("dash", "sh", "bash") if shutil.which(c)]
    assert checkers, "no POSIX shell on PATH to check the run wrapper with"
    broken = tmp_path / "broken.sh"
    broken.write_text(WRAPPER.read_text() + "\nif then fi\n")
    for checker in checkers:
        args = ["--posix", "-n"] if checker == "bash" else ["-n"]
        ok = subprocess.run([checker, *args, str(WRAPPER)], capture_output=True, text=True)
        assert ok.returncode == 0, (checker, ok.stderr)
        # The same check refuses a syntax error, so a pass above means something.
        assert subprocess.run([checker, *args, str(broken)], capture_output=True).returncode != 0
