"""Fail a test that leaks an asyncio task: one still pending when its loop is done.

`asyncio.run` hides leaks: when the main coroutine returns, the Runner cancels
whatever tasks are left, so a poll or a stop nobody awaited dies quietly, and
in production (a controller that keeps running) it would have gone on. Here a
leak is a task that, when the main coroutine has returned normally, is still
pending and was not asked to cancel; or any task still pending when a loop is
closed by hand (no Runner to cancel it: asyncio would only say "Task was
destroyed but it is pending!" at garbage collection, if ever).

A main coroutine that raised is not checked: the test already fails, or it
expects that exception (a simulated crash leaves its tasks behind on purpose).

`Runner.run` and `BaseEventLoop.close` are wrapped once per process and report
to the innermost active `LeakWatch`, so a test can watch a deliberate leak in
its own watch (or run an inner pytest session) without failing itself. The
autouse fixture `no_leaked_tasks` watches each test; `pytest_runtest_call`
fails the test itself with the leaks its body made, and the fixture's
teardown reports those made later (by fixtures' loops).

Used by tests/conftest.py, which re-exports the fixture and the hook.
"""
from __future__ import annotations

import asyncio
import asyncio.runners
import contextlib
import threading

import pytest

_lock = threading.Lock()
_watches: list["LeakWatch"] = []
_installed = False


def describe(task: asyncio.Task) -> str:
    """The coroutine's name and where it waits, e.g. `Engine._timed_poll at polling.py:64`."""
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    stack = task.get_stack(limit=1)
    if stack:
        code = stack[-1].f_code
        name += f" at {code.co_filename.rsplit('/', 1)[-1]}:{stack[-1].f_lineno}"
    return name


class LeakWatch:
    def __init__(self) -> None:
        self.leaks: list[str] = []

    def check(self, loop: asyncio.AbstractEventLoop, when: str, cancelling_too: bool) -> None:
        tasks = [t for t in asyncio.all_tasks(loop)
                 if not t.done() and (cancelling_too or not t.cancelling())]
        if tasks:
            self.leaks.append(f"{when}: " + ", ".join(sorted(describe(t) for t in tasks)))

    def take(self) -> list[str]:
        leaks, self.leaks = self.leaks, []
        return leaks


def _current() -> LeakWatch | None:
    with _lock:
        return _watches[-1] if _watches else None


def install() -> None:
    """Wrap Runner.run and BaseEventLoop.close, once, to report to the current watch."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    run, close = asyncio.runners.Runner.run, asyncio.BaseEventLoop.close

    def watched_run(self, coro, *, context=None):
        result = run(self, coro, context=context)     # raised: not checked (see above)
        watch = _current()
        if watch is not None:
            watch.check(self.get_loop(), "pending when asyncio.run's main coroutine returned",
                        cancelling_too=False)
        return result

    def watched_close(self):
        watch = _current()
        if watch is not None and not self.is_closed() and not self.is_running():
            watch.check(self, "pending when the event loop was closed", cancelling_too=True)
        close(self)

    asyncio.runners.Runner.run = watched_run
    asyncio.BaseEventLoop.close = watched_close


@contextlib.contextmanager
def watching():
    """Report leaks to a fresh watch for the duration; yields it."""
    install()
    watch = LeakWatch()
    with _lock:
        _watches.append(watch)
    try:
        yield watch
    finally:
        with _lock:
            _watches.remove(watch)


def _failure(leaks: list[str]) -> str:
    return "asyncio tasks leaked (await or cancel them before the loop ends):\n  " + "\n  ".join(leaks)


@pytest.fixture(autouse=True)
def no_leaked_tasks(request):
    with watching() as watch:
        request.node._leak_watch = watch
        yield watch
        leaks = watch.take()
    if leaks:
        pytest.fail(_failure(leaks), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    watch = getattr(item, "_leak_watch", None)
    leaks = watch.take() if watch is not None else []
    if leaks:
        pytest.fail(_failure(leaks), pytrace=False)
    return result
