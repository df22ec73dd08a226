"""Webhooks end to end: a real `fleet run`, real forge bodies over a real socket, git.

The controller runs as a subprocess on a bare fleet repository with a local
host and the demo agent; each task's `repo` is on a scripted forge
(tests/forgeserver.py, which serves the repository over smart HTTP), so the
agent's branch is really pushed there. Tests post the real Forgejo, Gitea and
GitHub bodies of tests/data/fixtures, with the head ref rewritten to the task's
branch and the repository to the forge's, signed with the test secret, and read
the outcome from the status commits in the fleet repository.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from controller.events import Forge
from tests.fleetkit import World, git, wait_for
from tests.forgeserver import ForgeServer
from tests.httpkit import SECRET, fixture, post_webhook, request

OWNER, NAME = "team", "app"
SERVING = re.compile(r"serving (\w+) on http://([\d.]+):(\d+)")


class Controller:
    """`fleet run` as a subprocess; its listen and admin addresses read from its log."""

    def __init__(self, world: World, root: Path, poll: str = "1s", extra: str = "") -> None:
        self.config = root / "controller.yaml"
        self.config.write_text(f"state_dir: {root / 'state'}\npoll_interval: {poll}\n"
                               "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
                               f"webhook_secret: {SECRET}\n{extra}")
        self.world = world
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Controller:
        cmd = [sys.executable, "-m", "controller", "run", "--repo", str(self.world.fleet),
               "--config", str(self.config)]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        env.pop("FLEET_WEBHOOK_SECRET", None)
        self.lines = []
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        wait_for(lambda: "admin_listen" in self.addresses(), timeout=20)
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)

    def addresses(self) -> dict[str, tuple[str, int]]:
        found = (SERVING.search(line) for line in list(self.lines))
        return {m[1]: (m[2], int(m[3])) for m in found if m}

    @property
    def addr(self) -> tuple[str, int]:
        return self.addresses()["listen"]

    def healthy(self) -> bool:
        return request(self.addr, "GET", "/healthz").status == 200

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        self.proc.wait(20)


@pytest.fixture
def setup(tmp_path, request):
    flavour = getattr(request, "param", "forgejo")
    forge = ForgeServer(tmp_path / "forge", flavour)
    url = forge.add_repo(OWNER, NAME)
    seed = tmp_path / "seed"
    git("init", "-q", "--initial-branch=main", seed)
    (seed / "README.md").write_text("# app\n")
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "initial", cwd=seed)
    git("push", "-q", url, "HEAD:refs/heads/main", cwd=seed)
    world = World(tmp_path)
    controllers: list[Controller] = []

    def controller(**kw) -> Controller:
        controllers.append(Controller(world, tmp_path, **kw))
        return controllers[-1]
    yield world, forge, url, controller
    for c in controllers:
        c.stop()
    forge.close()


def body(name: str, task_id: str | None, forge_url: str, **changes) -> dict:
    """A fixture rewritten to be about task_id's PR (if any) on our forge's team/app."""
    doc = fixture(name, head_ref=f"task/{task_id}" if task_id else None)
    _rehome(doc, forge_url)
    for path, value in changes.items():
        node = doc
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return doc


def _rehome(node, forge_url: str) -> None:
    """Every repository object in the body becomes team/app on the forge at forge_url."""
    if isinstance(node, dict):
        if "full_name" in node and ("clone_url" in node or "html_url" in node):
            node.update(full_name=f"{OWNER}/{NAME}", clone_url=f"{forge_url}/{OWNER}/{NAME}.git",
                        html_url=f"{forge_url}/{OWNER}/{NAME}", ssh_url=None)
        for value in node.values():
            _rehome(value, forge_url)
    elif isinstance(node, list):
        for value in node:
            _rehome(value, forge_url)


def pr_number(doc: dict) -> int:
    """The PR's number; older Forgejo bodies carry it only at the top."""
    return doc["pull_request"].get("number") or doc["number"]


def status_commits(w: World, task_id: str) -> int:
    return len(git("-C", w.fleet, "log", "--format=%H", "main", "--",
                   f"status/{task_id}.yaml").split())


def state_of(w: World, task_id: str) -> str | None:
    st = w.status(task_id)
    return st["state"] if st else None


def until_state(w: World, task_id: str, state: str, timeout: float = 30) -> dict:
    wait_for(lambda: state_of(w, task_id) == state, timeout=timeout)
    return w.status(task_id)


def reviewed_task(world: World, url: str, controller, task_id: str = "fix", **kw) -> Controller:
    world.task(task_id, repo=url)
    world.push(f"add {task_id}")
    c = controller(**kw).start()
    until_state(world, task_id, "review_pending")
    return c


def post(c: Controller, forge: Forge, event: str, delivery: str, doc: dict) -> dict:
    reply = post_webhook(c.addr, forge, event, delivery, doc)
    assert reply.status == 200, reply.body
    return reply.body


def prompt_of(w: World, task_id: str) -> str:
    run_id = w.status(task_id)["run_id"]
    return (w.workdir / "runs" / run_id / "prompt").read_text()


def test_forgejo_pr_opened_is_recorded_a_replay_changes_nothing_and_merged_completes(setup):
    w, forge, url, controller = setup
    c = reviewed_task(w, url, controller)
    opened = body("forgejo-webhooks/HookPullRequest.json", "fix", forge.url)
    post(c, Forge.FORGEJO, "pull_request", "fj-1", opened)
    number = pr_number(opened)
    wait_for(lambda: (w.status("fix").get("pr") or {}).get("number") == number)
    st = w.status("fix")
    assert st["state"] == "review_pending" and st["pr"]["url"] == opened["pull_request"]["html_url"]
    before = status_commits(w, "fix")
    assert post(c, Forge.FORGEJO, "pull_request", "fj-1", opened) == {"duplicate": True}
    post(c, Forge.FORGEJO, "pull_request", "fj-1b", opened)       # same PR, new delivery
    time.sleep(1.5)                                                # a few passes
    assert status_commits(w, "fix") == before
    merged = body("forgejo-webhooks/HookPullRequestMerged.json", "fix", forge.url)
    post(c, Forge.FORGEJO, "pull_request", "fj-2", merged)
    st = until_state(w, "fix", "completed")
    assert "merged on the forge" in st["message"]


@pytest.mark.parametrize("setup", ["github"], indirect=True)
def test_github_review_revises_with_its_text_then_closed_fails_and_reopened_returns(setup):
    w, forge, url, controller = setup
    c = reviewed_task(w, url, controller)
    post(c, Forge.GITHUB, "pull_request", "gh-1",
         body("github-webhooks/pull_request.opened.json", "fix", forge.url))
    wait_for(lambda: w.status("fix").get("pr"))
    stranger = body("github-webhooks/pull_request_review.submitted.json", "fix", forge.url,
                    **{"review.state": "changes_requested", "review.body": "Not from me",
                       "review.author_association": "CONTRIBUTOR", "review.id": 1})
    post(c, Forge.GITHUB, "pull_request_review", "gh-2", stranger)
    text = "Please rename the helper to tidy() and add a test."
    review = body("github-webhooks/pull_request_review.submitted.json", "fix", forge.url,
                  **{"review.state": "changes_requested", "review.body": text,
                     "review.author_association": "COLLABORATOR"})
    post(c, Forge.GITHUB, "pull_request_review", "gh-3", review)
    wait_for(lambda: w.status("fix")["review_count"] == 1)
    st = until_state(w, "fix", "review_pending")
    assert [r["text"] for r in st["reviews"]] == [text]
    assert st["reviews"][0]["author"] == "Codertocat" and st["reviews"][0]["id"] == "237895671"
    assert "revising" in [h["to"] for h in st["history"]]
    assert text in prompt_of(w, "fix") and "Not from me" not in prompt_of(w, "fix")
    closed = body("github-webhooks/pull_request.closed.json", "fix", forge.url)
    post(c, Forge.GITHUB, "pull_request", "gh-4", closed)
    st = until_state(w, "fix", "failed")
    assert st["message"].startswith(f"pull request #{pr_number(closed)} closed")
    assert "rerun" in st["message"]
    post(c, Forge.GITHUB, "pull_request", "gh-5",
         body("github-webhooks/pull_request.reopened.json", "fix", forge.url))
    until_state(w, "fix", "review_pending")


@pytest.mark.parametrize("setup", ["gitea"], indirect=True)
def test_gitea_rejection_by_a_listed_reviewer_revises_and_merged_completes(setup):
    w, forge, url, controller = setup
    c = reviewed_task(w, url, controller, extra="reviewers: [a_nice_user]\n")
    post(c, Forge.GITEA, "pull_request_comment", "gt-1",
         body("gitea-webhooks/HookPullRequestReviewComment.json", "fix", forge.url))
    post(c, Forge.GITEA, "pull_request_rejected", "gt-2",
         body("gitea-webhooks/HookPullRequestReviewDeny.json", "fix", forge.url))
    wait_for(lambda: w.status("fix")["review_count"] == 1)
    st = until_state(w, "fix", "review_pending")
    assert "I decided otherwhies :O" in prompt_of(w, "fix")
    assert st["reviews"][0]["id"].startswith("sha256:")
    post(c, Forge.GITEA, "pull_request", "gt-3",
         body("gitea-webhooks/HookPullRequestMerged.json", "fix", forge.url))
    until_state(w, "fix", "completed")


def test_a_delivery_on_record_survives_a_sigkill_before_its_pass(setup):
    """The pass cannot commit (the fleet repo refuses pushes), the controller is SIGKILLed:
    the journaled delivery is applied by the next controller."""
    w, forge, url, controller = setup
    c = reviewed_task(w, url, controller)
    hook = Path(w.fleet) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho refused for the test >&2\nexit 1\n")
    hook.chmod(0o755)
    opened = body("forgejo-webhooks/HookPullRequest.json", "fix", forge.url)
    post(c, Forge.FORGEJO, "pull_request", "fj-k", opened)
    time.sleep(1.0)
    c.stop(kill=True)
    assert "pr" not in w.status("fix")
    journal, = (w.root / "state").glob("repos/*/webhook-journal.jsonl")
    assert '"delivery_id":"fj-k"' in journal.read_text()
    hook.unlink()
    c.start()
    wait_for(lambda: w.status("fix").get("pr"))
    assert w.status("fix")["pr"]["number"] == pr_number(opened)
    wait_for(lambda: journal.read_text() == "")      # applied, then dropped


def test_a_push_to_the_fleet_repo_dispatches_without_waiting_for_the_poll(setup):
    w, forge, url, controller = setup
    c = controller(poll="60s").start()
    wait_for(c.healthy, timeout=20)
    assert request(c.addr, "GET", "/healthz").body["poll_interval_s"] == 60
    admin = c.addresses()["admin_listen"]
    with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/metrics", timeout=10) as scrape:
        assert b"fleet_passes_total" in scrape.read()     # the engine's passes, counted
    w.task("quick", repo=url)
    w.push("add quick")
    push = body("forgejo-webhooks/HookPush.json", None, forge.url, ref="refs/heads/main")
    push["repository"].update(full_name="x/fleet", clone_url=str(w.fleet))
    began = time.monotonic()
    post(c, Forge.FORGEJO, "push", "fj-push", push)
    wait_for(lambda: state_of(w, "quick") in ("assigned", "running", "review_pending"),
             timeout=5, step=0.05)
    assert time.monotonic() - began < 3


def test_a_port_in_use_is_a_clear_error(setup, tmp_path):
    w, forge, url, controller = setup
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "busy.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state2'}\nlisten: 127.0.0.1:{port}\n")
    proc = subprocess.run([sys.executable, "-m", "controller", "run", "--repo", str(w.fleet),
                           "--config", str(config), "--once"], capture_output=True, text=True,
                          timeout=60)
    taken.close()
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} (listen)" in proc.stderr
    assert "Traceback" not in proc.stderr
