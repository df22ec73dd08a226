"""Connections to one SSH host entry, shared by all its runs: the SSH executor's pool.

Owned by `connect.Connections`; the rest of `ssh/` sees its `Link`s and a
pool's `home` and `made` caches. A pool reuses one connection for everything a
host does and opens another only when every open one carries
CHANNELS_PER_CONN sessions, one connection attempt at a time, so many
callers at once neither exceed the server's MaxSessions nor stampede a host
that is coming up. The connections themselves come from an `opener` (asyncssh
calls stay in `connect`); a failed attempt answers, for FAIL_MEMORY seconds, every
caller that was waiting on it, so a dead host costs one timeout, not one each.
No locks: between two awaits nothing else runs on the loop.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from controller.executors.base import HostUnreachable

# Sessions per connection: 6, and SFTP's one, stay under OpenSSH's MaxSessions
# of 10 with room for sessions the server has not finished closing yet.
CHANNELS_PER_CONN = 6
MAX_CONNS = 4             # per host entry
FAIL_MEMORY = 1.0         # seconds a failed connect answers for the callers waiting on it


class Link:
    """One SSH connection, the sessions in use on it, and its SFTP client once opened."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.channels = 0
        # A retired link takes no new sessions and is closed once idle: the server
        # still counts sessions whose command outlived our timeout.
        self.retired = False
        self._sftp: Any | None = None
        self._sftp_lock = asyncio.Lock()

    async def sftp(self) -> Any:
        async with self._sftp_lock:
            if self._sftp is None:
                self._sftp = await self.conn.start_sftp_client()
            return self._sftp

    def drop_sftp(self) -> None:
        """Forget a failed SFTP client (its server may have timed it out or died)."""
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            sftp.exit()


class Pool:
    """The connections to one host entry; opens one at a time, only when all are full."""

    def __init__(self, opener: Callable[[], Awaitable[Any]]):
        self.opener = opener
        self.links: list[Link] = []
        self.opening = 0
        self.failure: tuple[float, str] | None = None
        self.home: str | None = None
        self.made: set[str] = set()      # directories known to exist on the host
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, timeout: float, fresh: bool = False) -> Link:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # No lock: between two awaits nothing else runs, so check-then-take is atomic.
        while True:
            self.links = [ln for ln in self.links if not ln.conn.is_closed()]
            link = next((ln for ln in self.links
                         if ln.channels < CHANNELS_PER_CONN and not ln.retired), None)
            if link is not None:
                link.channels += 1
                return link
            failure = self.failure
            if failure and loop.time() - failure[0] < FAIL_MEMORY and not fresh:
                raise HostUnreachable(failure[1])
            if self.opening == 0 and sum(not ln.retired for ln in self.links) < MAX_CONNS:
                break
            if loop.time() >= deadline:
                raise HostUnreachable(f"all {MAX_CONNS} connections busy for {timeout:.0f} s")
            await self._wait(deadline - loop.time())
        return await self._open(loop)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Link:
        self.opening += 1
        try:
            conn = await self.opener()
        except HostUnreachable as e:
            self.failure = (loop.time(), str(e))
            raise
        finally:
            self.opening -= 1
            self._notify()
        self.failure = None
        link = Link(conn)
        link.channels = 1
        self.links.append(link)
        return link

    def release(self, link: Link) -> None:
        link.channels -= 1
        if link.retired and link.channels <= 0:
            link.conn.close()
            self.links = [ln for ln in self.links if ln is not link]
        self._notify()

    def close(self) -> list[Any]:
        """Close every connection; returns them, for a caller that waits until they are."""
        closed = [link.conn for link in self.links]
        for conn in closed:
            conn.close()
        self.links = []
        return closed

    def _notify(self) -> None:
        for f in self._waiters:
            if not f.done():
                f.set_result(None)
        self._waiters = []

    async def _wait(self, seconds: float) -> None:
        f = asyncio.get_running_loop().create_future()
        self._waiters.append(f)
        try:
            await asyncio.wait_for(f, max(seconds, 0.01))
        except asyncio.TimeoutError:
            pass
