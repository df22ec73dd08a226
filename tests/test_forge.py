"""The forge clients against the scripted forge: PRs opened once, found, read, commented.

Every test runs a real HTTP server (tests/forgeserver.py) that checks each
call against Forgejo's or Gitea's swagger, or GitHub's documented calls, and
serves the target repository itself over smart HTTP: the branch `task/x` is
pushed with the real git before a PR is opened for it. The `forge` fixture
fails a test that made any call the real forge would refuse as malformed.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.forge import (Forge, PRState, RepoRef, ReviewState, make_forge, on_forge)
from tests.forgeserver import ForgeServer

FLAVOURS = ("forgejo", "gitea", "github")
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Agent", "GIT_AUTHOR_EMAIL": "agent@example.com",
           "GIT_COMMITTER_NAME": "Agent", "GIT_COMMITTER_EMAIL": "agent@example.com",
           "GIT_TERMINAL_PROMPT": "0"}
MakeServer = Callable[[str], ForgeServer]


@pytest.fixture
def forge(tmp_path: Path) -> Iterator[MakeServer]:
    """Start scripted forges of a flavour; at teardown, fail on any call they refused."""
    servers: list[ForgeServer] = []

    def start(flavour: str) -> ForgeServer:
        server = ForgeServer(tmp_path / f"forge-{len(servers)}", flavour)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()
    problems = [p for s in servers for p in s.errors]
    assert not problems, "the scripted forge refused calls:\n" + "\n".join(problems)


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def pushed(server: ForgeServer, tmp_path: Path, branch: str = "task/x") -> RepoRef:
    """team/app on the forge with `main` and `branch` pushed over HTTP by the real git."""
    url = server.add_repo("team", "app")
    work = tmp_path / f"clone-{server.flavour}"
    git("clone", "--quiet", url, str(work), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    (work / "README").write_text("app\n")
    git("add", "README", cwd=work)
    git("commit", "--quiet", "-m", "init", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    git("checkout", "--quiet", "-b", branch, cwd=work)
    (work / "README").write_text("app, fixed\n")
    git("commit", "--quiet", "-am", "fix", cwd=work)
    git("push", "--quiet", "origin", branch, cwd=work)
    ref = on_forge(url, server.url)
    assert ref is not None
    return ref


def client(server: ForgeServer) -> Forge:
    return make_forge(server.flavour, server.url, None, server.token, timeout=5)


def posts(server: ForgeServer) -> list[str]:
    return [r for r in server.requests if r.startswith("POST") and r.endswith("/pulls")]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_open_pr_once_per_head_even_twice_and_across_a_restart(
        forge: MakeServer, tmp_path: Path, flavour: str) -> None:
    server = forge(flavour)
    repo = pushed(server, tmp_path)
    first = client(server).open_pr(repo, "task/x", "main", "Fix login", "Summary")
    again = client(server).open_pr(repo, "task/x", "main", "Fix login", "Summary")
    after_restart = client(server).open_pr(repo, "task/x", "main", "Fix login", "Summary")
    assert first == again == after_restart
    assert first.state is PRState.OPEN and first.head_ref == "task/x"
    assert first.html_url.startswith(server.url + "/team/app/pull")
    assert [p.number for p in server.pulls("team", "app")] == [first.number]
    assert len(posts(server)) == 1
    git_head = server.repo("team", "app").git("rev-parse", "refs/heads/task/x")  # type: ignore
    assert client(server).pr_status(repo, first.number).head_sha == git_head


@pytest.mark.parametrize("flavour, code", [("forgejo", 409), ("gitea", 409), ("github", 422)])
def test_already_exists_answer_means_find_it(forge: MakeServer, tmp_path: Path,
                                             flavour: str, code: int) -> None:
    """Someone opens the PR between our look and our create: the forge's refusal finds it."""
    server = forge(flavour)
    repo = pushed(server, tmp_path)
    theirs: list[int] = []

    def race(method: str, path: str) -> None:
        if method == "POST" and path.endswith("/pulls") and not theirs:
            theirs.append(server.add_pull("team", "app", "task/x", "main", "Opened by a person"))
    server.before = race
    pr = client(server).open_pr(repo, "task/x", "main", "Fix login", "Summary")
    assert pr.number == theirs[0]
    assert code in server.statuses
    assert len(server.pulls("team", "app")) == 1


def test_forgejo_409_carries_forgejos_message(forge: MakeServer, tmp_path: Path) -> None:
    server = forge("forgejo")
    pushed(server, tmp_path)
    number = server.add_pull("team", "app", "task/x")
    body = json.dumps({"head": "task/x", "base": "main", "title": "t"}).encode()
    req = urllib.request.Request(server.api_url + "/repos/team/app/pulls", data=body,
                                 method="POST", headers={"Authorization": "token " + server.token,
                                                         "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=5)
    assert caught.value.code == 409
    message = json.loads(caught.value.read())["message"]
    assert message == (f"pull request already exists for these targets [id: {1000 + number}, "
                       f"issue_id: {number}, head_repo_id: 1, base_repo_id: 1, "
                       "head_branch: task/x, base_branch: main]")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_find_ignores_closed_merged_other_heads_and_none(forge: MakeServer, tmp_path: Path,
                                                         flavour: str) -> None:
    server = forge(flavour)
    repo = pushed(server, tmp_path)
    forge_client = client(server)
    assert forge_client.find_open_pr(repo, "task/x", "main") is None
    old = server.add_pull("team", "app", "task/x")
    server.close_pull("team", "app", old)
    server.add_pull("team", "app", "task/other")
    assert forge_client.find_open_pr(repo, "task/x", "main") is None
    opened = forge_client.open_pr(repo, "task/x", "main", "t", "b")
    assert opened.number not in (old, old + 1)
    assert forge_client.find_open_pr(repo, "task/x", "main") == opened
    assert forge_client.find_open_pr(repo, "task/x", "release") is None


def test_gitea_has_no_head_filter_so_the_client_asks_base_head(forge: MakeServer,
                                                              tmp_path: Path) -> None:
    server = forge("gitea")
    repo = pushed(server, tmp_path)
    old = server.add_pull("team", "app", "task/x")
    server.close_pull("team", "app", old)   # /pulls/main/task/x answers this closed one
    for n in range(60):                     # more open PRs than one page holds
        server.add_pull("team", "app", f"task/other-{n}")
    current = server.add_pull("team", "app", "task/x")
    found = client(server).find_open_pr(repo, "task/x", "main")
    assert found is not None and found.number == current
    assert not any("head=" in r for r in server.requests)
    assert any(r.endswith("/pulls/main/task/x") for r in server.requests)


def test_old_forgejo_drops_the_head_filter_and_the_client_filters(forge: MakeServer,
                                                                 tmp_path: Path) -> None:
    server = forge("forgejo")
    server.ignore_head_filter = True          # Forgejo v15 and older
    repo = pushed(server, tmp_path)
    wanted = server.add_pull("team", "app", "task/x")
    for n in range(60):
        server.add_pull("team", "app", f"task/other-{n}")
    found = client(server).find_open_pr(repo, "task/x", "main")
    assert found is not None and found.number == wanted
    assert sum("/pulls?" in r for r in server.requests) == 2   # 50, then 11


@pytest.mark.parametrize("flavour", ("forgejo", "gitea"))
def test_forgejo_reviews_carry_official_and_dismissed(forge: MakeServer, tmp_path: Path,
                                                      flavour: str) -> None:
    server = forge(flavour)
    repo = pushed(server, tmp_path)
    number = client(server).open_pr(repo, "task/x", "main", "t", "b").number
    server.add_review("team", "app", number, "alice", "REQUEST_CHANGES", "Rename it", official=True)
    server.add_review("team", "app", number, "mallory", "REQUEST_CHANGES", "No", official=False)
    server.add_review("team", "app", number, "bob", "REQUEST_CHANGES", "Old", dismissed=True)
    server.add_review("team", "app", number, "carol", "APPROVED")
    server.add_review("team", "app", number, "dave", "COMMENT", "nit")
    server.add_review("team", "app", number, "erin", "REQUEST_REVIEW")
    reviews = client(server).reviews(repo, number)
    assert [(r.author, r.state, r.official) for r in reviews] == [
        ("alice", ReviewState.CHANGES_REQUESTED, True),
        ("mallory", ReviewState.CHANGES_REQUESTED, False),
        ("bob", ReviewState.DISMISSED, True),
        ("carol", ReviewState.APPROVED, True),
        ("dave", ReviewState.COMMENTED, True),
        ("erin", ReviewState.REVIEW_REQUESTED, True)]
    assert reviews[0].body == "Rename it"
    assert reviews[0].html_url.startswith(f"{server.url}/team/app/pulls/{number}#")


def test_github_reviews_carry_author_association(forge: MakeServer, tmp_path: Path) -> None:
    server = forge("github")
    repo = pushed(server, tmp_path)
    number = client(server).open_pr(repo, "task/x", "main", "t", "b").number
    for user, association in [("owner", "OWNER"), ("member", "MEMBER"),
                              ("collab", "COLLABORATOR"), ("drive-by", "CONTRIBUTOR"),
                              ("stranger", "NONE")]:
        server.add_review("team", "app", number, user, "CHANGES_REQUESTED", "Fix",
                          association=association)
    server.add_review("team", "app", number, "owner", "APPROVED", association="OWNER")
    reviews = client(server).reviews(repo, number)
    assert [(r.author, r.official, r.association) for r in reviews[:5]] == [
        ("owner", True, "OWNER"), ("member", True, "MEMBER"), ("collab", True, "COLLABORATOR"),
        ("drive-by", False, "CONTRIBUTOR"), ("stranger", False, "NONE")]
    assert {r.state for r in reviews} == {ReviewState.CHANGES_REQUESTED, ReviewState.APPROVED}


def test_reviews_are_read_across_pages(forge: MakeServer, tmp_path: Path) -> None:
    server = forge("forgejo")
    repo = pushed(server, tmp_path)
    number = server.add_pull("team", "app", "task/x")
    for n in range(55):
        server.add_review("team", "app", number, f"user{n}", "COMMENT")
    assert len(client(server).reviews(repo, number)) == 55


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_comment_and_status_through_merge_and_close(forge: MakeServer, tmp_path: Path,
                                                    flavour: str) -> None:
    server = forge(flavour)
    repo = pushed(server, tmp_path)
    forge_client = client(server)
    pr = forge_client.open_pr(repo, "task/x", "main", "t", "b")
    forge_client.comment(repo, pr.number, "Revision 2: renamed the flag.")
    assert server.pulls("team", "app")[0].comments == ["Revision 2: renamed the flag."]
    status = forge_client.pr_status(repo, pr.number)
    assert (status.state, status.merged, status.merge_commit_sha) == (PRState.OPEN, False, None)
    sha = server.merge("team", "app", pr.number)
    status = forge_client.pr_status(repo, pr.number)
    assert (status.state, status.merged, status.merge_commit_sha) == (PRState.CLOSED, True, sha)
    main = server.repo("team", "app").git("rev-parse", "refs/heads/main")  # type: ignore
    assert main == sha
    other = server.add_pull("team", "app", "task/y")
    server.close_pull("team", "app", other)
    closed = forge_client.pr_status(repo, other)
    assert (closed.state, closed.merged) == (PRState.CLOSED, False)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_scripted_forge_refuses_bad_requests(forge: MakeServer, flavour: str) -> None:
    """The checker can fail: each of these is a call the real forge would not take."""
    server = forge(flavour)
    server.add_repo("team", "app", git=False)
    auth = "Bearer " if flavour == "github" else "token "
    headers = {"Authorization": auth + server.token, "Content-Type": "application/json",
               "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    bad = [
        ("GET", "/repos/team/app/pullz", None),                          # no such route
        ("DELETE", "/repos/team/app/pulls/1", None),                     # no such method
        ("GET", "/repos/team/app/pulls?state=opened", None),             # not in the enum
        ("GET", "/repos/team/app/pulls?colour=red", None),               # undeclared param
        ("POST", "/repos/team/app/pulls", {"head": "task/x", "base": "main"}),  # no title
        ("POST", "/repos/team/app/pulls",
         {"head": "task/x", "base": "main", "title": "t", "tittle": "t"}),      # unknown field
        ("POST", "/repos/team/app/issues/1/comments", {"body": 7}),      # wrong type
        ("GET", "/repos/team/app/pulls/one", None),                      # not an integer
    ]
    if flavour == "gitea":
        bad.append(("GET", "/repos/team/app/pulls?head=task%2Fx", None))  # Gitea has no head
    if flavour == "github":
        bad.append(("GET", "/repos/team/app/pulls?head=task%2Fx", None))  # needs OWNER:
    for method, path, body in bad:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(server.api_url + path, data=data, method=method,
                                     headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=5)
        assert caught.value.code in (404, 422), (method, path)
        assert server.errors, f"{method} {path} was not refused"
        server.errors.clear()
