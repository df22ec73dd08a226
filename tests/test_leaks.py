"""The leak check catches a task left pending, and lets tidy code through."""
from __future__ import annotations

import asyncio

import pytest

from . import leaks


async def forever() -> None:
    await asyncio.Event().wait()


async def leaky() -> None:
    asyncio.get_running_loop().create_task(forever(), name="left-behind")
    await asyncio.sleep(0)


async def tidy() -> None:
    job = asyncio.get_running_loop().create_task(forever())
    await asyncio.sleep(0)
    job.cancel()            # asked to stop: on its way out, not a leak
    done = asyncio.get_running_loop().create_task(asyncio.sleep(0))
    await done


def test_a_task_pending_when_asyncio_run_returns_is_a_leak_named_by_its_coroutine():
    with leaks.watching() as watch:
        asyncio.run(leaky())
    assert len(watch.leaks) == 1
    assert "asyncio.run" in watch.leaks[0] and "forever at test_leaks.py:" in watch.leaks[0]


def test_awaited_or_cancelled_tasks_are_not_leaks():
    with leaks.watching() as watch:
        asyncio.run(tidy())
    assert watch.leaks == []


def test_a_main_coroutine_that_raised_is_not_checked():
    async def crash():
        await leaky()
        raise SystemExit("simulated crash")
    with leaks.watching() as watch, pytest.raises(SystemExit):
        asyncio.run(crash())
    assert watch.leaks == []


def test_a_loop_closed_by_hand_with_a_pending_task_is_a_leak():
    with leaks.watching() as watch:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(leaky())
            left = asyncio.all_tasks(loop)
        finally:
            loop.close()
    assert len(watch.leaks) == 1 and "closed" in watch.leaks[0]
    for task in left:
        task._log_destroy_pending = False   # left on purpose: spare the log its warning


def test_a_watch_sees_only_its_own_loops():
    with leaks.watching() as outer:
        with leaks.watching() as inner:
            asyncio.run(leaky())
        asyncio.run(tidy())
    assert len(inner.leaks) == 1 and outer.leaks == []


def test_the_autouse_fixture_fails_a_leaking_test_and_passes_a_tidy_one(pytester):
    pytester.makeconftest("from tests.leaks import no_leaked_tasks, pytest_runtest_call\n")
    pytester.makepyfile(test_inner="""
        import asyncio

        async def forever():
            await asyncio.Event().wait()

        async def leaky():
            asyncio.get_running_loop().create_task(forever())

        def test_leaks():
            asyncio.run(leaky())

        def test_tidy():
            asyncio.run(asyncio.sleep(0))
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*asyncio tasks leaked*", "*forever at test_inner.py:*",
                                 "FAILED*test_leaks*"])
