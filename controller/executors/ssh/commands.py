"""One command line on an SSH connection, bounded in time: the executor's remote exec.

Used by `executor` for every remote step (launch, poll, stop, cleanup, health
checks). Two limits guard each command: asyncssh's own timeout ends a slow
command and keeps its connection; an outer one gives up on a connection that
stopped answering altogether. A session the server refuses because it is at
MaxSessions is retried: nothing ran.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import asyncssh

from controller.executors.base import HostUnreachable
from controller.executors.ssh.pool import Link

REFUSED_RETRIES = 5       # a session refused (server at MaxSessions): nothing ran, try again


async def execute(link: Link, command: str, timeout: float, connect_timeout: float
                  ) -> tuple[int | None, bytes, bytes]:
    """(exit status, stdout, stderr); the exit status is None when time ran out."""
    try:
        # asyncssh's timeout ends a slow command and keeps its connection; this
        # outer one is for a connection that stopped answering altogether.
        done = await asyncio.wait_for(_run(link, command, timeout), timeout + connect_timeout)
    except asyncssh.TimeoutError as e:
        return None, _bytes(e.stdout), f"timed out after {timeout:g} s".encode()
    except asyncio.TimeoutError:
        # Most likely the peer is gone: drop the connection, so the next call
        # dials afresh instead of waiting on a dead one.
        link.conn.abort()
        raise HostUnreachable(f"no answer within {timeout:g} s") from None
    return done.exit_status, _bytes(done.stdout), _bytes(done.stderr)


def _bytes(data: bytes | str | None) -> bytes:
    # Processes are opened with encoding=None: their output is bytes or nothing.
    return cast(bytes, data or b"")


async def _run(link: Link, command: str, timeout: float) -> asyncssh.SSHCompletedProcess:
    for attempt in range(REFUSED_RETRIES):
        try:
            process: asyncssh.SSHClientProcess[bytes] = await link.conn.create_process(
                command, stdin=asyncssh.DEVNULL, encoding=None)
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
    raise AssertionError("unreachable: the last refused attempt re-raises")
