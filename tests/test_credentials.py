"""No token in a URL: refused where it is written, hidden wherever it is shown.

git authenticates through SSH keys or a credential helper; a fleet repository
URL or a task `repo` with credentials in it is refused (config, --repo, task
files), and any URL in a message or in git's own output is shown redacted.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import ConfigError, load_config
from controller.desired.builder import validate_files
from controller.gitstore import GitError, GitStore
from controller.text import has_credentials, redact, redact_text

TOKEN = "tok3n-s3cret"
WITH_CREDENTIALS = [
    f"https://user:{TOKEN}@forge.example/team/fleet.git",
    f"https://{TOKEN}@forge.example/team/fleet.git",
    f"http://oauth2:{TOKEN}@127.0.0.1:3000/team/fleet.git",
    f"ssh://git:{TOKEN}@forge.example/team/fleet.git",
    f"git:{TOKEN}@forge.example:team/fleet.git",
]
WITHOUT = ["https://forge.example/team/fleet.git", "ssh://git@forge.example:2222/team/fleet.git",
           "git@forge.example:team/fleet.git", "/srv/fleet.git", "file:///srv/fleet.git",
           "../fleet.git", "relative/path@2/fleet.git"]


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_credentials_are_seen_and_hidden(url: str) -> None:
    assert has_credentials(url)
    shown = redact(url)
    assert TOKEN not in shown and ("@forge.example" in shown or "@127.0.0.1" in shown), shown


@pytest.mark.parametrize("url", WITHOUT)
def test_urls_without_credentials_pass_unchanged(url: str) -> None:
    assert not has_credentials(url)
    assert redact(url) == url


def test_git_messages_are_redacted_wherever_the_url_is() -> None:
    stderr = (f"fatal: unable to access 'https://user:{TOKEN}@forge.example/t/f.git/': "
              f"The requested URL returned error: 403\nTo https://{TOKEN}@forge.example/t/f.git\n"
              f"see ssh://git:{TOKEN}@h/x and https://forge.example/x?access_token={TOKEN}")
    shown = redact_text(stderr)
    assert TOKEN not in shown
    assert "'https://***@forge.example/t/f.git/'" in shown and "ssh://git:***@h/x" in shown
    assert redact_text("ssh://git@forge.example/x and /srv/a@b") == \
        "ssh://git@forge.example/x and /srv/a@b"


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_the_store_refuses_a_fleet_repository_url_with_credentials(url: str, tmp_path: Path) -> None:
    with pytest.raises(GitError) as info:
        GitStore(url, tmp_path / "state")
    message = str(info.value)
    assert TOKEN not in message and "credential helper" in message and "--repo" in message
    assert not (tmp_path / "state").exists()


def test_the_config_refuses_a_repo_with_credentials(tmp_path: Path) -> None:
    path = tmp_path / "controller.yaml"
    path.write_text(f"repo: {WITH_CREDENTIALS[0]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: repo: ") and TOKEN not in message
    assert "credential helper" in message


TASK = "id: t\ntitle: T\nagent: codex\ngoal: g\nrepo: {repo}\n"
AGENT = "name: codex\ncommand: [codex]\noutput: raw\n"


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_a_task_repo_with_credentials_is_a_problem_of_its_file(url: str) -> None:
    problems = validate_files({"agents/codex.yaml": AGENT.encode(),
                               "tasks/t.yaml": TASK.format(repo=url).encode()})
    assert [(p.path, p.line) for p in problems] == [("tasks/t.yaml", 5)]
    assert TOKEN not in problems[0].message and "credential helper" in problems[0].message


@pytest.mark.parametrize("url", WITHOUT)
def test_a_task_repo_without_credentials_is_fine(url: str) -> None:
    assert validate_files({"agents/codex.yaml": AGENT.encode(),
                           "tasks/t.yaml": TASK.format(repo=url).encode()}) == []


def test_fleet_validate_refuses_either_with_a_clear_line(tmp_path: Path) -> None:
    def fleet(*args: str | Path, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controller", *map(str, args)], cwd=cwd,
                              capture_output=True, text=True, timeout=60)
    out = fleet("validate", "--repo", WITH_CREDENTIALS[1])
    assert out.returncode == 2 and "credential helper" in out.stderr
    assert TOKEN not in out.stderr + out.stdout and "Traceback" not in out.stderr
    tree = tmp_path / "tree"
    (tree / "tasks").mkdir(parents=True)
    (tree / "agents").mkdir()
    (tree / "agents" / "codex.yaml").write_text(AGENT)
    (tree / "tasks" / "t.yaml").write_text(TASK.format(repo=WITH_CREDENTIALS[0]))
    out = fleet("validate", cwd=tree)
    assert out.returncode == 1 and out.stdout.startswith("tasks/t.yaml:5: repo: ")
    assert TOKEN not in out.stderr + out.stdout
