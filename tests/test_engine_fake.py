"""The engine's decisions carried out, seen at our executor interface.

A real fleet repo and the real git store, but a FakeExecutor for the hosts and
an injected clock: each test drives passes one by one (`sync`, `step`) and
says what the host reports, so backoff, timeouts and stops need no waiting.
The end-to-end tests with real processes are in test_engine.py.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from controller.engine.core import Engine
from controller.gitstore import GitStore

from .fakes import FAILURE, SUCCESS, Exit, FakeExecutor
from .fleetkit import World

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


class Rig:
    """A World whose hosts all run on one FakeExecutor, with a clock the test moves."""

    def __init__(self, tmp_path, hosts=("local",)):
        self.w = World(tmp_path, max_concurrent=1)
        for name in hosts:
            if name != "local":
                self.w.write(f"hosts/{name}.yaml", {
                    "name": name, "address": "local", "capabilities": ["demo"],
                    "max_concurrent": 1, "workdir": str(tmp_path / name)})
        self.w.write("agents/fake.yaml", {
            "name": "fake", "command": ["fake-agent", "--branch", "{branch}"],
            "output": "claude-json", "requires": ["demo"], "env": {"AGENT_VAR": "from-agent"}})
        self.fake = FakeExecutor()
        self.now = T0
        state = tmp_path / "state"
        self.engine = Engine(GitStore(str(self.w.fleet), state), state,
                             clock=lambda: self.now, executors=lambda host: self.fake)

    def task(self, task_id: str, **fields) -> None:
        self.w.task(task_id, agent="fake", **fields)

    def later(self, **delta) -> None:
        self.now += timedelta(**delta)

    async def pass_(self):
        """One reconcile pass, its starts and stops carried out before it returns."""
        await self.engine.sync()
        result = await self.engine.step()
        for _ in range(20):         # the fake's calls each yield once: let them finish
            await asyncio.sleep(0)
        return result

    def status(self, task_id: str) -> dict:
        st = self.w.status(task_id)
        assert st is not None, f"no status/{task_id}.yaml committed"
        return st


def drive(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def states(st: dict) -> list[str]:
    return [h["to"] for h in st["history"]]


def test_a_task_starts_on_the_fake_with_its_prompt_branch_and_env(tmp_path):
    r = Rig(tmp_path)
    r.w.write("hosts/local.yaml", {"name": "local", "address": "local", "capabilities": ["demo"],
                                   "max_concurrent": 1, "workdir": str(r.w.workdir),
                                   "env": {"HOST_VAR": "from-host", "AGENT_VAR": "host-loses"}})
    r.task("fix-login", goal="Make the login form accept emails.", constraints=["Keep the API."],
           validation=["make test"])
    r.w.push()

    async def scenario():
        await r.pass_()
        assert len(r.fake.starts) == 1
        spec = r.fake.starts[0]
        st = r.status("fix-login")
        assert st["state"] == "assigned" and st["run_id"] == spec.run_id and st["host"] == "local"
        assert (spec.task_id, spec.host.name, spec.attempt) == ("fix-login", "local", 1)
        assert spec.command == ("fake-agent", "--branch", "{branch}")   # the executor substitutes
        assert spec.branch == "task/fix-login" and spec.base == "main" and not spec.from_branch
        assert spec.repo == str(r.w.target) and spec.validation == ("make test",)
        assert "Make the login form accept emails." in spec.prompt and "Keep the API." in spec.prompt
        assert (spec.prompt_mode, spec.output_format) == ("stdin", "claude-json")
        env = dict(spec.env)                # host env, then agent env: the later one wins
        assert env["HOST_VAR"] == "from-host" and env["AGENT_VAR"] == "from-agent"
        await r.pass_()                     # the run is seen running
        assert r.status("fix-login")["state"] == "running"
        assert len(r.fake.runs) == 1        # nothing started twice
    drive(scenario)


def test_a_run_that_ends_with_success_goes_to_review_pending(tmp_path):
    r = Rig(tmp_path)
    r.task("t")
    r.w.push()

    async def scenario():
        await r.pass_()
        run_id = r.fake.starts[0].run_id
        await r.pass_()
        r.later(minutes=3)
        r.fake.exit(run_id, SUCCESS, changes=True)
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "review_pending", st["message"]
        assert states(st) == ["created", "assigned", "running", "review_pending"]
        assert st["result"]["outcome"] == "success" and st["attempt"] == 1
        assert st["finished_at"] == T0 + timedelta(minutes=3)
        assert r.fake.cleanups == []        # the workspace stays for a revision
        await r.pass_()
        assert len(r.fake.starts) == 1
    drive(scenario)


def test_a_success_that_changed_nothing_is_a_failed_attempt(tmp_path):
    r = Rig(tmp_path)
    r.task("t", max_attempts=1)
    r.fake.script("t", Exit(SUCCESS, changes=False))
    r.w.push()

    async def scenario():
        await r.pass_()
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "failed" and "changed nothing" in st["message"]
    drive(scenario)


def test_a_failure_retries_after_its_backoff_with_a_new_attempt(tmp_path):
    r = Rig(tmp_path)                       # World's fleet.yaml: backoff 1s
    r.task("t", max_attempts=2)
    r.fake.script("t", Exit(FAILURE, changes=False), Exit(SUCCESS))
    r.w.push()

    async def scenario():
        await r.pass_()
        first = r.fake.starts[0]
        await r.pass_()                     # exits at its first poll
        st = r.status("t")
        assert st["state"] == "retrying" and st["attempt"] == 1
        assert "it broke" in st["message"] and "attempt 2 of 2 in 1s" in st["message"]
        await r.pass_()                     # the backoff is not over: nothing starts
        assert r.status("t")["state"] == "retrying" and len(r.fake.starts) == 1
        r.later(seconds=1)
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "assigned" and st["attempt"] == 2
        second = r.fake.starts[-1]
        assert second.run_id != first.run_id and second.attempt == 2
        assert "it broke" in second.prompt  # the retry is told why the last one failed
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "review_pending" and st["attempt"] == 2
        assert states(st) == ["created", "assigned", "running", "retrying", "created",
                              "assigned", "running", "review_pending"]
    drive(scenario)


def test_failures_use_up_the_attempts(tmp_path):
    r = Rig(tmp_path)
    r.task("t", max_attempts=2)
    r.fake.script("t", Exit(FAILURE), Exit(FAILURE))
    r.w.push()

    async def scenario():
        for _ in range(4):
            await r.pass_()
            r.later(seconds=1)
        st = r.status("t")
        assert st["state"] == "failed" and "attempts used up (2 of 2)" in st["message"]
        assert len(r.fake.starts) == 2
        await r.pass_()
        assert r.fake.cleanups == [("local", "t")]     # finished: its workspace goes
    drive(scenario)


def test_an_unreachable_host_moves_the_task_without_spending_an_attempt(tmp_path):
    r = Rig(tmp_path, hosts=("local", "spare"))       # "local" comes first by name
    r.task("t")
    r.fake.set_unreachable("local", "connection refused")
    r.w.push()

    async def scenario():
        await r.pass_()
        assert [s.host.name for s in r.fake.starts] == ["local"]
        assert r.fake.runs == {}            # the start never happened
        await r.pass_()
        st = r.status("t")
        assert st["host"] == "spare" and st["attempt"] == 1 and st["state"] == "assigned"
        assert any("unreachable before the start" in h["reason"] and "no attempt spent" in h["reason"]
                   for h in st["history"])
        assert [s.host.name for s in r.fake.starts] == ["local", "spare"]
        assert r.fake.live() == [st["run_id"]]
        await r.pass_()
        assert r.status("t")["state"] == "running"
    drive(scenario)


def test_cancel_stops_the_run_and_ends_cancelled(tmp_path):
    r = Rig(tmp_path)
    r.w.write("fleet.yaml", {**_fleet_yaml(r), "cancel_grace": "7s"})
    r.task("t")
    r.w.push()

    async def scenario():
        await r.pass_()
        await r.pass_()
        run_id = r.fake.starts[0].run_id
        assert r.status("t")["state"] == "running"
        r.task("t", cancel=True)
        await asyncio.to_thread(r.w.push, "cancel t")
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "cancelled" and "cancel is true" in st["message"]
        assert r.fake.stops == [("local", run_id, 7.0)]
        assert r.fake.live() == []
        await r.pass_()                     # the stop is seen done
        await r.pass_()
        assert "stopping" not in r.status("t")
        assert r.fake.cleanups == [("local", "t")]
        assert len(r.fake.starts) == 1 and len(r.fake.stops) == 1
    drive(scenario)


def test_a_timeout_stops_the_run_and_spends_the_attempt(tmp_path):
    r = Rig(tmp_path)
    r.task("t", timeout="10m", stall_timeout="1h", max_attempts=2)
    r.w.push()

    async def scenario():
        await r.pass_()
        await r.pass_()
        run_id = r.fake.starts[0].run_id
        r.later(minutes=9, seconds=59)
        r.fake.output(run_id, r.now)
        await r.pass_()
        assert r.status("t")["state"] == "running" and r.fake.stops == []
        r.later(seconds=1)
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "retrying" and "timed out after 10m" in st["message"]
        assert st["result"]["outcome"] == "timeout"
        assert [(h, rid) for h, rid, _ in r.fake.stops] == [("local", run_id)]
        assert r.fake.live() == []
    drive(scenario)


def test_a_run_with_no_output_for_its_stall_timeout_is_stopped_as_stalled(tmp_path):
    r = Rig(tmp_path)
    r.task("t", stall_timeout="5m", max_attempts=1)
    r.w.push()

    async def scenario():
        await r.pass_()
        await r.pass_()
        run_id = r.fake.starts[0].run_id
        r.later(minutes=4)
        r.fake.output(run_id, r.now)        # output keeps it alive
        r.later(minutes=4)
        await r.pass_()
        assert r.status("t")["state"] == "running"
        r.later(minutes=1)
        await r.pass_()
        st = r.status("t")
        assert st["state"] == "failed" and "stalled: no output for 5m" in st["message"]
        assert [rid for _, rid, _ in r.fake.stops] == [run_id]
    drive(scenario)


def test_run_once_finishes_when_the_scripted_run_ends(tmp_path):
    r = Rig(tmp_path)
    r.task("a")
    r.task("b", depends_on=["a"])
    r.fake.script("a", Exit(SUCCESS))
    r.w.push()
    asyncio.run(asyncio.wait_for(r.engine.run(once=True, tick=0.01), timeout=30))
    assert r.status("a")["state"] == "review_pending"
    assert r.status("b")["state"] == "blocked"
    assert [s.task_id for s in r.fake.starts] == ["a"]


def test_feedback_starts_a_revision_on_the_same_branch(tmp_path):
    r = Rig(tmp_path)
    r.task("doc")
    r.fake.script("doc", Exit(SUCCESS), Exit(SUCCESS, changes=False))
    r.w.push()

    async def scenario():
        await r.pass_()
        await r.pass_()
        assert r.status("doc")["state"] == "review_pending"
        r.task("doc", feedback=["Mention the tests."])
        await asyncio.to_thread(r.w.push, "feedback on doc")
        await r.pass_()
        st = r.status("doc")
        assert st["state"] == "assigned" and st["review_count"] == 1
        revision = r.fake.starts[-1]
        assert revision.from_branch and revision.branch == "task/doc"
        assert "Mention the tests." in revision.prompt
        await r.pass_()         # a revision may change nothing: it still goes to review
        st = r.status("doc")
        assert st["state"] == "review_pending" and st["review_count"] == 1
        assert "revising" in states(st) and len(r.fake.starts) == 2
    drive(scenario)


def test_a_rerun_stops_the_old_run_before_the_new_one_starts(tmp_path):
    r = Rig(tmp_path)
    r.task("t")
    r.w.push()

    async def scenario():
        await r.pass_()
        await r.pass_()
        old = r.fake.starts[0].run_id
        r.task("t", rerun="1")
        await asyncio.to_thread(r.w.push, "rerun t")
        await r.pass_()
        assert r.fake.stops and r.fake.stops[0][1] == old
        assert len(r.fake.starts) == 1      # the new run waits until the stop is seen done
        while len(r.fake.starts) == 1 and len(r.fake.stops) < 5:
            await r.pass_()
        new = r.fake.starts[-1]
        assert new.run_id != old and new.attempt == 1
        assert r.fake.live() == [new.run_id]        # never two live runs of one task
        assert r.fake.run(old).report.result.outcome == "interrupted"
    drive(scenario)


def _fleet_yaml(r: Rig) -> dict:
    import yaml
    return yaml.safe_load((r.w.person / "fleet.yaml").read_text())


def test_each_pass_reports_its_figures_to_telemetry(tmp_path):
    """What /metrics shows: passes, tasks by state (finished ones included), hosts up."""
    r = Rig(tmp_path)
    r.task("t")
    r.task("u")
    r.w.push()

    async def scenario():
        await r.pass_()
        snap = r.engine.telemetry.snapshot()
        assert snap.passes["ok"] == 1 and snap.pass_duration.count == 1
        assert snap.tasks["assigned"] + snap.tasks["running"] == 1
        assert snap.tasks["created"] + snap.tasks["blocked"] == 1   # one slot: u waits
        assert snap.hosts["local"] is True
        r.fake.exit(r.fake.starts[0].run_id, SUCCESS, changes=True)
        await r.pass_()
        await r.pass_()
        snap = r.engine.telemetry.snapshot()
        assert snap.passes["ok"] == 3
        assert snap.tasks["review_pending"] == 1
        assert sum(snap.tasks.values()) == 2
    drive(scenario)


def test_a_pushed_task_started_reports_its_dispatch_latency(tmp_path):
    """fleet_dispatch_latency_seconds: from the sync that saw the task's file to its run started."""
    r = Rig(tmp_path)
    r.w.push()

    async def scenario():
        await r.pass_()                     # the cold start: nothing is "pushed" yet
        assert r.engine.telemetry.snapshot().dispatch_latency.count == 0
        r.task("t")
        r.w.push()
        await r.pass_()
        assert len(r.fake.starts) == 1
        latency = r.engine.telemetry.snapshot().dispatch_latency
        assert latency.count == 1 and 0 <= latency.sum < 30
        await r.pass_()                     # no new change, no second observation
        assert r.engine.telemetry.snapshot().dispatch_latency.count == 1
    drive(scenario)
