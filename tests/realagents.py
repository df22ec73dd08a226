"""Helpers for tests/test_real_agents.py: the real CLIs, their profiles, a world to run them in.

Finds the Codex and Claude Code binaries that `make test` installs with npm
(tools/agents/install.sh), loads the shipped profiles from
fleet-state-example/agents/ and adjusts them only by what a test needs: the
scripted model server's address and key, a HOME of the test's own (so the
profile links no real login or config of this machine's user), PATH to the
binaries, and switches that keep every byte of traffic on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import yaml

from controller.engine.core import Engine
from controller.gitstore import GitStore
from controller.executors.local import LocalExecutor
from controller.model import Host

from .fleetkit import World

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_AGENTS = ROOT / "fleet-state-example" / "agents"
DEFAULT_BIN = ROOT / ".cache" / "npm" / "agents" / "node_modules" / ".bin"
CODEX_MODEL = "gpt-5.5"        # a slug Codex knows: an unknown one adds an error item
RUN_LIMIT = 90                 # seconds for one `fleet run --once` with real CLIs


def agent_bin(name: str) -> Path:
    """The directory holding the real CLI `name`; skips (fails in CI) when it is missing."""
    bindir = Path(os.environ.get("FLEET_AGENT_BIN") or DEFAULT_BIN)
    missing = [what for what, ok in (("node", shutil.which("node")),
                                     (str(bindir / name), (bindir / name).exists())) if not ok]
    if missing:
        why = (f"real {name} CLI unavailable ({', '.join(missing)} not found): `make test` "
               "installs it with npm into .cache/npm/agents (needs node and npm), "
               "or set FLEET_AGENT_BIN")
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must run these tests, not skip them")
        pytest.skip(why)
    return bindir


def profile(name: str) -> dict:
    """agents/<name>.yaml as shipped in fleet-state-example."""
    return yaml.safe_load((EXAMPLE_AGENTS / f"{name}.yaml").read_text())


def base_env(bindir: Path, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home)}


def codex_provider_args(url: str) -> list[str]:
    """Flags that point Codex at the scripted Responses server, as a user would for a proxy."""
    provider = (f'{{name="scripted",base_url="{url}/v1",wire_api="responses",'
                'env_key="SCRIPTED_API_KEY",request_max_retries=0,stream_max_retries=0}')
    # analytics and the plugin marketplace sync would reach out to the internet.
    return ["-m", CODEX_MODEL, "-c", "model_provider=scripted",
            "-c", f"model_providers.scripted={provider}",
            "-c", "analytics.enabled=false", "-c", "features.plugins=false"]


def codex_profile(url: str, bindir: Path, home: Path, name: str = "codex") -> dict:
    """The shipped codex profile, provider flags inserted before its final `-`."""
    doc = profile("codex")
    command = list(doc["command"])
    assert command[-1] == "-", "the codex profile must end with `-` (prompt on stdin)"
    doc["command"] = command[:-1] + codex_provider_args(url) + ["-"]
    doc["env"] = {**doc.get("env", {}), **base_env(bindir, home), "SCRIPTED_API_KEY": "test-key"}
    doc["name"] = name
    return doc


def claude_env(url: str) -> dict[str, str]:
    """Environment that points Claude Code at the scripted Messages server, hermetically."""
    return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "test-key",
            "CLAUDE_CODE_MAX_RETRIES": "0",      # an HTTP error fails now, not after minutes
            # telemetry, error reports and update checks would leave 127.0.0.1
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1"}


def claude_profile(url: str, bindir: Path, home: Path, name: str = "claude-code") -> dict:
    doc = profile("claude-code")
    doc["env"] = {**doc.get("env", {}), **base_env(bindir, home), **claude_env(url)}
    doc["name"] = name
    return doc


class AgentWorld(World):
    """A World whose local host offers codex and claude-code, for real-CLI tasks."""

    def __init__(self, root: Path, **fleet_settings):
        super().__init__(root)
        self.home = root / "home"
        self.write("hosts/local.yaml", {"name": "local", "address": "local",
                                        "capabilities": ["codex", "claude-code"],
                                        "max_concurrent": 2, "workdir": str(self.workdir)})
        fleet_yaml = yaml.safe_load((self.person / "fleet.yaml").read_text())
        fleet_yaml["cancel_grace"] = "2s"      # a stopped CLI gets KILLed soon after TERM
        fleet_yaml.update(fleet_settings)
        self.write("fleet.yaml", fleet_yaml)

    def add_agent(self, doc: dict) -> None:
        self.write(f"agents/{doc['name']}.yaml", doc)

    def add_task(self, task_id: str, agent: str, **fields) -> None:
        self.task(task_id, agent=agent, title=f"Write hello.txt ({task_id})",
                  goal="Create hello.txt with a greeting.", **fields)

    def run_dirs(self) -> list[Path]:
        runs = self.workdir / "runs"
        return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []

    def run_once(self, engine: Engine | None = None) -> None:
        """`fleet run --once` in process, bounded; every run is stopped afterwards."""
        state = self.root / "state"
        engine = engine or Engine(GitStore(str(self.fleet), state), state)
        try:
            asyncio.run(asyncio.wait_for(engine.run(once=True, tick=0.05), timeout=RUN_LIMIT))
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        """Leave no CLI behind, whatever the test's outcome (a no-op for ended runs)."""
        host = Host(name="local", address="local", workdir=str(self.workdir))

        async def stop() -> None:
            for path in self.run_dirs():
                await LocalExecutor().stop(host, path.name, 1.0)
        asyncio.run(stop())


def history(status: dict) -> list[str]:
    return [h["to"] for h in status["history"]]
