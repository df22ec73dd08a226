"""The one asyncio owner: the reconcile loop and the dispatch of actions.

`core.Engine` composes the git store, the desired-state builder, the
observers, the planner and the executors, and owns all mutable state; the
HTTP threads (http/) will hand it requests with run_coroutine_threadsafe.
Imports every lower layer; only cli/ (and http/) import it.
"""
