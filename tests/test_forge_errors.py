"""Forge failures: which ones are worth retrying, and the token in none of them.

A forge that is down, slow, drops the connection or rate-limits gives a
transient ForgeError (the engine retries with backoff, the task stays
`review_pending`); a wrong token, an unknown repository or a refused PR is
permanent. The token never appears in an exception, a repr or a log record,
even when the forge echoes it back. Also: the factory's settings checks.
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.forge import (ForgeError, ForgeSettingsError, RepoRef, forge_from_settings,
                              make_forge, parse_repo_url)
from controller.forge.github import GitHubForge
from controller.forge.transport import Secret
from tests.forgeserver import ForgeServer

TOKEN = "s3cret-token"


@pytest.fixture(params=["forgejo", "gitea", "github"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForgeServer]:
    with ForgeServer(tmp_path / "forge", request.param, token=TOKEN) as forge:
        forge.add_repo("team", "app", git=False)
        yield forge
        assert not forge.errors, forge.errors


def ref(server: ForgeServer, name: str = "app") -> RepoRef:
    return parse_repo_url(f"{server.url}/team/{name}.git")


def failure(call: object) -> ForgeError:
    with pytest.raises(ForgeError) as caught:
        call()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(server: ForgeServer, status: int) -> None:
    server.fail_next(1, status)
    forge = make_forge(server.flavour, server.url, None, TOKEN, timeout=5)
    err = failure(lambda: forge.pr_status(ref(server), 1))
    assert err.transient and err.status == status


def test_a_dropped_connection_is_transient_and_the_retry_opens_one_pr(
        server: ForgeServer) -> None:
    forge = make_forge(server.flavour, server.url, None, TOKEN, timeout=5)
    server.add_pull("team", "app", "task/base-only")
    server.fail_next(1, None)
    err = failure(lambda: forge.open_pr(ref(server), "task/x", "main", "t", "b"))
    assert err.transient and err.status is None
    first = forge.open_pr(ref(server), "task/x", "main", "t", "b")
    assert forge.open_pr(ref(server), "task/x", "main", "t", "b") == first
    assert [p.head for p in server.pulls("team", "app")] == ["task/base-only", "task/x"]


def test_connection_refused_and_timeout_are_transient(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    forge = make_forge("forgejo", f"http://127.0.0.1:{port}", None, TOKEN, timeout=2)
    repo = parse_repo_url(f"http://127.0.0.1:{port}/team/app")
    err = failure(lambda: forge.find_open_pr(repo, "task/x", "main"))
    assert err.transient and "cannot reach" in str(err)

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)   # accepts the connection, never answers
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    host, port = silent.getsockname()
    slow = make_forge("gitea", f"http://{host}:{port}", None, TOKEN, timeout=0.5)
    err = failure(lambda: slow.pr_status(parse_repo_url(f"http://{host}:{port}/t/a"), 1))
    assert err.transient and ("0.5s" in str(err) or "timed out" in str(err))
    for conn in accepted:
        conn.close()
    silent.close()


def test_rate_limits_are_transient_with_retry_after(server: ForgeServer) -> None:
    forge = make_forge(server.flavour, server.url, None, TOKEN, timeout=5)
    server.fail_next(1, 429, {"Retry-After": "7"})
    err = failure(lambda: forge.reviews(ref(server), 1))
    assert err.transient and err.retry_after == 7.0 and err.status == 429
    server.fail_next(1, 403, {"Retry-After": "60"},
                     "You have exceeded a secondary rate limit.")   # GitHub's secondary limit
    err = failure(lambda: forge.reviews(ref(server), 1))
    assert err.transient and err.retry_after == 60.0


def test_github_primary_rate_limit_waits_until_reset(tmp_path: Path) -> None:
    with ForgeServer(tmp_path / "gh", "github", token=TOKEN) as server:
        server.add_repo("team", "app", git=False)
        forge = GitHubForge(server.url, None, Secret(TOKEN), clock=lambda: 1_000_000.0)
        server.fail_next(1, 403, {"X-RateLimit-Remaining": "0",
                                  "X-RateLimit-Reset": "1000090"}, "API rate limit exceeded")
        err = failure(lambda: forge.pr_status(ref(server), 1))
        assert err.transient and err.retry_after == 90.0


def test_permanent_errors(server: ForgeServer) -> None:
    forge = make_forge(server.flavour, server.url, None, TOKEN, timeout=5)
    wrong = make_forge(server.flavour, server.url, None, "not-the-token", timeout=5)
    err = failure(lambda: wrong.find_open_pr(ref(server), "task/x", "main"))
    assert (err.transient, err.status) == (False, 401)
    err = failure(lambda: forge.pr_status(ref(server, "nope"), 1))
    assert (err.transient, err.status) == (False, 404)
    err = failure(lambda: forge.pr_status(ref(server), 99))
    assert (err.transient, err.status) == (False, 404)
    server.fail_next(1, 403, message="token does not have at least one of required scope(s)")
    err = failure(lambda: forge.comment(ref(server), 1, "hi"))
    assert (err.transient, err.status) == (False, 403) and "scope" in str(err)
    err = failure(lambda: forge.open_pr(ref(server), "main", "main", "t", "b"))  # no changes
    assert (err.transient, err.status) == (False, 422)


def test_a_redirect_is_not_followed(tmp_path: Path) -> None:
    with ForgeServer(tmp_path / "f", "forgejo", token=TOKEN) as server:
        server.fail_next(1, 301, {"Location": "https://elsewhere.example/api/v1/x"})
        forge = make_forge("forgejo", server.url, None, TOKEN, timeout=5)
        err = failure(lambda: forge.pr_status(ref(server), 1))
        assert not err.transient and "elsewhere.example" in str(err)


def test_the_token_is_in_no_error_repr_or_log(server: ForgeServer,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    forge = make_forge(server.flavour, server.url, None, TOKEN, timeout=5)
    seen: list[ForgeError] = []
    for status in (500, 401, 403, 404, 422, 429):
        server.fail_next(1, status, message=f"bad token {TOKEN} (Authorization: token {TOKEN})")
        seen.append(failure(lambda: forge.reviews(ref(server), 1)))
    server.fail_next(1, None)
    seen.append(failure(lambda: forge.pr_status(ref(server), 1)))
    for err in seen:
        assert TOKEN not in str(err) and TOKEN not in repr(err)
        assert "***" in str(err) or err.status is None
    assert TOKEN not in repr(forge) and TOKEN not in str(vars(forge))
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(r.args) for r in caplog.records)


def test_forge_from_settings_reads_the_token_from_its_variable() -> None:
    settings = {"type": "gitea", "url": "https://forge.example", "token_env": "MY_TOKEN"}
    forge = forge_from_settings(settings, {"MY_TOKEN": TOKEN})
    assert (forge.kind, forge.web_url) == ("gitea", "https://forge.example")
    assert "https://forge.example/api/v1" in repr(forge) and TOKEN not in repr(forge)
    with pytest.raises(ForgeSettingsError, match="MY_TOKEN"):
        forge_from_settings(settings, {})
    gh = forge_from_settings({"type": "github", "url": "https://github.com"},
                             {"FLEET_FORGE_TOKEN": TOKEN})
    assert "https://api.github.com" in repr(gh)
    ghes = make_forge("github", "https://ghe.example", None, TOKEN)
    assert "https://ghe.example/api/v3" in repr(ghes)
    custom = make_forge("forgejo", "https://forge.example", "https://api.example/v1", TOKEN)
    assert "https://api.example/v1" in repr(custom)


@pytest.mark.parametrize("settings, says", [
    ({"type": "gitlab", "url": "https://forge.example"}, "forge.type"),
    ({"url": "https://forge.example"}, "type"),
    ({"type": "forgejo", "url": "forge.example"}, "forge.url"),
    ({"type": "forgejo", "url": f"https://bot:{TOKEN}@forge.example"}, "credentials"),
    ({"type": "forgejo", "url": "https://forge.example", "api_url": "ftp://x"}, "api_url"),
    ({"type": "forgejo", "url": "https://forge.example", "tokn_env": "X"}, "unknown"),
])
def test_bad_settings_are_refused_clearly(settings: dict[str, str], says: str) -> None:
    with pytest.raises(ForgeSettingsError, match=says) as caught:
        forge_from_settings(settings, {"FLEET_FORGE_TOKEN": TOKEN})
    assert TOKEN not in str(caught.value)
