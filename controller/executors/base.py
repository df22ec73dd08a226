"""The executor interface: how the engine starts, follows and stops runs on a host.

The engine talks only to this interface; the local executor (a subprocess on the
controller's own box) and the SSH executor implement it, so the planner and the
engine never know which transport a host uses. What a start is handed, the
RunSpec, is vocabulary (controller.model): the pure planner builds it.
"""
from __future__ import annotations

from typing import Protocol

from controller.model import Host, RunReport, RunSpec


class HostUnreachable(Exception):
    """The host could not be reached before the run started: no attempt is spent."""


class Executor(Protocol):
    """What the engine needs of a transport. An executor may also offer
    `async poll_many(host, run_ids) -> dict[run_id, RunReport | None]`, which
    the engine prefers: one remote command for a host's runs instead of one each."""

    async def start(self, spec: RunSpec) -> None:
        """Start the run detached, or do nothing if a run with this id already exists.

        Raises HostUnreachable when the host cannot be reached before the start.
        """

    async def poll(self, host: Host, run_id: str) -> RunReport | None:
        """What the host knows of this run; None when it has never heard of it."""

    async def stop(self, host: Host, run_id: str, grace: float) -> None:
        """TERM the run's process group, KILL it after `grace` seconds."""

    async def cleanup(self, host: Host, task_id: str) -> None:
        """Remove the workspace of a task that is finished (best effort)."""
