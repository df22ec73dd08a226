"""`allowed_repos` in the controller config: the only repositories tasks may name.

The pattern rules of controller/repos.py as a table, the planner blocking a
task whose repo matches none (with a message naming the setting), and a real
controller pass that blocks such a task without cloning anything.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from controller.model import SetStatus, StartRun, State, TaskMode
from controller.plan.planner import plan
from controller.repos import allowed, matches

from .test_planner import NOW, desired, observed, status, task

TEAM = "https://forge.example/team/*"


@pytest.mark.parametrize("repo, pattern, want", [
    ("https://forge.example/team/app", TEAM, True),
    ("https://forge.example/team/app.git", TEAM, True),
    ("https://forge.example/team/app/sub", TEAM, False),        # * stays in one segment
    ("https://forge.example/team/app/sub", "https://forge.example/team/**", True),
    ("https://forge.example/teamx/app", TEAM, False),
    ("https://forge.example/Team/app", TEAM, False),            # case-sensitive
    ("https://forge.example.evil/team/app", TEAM, False),
    ("https://evil/x?https://forge.example/team/app", TEAM, False),  # matched whole
    ("https://forge.example/team/../other/app", "https://forge.example/team/**", False),
    ("https://forge.example/team/%2E%2e/other", "https://forge.example/team/**", False),
    ("https://forge.example/team/./app", "https://forge.example/team/**", False),
    ("https://forge.example/team/.github", TEAM, True),          # a dot-file is no dot segment
    ("git@forge.example:team/app.git", "git@forge.example:team/*", True),
    ("ssh://git@forge.example/team/app.git", "ssh://git@forge.example/team/*.git", True),
    ("/srv/git/app.git", "/srv/git/*", True),
    ("/srv/git/a[1].git", "/srv/git/a[1].git", True),           # no [...] classes: literal
    ("/srv/git/a1.git", "/srv/git/a[1].git", False),
    ("/srv/git/ab", "/srv/git/a?", True),
    ("/srv/git/a/", "/srv/git/a?", False),
])
def test_patterns(repo, pattern, want):
    assert matches(repo, pattern) is want


def test_no_patterns_allow_every_repo():
    assert allowed("/anything", ()) and not allowed("/anything", ("/srv/*",))


def test_a_task_whose_repo_matches_no_pattern_is_blocked_with_the_setting_named():
    d = replace(desired(task("t", repo="https://forge.example/other/app")), allowed_repos=(TEAM,))
    actions = plan(d, observed(), NOW)
    st = next(a.status for a in actions if isinstance(a, SetStatus))
    assert st.state == State.BLOCKED
    assert not [a for a in actions if isinstance(a, StartRun)]
    assert "https://forge.example/other/app is not allowed" in st.message
    assert "allowed_repos" in st.message and "controller config" in st.message and TEAM in st.message


def test_a_matching_repo_runs_and_adding_a_pattern_unblocks():
    t = task("t", repo="https://forge.example/team/app")
    d = replace(desired(t), allowed_repos=(TEAM,))
    assert [a.task for a in plan(d, observed(), NOW) if isinstance(a, StartRun)] == ["t"]
    other = task("o", repo="/srv/other.git")
    blocked = status("o", State.BLOCKED, message="repo /srv/other.git is not allowed")
    d = replace(desired(other), allowed_repos=(TEAM, "/srv/*.git"))
    assert [a.task for a in plan(d, observed(blocked), NOW) if isinstance(a, StartRun)] == ["o"]


def test_a_pull_task_is_blocked_too():
    d = replace(desired(task("p", repo="/elsewhere", mode=TaskMode.PULL)), allowed_repos=(TEAM,))
    st = next(a.status for a in plan(d, observed(), NOW) if isinstance(a, SetStatus))
    assert st.state == State.BLOCKED and "allowed_repos" in st.message


def test_the_controller_blocks_a_task_outside_allowed_repos_and_clones_nothing(tmp_path):
    from controller.app import build_engine
    from controller.config import load_config
    from .fleetkit import World
    from .sshkit import run_once
    w = World(tmp_path)
    w.task("outside")
    w.push()
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n"
                      "allowed_repos: [https://forge.example/team/*]\n")
    run_once(build_engine(load_config(str(config)), str(w.fleet)))
    st = w.status("outside")
    assert st["state"] == "blocked"
    assert f"repo {w.target} is not allowed" in st["message"]
    assert "allowed_repos" in st["message"]
    assert not (w.workdir / "work").exists()          # nothing was cloned
    # The same repo allowed: the next pass runs it.
    config.write_text(f"state_dir: {tmp_path / 'state'}\nallowed_repos: [{tmp_path}/*.git]\n")
    run_once(build_engine(load_config(str(config)), str(w.fleet)))
    assert w.status("outside")["state"] == "review_pending", w.status("outside")["message"]
