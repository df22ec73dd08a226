"""The one asyncio owner: the reconcile loop, the dispatch of actions, the work in flight.

`core.Engine` composes the git store, the desired-state builder, the
observer (observe/), the planner, a `dispatch.Dispatcher` and the executors,
handing each part its dependencies explicitly; `inflight.InFlight` is the one
record of the starts, stops and cleanups going on. The HTTP threads (http/)
will hand it requests with run_coroutine_threadsafe. Imports every lower
layer; only cli/ (and http/) import it.
"""
