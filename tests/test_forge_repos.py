"""Which repository a task's `repo` names, in every clone form, and what is refused.

Table tests of controller/forge/repos.py: pure functions, no server.
"""
from __future__ import annotations

import pytest

from controller.forge.repos import (RepoRef, RepoURLError, matches_full_name, on_forge,
                                    parse_repo_url, redact)

FORGE = "https://Forge.Example"


@pytest.mark.parametrize("url, expected", [
    ("https://forge.example/team/app", RepoRef("forge.example", 443, "team", "app", "https")),
    ("https://forge.example/team/app.git", RepoRef("forge.example", 443, "team", "app", "https")),
    ("https://forge.example/team/app/", RepoRef("forge.example", 443, "team", "app", "https")),
    ("https://FORGE.example:8443/Team/App.git",
     RepoRef("forge.example", 8443, "Team", "App", "https")),
    ("http://127.0.0.1:3000/o/r.git", RepoRef("127.0.0.1", 3000, "o", "r", "http")),
    ("ssh://git@forge.example/team/app.git", RepoRef("forge.example", 22, "team", "app", "ssh")),
    ("ssh://git@forge.example:2222/team/app.git",
     RepoRef("forge.example", 2222, "team", "app", "ssh")),
    ("git@forge.example:team/app.git", RepoRef("forge.example", 22, "team", "app", "ssh")),
    ("forge.example:team/app", RepoRef("forge.example", 22, "team", "app", "ssh")),
    ("https://[::1]:8443/o/r.git", RepoRef("::1", 8443, "o", "r", "https")),
    ("https://forge.example/my.org/my_app-2.git",
     RepoRef("forge.example", 443, "my.org", "my_app-2", "https")),
])
def test_parse_every_clone_form(url: str, expected: RepoRef) -> None:
    assert parse_repo_url(url) == expected


@pytest.mark.parametrize("url, says", [
    ("https://user:tok3n@forge.example/team/app.git", "credentials"),
    ("https://tok3n@forge.example/team/app.git", "credentials"),   # GitHub's token-as-user form
    ("ssh://git:tok3n@forge.example/team/app.git", "credentials"),
    ("git:tok3n@forge.example:team/app.git", "credentials"),
    ("a@tok3n@forge.example:team/app.git", "credentials"),
    ("https://forge.example/team", "OWNER/REPO"),
    ("https://forge.example/a/b/c", "OWNER/REPO"),
    ("https://forge.example/team/../app", "OWNER/REPO"),
    ("https://forge.example/../app", "bad owner"),
    ("https://forge.example/team/..", "bad owner"),
    ("https://forge.example/%2e%2e/app", "bad owner"),
    ("https://forge.example/team%2Fx/app", "OWNER/REPO"),
    ("https://forge.example/-oProxyCommand=x/app", "bad owner"),
    ("ssh://-oProxyCommand=touch%20x/team/app", "bad host"),
    ("https://forge.example/team/app?access_token=tok3n", "no query"),
    ("https://forge.example/team/app#frag", "no query"),
    ("https://forge.example:99999/team/app", "bad port"),
    ("https://forge.example:http/team/app", "bad port"),
    ("https://forge.exa mple/team/app", "bad host"),
    ("https://forge.example/team/app\n", "not a repository URL"),
    (" https://forge.example/team/app", "not a repository URL"),
    ("https://forge.example/te\x00am/app", "not a repository URL"),
    ("file:///srv/app.git", "unsupported scheme"),
    ("ext::sh -c touch% /tmp/pwned", "not a repository URL"),
    ("/srv/app.git", "local path"),
    ("./app", "local path"),
    ("", "not a repository URL"),
    ("https://forge.example/tëam/app", "bad owner"),
])
def test_refused(url: str, says: str) -> None:
    with pytest.raises(RepoURLError, match=says) as caught:
        parse_repo_url(url)
    assert "tok3n" not in str(caught.value)


@pytest.mark.parametrize("repo, on", [
    ("https://forge.example/team/app.git", True),
    ("https://FORGE.EXAMPLE:443/team/app", True),
    ("git@forge.example:team/app.git", True),
    ("ssh://git@forge.example:2222/team/app.git", True),   # SSH has its own port
    ("https://forge.example:8443/team/app", False),        # another web server
    ("http://forge.example/team/app", False),              # port 80, not 443
    ("https://other.example/team/app", False),
    ("https://forge.example.evil/team/app", False),
    ("/srv/app.git", False),
    ("file:///srv/app.git", False),
])
def test_on_forge(repo: str, on: bool) -> None:
    ref = on_forge(repo, FORGE)
    assert (ref is not None) == on
    if ref is not None:
        assert ref.full_name == "team/app"


def test_on_forge_with_a_port_and_a_sub_path() -> None:
    assert on_forge("http://127.0.0.1:3000/o/r.git", "http://127.0.0.1:3000") is not None
    assert on_forge("http://127.0.0.1:3001/o/r.git", "http://127.0.0.1:3000") is None
    ref = on_forge("https://forge.example/git/team/app.git", "https://forge.example/git/")
    assert ref is not None and ref.full_name == "team/app"


def test_on_forge_refuses_credentials_and_bad_paths_on_the_forge_only() -> None:
    with pytest.raises(RepoURLError, match="credentials"):
        on_forge("https://x:tok3n@other.example/team/app", FORGE)
    with pytest.raises(RepoURLError, match="OWNER/REPO"):
        on_forge("https://forge.example/team", FORGE)
    assert on_forge("https://other.example/team", FORGE) is None
    with pytest.raises(RepoURLError, match="forge url"):
        on_forge("https://forge.example/team/app", "forge.example")


@pytest.mark.parametrize("full_name, matches", [
    ("team/app", True), ("Team/App", True), ("TEAM/APP", True),
    ("team/app2", False), ("other/app", False), ("team", False), ("team/app/x", False),
    ("", False), ("/", False),
])
def test_matches_full_name(full_name: str, matches: bool) -> None:
    ref = parse_repo_url("git@forge.example:Team/app.git")
    assert matches_full_name(ref, full_name) is matches


@pytest.mark.parametrize("url, shown", [
    ("https://user:tok3n@forge.example/team/app.git", "https://***@forge.example/team/app.git"),
    ("https://tok3n@forge.example/team/app.git", "https://***@forge.example/team/app.git"),
    ("ssh://git:tok3n@forge.example/team/app.git", "ssh://git:***@forge.example/team/app.git"),
    ("ssh://git@forge.example/team/app.git", "ssh://git@forge.example/team/app.git"),
    ("git:tok3n@forge.example:team/app.git", "***@forge.example:team/app.git"),
    ("git@forge.example:team/app.git", "git@forge.example:team/app.git"),
    ("https://forge.example/team/app?access_token=tok3n&x=1",
     "https://forge.example/team/app?access_token=***&x=1"),
    ("https://u:p@a@forge.example/x", "https://***@forge.example/x"),
    ("/srv/app.git", "/srv/app.git"),
    ("not a url at all", "not a url at all"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
