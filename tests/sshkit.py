"""Helpers for the SSH tests: a World whose runs go to SSH host entries on a test sshd.

Built on fleetkit.World (real fleet and target repositories) and sshd.Sshd (a
real OpenSSH server on 127.0.0.1). The local host of the World is drained, so
every run goes over SSH; the agents are small sh scripts at absolute paths
that count their invocations in a log outside any workspace.
"""
from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from controller.app import build_engine as cli_engine
from controller.config import SSHConfig, load_config
from controller.engine.core import Engine

from .fleetkit import World, wait_for
from .sshd import Sshd, proc_stats

RESULT = ('{"type":"result","subtype":"success","is_error":false,"result":"did it",'
          '"session_id":"s1","total_cost_usd":0.01,"usage":{"input_tokens":5,"output_tokens":7}}')


def settings(sshd: Sshd, **overrides) -> SSHConfig:
    """Short timeouts: tests notice a dead host in seconds, not minutes."""
    values = dict(known_hosts=str(sshd.known_hosts), client_keys=(str(sshd.client_key),),
                  connect_timeout=3.0, keepalive_interval=1.0, keepalive_count_max=2,
                  command_timeout=10.0, health_interval=0.5, lost_grace=30.0)
    values.update(overrides)
    return SSHConfig(**values)


class SSHWorld(World):
    def __init__(self, root: Path, sshd: Sshd, hosts: int = 1, max_concurrent: int = 2):
        super().__init__(root)
        (self.person / "hosts" / "local.yaml").unlink()    # every run goes over SSH
        self.sshd = sshd
        self.log = root / "invocations.log"
        self.hosts = [f"ssh-{i}" for i in range(1, hosts + 1)]
        for name in self.hosts:
            self.write(f"hosts/{name}.yaml",
                       sshd.host(name, root / f"remote-{name}", max_concurrent=max_concurrent))
        self.agent_script("count")

    def remote_dir(self, host: str) -> Path:
        return self.root / f"remote-{host}"

    def agent_script(self, name: str, body: str = "", version: str = "echo count-agent 1.0") -> None:
        """An agent `name` that logs its invocation, runs `body`, edits a file, reports success."""
        script = self.root / f"{name}-agent.sh"
        script.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            echo "$FLEET_TASK_ID $FLEET_RUN_ID" >> {self.log}
            """) + textwrap.dedent(body) + textwrap.dedent(f"""\
            cat > prompt-seen.md
            echo "work of $FLEET_TASK_ID" > "work-$FLEET_TASK_ID.txt"
            echo '{RESULT}'
            """))
        script.chmod(0o755)
        self.write(f"agents/{name}.yaml", {
            "name": name, "command": [str(script)], "output": "claude-json",
            "requires": ["demo"], "version": ["sh", "-c", version]})

    def invocations(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def engine(self, **overrides) -> Engine:
        """An engine as `fleet run --config FILE` makes it, so `fleet status` sees its state."""
        return cli_engine(load_config(str(self.config_file(**overrides))), str(self.fleet))

    def config_file(self, **ssh) -> Path:
        path = self.root / "controller.yaml"
        path.write_text(self.sshd.config_text(self.root / "state", **ssh))
        return path

    def run_dir(self, task_id: str) -> Path:
        st = self.status(task_id)
        return self.remote_dir(st["host"]) / "runs" / st["run_id"]


def run_once(engine: Engine, timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(engine.run(once=True, tick=0.05, poll_interval=0.2), timeout=timeout))


async def run_while(engine: Engine, during, timeout: float = 60) -> None:
    """engine.run(once=True) with `during()` running beside it in the same loop."""
    job = asyncio.create_task(engine.run(once=True, tick=0.05, poll_interval=0.2))
    try:
        await asyncio.wait_for(during(), timeout)
        await asyncio.wait_for(job, timeout)
    finally:
        job.cancel()


async def until(predicate, timeout: float = 30.0) -> None:
    """Wait in the loop's own thread pool: git and /proc reads must not block the engine."""
    await asyncio.to_thread(wait_for, predicate, timeout, 0.05)


def state_of(world: World, task_id: str) -> str | None:
    st = world.status(task_id)
    return st["state"] if st else None


def group_alive(pgid: int) -> bool:
    """Any non-zombie process still in process group `pgid` (the run's wrapper and agent)."""
    return any(int(fields[2]) == pgid and fields[0] != b"Z" for _, fields in proc_stats())
