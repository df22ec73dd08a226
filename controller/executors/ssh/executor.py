"""The SSH executor: runs agents on other machines, the only module that imports asyncssh.

Implements `executor.Executor` for hosts whose address is not `local`; the
engine picks it per host and never sees SSH. A run is the same detached
`runwrapper.sh RUN_DIR` as on the local box (see `local`, `rundir`): its files
are uploaded by SFTP into a temp dir and renamed into place, the wrapper is
started in its own session so it outlives the connection, and everything
about it is read back from its run dir by one remote command per poll (per
batch of runs on a host). The shell side lives in `remote`.

Connections are pooled per host entry (`sshpool`): one is reused for all of
a host's runs; a second opens only when the first carries as many sessions as
it safely can below OpenSSH's default MaxSessions of 10. Host keys are checked against
the configured known_hosts file and nothing else: an unknown key is an error
that says to run `fleet hosts scan`, never a silent trust on first use.
Any failure to reach a host surfaces as `HostUnreachable`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable

import asyncssh

from controller.executors.ssh import remote
from controller.executors import rundir
from controller.config import SSHConfig
from controller.executors.base import HostUnreachable, RunSpec
from controller.model import Host, RunReport
from controller.executors.ssh.pool import Link, Pool

REFUSED_RETRIES = 5       # a session refused (server at MaxSessions): nothing ran, try again
MAX_JUMPS = 8

# asyncssh logs every connection and channel at INFO: the controller's log is for runs.
logging.getLogger("asyncssh").setLevel(logging.WARNING)
log = logging.getLogger("fleet")


class SSHExecutor:
    """Runs, polls and stops runs on SSH hosts. `resolve` finds a jump host by name."""

    def __init__(self, settings: SSHConfig | None = None,
                 resolve: Callable[[str], Host | None] | None = None):
        self.settings = settings or SSHConfig()
        self.resolve = resolve or (lambda name: None)
        self._pools: dict[str, tuple[tuple, Pool]] = {}

    # ---- the Executor interface ---------------------------------------------------
    async def start(self, spec: RunSpec) -> None:
        async with self._session(spec.host) as link:
            where = rundir.paths(await self._workdir(spec.host, link), spec.task_id, spec.run_id)
            files = rundir.render(spec, where)
            # SFTP calls have no timeout of their own, and a stuck sftp-server
            # still answers keepalives: bound the whole upload.
            limit = self.settings.command_timeout + self.settings.connect_timeout
            try:
                if not await asyncio.wait_for(self._prepare(spec, link, where, files), limit):
                    return      # a reattach: the run exists, started or finished
            except asyncio.TimeoutError:
                link.conn.abort()
                raise HostUnreachable(f"{spec.host.name}: uploading run {spec.run_id} took "
                                      f"longer than {limit:g} s") from None
            except (asyncssh.Error, OSError, EOFError):
                link.drop_sftp()    # the next start opens a fresh SFTP channel
                raise
            try:
                code, _, err = await self._exec(link, remote.launch(where.run_dir))
            except HostUnreachable:
                # The launch command went out: the run may be going. Keep its run id
                # assigned; polls find it, or lose it after lost_grace.
                log.warning("run %s: connection lost while launching; will look for it",
                            spec.run_id)
                return
            if code != 0:
                raise HostUnreachable(f"{spec.host.name}: cannot start the run wrapper: "
                                      f"{_text(err) or f'exit {code}'}")

    async def _prepare(self, spec: RunSpec, link: Link, where, files) -> bool:
        """Upload the run dir; False when the run already exists (a reattach)."""
        sftp = await link.sftp()
        state = await _run_dir_state(sftp, where.run_dir)
        if state == "claimed":
            return False
        if state == "absent" and not await _upload(sftp, where.run_dir, files,
                                                   self._pool(spec.host).made):
            if await _run_dir_state(sftp, where.run_dir) == "claimed":
                return False    # another start of this run id won the race
        return True

    async def poll(self, host: Host, run_id: str) -> RunReport | None:
        return (await self.poll_many(host, [run_id]))[run_id]

    async def poll_many(self, host: Host, run_ids: Iterable[str]) -> dict[str, RunReport | None]:
        """Every run of `run_ids` on `host`, read by one remote command per batch."""
        reports: dict[str, RunReport | None] = {}
        async with self._session(host) as link:
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
        async with self._session(host) as link:
            path = rundir.run_dir(await self._workdir(host, link), run_id)
            # The remote script waits up to `grace` (then up to 5 s after KILL).
            code, _, err = await self._exec(link, remote.stop(path, grace),
                                            timeout=grace + 10 + self.settings.command_timeout)
            if code is None:        # not known to be dead: the engine tries again later
                raise HostUnreachable(f"{host.name}: stopping run {run_id}: {_text(err)}")

    async def cleanup(self, host: Host, task_id: str) -> None:
        """Remove a finished task's workspace (a whole clone); run dirs stay for the record."""
        async with self._session(host) as link:
            path = rundir.workspace(await self._workdir(host, link), task_id)
            await self._exec(link, remote.sh('rm -rf -- "$1"', path))

    # ---- for health checks and tests ----------------------------------------------
    async def run(self, host: Host, command: str, timeout: float | None = None,
                  fresh: bool = False) -> tuple[int | None, bytes, bytes]:
        """(exit status, stdout, stderr) of one command line in the host's login shell."""
        async with self._session(host, fresh=fresh) as link:
            return await self._exec(link, command, timeout)

    async def workdir(self, host: Host, fresh: bool = False) -> str:
        """The host's workdir as an absolute path on the host (`~` resolved there)."""
        async with self._session(host, fresh=fresh) as link:
            return await self._workdir(host, link)

    def connections(self, host: Host) -> list[int]:
        """Sessions in use per open connection to `host` (for tests and status)."""
        entry = self._pools.get(host.name)
        return [ln.channels for ln in entry[1].links] if entry else []

    async def close(self) -> None:
        for _, pool in self._pools.values():
            pool.close()
        self._pools.clear()

    # ---- connections ----------------------------------------------------------------
    @asynccontextmanager
    async def _session(self, host: Host, fresh: bool = False) -> AsyncIterator[Link]:
        pool = self._pool(host)
        link = await pool.acquire(self.settings.connect_timeout + self.settings.command_timeout,
                                  fresh=fresh)
        try:
            yield link
        except (asyncssh.Error, OSError, EOFError) as e:
            raise HostUnreachable(f"{host.name}: {describe(e)}") from e
        except HostUnreachable as e:
            if str(e).startswith(f"{host.name}:"):
                raise
            raise HostUnreachable(f"{host.name}: {e}") from None
        finally:
            pool.release(link)

    def _pool(self, host: Host) -> Pool:
        key = (host.address, host.port, host.user, host.jump)
        entry = self._pools.get(host.name)
        if entry is None or entry[0] != key:
            if entry is not None:
                entry[1].close()    # the host file changed: its old connections are stale
            entry = (key, Pool(lambda: self._connect(host)))
            self._pools[host.name] = entry
        return entry[1]

    async def _connect(self, host: Host) -> asyncssh.SSHClientConnection:
        self._check_jumps(host)
        if not host.jump:
            return await self._dial(host, ())
        jump = self.resolve(host.jump)
        pool = self._pool(jump)
        try:
            link = await pool.acquire(self.settings.connect_timeout)
        except HostUnreachable as e:
            raise HostUnreachable(f"{host.name}: through jump host {e}") from None
        try:
            # A tunnel is a direct-tcpip channel, not a session: MaxSessions does
            # not count it, and it lives as long as the jump connection.
            return await self._dial(host, link.conn)
        finally:
            pool.release(link)

    def _check_jumps(self, host: Host) -> None:
        seen = [host.name]
        while host.jump:
            nxt = self.resolve(host.jump)
            if nxt is None or nxt.is_local:
                raise HostUnreachable(f"{seen[0]}: jump host {host.jump} is not an SSH host "
                                      f"in hosts/{host.jump}.yaml")
            if nxt.name in seen or len(seen) > MAX_JUMPS:
                raise HostUnreachable(f"{seen[0]}: jump hosts loop: {' -> '.join(seen + [nxt.name])}")
            seen.append(nxt.name)
            host = nxt

    async def _dial(self, host: Host, tunnel) -> asyncssh.SSHClientConnection:
        s = self.settings
        try:
            trusted = known_hosts(s)
        except (ValueError, OSError) as e:
            raise HostUnreachable(f"{host.name}: cannot read ssh.known_hosts: {describe(e)}; "
                                  "fix the file (fleet hosts scan prints good lines)") from None
        options = dict(port=host.port, known_hosts=trusted, config=[],
                       connect_timeout=s.connect_timeout, keepalive_interval=s.keepalive_interval,
                       keepalive_count_max=s.keepalive_count_max, tunnel=tunnel)
        if host.user:
            options["username"] = host.user
        if s.client_keys is not None:
            options["client_keys"] = [str(Path(k).expanduser()) for k in s.client_keys]
        try:
            return await asyncssh.connect(host.address, **options)
        except asyncssh.HostKeyNotVerifiable:
            raise HostUnreachable(untrusted_key_message(host, s)) from None
        except asyncssh.PermissionDenied:
            raise HostUnreachable(
                f"{host.name}: login as {host.user or 'the controller user'} refused: no key was "
                f"accepted (ssh.client_keys {list(s.client_keys) if s.client_keys else 'unset: the SSH agent and ~/.ssh/id_*'})"
            ) from None
        except (asyncssh.Error, OSError, asyncio.TimeoutError, ValueError) as e:
            raise HostUnreachable(f"{host.name}: cannot connect to {_where(host)}: {describe(e)}") from None

    # ---- commands ------------------------------------------------------------------
    async def _exec(self, link: Link, command: str, timeout: float | None = None
                    ) -> tuple[int | None, bytes, bytes]:
        """(exit status, stdout, stderr); the exit status is None when time ran out."""
        timeout = timeout or self.settings.command_timeout
        try:
            # asyncssh's timeout ends a slow command and keeps its connection; this
            # outer one is for a connection that stopped answering altogether.
            done = await asyncio.wait_for(self._run(link, command, timeout),
                                          timeout + self.settings.connect_timeout)
        except asyncssh.TimeoutError as e:
            return None, e.stdout or b"", f"timed out after {timeout:g} s".encode()
        except asyncio.TimeoutError:
            # Most likely the peer is gone: drop the connection, so the next call
            # dials afresh instead of waiting on a dead one.
            link.conn.abort()
            raise HostUnreachable(f"no answer within {timeout:g} s") from None
        return done.exit_status, done.stdout or b"", done.stderr or b""

    async def _run(self, link: Link, command: str, timeout: float
                   ) -> asyncssh.SSHCompletedProcess:
        for attempt in range(REFUSED_RETRIES):
            try:
                process = await link.conn.create_process(command, stdin=asyncssh.DEVNULL,
                                                         encoding=None)
            except asyncssh.ChannelOpenError as e:
                # The server still counts sessions it is closing: give it a moment.
                refused = e.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
                if not refused or attempt == REFUSED_RETRIES - 1:
                    link.retired = True   # a connection that refuses sessions is retired
                    raise
                await asyncio.sleep(0.05 * 2 ** attempt)
                continue
            try:
                return await process.wait(check=False, timeout=timeout)
            except asyncssh.TimeoutError:
                # The server counts a timed-out command's session until the command
                # ends (closing our side does not end it): ten of those and it refuses
                # every new session. Retire the connection; it closes once idle.
                with contextlib.suppress(asyncssh.Error, OSError):
                    process.send_signal("KILL")
                link.retired = True
                raise
            finally:
                process.close()

    async def _workdir(self, host: Host, link: Link) -> str:
        wd = host.workdir.rstrip("/") or "/"
        if wd.startswith("/"):
            return posixpath.normpath(wd)
        if wd.startswith("~") and not (wd == "~" or wd.startswith("~/")):
            raise HostUnreachable(f"{host.name}: workdir {wd!r}: ~user is not supported, "
                                  "write an absolute path")
        pool = self._pool(host)
        if pool.home is None:
            code, out, _ = await self._exec(link, remote.HOME)
            home = out.decode("utf-8", "surrogateescape")
            if code != 0 or not home.startswith("/"):
                raise HostUnreachable(f"{host.name}: no home directory to resolve workdir {wd!r}")
            pool.home = home
        rel = wd[2:] if wd.startswith("~/") else "" if wd == "~" else wd
        return posixpath.normpath(posixpath.join(pool.home, rel))


# ---- SFTP: run dirs written whole ----------------------------------------------------

async def _run_dir_state(sftp: asyncssh.SFTPClient, path: str) -> str:
    """absent, unclaimed (uploaded but never started) or claimed (a wrapper took it)."""
    if not await sftp.isdir(path):
        return "absent"
    marks = await asyncio.gather(*(sftp.exists(posixpath.join(path, n))
                                   for n in ("lock", "pid", "result")))
    return "claimed" if any(marks) else "unclaimed"


async def _upload(sftp: asyncssh.SFTPClient, path: str, files: dict[str, bytes],
                  made: set[str]) -> bool:
    """Write the run dir in a temp dir and rename it into place: never seen half-written.

    `made`: parents known to exist, so that makedirs (a round trip per path
    component) runs once per host, not once per run.
    """
    parent = posixpath.dirname(path)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{secrets.token_hex(4)}")
    if parent not in made:
        await sftp.makedirs(parent, exist_ok=True)
    try:
        await sftp.mkdir(tmp, asyncssh.SFTPAttrs(permissions=0o700))
    except asyncssh.SFTPNoSuchFile:         # someone removed the workdir since
        await sftp.makedirs(parent, exist_ok=True)
        await sftp.mkdir(tmp, asyncssh.SFTPAttrs(permissions=0o700))
    made.add(parent)
    try:
        await asyncio.gather(*(_put(sftp, posixpath.join(tmp, n), data) for n, data in files.items()))
        await sftp.rename(tmp, path)
    except asyncssh.SFTPError:
        await sftp.rmtree(tmp, ignore_errors=True)
        if await sftp.isdir(path):
            return False
        raise
    return True


async def _put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


# ---- host keys -------------------------------------------------------------------

def known_hosts(settings: SSHConfig):
    """The trusted keys: the configured file, or none at all. Never None (= trust anything)."""
    path = Path(settings.known_hosts).expanduser()
    if path.is_file():
        return asyncssh.read_known_hosts(str(path))
    return asyncssh.import_known_hosts("")


def untrusted_key_message(host: Host, settings: SSHConfig) -> str:
    path = Path(settings.known_hosts).expanduser()
    listed = False
    if path.is_file():
        listed = bool(asyncssh.read_known_hosts(str(path)).match(host.address, "", host.port)[0])
    what = "CHANGED since it was added to" if listed else "not in"
    return (f"{host.name}: the host key of {_where(host)} is {what} {path}: run "
            f"`fleet hosts scan {host.name}`, check its fingerprint, and add the line to {path}"
            + (" in place of the old one" if listed else ""))


async def scan(host: Host, settings: SSHConfig, resolve: Callable[[str], Host | None]
               ) -> tuple[str, str]:
    """(known_hosts line, fingerprint) of the key `host` presents, through its jump host."""
    ex = SSHExecutor(settings, resolve)
    try:
        tunnel = ()
        if host.jump:
            ex._check_jumps(host)
            tunnel = (await ex._pool(resolve(host.jump)).acquire(settings.connect_timeout)).conn
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(
                host.address, host.port, tunnel=tunnel, config=[]), settings.connect_timeout)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as e:
            raise HostUnreachable(f"{host.name}: cannot connect to {_where(host)}: {describe(e)}") from None
        if key is None:
            raise HostUnreachable(f"{host.name}: the server presented no host key")
        pattern = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        body = key.export_public_key("openssh").decode().split()[:2]
        return f"{pattern} {' '.join(body)}", key.get_fingerprint("sha256")
    finally:
        await ex.close()


# ---- messages --------------------------------------------------------------------

def describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, asyncssh.Error) and e.reason:
        return e.reason
    return str(e) or type(e).__name__


def _where(host: Host) -> str:
    user = f"{host.user}@" if host.user else ""
    return f"{user}{host.address}:{host.port}"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[-300:]
