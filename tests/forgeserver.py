"""A scripted forge for tests: the PR API of Forgejo, Gitea or GitHub, and real git.

One threaded HTTP server on 127.0.0.1 plays the forge:
- under the API base (`/api/v1`, or `/api/v3` for GitHub as on GitHub
  Enterprise) it checks each request against the forge's spec
  (forgeserver_spec.py) and answers from PRs kept in memory, in the recorded
  shapes (forgeserver_shapes.py), with the forge's own 404/409/422 bodies;
- under `/OWNER/REPO.git/` it runs `git http-backend` (tests/githttp.py), so a task's
  `repo` really is on the forge: clone and push to it with the real git.
Every request that the real forge would refuse as malformed is recorded in
`errors` (and answered 404/422); the `forge` fixture of tests/test_forge.py
fails the test when any is left at teardown. Tests script the rest: a
person's review, a merge, a close, and failures of the next calls (a status
such as 500 or 429, or a dropped connection).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.forgeserver_api import Api
from tests.forgeserver_shapes import Shapes
from tests.forgeserver_spec import Spec
from tests.githttp import GIT_ENV, backend, read_body, send


@dataclass
class Review:
    """A review as the forge stores it; `state` in the forge's own spelling."""
    id: int
    user: str
    state: str
    body: str
    official: bool
    association: str
    dismissed: bool = False
    stale: bool = False
    commit_id: str = ""


@dataclass
class Pull:
    """A pull request (its number is the issue index, shared with comments)."""
    number: int
    title: str
    body: str
    head: str
    base: str
    closed: bool = False
    merged: bool = False
    merge_commit_sha: str | None = None
    last_head_sha: str = ""
    reviews: list[Review] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def open(self) -> bool:
        """Open and unmerged, as Forgejo's GetUnmergedPullRequest asks."""
        return not self.closed and not self.merged


@dataclass
class Repo:
    """A repository: its PRs, and its bare git directory when it has one."""
    owner: str
    name: str
    id: int
    git_dir: Path | None
    pulls: dict[int, Pull] = field(default_factory=dict)

    def git(self, *args: str) -> str:
        """Run git in the bare repository; '' when it fails (e.g. no such ref)."""
        if self.git_dir is None:
            return ""
        proc = subprocess.run(["git", *args], cwd=self.git_dir, capture_output=True,
                              text=True, env={**os.environ, **GIT_ENV})
        return proc.stdout.strip() if proc.returncode == 0 else ""


@dataclass
class Failure:
    """A scripted failure of one API call: a status, or a dropped connection."""
    status: int | None
    headers: dict[str, str]
    message: str


class ForgeServer:
    """The scripted forge; use as a context manager, or call close()."""

    def __init__(self, root: Path, flavour: str = "forgejo", token: str = "s3cret-token") -> None:
        self.flavour = flavour
        self.token = token
        self.root = root
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.statuses: list[int | None] = []   # the answer to each of `requests`
        # Called with (method, path) before an API request is handled: a test's
        # way to let "someone else" act between two of our calls.
        self.before: Callable[[str, str], None] | None = None
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self.failures: list[Failure] = []
        self.ignore_head_filter = False   # Forgejo before v16 drops ?head= silently
        self.spec = Spec.for_flavour(flavour)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.forge = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.api_url = self.url + self.spec.base_path
        self.shapes = Shapes(flavour, self.url, self.api_url)
        self.api = Api(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> ForgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and end the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def add_repo(self, owner: str, name: str, git: bool = True) -> str:
        """Create OWNER/NAME (a bare git repository unless git=False); its clone URL."""
        git_dir = None
        if git:
            git_dir = self.root / owner / f"{name}.git"
            git_dir.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main",
                            str(git_dir)], check=True, env={**os.environ, **GIT_ENV})
        with self.lock:
            self.repos[f"{owner}/{name}".lower()] = Repo(owner, name, len(self.repos) + 1,
                                                          git_dir)
        return f"{self.url}/{owner}/{name}.git"

    def repo(self, owner: str, name: str) -> Repo | None:
        """The repository, found case-insensitively as the forges do."""
        return self.repos.get(f"{owner}/{name}".lower())

    def pulls(self, owner: str, name: str) -> list[Pull]:
        """Every PR of the repository, by number."""
        repo = self.repo(owner, name)
        assert repo is not None, f"no repository {owner}/{name}"
        return [repo.pulls[n] for n in sorted(repo.pulls)]

    def add_pull(self, owner: str, name: str, head: str, base: str = "main",
                 title: str = "A person's PR") -> int:
        """Open a PR as a person would in the web UI; its number."""
        with self.lock:
            repo = self.repo(owner, name)
            assert repo is not None
            return self.api.new_pull(repo, head, base, title, "").number

    def add_review(self, owner: str, name: str, number: int, user: str, state: str,
                   body: str = "", *, official: bool = True, association: str = "COLLABORATOR",
                   dismissed: bool = False) -> int:
        """A review in the forge's spelling (REQUEST_CHANGES / CHANGES_REQUESTED ...); its id."""
        with self.lock:
            pull = self._pull(owner, name, number)
            review_id = 500 + sum(len(p.reviews) for r in self.repos.values()
                                  for p in r.pulls.values())
            pull.reviews.append(Review(review_id, user, state, body, official, association,
                                       dismissed))
            return review_id

    def merge(self, owner: str, name: str, number: int) -> str:
        """Merge PR `number` (a squash of its head onto its base in git, when there is git)."""
        with self.lock:
            repo = self.repo(owner, name)
            assert repo is not None
            pull = self._pull(owner, name, number)
            sha = repo.git("commit-tree", f"refs/heads/{pull.head}^{{tree}}", "-p",
                           f"refs/heads/{pull.base}", "-m", f"{pull.title} (#{number})")
            if sha:
                repo.git("update-ref", f"refs/heads/{pull.base}", sha)
            pull.merged, pull.closed = True, True
            pull.merge_commit_sha = sha or f"{number:040x}"
            return pull.merge_commit_sha

    def close_pull(self, owner: str, name: str, number: int) -> None:
        """Close PR `number` without merging."""
        with self.lock:
            self._pull(owner, name, number).closed = True

    def fail_next(self, count: int = 1, status: int | None = 500,
                  headers: dict[str, str] | None = None, message: str = "") -> None:
        """Make the next `count` API calls fail: with `status`, or (None) a dropped connection."""
        with self.lock:
            self.failures += [Failure(status, dict(headers or {}), message)] * count

    def _pull(self, owner: str, name: str, number: int) -> Pull:
        repo = self.repo(owner, name)
        assert repo is not None and number in repo.pulls, f"no PR {owner}/{name}#{number}"
        return repo.pulls[number]


class _Handler(BaseHTTPRequestHandler):
    server_version = "ScriptedForge/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the forge's requests are in ForgeServer.requests

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        forge: ForgeServer = self.server.forge  # type: ignore[attr-defined]
        body = read_body(self)
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if ".git/" in path and not path.startswith(forge.spec.base_path + "/"):
            self._git(forge, path, query, headers, body)
            return
        if forge.before is not None:
            forge.before(self.command, path)
        with forge.lock:
            forge.requests.append(f"{self.command} {self.path}")
            failure = forge.failures.pop(0) if forge.failures else None
        if failure is not None and failure.status is None:
            forge.statuses.append(None)
            self.close_connection = True
            self.connection.shutdown(2)  # the answer never comes
            return
        reply: tuple[int, Any, dict[str, str]]
        if failure is not None and failure.status is not None:
            reply = (failure.status, forge.shapes.error(failure.status, failure.message),
                     failure.headers)
        else:
            reply = forge.api.handle(self.command, path, urllib.parse.parse_qs(
                query, keep_blank_values=True), headers, body)
        status, data, extra = reply
        forge.statuses.append(status)
        self._reply(status, data, extra)

    def _reply(self, status: int, data: Any, headers: dict[str, str]) -> None:
        raw = b"" if data is None else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _git(self, forge: ForgeServer, path: str, query: str, headers: dict[str, str],
             body: bytes) -> None:
        """Smart HTTP through `git http-backend`, receive-pack enabled."""
        owner, _, rest = path.lstrip("/").partition("/")
        name, _, tail = rest.partition(".git/")
        repo = forge.repo(urllib.parse.unquote(owner), urllib.parse.unquote(name))
        if repo is None or repo.git_dir is None:
            self._reply(404, {"message": "no such repository"}, {})
            return
        send(self, *backend(forge.root, self.command, f"/{repo.owner}/{repo.name}.git/{tail}",
                            query, headers, body))
