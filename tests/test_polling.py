"""The run poller: what a pass learns of the runs, host by host (observe.polling)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from controller.model import Desired, Host, OutputFormat, Phase, PromptMode, RunSpec
from controller.observe.health import HostWatch
from controller.observe.polling import RunPoller

from .fakes import FakeExecutor

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


class GatedFake(FakeExecutor):
    """A FakeExecutor whose polls wait while `gate` is closed (a slow host)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def poll(self, host, run_id):
        await self.gate.wait()
        return await super().poll(host, run_id)


def test_a_run_held_while_its_host_was_down_waits_for_a_fresh_poll_once_it_is_up(tmp_path):
    """The flake of test_a_host_cut_off_by_the_network_and_reconnected: the host is
    cut off during a run (its run held for the lost grace, so the answer has no
    report of it), a health check puts it back, and the first poll since takes
    longer than the budget. The held answer is all the pass has: the run must
    not count as gone (the planner would fail the attempt, "vanished"), and the
    host takes no new run until its runs are read again."""
    async def scenario():
        host = Host("h", address="10.0.0.1")
        fake = GatedFake()
        watch = HostWatch(tmp_path, lost_grace=60, clock=lambda: T0)
        poller = RunPoller(lambda _: fake, lambda name: host if name == "h" else None, watch,
                           budget=0.05)
        await fake.start(RunSpec("r1", "t", host, ("agent",), "do it", PromptMode.STDIN,
                                 OutputFormat.RAW, "repo", "main", "task/t", False))
        by_host = {"h": ["r1"]}

        polled = await poller.poll(by_host, (), {})
        assert polled.runs["r1"].phase == Phase.RUNNING and not polled.slow

        fake.set_unreachable("h", "SSH connection closed")
        polled = await poller.poll(by_host, (), {})
        assert "r1" not in polled.runs and "r1" not in polled.absent   # held: the grace
        assert "h" in watch.down

        fake.set_reachable("h")
        # A round of health checks finds it back (no check of it: none is needed here).
        await watch.check(Desired(tasks={}, hosts={}, agents={}), lambda _: None, set())
        assert "h" not in watch.down
        fake.gate.clear()                                       # the first poll is slow
        polled = await poller.poll(by_host, (), {})
        assert "r1" not in polled.runs and "r1" not in polled.absent
        assert "r1" in polled.slow["h"]     # so the planner waits for the host

        fake.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        polled = await poller.poll(by_host, (), {})
        assert polled.runs["r1"].phase == Phase.RUNNING and not polled.slow
        poller.cancel()
    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
