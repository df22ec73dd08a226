"""Host health, lost hosts and abandoned runs: what the engine knows about its hosts.

Owned by the engine, which feeds the planner `down` (as Observed.hosts_down)
and asks three questions of this module each pass:
- which hosts are healthy? `check` connects to each SSH host, probes what a
  run needs (git, a way to detach, a writable workdir) and runs each fitting
  agent profile's `version` argv; a failure takes the host out of placement
  with a message saying what to fix, a later success puts it back;
- is a run whose host cannot be reached lost yet? `lost` answers None (wait:
  the planner holds the task while its host is down) until `lost_grace` has
  passed, then a LOST report, which spends the attempt;
- which runs must die when their host returns? Runs given up on (lost, or
  whose start or stop failed half-way) are kept in `abandoned`, on disk so a
  restarted controller still kills them, until a stop succeeded.
Results go to `<state>/hosts.json` for `fleet status`, which runs in another process.
A read-only watch (`fleet plan`) reads those files and checks hosts without
creating anything on them, and writes nothing: what it learns dies with it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Protocol, cast

from controller.executors.ssh import remote
from controller.executors.base import Executor, HostUnreachable
from controller.config import SSHConfig
from controller.model import ACTIVE, Desired, Host, Phase, RunReport
from controller.text import first_line
from controller.status.book import StatusBook

log = logging.getLogger("fleet")
LINE_LIMIT = 200        # characters kept of a probe's or a version command's line


class Prober(Protocol):
    """What a health check asks of an SSH host's executor, beyond the Executor protocol."""
    async def workdir(self, host: Host, fresh: bool = False) -> str: ...
    async def run(self, host: Host, command: str, timeout: float | None = None,
                  fresh: bool = False) -> tuple[int | None, bytes, bytes]: ...


@dataclass
class Health:
    """One host's last check, as `fleet status` shows it."""
    ok: bool
    checked_at: str
    error: str = ""
    reachable: bool = True
    git: str = ""
    versions: dict[str, str] = field(default_factory=dict)


class HostWatch:
    def __init__(self, state_dir: Path, lost_grace: float, clock: Callable[[], datetime],
                 read_only: bool = False):
        self.state_dir = state_dir
        self.read_only = read_only
        self.lost_grace = lost_grace
        self.clock = clock
        self._down: dict[str, str] = {}         # host -> why; the planner places nothing there
        self.unreachable: set[str] = set()      # down because it cannot be reached: no polls
        self.health: dict[str, Health] = {}
        self._checked: dict[str, Host] = {}     # hosts as the last round of checks saw them
        # run id -> when its host was first found unreachable; on disk, so a
        # restarted controller does not give a lost host a fresh grace period.
        self.lost_since: dict[str, datetime] = {
            r: t for r, t in ((r, _time(v)) for r, v in self._load("lost.json").items()) if t}
        self.abandoned: dict[str, str] = self._load("abandoned.json")   # run id -> host

    @property
    def down(self) -> Mapping[str, str]:
        """Host -> why it is down, as checks, polls, starts and stops found it."""
        return MappingProxyType(self._down)

    def unchecked(self, host: Host) -> bool:
        """An SSH host that no health check has seen as it is now gets no runs yet."""
        return (not host.is_local and host.max_concurrent > 0
                and self._checked.get(host.name) != host)

    # ---- health ----------------------------------------------------------------
    async def check(self, desired: Desired, executor_for: Callable[[Host], Executor | None],
                    busy: set[str]) -> None:
        """One round over every host; `busy`: hosts with runs in flight or abandoned."""
        hosts = [h for h in desired.hosts.values() if not h.is_local]
        # A drained host gets no runs, so its health decides nothing: spare the connection.
        hosts = [h for h in hosts if h.max_concurrent > 0 or h.name in busy]
        results = await asyncio.gather(*(self._check_one(h, desired, executor_for(h))
                                         for h in hosts))
        checked = dict(zip((h.name for h in hosts), results))
        for name in list(self._down):
            # Local hosts are not probed: a failed local start is retried next round.
            if name not in checked:
                self._up(name)
        for name, health in checked.items():
            self.health[name] = health
            if health.ok:
                self._up(name)
            else:
                self.mark_down(name, health.error, reachable=health.reachable)
        self.health = {n: h for n, h in self.health.items() if n in desired.hosts}
        self._save("hosts.json", {n: asdict(h) for n, h in sorted(self.health.items())})
        self._checked = dict(desired.hosts)

    async def _check_one(self, host: Host, desired: Desired, found: Executor | None) -> Health:
        now = self.clock().isoformat()
        if found is None:
            return Health(False, now, f"no executor for address {host.address!r}")
        executor = cast(Prober, found)     # only SSH hosts are checked
        try:
            workdir = await executor.workdir(host, fresh=True)
            code, out, err = await executor.run(host, remote.probe(workdir, create=not self.read_only))
            text = out.decode("utf-8", "replace").strip()
            if code != 0:
                return Health(False, now, f"{host.name}: {text or first_line(err, LINE_LIMIT) or f'probe exit {code}'}")
            versions, errors = await self._versions(host, desired, executor)
        except HostUnreachable as e:
            return Health(False, now, str(e), reachable=False)
        except ValueError as e:           # a bad env name in the host or agent file
            return Health(False, now, f"{host.name}: {e}")
        error = "; ".join(errors)
        return Health(not errors, now, error, git=text.splitlines()[-1] if text else "",
                      versions=versions)

    async def _versions(self, host: Host, desired: Desired, executor: Prober
                        ) -> tuple[dict[str, str], list[str]]:
        """Each agent profile this host may run: its `version` output, or why it failed."""
        agents = [(a, a.version) for a in desired.agents.values()
                  if a.version and a.requires <= host.capabilities]
        answers = await asyncio.gather(*(
            executor.run(host, remote.version(argv, list(host.env) + list(a.env),
                                              host.pass_env + a.pass_env))
            for a, argv in agents))
        versions: dict[str, str] = {}
        errors: list[str] = []
        for (agent, argv), (code, out, err) in zip(agents, answers):
            line = first_line(out, LINE_LIMIT)
            if code == 0:
                versions[agent.name] = line
                continue
            how = f"failed (exit {code})" if code is not None else first_line(err, LINE_LIMIT)
            errors.append(f"{host.name}: agent {agent.name}: `{' '.join(argv)}` "
                          f"{how}: {line or 'no output'}; install it there "
                          "or remove the capability from the host")
        return versions, errors

    def mark_down(self, host: str, why: str, reachable: bool = False) -> None:
        if self._down.get(host) != why:
            log.warning("host %s is down: %s", host, why)
        self._down[host] = why
        if reachable:
            self.unreachable.discard(host)
        else:
            self.unreachable.add(host)

    def _up(self, host: str) -> None:
        if self._down.pop(host, None) is not None:
            log.info("host %s is up again", host)
        self.unreachable.discard(host)

    # ---- runs on hosts that went away ---------------------------------------------
    def lost(self, run_id: str, host: str, why: str) -> RunReport | None:
        """None while the host may still come back; a LOST report after the grace period."""
        now = self.clock()
        since = self.lost_since.get(run_id)
        if since is None:
            since = self.lost_since[run_id] = now
            self._save_lost()
        if now - since < timedelta(seconds=self.lost_grace):
            return None
        self.abandon(host, run_id)      # from here on, abandoned.json remembers it
        del self.lost_since[run_id]
        self._save_lost()
        return RunReport(run_id, Phase.LOST, abandoned=True,
                         error=f"host {host} unreachable for {int((now - since).total_seconds())} s "
                               f"({why}); the run there will be stopped when it returns")

    def seen(self, run_id: str) -> None:
        if self.lost_since.pop(run_id, None) is not None:
            self._save_lost()

    def _save_lost(self) -> None:
        self._save("lost.json", {r: t.isoformat() for r, t in self.lost_since.items()})

    def abandon(self, host: str, run_id: str) -> None:
        if self.abandoned.get(run_id) != host:
            self.abandoned[run_id] = host
            self._save("abandoned.json", self.abandoned)

    def forget(self, run_id: str) -> None:
        if self.abandoned.pop(run_id, None) is not None:
            self._save("abandoned.json", self.abandoned)

    def to_stop(self, desired: Desired) -> list[tuple[Host, str]]:
        """Abandoned runs whose host is reachable now: stop them."""
        return [(desired.hosts[h], r) for r, h in self.abandoned.items()
                if h in desired.hosts and h not in self.unreachable]

    # ---- files -----------------------------------------------------------------
    def load_health(self) -> dict[str, Any]:
        return self._load("hosts.json")

    def _load(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, name: str, data: Mapping[str, object]) -> None:
        if self.read_only:
            return      # `fleet plan` leaves the running controller's records alone
        path = self.state_dir / name
        tmp = path.with_name(f".{name}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as e:
            log.error("cannot write %s: %s", path, e)


def _time(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def busy_hosts(book: StatusBook, watch: HostWatch) -> set[str]:
    """Hosts with a run in flight or an abandoned run: checked even when drained."""
    return {st.host for st in book.in_states(*ACTIVE) if st.host} | set(watch.abandoned.values())


class Scanning(Protocol):
    """What `fleet hosts scan` needs of the engine (engine.core.Engine)."""
    ssh_settings: SSHConfig

    @property
    def desired(self) -> Desired | None: ...
    async def sync(self) -> bool: ...


async def scan_command(engine: Scanning, name: str) -> int:
    """`fleet hosts scan NAME`: the known_hosts line for the key the host presents.

    The line goes to stdout (so `>> known_hosts` works), the fingerprint and
    how to check it to stderr: the person decides to trust it, never fleet.
    """
    from controller.executors.ssh.executor import scan           # asyncssh stays out of every other command
    await engine.sync()
    desired = engine.desired
    assert desired is not None      # sync() raises when it cannot read the repo
    host = desired.hosts.get(name)
    if host is None or host.is_local:
        why = "is local: it needs no SSH" if host else f"does not exist (no hosts/{name}.yaml)"
        print(f"fleet: host {name} {why}", file=sys.stderr)
        return 2
    try:
        line, fingerprint = await scan(host, engine.ssh_settings, desired.hosts.get)
    except HostUnreachable as e:
        print(f"fleet: {e}", file=sys.stderr)
        return 2
    known = Path(engine.ssh_settings.known_hosts).expanduser()
    print(f"# {name} presents {fingerprint}. Check it on the host itself "
          f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then append this line to {known}:",
          file=sys.stderr)
    print(line)
    return 0
