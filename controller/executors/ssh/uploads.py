"""Run dirs written whole over SFTP: the SSH executor's upload step.

Used by `executor.start`. A run dir is written into a temp dir beside its
place and renamed into it, so a wrapper (or a poll) never sees it
half-written; a run dir that a wrapper already claimed is left alone, which
makes a repeated start of the same run id a reattach.
"""
from __future__ import annotations

import asyncio
import posixpath
import secrets

import asyncssh

from controller.executors.ssh.pool import Link


async def prepare(link: Link, run_dir: str, files: dict[str, bytes], made: set[str]) -> bool:
    """Upload the run dir; False when the run already exists (a reattach)."""
    sftp = await link.sftp()
    state = await run_dir_state(sftp, run_dir)
    if state == "claimed":
        return False
    if state == "absent" and not await upload(sftp, run_dir, files, made):
        if await run_dir_state(sftp, run_dir) == "claimed":
            return False    # another start of this run id won the race
    return True


async def run_dir_state(sftp: asyncssh.SFTPClient, path: str) -> str:
    """absent, unclaimed (uploaded but never started) or claimed (a wrapper took it)."""
    if not await sftp.isdir(path):
        return "absent"
    marks = await asyncio.gather(*(sftp.exists(posixpath.join(path, n))
                                   for n in ("lock", "pid", "result")))
    return "claimed" if any(marks) else "unclaimed"


async def upload(sftp: asyncssh.SFTPClient, path: str, files: dict[str, bytes],
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
