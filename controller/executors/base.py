"""The executor interface: how the engine starts, follows and stops runs on a host.

The engine talks only to this interface; the local executor (a subprocess on the
controller's own box) and the SSH executor implement it, so the planner and the
engine never know which transport a host uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.model import Host, OutputFormat, PromptMode, RunReport


class HostUnreachable(Exception):
    """The host could not be reached before the run started: no attempt is spent."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything a host needs to run one attempt of a task."""
    run_id: str
    task_id: str
    host: Host
    command: tuple[str, ...]       # the agent's argv, placeholders not yet substituted
    prompt: str
    prompt_mode: PromptMode
    output_format: OutputFormat
    repo: str                      # target repository clone URL or path
    base: str
    branch: str                    # task/<id>
    from_branch: bool              # continue the existing branch instead of resetting it
    validation: tuple[str, ...] = ()
    attempt: int = 1               # exported to the run as FLEET_ATTEMPT
    env: tuple[tuple[str, str], ...] = ()   # host env, then agent env (agent wins)


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
