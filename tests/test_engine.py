"""The engine end to end on the local host: real git repos, real runs, real restarts."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from controller.engine.core import Engine
from controller.gitstore import GitStore
from controller.executors.local import LocalExecutor
from controller.model import Phase, RunReport, StartRun

from .fleetkit import World, git, wait_for


def engine_for(world: World, executors=None) -> Engine:
    state = world.root / "state"
    return Engine(GitStore(str(world.fleet), state), state, executors=executors)


def run_once(engine: Engine) -> None:
    asyncio.run(asyncio.wait_for(engine.run(once=True, tick=0.05), timeout=60))


def counting_agent(world: World, sleep: float = 0.0) -> Path:
    """An agent that logs each invocation outside the workspace, then edits a file."""
    log = world.root / "invocations.log"
    script = world.root / "count-agent.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "$FLEET_TASK_ID $FLEET_RUN_ID" >> {log}
        sleep {sleep}
        cat > prompt-seen.md
        echo "work of $FLEET_TASK_ID" > "work-$FLEET_TASK_ID.txt"
        echo '{{"type":"result","subtype":"success","is_error":false,"result":"did it","session_id":"s1","total_cost_usd":0.01,"usage":{{"input_tokens":5,"output_tokens":7}}}}'
        """))
    script.chmod(0o755)
    world.agent("count", [str(script)])
    return log


def test_task_goes_to_review_then_completed_on_merge(tmp_path):
    w = World(tmp_path)
    w.task("fix-login", validation=["test -f NOTES.md"])
    w.push("add fix-login")
    engine = engine_for(w)
    run_once(engine)
    st = w.status("fix-login")
    assert st["state"] == "review_pending", st["message"]
    assert st["result"]["outcome"] == "success" and st["result"]["commit"]
    assert "Task fix-login" in w.target_file("task/fix-login", "NOTES.md")
    assert [h["to"] for h in st["history"]] == ["created", "assigned", "running", "review_pending"]
    assert (w.workdir / "work" / "fix-login" / ".git").is_dir()   # kept for a revision
    w.merge("task/fix-login")
    run_once(engine)
    assert w.status("fix-login")["state"] == "completed"
    assert not (w.workdir / "work" / "fix-login").exists()      # finished: the clone is gone
    assert list((w.workdir / "runs").glob("fix-login-*/output"))  # the run dirs stay
    log = git("-C", w.fleet, "log", "--format=%an|%B", "--", "status/fix-login.yaml")
    assert ("fix-login: running -> review_pending (branch task/fix-login pushed: merge "
            "task/fix-login into main, or add a feedback entry to tasks/fix-login.yaml)") in log
    assert "Fleet-Task: fix-login" in log


def test_dependency_retry_and_failure_paths(tmp_path):
    w = World(tmp_path)
    w.agent("flaky", ["fleet-demo-agent", "--fail-first"])
    w.agent("broken", ["fleet-demo-agent", "--fail-always"])
    w.task("first")
    w.task("second", depends_on=["first"])
    w.task("flaky", agent="flaky")
    w.task("doomed", agent="broken", max_attempts=2)
    w.push()
    engine = engine_for(w)
    run_once(engine)
    assert w.status("first")["state"] == "review_pending"
    assert w.status("second")["state"] == "blocked"
    assert "waiting for depends_on: first" in w.status("second")["message"]
    flaky = w.status("flaky")
    assert flaky["state"] == "review_pending" and flaky["attempt"] == 2
    assert "retrying" in [h["to"] for h in flaky["history"]]
    doomed = w.status("doomed")
    assert doomed["state"] == "failed" and "attempts used up (2 of 2)" in doomed["message"]
    w.merge("task/first")
    run_once(engine)
    assert w.status("first")["state"] == "completed"
    assert w.status("second")["state"] == "review_pending"


def test_invalid_task_blocks_only_itself(tmp_path):
    w = World(tmp_path)
    w.task("good")
    w.write("tasks/bad.yaml", "id: bad\ntitle: x\nagent: demo\ngoal: g\nrepo: /r\ntimeout: soon\n")
    w.push()
    run_once(engine_for(w))
    assert w.status("good")["state"] == "review_pending"
    bad = w.status("bad")
    assert bad["state"] == "blocked" and "tasks/bad.yaml:6" in bad["message"]


def test_feedback_starts_a_revision_and_deletion_removes_status(tmp_path):
    w = World(tmp_path)
    w.task("doc")
    w.task("gone")
    w.push()
    engine = engine_for(w)
    run_once(engine)
    w.task("doc", feedback=["Mention the tests."])
    (w.person / "tasks" / "gone.yaml").unlink()
    w.push("feedback on doc, drop gone")
    run_once(engine)
    doc = w.status("doc")
    assert doc["state"] == "review_pending" and doc["review_count"] == 1
    assert "revised after feedback: Mention the tests." in w.target_file("task/doc", "NOTES.md")
    assert w.status("gone") is None


class CrashAfterStart:
    """Our own executor interface, wrapped: the controller 'dies' right after a start."""

    def __init__(self, inner):
        self.inner = inner

    async def start(self, spec):
        await self.inner.start(spec)
        raise SystemExit("simulated SIGKILL after start")

    async def poll(self, host, run_id):
        return await self.inner.poll(host, run_id)

    async def stop(self, host, run_id, grace):
        await self.inner.stop(host, run_id, grace)


class CrashBeforeStart(CrashAfterStart):
    async def start(self, spec):
        raise SystemExit("simulated SIGKILL between the assigned commit and the start")


@pytest.mark.parametrize("crash", [CrashBeforeStart, CrashAfterStart])
def test_restart_after_crash_neither_loses_nor_doubles_a_run(tmp_path, crash):
    w = World(tmp_path)
    log = counting_agent(w, sleep=0.5)
    w.task("one", agent="count")
    w.push()
    dying = engine_for(w, executors=lambda host: crash(LocalExecutor()))
    with pytest.raises(SystemExit):
        run_once(dying)
    assert w.status("one")["state"] == "assigned"          # on record before the start
    run_once(engine_for(w))                                  # a fresh controller process
    assert w.status("one")["state"] == "review_pending"
    assert len(log.read_text().splitlines()) == 1


def test_sigkill_of_the_controller_mid_run(tmp_path):
    """The real thing: `fleet run` killed with SIGKILL while runs are in flight."""
    w = World(tmp_path, max_concurrent=3)
    log = counting_agent(w, sleep=2)
    for name in ("a", "b", "c"):
        w.task(name, agent="count")
    w.push()
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\npoll_interval: 1s\n"
                      "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
    cmd = [sys.executable, "-m", "controller", "run", "--repo", str(w.fleet), "--config", str(config)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 3, timeout=30)
        assert all(w.status(n)["state"] in ("assigned", "running") for n in "abc")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    done = subprocess.run(cmd + ["--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(w.status(n)["state"] for n in "abc") == ["review_pending"] * 3
    runs = log.read_text().splitlines()
    assert len(runs) == 3 and len(set(runs)) == 3             # each task ran exactly once


def test_rerun_of_a_running_task_stops_the_old_run_before_the_new_one_starts(tmp_path):
    w = World(tmp_path)
    fleet_yaml = yaml.safe_load((w.person / "fleet.yaml").read_text())
    fleet_yaml.update(poll_interval="1s", cancel_grace="2s")
    w.write("fleet.yaml", fleet_yaml)
    log = tmp_path / "agent.log"
    script = tmp_path / "slow-first.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        first=1; grep -q start {log} 2>/dev/null && first=0
        echo "start $FLEET_RUN_ID $(date +%s.%N)" >> {log}
        trap 'echo "stop $FLEET_RUN_ID $(date +%s.%N)" >> {log}; exit 143' TERM
        if [ $first = 1 ]; then sleep 60 & wait; fi
        echo new > new.txt
        echo '{{"type":"result","subtype":"success","is_error":false,"result":"ok"}}'
        """))
    script.chmod(0o755)
    w.agent("slow", [str(script)])
    w.task("t", agent="slow")
    w.push()
    engine = engine_for(w)

    async def scenario():
        job = asyncio.get_running_loop().create_task(engine.run(once=True, tick=0.05))
        for _ in range(200):                       # bounded: 10 s
            if log.exists():
                break
            await asyncio.sleep(0.05)
        w.task("t", agent="slow", rerun="1")
        await asyncio.to_thread(w.push, "rerun t")
        await asyncio.wait_for(job, timeout=60)

    asyncio.run(scenario())
    events = [line.split() for line in log.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "stop", "start"]
    assert events[0][1] == events[1][1] != events[2][1]
    assert float(events[1][2]) <= float(events[2][2])     # never two live runs
    st = w.status("t")
    assert st["state"] == "review_pending" and "stopping" not in st


def test_failed_validation_names_the_command_and_reaches_the_next_prompt(tmp_path):
    w = World(tmp_path)
    w.task("checked", validation=["test -f NOTES.md", "grep -q never-there NOTES.md"],
           max_attempts=2)
    w.push()
    run_once(engine_for(w))
    st = w.status("checked")
    assert st["state"] == "failed"
    assert "validation `grep -q never-there NOTES.md` failed (exit 1)" in st["message"]
    prompts = sorted((w.workdir / "runs").glob("checked-*/prompt"))
    assert len(prompts) == 2
    retry_prompt = prompts[-1].read_text()
    assert "grep -q never-there NOTES.md" in retry_prompt and "failed" in retry_prompt
    assert w.target_file("task/checked", "NOTES.md") is None     # nothing pushed


def test_an_agent_failing_before_any_output_says_why_from_stderr(tmp_path):
    w = World(tmp_path)
    script = tmp_path / "refuses.sh"
    script.write_text("#!/bin/sh\necho '--dangerously-skip-permissions cannot be used with root' >&2\nexit 1\n")
    script.chmod(0o755)
    w.agent("refuses", [str(script)])
    w.task("r", agent="refuses", max_attempts=1)
    w.push()
    run_once(engine_for(w))
    st = w.status("r")
    assert st["state"] == "failed"
    assert "agent exited 1" in st["message"] and "cannot be used with root" in st["message"]


class CountingExecutor:
    """Our executor interface, counting starts; runs stay 'running' forever."""

    def __init__(self):
        self.started: list[str] = []

    async def start(self, spec):
        self.started.append(spec.run_id)

    async def poll(self, host, run_id):
        return RunReport(run_id, Phase.RUNNING) if run_id in self.started else None

    async def stop(self, host, run_id, grace):
        pass


def test_a_second_controller_on_the_same_repo_does_not_overwrite_the_first(tmp_path):
    w = World(tmp_path)
    w.task("t")
    w.push()
    a_runs, b_runs = CountingExecutor(), CountingExecutor()
    a = Engine(GitStore(str(w.fleet), tmp_path / "a"), tmp_path / "a", executors=lambda h: a_runs)
    b = Engine(GitStore(str(w.fleet), tmp_path / "b"), tmp_path / "b", executors=lambda h: b_runs)

    async def scenario():
        await a.sync()
        await b.sync()                          # both see t with no status yet
        first = await a.step()
        second = await b.step()                 # writes the same status file: refused
        assert first.written and not second.written
        await b.sync()                          # b re-reads status/ and sees a's run
        assert b.book["t"].state.value == "assigned" and b.book["t"].run_id == a_runs.started[0]
        third = await b.step()
        # b only ever asks for a's run by its id (idempotent: a reattach), never a new one
        assert [x.run_id for x in third.actions if isinstance(x, StartRun)] == a_runs.started

    asyncio.run(scenario())
    assert len(a_runs.started) == 1 and b_runs.started == a_runs.started


def test_an_assignment_on_a_host_that_went_down_before_the_start_moves_without_an_attempt(tmp_path):
    w = World(tmp_path, max_concurrent=1)
    w.write("hosts/spare.yaml", {"name": "spare", "address": "local", "capabilities": ["demo"],
                                 "max_concurrent": 1, "workdir": str(tmp_path / "spare")})
    w.task("t")
    w.push()
    dying = engine_for(w, executors=lambda host: CrashBeforeStart(LocalExecutor()))
    with pytest.raises(SystemExit):
        run_once(dying)
    first = w.status("t")
    assert first["state"] == "assigned"
    engine = engine_for(w)

    async def scenario():
        await engine.sync()
        engine.watch.mark_down(first["host"], "its agent's version check failed", reachable=True)
        seen = await engine.observe()       # facts only: the planner decides what they mean
        assert first["run_id"] in seen.absent and first["run_id"] not in seen.runs
        assert not seen.launched and first["host"] in seen.hosts_down
        await engine.step()                 # the host answers: the run never started there
        await engine.step()
        await engine.work.drain()           # the start on the spare host, begun in the background
        await engine.close()
    asyncio.run(scenario())
    st = w.status("t")
    assert st["host"] != first["host"] and st["attempt"] == 1
    assert any("no attempt spent" in h["reason"] for h in st["history"])
