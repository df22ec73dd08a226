"""Reaching SSH hosts: a pool per host entry, jump hosts, host keys, dialing.

Used by `executor` (every call takes a session from `Connections`) and by
`fleet hosts scan` through `scan`. Connections are pooled per host entry
(`pool`): one is reused for all of a host's runs; a second opens only when the
first carries as many sessions as it safely can below OpenSSH's default
MaxSessions of 10. A host with a `jump` is reached through a tunnel on its jump
host's own pooled connection. Host keys are checked against the configured
known_hosts file and nothing else: an unknown key is an error that says to run
`fleet hosts scan`, never a silent trust on first use. Any failure to reach a
host surfaces as `HostUnreachable`.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import asyncssh

from controller.config import SSHConfig
from controller.executors.base import HostUnreachable
from controller.executors.ssh.pool import Link, Pool
from controller.model import Host

MAX_JUMPS = 8

# What identifies a host entry's connections: a change in any of these makes them stale.
_PoolKey = tuple[str, int, str | None, str | None]


class Connections:
    """The pooled connections to every SSH host. `resolve` finds a jump host by name."""

    def __init__(self, settings: SSHConfig, resolve: Callable[[str], Host | None]):
        self.settings = settings
        self.resolve = resolve
        self._pools: dict[str, tuple[_PoolKey, Pool]] = {}

    @asynccontextmanager
    async def session(self, host: Host, fresh: bool = False) -> AsyncIterator[Link]:
        """A connection to `host` with one session counted on it; SSH errors become HostUnreachable."""
        pool = self.pool(host)
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

    def pool(self, host: Host) -> Pool:
        key = (host.address, host.port, host.user, host.jump)
        entry = self._pools.get(host.name)
        if entry is None or entry[0] != key:
            if entry is not None:
                entry[1].close()    # the host file changed: its old connections are stale
            entry = (key, Pool(lambda: self._connect(host)))
            self._pools[host.name] = entry
        return entry[1]

    def in_use(self, host: Host) -> list[int]:
        """Sessions in use per open connection to `host`."""
        entry = self._pools.get(host.name)
        return [ln.channels for ln in entry[1].links] if entry else []

    def close(self) -> list[Any]:
        closed = [conn for _, pool in self._pools.values() for conn in pool.close()]
        self._pools.clear()
        return closed

    def first_jump(self, host: Host) -> Host | None:
        """`host`'s jump host, once its whole chain is known to end; None without one."""
        seen = [host.name]
        first = None
        while host.jump:
            nxt = self.resolve(host.jump)
            if nxt is None or nxt.is_local:
                raise HostUnreachable(f"{seen[0]}: jump host {host.jump} is not an SSH host "
                                      f"in hosts/{host.jump}.yaml")
            if nxt.name in seen or len(seen) > MAX_JUMPS:
                raise HostUnreachable(f"{seen[0]}: jump hosts loop: {' -> '.join(seen + [nxt.name])}")
            seen.append(nxt.name)
            if first is None:
                first = nxt
            host = nxt
        return first

    async def _connect(self, host: Host) -> asyncssh.SSHClientConnection:
        jump = self.first_jump(host)
        if jump is None:
            return await self._dial(host, ())
        pool = self.pool(jump)
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

    async def _dial(self, host: Host, tunnel: Any) -> asyncssh.SSHClientConnection:
        s = self.settings
        try:
            trusted = known_hosts(s)
        except (ValueError, OSError) as e:
            raise HostUnreachable(f"{host.name}: cannot read ssh.known_hosts: {describe(e)}; "
                                  "fix the file (fleet hosts scan prints good lines)") from None
        options: dict[str, Any] = dict(
            port=host.port, known_hosts=trusted, config=[],
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
            raise HostUnreachable(f"{host.name}: cannot connect to {where(host)}: {describe(e)}") from None


# ---- host keys -------------------------------------------------------------------

def known_hosts(settings: SSHConfig) -> asyncssh.SSHKnownHosts:
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
    return (f"{host.name}: the host key of {where(host)} is {what} {path}: run "
            f"`fleet hosts scan {host.name}`, check its fingerprint, and add the line to {path}"
            + (" in place of the old one" if listed else ""))


async def scan(host: Host, settings: SSHConfig, resolve: Callable[[str], Host | None]
               ) -> tuple[str, str]:
    """(known_hosts line, fingerprint) of the key `host` presents, through its jump host."""
    conns = Connections(settings, resolve)
    try:
        tunnel: Any = ()
        jump = conns.first_jump(host)
        if jump is not None:
            tunnel = (await conns.pool(jump).acquire(settings.connect_timeout)).conn
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(
                host.address, host.port, tunnel=tunnel, config=[]), settings.connect_timeout)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as e:
            raise HostUnreachable(f"{host.name}: cannot connect to {where(host)}: {describe(e)}") from None
        if key is None:
            raise HostUnreachable(f"{host.name}: the server presented no host key")
        pattern = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        body = key.export_public_key("openssh").decode().split()[:2]
        return f"{pattern} {' '.join(body)}", key.get_fingerprint("sha256")
    finally:
        conns.close()


# ---- messages --------------------------------------------------------------------

def describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, asyncssh.Error) and e.reason:
        return e.reason
    return str(e) or type(e).__name__


def where(host: Host) -> str:
    user = f"{host.user}@" if host.user else ""
    return f"{user}{host.address}:{host.port}"
