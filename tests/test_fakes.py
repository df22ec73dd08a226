"""The fake executor keeps the Executor protocol, with the local executor's semantics."""
from __future__ import annotations

import asyncio
import inspect
from datetime import datetime, timezone

import pytest

from controller.executors.base import Executor, HostUnreachable
from controller.model import Host, Phase, RunSpec

from .fakes import FAILURE, SUCCESS, Exit, FakeExecutor

HOST = Host(name="box", address="local", workdir="/nonexistent")
OTHER = Host(name="other", address="local", workdir="/nonexistent")
AT = datetime(2030, 1, 1, tzinfo=timezone.utc)


def spec(run_id: str = "t-1", task_id: str = "t", host: Host = HOST) -> RunSpec:
    return RunSpec(run_id=run_id, task_id=task_id, host=host, command=("agent",), prompt="p",
                   prompt_mode="stdin", output_format="raw", repo="/r", base="main",
                   branch=f"task/{task_id}", from_branch=False)


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("name", ["start", "poll", "stop", "cleanup"])
def test_it_has_the_protocols_methods_with_the_same_signatures(name):
    ours, theirs = getattr(FakeExecutor, name), getattr(Executor, name)
    assert inspect.iscoroutinefunction(ours)
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(theirs).parameters)


def test_it_has_no_optional_poll_many_so_engines_use_poll():
    # The engine prefers poll_many when present; the fake exercises the Protocol's core.
    assert not hasattr(FakeExecutor(), "poll_many")


def test_start_records_the_spec_and_the_run_runs_until_scripted_to_exit():
    fake = FakeExecutor()
    s = spec()
    run(fake.start(s))
    assert fake.starts == [s]
    assert run(fake.poll(HOST, "t-1")).phase == Phase.RUNNING
    fake.output("t-1", AT)
    assert run(fake.poll(HOST, "t-1")).last_output_at == AT
    fake.exit("t-1", SUCCESS, changes=True)
    report = run(fake.poll(HOST, "t-1"))
    assert (report.phase, report.result, report.changes) == (Phase.EXITED, SUCCESS, True)
    assert report.last_output_at == AT          # what it printed stays on record


def test_start_is_idempotent_by_run_id_running_or_ended():
    fake = FakeExecutor()
    run(fake.start(spec()))
    run(fake.start(spec()))                     # a reattach
    assert len(fake.runs) == 1 and len(fake.starts) == 2
    fake.exit("t-1", FAILURE)
    run(fake.start(spec()))                     # an ended run does not start again
    assert run(fake.poll(HOST, "t-1")).phase == Phase.EXITED
    run(fake.start(spec("t-2")))                # a new run id is a new run
    assert sorted(fake.live()) == ["t-2"]


def test_runs_are_per_host_and_unknown_runs_poll_as_none():
    fake = FakeExecutor()
    run(fake.start(spec()))
    assert run(fake.poll(OTHER, "t-1")) is None
    assert run(fake.poll(HOST, "never-1")) is None


def test_a_scripted_end_applies_to_the_next_start_of_that_task_at_its_first_poll():
    fake = FakeExecutor()
    fake.script("t", Exit(FAILURE, changes=False), Exit(SUCCESS))
    run(fake.start(spec("t-1")))
    first = run(fake.poll(HOST, "t-1"))
    assert (first.phase, first.result) == (Phase.EXITED, FAILURE)
    run(fake.start(spec("t-2")))
    assert run(fake.poll(HOST, "t-2")).result == SUCCESS
    run(fake.start(spec("t-3")))                # script used up: runs until told
    assert run(fake.poll(HOST, "t-3")).phase == Phase.RUNNING


def test_stop_ends_a_live_run_as_interrupted_and_leaves_an_ended_one_alone():
    fake = FakeExecutor()
    run(fake.start(spec("t-1")))
    run(fake.stop(HOST, "t-1", 2.0))
    report = run(fake.poll(HOST, "t-1"))
    assert report.phase == Phase.EXITED and report.result.outcome == "interrupted"
    assert report.error.startswith("cancelled")
    run(fake.start(spec("t-2")))
    fake.exit("t-2", SUCCESS)
    run(fake.stop(HOST, "t-2", 2.0))
    assert run(fake.poll(HOST, "t-2")).result == SUCCESS
    run(fake.stop(HOST, "unknown-1", 2.0))      # nothing there: nothing to do, no error
    assert fake.stops == [("box", "t-1", 2.0), ("box", "t-2", 2.0), ("box", "unknown-1", 2.0)]


def test_a_stop_beats_a_scripted_end():
    fake = FakeExecutor()
    fake.script("t", Exit(SUCCESS))
    run(fake.start(spec()))
    run(fake.stop(HOST, "t-1", 1.0))
    assert run(fake.poll(HOST, "t-1")).result.outcome == "interrupted"


def test_cleanup_is_recorded():
    fake = FakeExecutor()
    run(fake.cleanup(HOST, "t"))
    assert fake.cleanups == [("box", "t")]


def test_an_unreachable_host_raises_everywhere_and_starts_nothing_until_it_returns():
    fake = FakeExecutor()
    run(fake.start(spec("t-1")))
    fake.set_unreachable("box", "no route to host")
    for call in (fake.start(spec("t-2")), fake.poll(HOST, "t-1"),
                 fake.stop(HOST, "t-1", 1.0), fake.cleanup(HOST, "t")):
        with pytest.raises(HostUnreachable, match="no route to host"):
            run(call)
    assert ("box", "t-2") not in fake.runs
    fake.set_reachable("box")
    assert run(fake.poll(HOST, "t-1")).phase == Phase.RUNNING   # it went on meanwhile


def test_lost_runs_report_lost_with_the_reason():
    fake = FakeExecutor()
    run(fake.start(spec()))
    fake.lose("t-1", "wrapper gone")
    report = run(fake.poll(HOST, "t-1"))
    assert (report.phase, report.error) == (Phase.LOST, "wrapper gone")
    assert report.result is None
