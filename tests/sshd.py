"""A real OpenSSH sshd for tests, run as the current user on 127.0.0.1.

`Sshd(root)` writes a host key, an authorized_keys with a fresh client key,
an sshd_config and a known_hosts (all under `root`), starts `sshd -D -e` on a
random free port and waits until it answers with its banner. `kill()` takes it
down by pid with every connection it serves (runs started through it are in
their own sessions and survive, as on a real host); `start()` again brings it
back on the same port with the same key. Nothing is installed here: `make
test` installs openssh-server; without it the tests that need sshd skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def sshd_path() -> str | None:
    found = shutil.which("sshd") or shutil.which("sshd", path=os.pathsep.join(SBIN))
    return os.path.abspath(found) if found else None    # sshd re-execs itself: absolute path


def require_sshd() -> str:
    path = sshd_path()
    if path is None:
        why = "OpenSSH sshd is not installed (`make test` installs openssh-server)"
        if os.environ.get("CI"):
            pytest.fail(why + "; under CI a skip would hide a broken machine")
        pytest.skip(why)
    return path


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


class Sshd:
    def __init__(self, root: Path, address: str = "127.0.0.1", netns: str | None = None,
                 extra: str = "", setenv: dict[str, str] | None = None):
        self.binary = require_sshd()
        self.root = root
        self.address = address
        self.netns = netns
        root.mkdir(parents=True, exist_ok=True)
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        keygen(self.host_key, "fleet-test-host")
        keygen(self.client_key, "fleet-test-client")
        shutil.copy(f"{self.client_key}.pub", root / "authorized_keys")
        self.port = free_port() if netns is None else 22
        self.known_hosts = root / "known_hosts"
        self.user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
        self.extra = extra
        # The login environment of every session (sshd honours only its first SetEnv line).
        self.setenv = {"SHLVL": "1", **(setenv or {})}
        self.proc: subprocess.Popen | None = None
        self._write_config()
        self.trust()

    def _write_config(self) -> None:
        r = self.root
        (r / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress {self.address}\nHostKey {self.host_key}\n"
            f"PidFile {r / 'sshd.pid'}\nAuthorizedKeysFile {r / 'authorized_keys'}\n"
            "UsePAM no\nStrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin yes\nAllowTcpForwarding yes\n"
            "Subsystem sftp internal-sftp\nMaxStartups 200\nMaxSessions 10\n"
            "LogLevel ERROR\n"
            # bash sources ~/.bashrc for ssh sessions only at SHLVL < 2. The
            # user's rc files are not what these tests test, and here they run
            # `pyenv rehash`, whose global lock, left behind by a session the
            # tests kill, makes every later login wait 60 s.
            # Written `SetEnv SHLVL=1 ...`: a test may edit the line by that text.
            "SetEnv " + " ".join(f'"{k}={v}"' if " " in f"{k}{v}" else f"{k}={v}"
                                 for k, v in self.setenv.items()) + "\n"
            + self.extra)

    def known_hosts_line(self) -> str:
        key = (self.host_key.parent / f"{self.host_key.name}.pub").read_text().split()[:2]
        where = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{where} {' '.join(key)}\n"

    def trust(self) -> None:
        self.known_hosts.write_text(self.known_hosts_line())

    def distrust(self) -> None:
        self.known_hosts.write_text("")

    def start(self) -> "Sshd":
        if os.getuid() == 0:
            # As root, sshd insists on its privilege separation directory.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        cmd = [self.binary, "-D", "-e", "-f", str(self.root / "sshd_config")]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        log = open(self.root / "sshd.log", "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: "
                                   f"{(self.root / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not answer on {self.address}:{self.port} in {timeout} s")

    def kill(self) -> None:
        """SIGKILL the listener and the per-connection sshd processes under it."""
        if self.proc is None:
            return
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def host(self, name: str, workdir: Path | str, **fields) -> dict:
        """A hosts/<name>.yaml body pointing at this sshd."""
        body = {"name": name, "address": self.address, "port": self.port, "user": self.user,
                "capabilities": ["demo"], "max_concurrent": 2, "workdir": str(workdir)}
        body.update(fields)
        return body

    def config_text(self, state_dir: Path, **ssh) -> str:
        """A controller config using this sshd's known_hosts and client key."""
        settings = {"known_hosts": str(self.known_hosts), "client_keys": [str(self.client_key)],
                    "connect_timeout": 3, "keepalive_interval": 1, "keepalive_count_max": 3,
                    "command_timeout": 10, "health_interval": 0.5, "lost_grace": 30, **ssh}
        lines = [f"state_dir: {state_dir}", "ssh:"]
        for key, value in settings.items():
            lines.append(f"  {key}: {value if not isinstance(value, list) else value!r}")
        return "\n".join(lines) + "\n"


def proc_stats():
    """(pid, fields after the command name) of every process, from /proc/<pid>/stat:
    fields[0] is the state, [1] the parent pid, [2] the process group."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            yield int(name), data[data.rindex(b")") + 2:].split()
        except (OSError, ValueError):
            continue


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc (bounded by the process count)."""
    children: dict[int, list[int]] = {}
    for child, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(child)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
