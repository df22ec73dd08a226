"""controller.plan.prompt: snapshot tests, determinism, templates; the demo agent end to end.

Snapshots live in tests/snapshots/*.md. After an intended change to the prompt,
regenerate them with `FLEET_UPDATE_SNAPSHOTS=1 pytest tests/test_prompt.py` and
review the diff.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import demo_agent
from controller.model import Result, Task
from controller.executors.parsers import parse
from controller.plan.prompt import DEFAULT_TEMPLATE, PLACEHOLDERS, build_prompt, check_template

SNAPSHOTS = Path(__file__).parent / "snapshots"
ROOT = Path(__file__).resolve().parent.parent

TASK = Task(
    id="fix-login", title="Fix the login redirect", agent="codex",
    goal="After a successful login, users must land on the page they asked for,\n"
         "not always on /home. Keep `$NEXT` handling as it is.",
    repo="git@forge.example:web/app.git",
    constraints=("Do not change the public URL scheme.",
                 "No new dependencies;\nthe standard library is enough."),
    validation=("make test", "ruff check ."),
)
BARE = Task(id="tidy", title="Tidy the README", agent="claude", goal="Fix typos.",
            repo="/srv/git/docs.git")
CUSTOM = """\
$title ($task_id, attempt $attempt) on $repo@$branch from $base
GOAL: $goal
RULES:
$constraints
CHECK:
$validation
NOTES:
$feedback
$$5 budget. ${previous_failure}
"""


def first_attempt() -> str:
    return build_prompt(TASK, repo=TASK.repo, branch=TASK.branch, base="main", attempt=1)


def retry() -> str:
    return build_prompt(TASK, repo=TASK.repo, branch=TASK.branch, base="main", attempt=2,
                        previous_failure="turn failed: scripted bad request "
                                         "(invalid_request_error)")


def revision() -> str:
    previous = Result(outcome="success", exit_code=0,
                      summary="Redirect now honours ?next=.\nAll tests pass.")
    return build_prompt(TASK, repo=TASK.repo, branch=TASK.branch, base="develop", attempt=1,
                        feedback=["Please add a test for an external ?next= URL.",
                                  "Reject open redirects:\nonly same-origin paths."],
                        previous_result=previous)


def custom() -> str:
    return build_prompt(TASK, repo=TASK.repo, branch=TASK.branch, base="main", attempt=3,
                        feedback=["one", "two"], previous_failure="timed out after 45m",
                        template=CUSTOM)


CASES = {"first_attempt": first_attempt, "retry": retry, "revision": revision,
         "custom_template": custom}


@pytest.mark.parametrize("name", sorted(CASES))
def test_snapshot(name):
    text = CASES[name]()
    path = SNAPSHOTS / f"{name}.md"
    if os.environ.get("FLEET_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_inputs_give_identical_bytes(name):
    assert CASES[name]().encode() == CASES[name]().encode()


def test_minimal_task_has_no_empty_sections():
    text = build_prompt(BARE, repo=BARE.repo, branch=BARE.branch, base="main", attempt=1)
    assert "## Constraints" not in text and "## Validation" not in text
    assert "## Reviewer feedback" not in text and "\n\n\n" not in text
    assert text.startswith("# Tidy the README\n") and text.endswith("validated it.\n")


def test_sections_follow_the_inputs():
    assert "## Why the previous attempt failed" in retry()
    assert "## Reviewer feedback" not in retry()
    text = revision()
    assert text.index("1. Please add a test") < text.index("2. Reject open redirects:")
    assert "   only same-origin paths." in text and "> All tests pass." in text
    assert "`task/fix-login` (from `develop`)" in text


def test_values_are_not_read_as_template_text():
    task = Task(id="t", title="$goal ${title}", agent="a", goal="costs $5 and $$", repo="r")
    text = build_prompt(task, repo="r", branch="task/t", base="main", attempt=1)
    assert text.startswith("# $goal ${title}\n") and "costs $5 and $$" in text


def test_validation_fence_outgrows_backticks_in_commands():
    task = Task(id="t", title="t", agent="a", goal="g", repo="r",
                validation=("echo ```x```",))
    text = build_prompt(task, repo="r", branch="task/t", base="main", attempt=1)
    assert "````sh\necho ```x```\n````" in text


def test_unknown_placeholder_names_it_and_the_known_ones():
    with pytest.raises(ValueError) as err:
        build_prompt(TASK, repo="r", branch="b", base="main", attempt=1,
                     template="Do $title by $deadline")
    assert "$deadline" in str(err.value)
    assert all(name in str(err.value) for name in PLACEHOLDERS)


@pytest.mark.parametrize("template, fragment", [
    ("cost: $5", "$5"), ("${title", "${title"), ("", "empty"), ("  \n", "empty"),
])
def test_bad_template_syntax_is_a_value_error(template, fragment):
    with pytest.raises(ValueError, match="prompt template") as err:
        check_template(template)
    assert fragment in str(err.value)


def test_default_template_uses_only_known_placeholders():
    import string
    used = set(string.Template(DEFAULT_TEMPLATE).get_identifiers())
    assert used and used <= set(PLACEHOLDERS), used - set(PLACEHOLDERS)
    check_template(DEFAULT_TEMPLATE)
    text = build_prompt(TASK, repo=TASK.repo, branch="task/fix-login", base="main", attempt=1)
    assert not [name for name in PLACEHOLDERS if f"${name}" in text or f"${{{name}}}" in text]


# ---- the demo agent, run for real in a git repository ----------------------------

def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    repo = tmp_path / "ws"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "task/fix-login")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
        "--allow-empty", "-m", "base")
    return repo


def run_demo(cwd: Path, prompt: str, *flags: str, attempt: str = "1"):
    env = {**os.environ, "FLEET_ATTEMPT": attempt,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "controller.demo_agent", *flags],
                          cwd=cwd, input=prompt.encode(), capture_output=True, env=env,
                          timeout=60)
    return proc, parse("claude-json", proc.stdout, proc.returncode)


def test_demo_agent_commits_a_note_and_reports_like_claude(workspace):
    proc, result = run_demo(workspace, first_attempt())
    assert proc.returncode == 0, proc.stderr
    assert result.outcome == "success" and "Fix the login redirect" in result.summary
    assert (workspace / "NOTES.md").read_text() == "# Notes\n\n- Fix the login redirect\n"
    assert git(workspace, "log", "-1", "--format=%an %s").strip() == \
        "demo-agent demo-agent: noted Fix the login redirect"
    assert git(workspace, "status", "--porcelain") == ""
    assert json.loads(proc.stdout)["num_turns"] == 1


def test_demo_agent_revision_appends_the_newest_feedback(workspace):
    run_demo(workspace, first_attempt())
    proc, result = run_demo(workspace, revision())
    assert result.outcome == "success"
    lines = (workspace / "NOTES.md").read_text().splitlines()
    assert lines[-1] == ("- Fix the login redirect: revised after feedback: "
                         "Reject open redirects: only same-origin paths.")
    assert git(workspace, "rev-list", "--count", "HEAD").strip() == "3"


def test_demo_agent_session_id_is_derived_from_the_prompt(workspace):
    _, one = run_demo(workspace, first_attempt())
    _, two = run_demo(workspace, first_attempt())
    _, other = run_demo(workspace, retry())
    assert one.session_id == two.session_id != other.session_id


@pytest.mark.parametrize("flags, attempt, outcome", [
    (["--fail-first"], "1", "failure"),
    (["--fail-first"], "2", "success"),
    (["--fail-always"], "2", "failure"),
])
def test_demo_agent_failure_modes(workspace, flags, attempt, outcome):
    proc, result = run_demo(workspace, first_attempt(), *flags, attempt=attempt)
    assert result.outcome == outcome
    assert proc.returncode == (0 if outcome == "success" else 1)
    if flags == ["--fail-first"] and attempt == "1":
        assert "demo failure on the first attempt" in result.summary
        assert not (workspace / "NOTES.md").exists()


def test_demo_agent_outside_a_git_repo_fails_honestly(tmp_path):
    proc, result = run_demo(tmp_path, first_attempt())
    assert proc.returncode == 1 and result.outcome == "failure"
    assert "could not commit" in result.summary


def test_demo_agent_extractors():
    assert demo_agent.extract_title(revision()) == "Fix the login redirect"
    assert demo_agent.extract_feedback(first_attempt()) == []
    assert demo_agent.extract_feedback(revision()) == [
        "Please add a test for an external ?next= URL.",
        "Reject open redirects: only same-origin paths."]
    assert demo_agent.extract_title("\n\nplain text prompt\n") == "plain text prompt"


@pytest.mark.parametrize("template, written", [
    ("Do {goal} now", "{goal}"), ("Do {{ goal }} now", "{{ goal }}"), ("On {branch}", "{branch}"),
])
def test_agent_command_spelling_in_a_template_is_refused_with_the_right_one(template, written):
    with pytest.raises(ValueError) as err:
        check_template(template)
    name = written.strip("{} ")
    assert f"use ${name}, not {written}" in str(err.value)


@pytest.mark.parametrize("template", ['Reply as {"summary": "..."}', "Do ${goal} {now}",
                                      "Literal $${goal}"])
def test_braces_that_are_no_placeholder_stay_text(template):
    check_template(template)


def test_schema_documents_every_template_placeholder():
    described = json.loads((ROOT / "controller" / "schemas" / "fleet.schema.json")
                           .read_text())["properties"]["prompt_template"]["description"]
    assert all(f"${name}" in described for name in PLACEHOLDERS)
    assert "{name}" in described      # and which spelling is not theirs
