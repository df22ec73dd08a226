"""PRs end to end: a real `fleet run` with `forge:` against the scripted forge over sockets.

The controller opens each reviewed task's PR itself (once, also across a SIGKILL
right after the create), waits out a forge that answers 500, comments each
revision, and reads PR states and reviews from the API at start-up and every
forge.poll_interval, so a review or a merge made while it was down, or with no
webhook at all, still moves the task. The token appears in no status file,
commit message or log line.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.fleetkit import World, git, wait_for
from tests.test_webhooks_e2e import NAME, OWNER, setup, state_of, until_state  # noqa: F401

def forge_config(forge, retry: str = "1s") -> str:
    api = f"  api_url: {forge.api_url}\n" if forge.flavour == "github" else ""
    return (f"forge:\n  type: {forge.flavour}\n  url: {forge.url}\n{api}"
            f"  token_env: FLEET_TEST_FORGE_TOKEN\n"
            f"  poll_interval: 1s\n  retry_min: {retry}\n  retry_max: 2s\n")


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    monkeypatch.setenv("FLEET_TEST_FORGE_TOKEN", "s3cret-token")


def create_call(forge) -> str:
    return f"POST {forge.spec.base_path}/repos/{OWNER}/{NAME}/pulls"


def creates(forge) -> int:
    return sum(1 for r in list(forge.requests) if r.split("?")[0] == create_call(forge))


def pr_of(w: World, task_id: str) -> dict:
    return (w.status(task_id) or {}).get("pr") or {}


def start(w: World, url: str, controller, forge, task_id: str = "fix"):
    w.task(task_id, repo=url, title="Fix the thing")
    w.push(f"add {task_id}")
    return controller(extra=forge_config(forge)).start()


def assert_no_token(w: World, forge, c) -> None:
    """Not in a status file or commit message, the controller's log, its state dir or a run's."""
    history = git("-C", w.fleet, "log", "-p", "--all")
    assert forge.token not in history
    assert forge.token not in "".join(c.lines)
    secret = forge.token.encode()
    files = [*(c.config.parent / "state").rglob("*"), *w.workdir.rglob("*")]   # runs' logs too
    leaks = [p for p in files if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]
    assert not leaks


def test_the_pr_is_opened_once_also_across_a_sigkill_right_after_the_create(setup):
    w, forge, url, controller = setup
    c = controller(extra=forge_config(forge))

    def kill_after_create(method: str, path: str) -> None:
        if f"{method} {path}" == create_call(forge) and c.proc is not None:
            proc = c.proc
            threading.Timer(0.05, lambda: proc.send_signal(signal.SIGKILL)).start()
    forge.before = kill_after_create
    w.task("fix", repo=url, title="Fix the thing")
    w.push("add fix")
    c.start()
    wait_for(lambda: creates(forge) == 1, timeout=60)
    c.proc.wait(20)
    forge.before = None
    (pull,) = forge.pulls(OWNER, NAME)
    assert pull.head == "task/fix" and pull.title == "Fix the thing"
    assert "status/fix.yaml" in pull.body
    c.start()                                   # the same state dir: a restart
    wait_for(lambda: pr_of(w, "fix").get("number") == pull.number, timeout=60)
    time.sleep(2)                               # a few passes and polls
    assert creates(forge) == 1 and len(forge.pulls(OWNER, NAME)) == 1
    assert state_of(w, "fix") == "review_pending"
    assert_no_token(w, forge, c)


def test_a_forge_that_answers_500_leaves_a_message_then_the_pr_opens(setup):
    w, forge, url, controller = setup
    forge.fail_next(10_000, status=500)
    c = start(w, url, controller, forge)
    wait_for(lambda: "not open yet" in ((w.status("fix") or {}).get("message") or ""), timeout=60)
    st = w.status("fix")
    assert st["state"] == "review_pending" and "pr" not in st and "500" in st["message"]
    with forge.lock:
        forge.failures.clear()
    wait_for(lambda: pr_of(w, "fix").get("number") is not None, timeout=60)
    assert creates(forge) == 1
    assert w.status("fix")["message"].startswith("pull request #")
    assert_no_token(w, forge, c)


@pytest.mark.parametrize("setup", ["forgejo", "gitea", "github"], indirect=True)
def test_a_review_made_while_down_is_polled_revised_and_the_revision_commented_once(setup):
    w, forge, url, controller = setup
    c = start(w, url, controller, forge)
    wait_for(lambda: pr_of(w, "fix").get("number") is not None, timeout=60)
    number = pr_of(w, "fix")["number"]
    c.stop()
    verdict = "CHANGES_REQUESTED" if forge.flavour == "github" else "REQUEST_CHANGES"
    forge.add_review(OWNER, NAME, number, "carol", verdict, "Please rename x.", official=True)
    c.start()
    wait_for(lambda: (w.status("fix") or {}).get("review_count") == 1, timeout=60)
    st = until_state(w, "fix", "review_pending", timeout=60)
    assert [r["author"] for r in st["reviews"]] == ["carol"]
    wait_for(lambda: len(forge.pulls(OWNER, NAME)[0].comments) == 1, timeout=30)
    polled = len(forge.requests)
    # More passes and two more rounds of polls (every 1 s): nothing more.
    wait_for(lambda: sum("/reviews" in r for r in forge.requests[polled:]) >= 2, timeout=30)
    (pull,) = forge.pulls(OWNER, NAME)
    assert len(pull.comments) == 1 and "Revision 1" in pull.comments[0]
    assert w.status("fix")["review_count"] == 1 and creates(forge) == 1
    c.stop()
    polled = len(forge.requests)
    c.start()                                   # a restart comments nothing again
    # Its start-up poll and the next round have run.
    wait_for(lambda: sum("/reviews" in r for r in forge.requests[polled:]) >= 2, timeout=30)
    assert len(forge.pulls(OWNER, NAME)[0].comments) == 1
    assert_no_token(w, forge, c)


@pytest.mark.parametrize("setup", ["forgejo", "github"], indirect=True)
def test_a_merge_on_the_forge_without_any_webhook_completes_by_the_poll(setup):
    w, forge, url, controller = setup
    c = start(w, url, controller, forge)
    wait_for(lambda: pr_of(w, "fix").get("number") is not None, timeout=60)
    forge.merge(OWNER, NAME, pr_of(w, "fix")["number"])
    st = until_state(w, "fix", "completed", timeout=30)
    assert "merged on the forge" in st["message"]
    assert_no_token(w, forge, c)


def test_a_missing_token_is_a_clear_error_at_start_up(setup, monkeypatch, tmp_path):
    w, forge, url, controller = setup
    monkeypatch.delenv("FLEET_TEST_FORGE_TOKEN")
    c = controller(extra=forge_config(forge))
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "controller", "run", "--once", "--repo",
                           str(w.fleet), "--config", str(c.config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "FLEET_TEST_FORGE_TOKEN" in proc.stderr and "token" in proc.stderr
