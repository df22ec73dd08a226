"""The SSH executor: runs agents on other machines over asyncssh.

Implements `executor.Executor` for hosts whose address is not `local`; the
engine picks it per host and never sees SSH. A run is the same detached
`runwrapper.sh RUN_DIR` as on the local box (see `local`, `rundir`): its files
are uploaded by SFTP into a temp dir and renamed into place (`uploads`), the
wrapper is started in its own session so it outlives the connection, and
everything about it is read back from its run dir by one remote command per
poll (per batch of runs on a host). The shell side lives in `remote`, the
bounded exec of one command in `commands`, connections, jump hosts and host
keys in `connect` (whose `scan` is re-exported here for `fleet hosts scan`).
"""
from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from typing import Callable, Iterable

import asyncssh

from controller.config import SSHConfig
from controller.executors import rundir
from controller.executors.base import HostUnreachable
from controller.executors.ssh import remote, uploads
from controller.executors.ssh.commands import execute
from controller.executors.ssh.connect import Connections, scan
from controller.executors.ssh.pool import Link
from controller.model import Host, RunReport, RunSpec

__all__ = ["SSHExecutor", "scan"]

log = logging.getLogger("fleet")
CLOSE_WAIT = 2.0            # seconds close() waits for connections to finish closing


def quiet_asyncssh() -> None:
    """asyncssh logs every connection and channel at INFO: the controller's log
    is for runs. Called by SSHExecutor's constructor, not at import."""
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


class SSHExecutor:
    """Runs, polls and stops runs on SSH hosts. `resolve` finds a jump host by name."""

    def __init__(self, settings: SSHConfig | None = None,
                 resolve: Callable[[str], Host | None] | None = None,
                 withhold: Iterable[str] = ()):
        quiet_asyncssh()
        self.settings = settings or SSHConfig()
        # Names no run gets even when pass_env lists them (see runenv), beyond FLEET_*.
        self.withhold = frozenset(withhold)
        self._conns = Connections(self.settings, resolve or (lambda name: None))

    # ---- the Executor interface ---------------------------------------------------
    async def start(self, spec: RunSpec) -> None:
        async with self._conns.session(spec.host) as link:
            where = rundir.paths(await self._workdir(spec.host, link), spec.task_id, spec.run_id)
            files = rundir.render(spec, where)
            made = self._conns.pool(spec.host).made
            # SFTP calls have no timeout of their own, and a stuck sftp-server
            # still answers keepalives: bound the whole upload.
            limit = self.settings.command_timeout + self.settings.connect_timeout
            try:
                if not await asyncio.wait_for(uploads.prepare(link, where.run_dir, files, made),
                                              limit):
                    return      # a reattach: the run exists, started or finished
            except asyncio.TimeoutError:
                link.conn.abort()
                raise HostUnreachable(f"{spec.host.name}: uploading run {spec.run_id} took "
                                      f"longer than {limit:g} s") from None
            except (asyncssh.Error, OSError, EOFError):
                link.drop_sftp()    # the next start opens a fresh SFTP channel
                raise
            # The run's environment is read on the host, by name: see runenv.
            launch = remote.launch(where.run_dir, spec.pass_env, self.withhold, spec.run_id)
            try:
                code, _, err = await self._exec(link, launch)
            except HostUnreachable:
                # The launch command went out: the run may be going. Keep its run id
                # assigned; polls find it, or lose it after lost_grace.
                log.warning("run %s: connection lost while launching; will look for it",
                            spec.run_id)
                return
            if code != 0:
                raise HostUnreachable(f"{spec.host.name}: cannot start the run wrapper: "
                                      f"{_text(err) or f'exit {code}'}")

    async def poll(self, host: Host, run_id: str) -> RunReport | None:
        return (await self.poll_many(host, [run_id]))[run_id]

    async def poll_many(self, host: Host, run_ids: Iterable[str]) -> dict[str, RunReport | None]:
        """Every run of `run_ids` on `host`, read by one remote command per batch."""
        reports: dict[str, RunReport | None] = {}
        async with self._conns.session(host) as link:
            workdir = await self._workdir(host, link)
            by_dir = {rundir.run_dir(workdir, r): r for r in run_ids}
            dirs = list(by_dir)
            for i in range(0, len(dirs), remote.POLL_BATCH):
                command, boundary = remote.poll(dirs[i:i + remote.POLL_BATCH])
                code, out, err = await self._exec(link, command)
                try:
                    found = remote.parse_poll(out, boundary, time.time())
                except ValueError:
                    raise HostUnreachable(f"{host.name}: poll answer cut short (exit {code}): "
                                          f"{_text(err)}") from None
                for path, seen in found.items():
                    run_id = by_dir[path]
                    reports[run_id] = None if seen is None else rundir.report(run_id, *seen)
        return {r: reports.get(r) for r in by_dir.values()}

    async def stop(self, host: Host, run_id: str, grace: float) -> None:
        async with self._conns.session(host) as link:
            path = rundir.run_dir(await self._workdir(host, link), run_id)
            # The remote script waits up to `grace` (then up to 5 s after KILL).
            code, _, err = await self._exec(link, remote.stop(path, grace),
                                            timeout=grace + 10 + self.settings.command_timeout)
            if code is None:        # not known to be dead: the engine tries again later
                raise HostUnreachable(f"{host.name}: stopping run {run_id}: {_text(err)}")

    async def cleanup(self, host: Host, task_id: str) -> None:
        """Remove a finished task's workspace (a whole clone); run dirs stay for the record."""
        async with self._conns.session(host) as link:
            path = rundir.workspace(await self._workdir(host, link), task_id)
            await self._exec(link, remote.sh('rm -rf -- "$1"', path))

    # ---- for health checks and tests ----------------------------------------------
    async def run(self, host: Host, command: str, timeout: float | None = None,
                  fresh: bool = False) -> tuple[int | None, bytes, bytes]:
        """(exit status, stdout, stderr) of one command line in the host's login shell."""
        async with self._conns.session(host, fresh=fresh) as link:
            return await self._exec(link, command, timeout)

    async def workdir(self, host: Host, fresh: bool = False) -> str:
        """The host's workdir as an absolute path on the host (`~` resolved there)."""
        async with self._conns.session(host, fresh=fresh) as link:
            return await self._workdir(host, link)

    def connections(self, host: Host) -> list[int]:
        """Sessions in use per open connection to `host` (for tests and status)."""
        return self._conns.in_use(host)

    async def close(self) -> None:
        """Close every connection, and wait (briefly) until they are: their SFTP and
        channel tasks end with them, not after the loop that owns them."""
        closed = self._conns.close()
        if closed:
            try:
                await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in closed),
                                                      return_exceptions=True), CLOSE_WAIT)
            except asyncio.TimeoutError:
                log.warning("SSH connections still closing after %g s", CLOSE_WAIT)

    # ---- on an open session ------------------------------------------------------------
    async def _exec(self, link: Link, command: str, timeout: float | None = None
                    ) -> tuple[int | None, bytes, bytes]:
        """(exit status, stdout, stderr); the exit status is None when time ran out."""
        return await execute(link, command, timeout or self.settings.command_timeout,
                             self.settings.connect_timeout)

    async def _workdir(self, host: Host, link: Link) -> str:
        wd = host.workdir.rstrip("/") or "/"
        if wd.startswith("/"):
            return posixpath.normpath(wd)
        if wd.startswith("~") and not (wd == "~" or wd.startswith("~/")):
            raise HostUnreachable(f"{host.name}: workdir {wd!r}: ~user is not supported, "
                                  "write an absolute path")
        pool = self._conns.pool(host)
        if pool.home is None:
            code, out, _ = await self._exec(link, remote.HOME)
            home = out.decode("utf-8", "surrogateescape")
            if code != 0 or not home.startswith("/"):
                raise HostUnreachable(f"{host.name}: no home directory to resolve workdir {wd!r}")
            pool.home = home
        rel = wd[2:] if wd.startswith("~/") else "" if wd == "~" else wd
        return posixpath.normpath(posixpath.join(pool.home, rel))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[-300:]
