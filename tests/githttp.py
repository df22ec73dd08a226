"""Git over smart HTTP for tests: the real `git http-backend` behind a local server.

`backend()` runs one request through `git http-backend` as a CGI, push
(receive-pack) enabled; the scripted forge (tests/forgeserver.py) serves its
repositories with it. `GitHTTPServer` serves every bare repository under a
folder at http://127.0.0.1:PORT/<path>.git, for tests of a fleet repository
that is a remote URL: hooks in the served repositories run as on a forge, so a
pre-receive hook can refuse a push or let "someone else" push just before it.
"""
from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C",
           "GIT_AUTHOR_NAME": "Forge", "GIT_AUTHOR_EMAIL": "forge@example.com",
           "GIT_COMMITTER_NAME": "Forge", "GIT_COMMITTER_EMAIL": "forge@example.com"}
MAX_BODY = 64 * 1024 * 1024


def backend(root: Path, method: str, path_info: str, query: str, headers: dict[str, str],
            body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of `git http-backend` for one request; `headers`
    with lower-case names, `path_info` the repository path under root."""
    env = {**os.environ, **GIT_ENV, "GIT_PROJECT_ROOT": str(root),
           "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": method,
           "PATH_INFO": path_info, "QUERY_STRING": query,
           "CONTENT_TYPE": headers.get("content-type", ""),
           "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
           "REMOTE_USER": "fleet-test", "GIT_CONFIG_COUNT": "1",
           "GIT_CONFIG_KEY_0": "http.receivepack", "GIT_CONFIG_VALUE_0": "true"}
    if "content-encoding" in headers:
        env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
    if "git-protocol" in headers:
        env["GIT_PROTOCOL"] = headers["git-protocol"]
    proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                          capture_output=True, check=False)
    head, _, payload = proc.stdout.partition(b"\r\n\r\n")
    if not payload and b"\n\n" in head:
        head, _, payload = proc.stdout.partition(b"\n\n")
    status, out = 200, []
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.split()[0])
        elif key:
            out.append((key, value.strip()))
    return status, out, payload


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, chunked (as git sends a large push) or not."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(min(length, MAX_BODY)) if length else b""


def send(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]],
         payload: bytes) -> None:
    handler.send_response(status)
    for key, value in headers:
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class GitHTTPServer:
    """Serves the bare repositories under `root` over smart HTTP on 127.0.0.1.
    `requests` records "METHOD path" of each request; `auth` (user, password),
    when set, is asked for with HTTP Basic as a forge would. A context manager."""

    def __init__(self, root: Path, auth: tuple[str, str] | None = None) -> None:
        self.root = root
        self.auth = auth
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.git = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url_of(self, repo: Path) -> str:
        """The clone URL of the bare repository at `repo` (under root)."""
        return f"{self.url}/{repo.relative_to(self.root).as_posix()}"

    def __enter__(self) -> GitHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        server: GitHTTPServer = self.server.git  # type: ignore[attr-defined]
        body = read_body(self)
        path, _, query = self.path.partition("?")
        server.requests.append(f"{self.command} {path}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if server.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(server.auth).encode()).decode()
            if headers.get("authorization") != expected:
                send(self, 401, [("WWW-Authenticate", 'Basic realm="git"')], b"")
                return
        send(self, *backend(server.root, self.command, path, query, headers, body))
