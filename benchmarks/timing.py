"""Wall-clock laps for the steps inside a pass, without touching the code measured.

`Laps.watch(obj, name, label)` wraps one method (sync or async) of one object
or module so each call adds its duration to `label`; `scale` uses it to split a
pass into fetch, diff, parse, observe, plan, commit and push. The wrappers run
in whatever thread the engine calls them from, hence the lock.
"""
from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
from collections import defaultdict

clock = time.perf_counter


class Laps:
    def __init__(self) -> None:
        self._totals: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()

    def totals(self) -> dict[str, float]:
        with self._lock:
            return dict(self._totals)

    def _add(self, label: str, seconds: float) -> None:
        with self._lock:
            self._totals[label] += seconds

    def watch(self, obj: object, name: str, label: str) -> None:
        func = getattr(obj, name, None)
        if func is None:
            # The code measured is still moving; a renamed step only loses its lap.
            print(f"note: cannot time {label}: {type(obj).__name__}.{name} is gone",
                  file=sys.stderr)
            return
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def timed(*args, **kwargs):
                t0 = clock()
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._add(label, clock() - t0)
        else:
            @functools.wraps(func)
            def timed(*args, **kwargs):
                t0 = clock()
                try:
                    return func(*args, **kwargs)
                finally:
                    self._add(label, clock() - t0)
        setattr(obj, name, timed)
