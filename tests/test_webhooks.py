"""Webhooks over a real socket: the real Forgejo, Gitea and GitHub bodies, re-signed.

Each test serves make_app() with waitress on 127.0.0.1 and posts with
http.client, then looks at what reached the Sink (a real journal in tmp_path).
"""
from __future__ import annotations

import threading
from itertools import count

import pytest

from controller.events import (Forge, Ignored, PrAction, PullRequestEvent, Push, Review,
                               ReviewKind, REVIEW_TEXT_MAX)
from tests.httpkit import JournalSink, deps, fixture, post_webhook, request, served

FJ, GT, GH = Forge.FORGEJO, Forge.GITEA, Forge.GITHUB
BRANCH = "task/fix-login"
ids = count(1)


def delivery() -> str:
    return f"d-{next(ids)}"


PR_CASES = [
    (FJ, "forgejo-webhooks/HookPullRequest.json", "pull_request", PrAction.OPENED, False, 1),
    (FJ, "forgejo-webhooks/HookPullRequestUpdated.json", "pull_request", PrAction.SYNCHRONIZED, False, 2),
    (FJ, "forgejo-webhooks/HookPullRequestReopened.json", "pull_request", PrAction.REOPENED, False, 1),
    (FJ, "forgejo-webhooks/HookPullRequestClosed.json", "pull_request", PrAction.CLOSED, False, 1),
    (FJ, "forgejo-webhooks/HookPullRequestMerged.json", "pull_request", PrAction.CLOSED, True, 1),
    (GT, "gitea-webhooks/HookPullRequestMerged.json", "pull_request", PrAction.CLOSED, True, 1),
    (GT, "gitea-webhooks/HookPullRequestUpdated.json", "pull_request", PrAction.SYNCHRONIZED, False, 2),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request", PrAction.OPENED, False, 2),
    (GH, "github-webhooks/pull_request.synchronize.json", "pull_request", PrAction.SYNCHRONIZED, False, 2),
    (GH, "github-webhooks/pull_request.reopened.json", "pull_request", PrAction.REOPENED, False, 2),
    (GH, "github-webhooks/pull_request.closed.json", "pull_request", PrAction.CLOSED, False, 2),
]


@pytest.mark.parametrize("forge,name,event,action,merged,number", PR_CASES,
                         ids=[c[1].split("/")[1] + "-" + c[0].value for c in PR_CASES])
def test_real_pull_request_bodies_reach_the_sink(tmp_path, forge, name, event, action, merged, number):
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        reply = post_webhook(addr, forge, event, delivery(), fixture(name, BRANCH))
    assert (reply.status, reply.body) == (200, {"accepted": True, "task": "fix-login"})
    [got] = app_deps.sink.events()
    assert isinstance(got, PullRequestEvent)
    assert (got.action, got.merged, got.number, got.task_id) == (action, merged, number, "fix-login")
    assert got.head_ref == BRANCH and got.head_repo == got.base_repo == got.repo.full_name
    assert got.html_url.startswith("http") and got.base_ref in ("main", "master")
    assert (got.merge_commit_sha is not None) == merged
    assert (tmp_path / "journal.jsonl").read_text().count("\n") == 1


def test_a_github_merge_carries_its_merge_commit(tmp_path):
    doc = fixture("github-webhooks/pull_request.closed.json", BRANCH)
    doc["pull_request"]["merged"] = True
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        assert post_webhook(addr, GH, "pull_request", delivery(), doc).status == 200
    [got] = app_deps.sink.events()
    assert got.merged and got.merge_commit_sha == "c4295bd74fb0f4fda03689c3df3f2803b658fd85"


REVIEW_CASES = [
    (GT, "gitea-webhooks/HookPullRequestReviewDeny.json", "pull_request_rejected",
     ReviewKind.CHANGES_REQUESTED, "I decided otherwhies :O", "a_nice_user"),
    (GT, "gitea-webhooks/HookPullRequestReviewAck.json", "pull_request_approved",
     ReviewKind.APPROVED, "juhu thats a great idea", "a_nice_user"),
    (GT, "gitea-webhooks/HookPullRequestReviewComment.json", "pull_request_comment",
     ReviewKind.COMMENTED, "and somethimes you have to comment", "a_nice_user"),
    (FJ, "gitea-webhooks/HookPullRequestReviewDeny.json", "pull_request_review_rejected",
     ReviewKind.CHANGES_REQUESTED, "I decided otherwhies :O", "a_nice_user"),
    (GH, "github-webhooks/pull_request_review.submitted.json", "pull_request_review",
     ReviewKind.COMMENTED, "", "Codertocat"),
]


@pytest.mark.parametrize("forge,name,event,kind,text,reviewer", REVIEW_CASES,
                         ids=[c[2] + "-" + c[0].value for c in REVIEW_CASES])
def test_real_review_bodies_reach_the_sink(tmp_path, forge, name, event, kind, text, reviewer):
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        reply = post_webhook(addr, forge, event, delivery(), fixture(name, BRANCH))
    assert reply.status == 200, reply.body
    [got] = app_deps.sink.events()
    assert isinstance(got, Review)
    assert (got.kind, got.body, got.reviewer, got.task_id) == (kind, text, reviewer, "fix-login")
    if forge is GH:
        assert (got.author_association, got.review_id) == ("OWNER", 237895671)
        assert got.html_url.endswith("#pullrequestreview-237895671")
    else:
        assert got.author_association is None and got.review_id is None


def test_github_changes_requested_and_a_long_review_is_capped(tmp_path):
    doc = fixture("github-webhooks/pull_request_review.submitted.json", BRANCH)
    doc["review"]["state"] = "changes_requested"
    doc["review"]["body"] = "é" * REVIEW_TEXT_MAX
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        assert post_webhook(addr, GH, "pull_request_review", delivery(), doc).status == 200
    [got] = app_deps.sink.events()
    assert got.kind is ReviewKind.CHANGES_REQUESTED
    assert len(got.body.encode()) <= REVIEW_TEXT_MAX and got.body == "é" * (REVIEW_TEXT_MAX // 2)


@pytest.mark.parametrize("forge,name", [(FJ, "forgejo-webhooks/HookPush.json"),
                                        (FJ, "forgejo-webhooks/HookPushBranch.json"),
                                        (GH, "github-webhooks/push.branch.json")])
def test_pushes_reach_the_sink_with_their_task_branch(tmp_path, forge, name):
    plain, to_task = fixture(name), fixture(name)
    to_task["ref"] = "refs/heads/task/fix-login"
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        assert post_webhook(addr, forge, "push", delivery(), plain).status == 200
        assert post_webhook(addr, forge, "push", delivery(), to_task).status == 200
    first, second = app_deps.sink.events()
    assert isinstance(first, Push) and first.task_id is None and first.after == plain["after"]
    assert first.repo.full_name == plain["repository"]["full_name"]
    assert first.repo.clone_url == plain["repository"]["clone_url"]
    assert second.task_id == "fix-login" and second.branch == BRANCH


@pytest.mark.parametrize("forge,name,event", [
    (FJ, "forgejo-webhooks/HookPullRequest.json", "pull_request"),
    (GT, "gitea-webhooks/HookPullRequestReviewDeny.json", "pull_request_rejected"),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request"),
])
def test_form_bodies_are_read_like_json(tmp_path, forge, name, event):
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        reply = post_webhook(addr, forge, event, delivery(), fixture(name, BRANCH), form=True)
    assert reply.status == 200, reply.body
    assert app_deps.sink.events()[0].task_id == "fix-login"


IGNORED = [
    (GH, "github-webhooks/ping.json", "ping", None),
    (GH, "github-webhooks/push.tag.json", "push", None),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request", "task/../x"),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request", "task/UPPER"),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request", "task/"),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request", "task/a/b"),
    (GH, "github-webhooks/pull_request.opened.json", "pull_request", "changes"),
    (FJ, "forgejo-webhooks/HookPullRequest.json", "pull_request", "task/-x"),
    (GT, "gitea-webhooks/HookPullRequestReviewDeny.json", "pull_request_rejected", "task/Fix"),
    (GH, "github-webhooks/pull_request.opened.json", "issues", BRANCH),
]


@pytest.mark.parametrize("forge,name,event,head", IGNORED,
                         ids=[f"{c[2]}-{c[3]}" for c in IGNORED])
def test_ping_tags_hostile_branches_and_other_events_answer_2xx_and_change_nothing(
        tmp_path, forge, name, event, head):
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        reply = post_webhook(addr, forge, event, delivery(), fixture(name, head))
    assert reply.status == 200 and reply.body["ignored"] is True, reply.body
    assert app_deps.sink.events() == []


@pytest.mark.parametrize("action", ["labeled", "assigned", "converted_to_draft", "edited"])
def test_unhandled_pull_request_actions_are_ignored(tmp_path, action):
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    doc["action"] = action
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        reply = post_webhook(addr, GH, "pull_request", delivery(), doc)
    assert reply.status == 200 and reply.body["ignored"] is True
    assert app_deps.sink.events() == []


def test_a_fork_with_a_task_branch_is_ignored(tmp_path):
    gh = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    gh["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    fj = fixture("forgejo-webhooks/HookPullRequest.json", BRANCH)
    fj["pull_request"]["head"]["label"] = f"mallory:{BRANCH}"     # no head.repo in this body
    gone = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    gone["pull_request"]["head"]["repo"] = None                    # a deleted fork
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        replies = [post_webhook(addr, GH, "pull_request", delivery(), gh),
                   post_webhook(addr, FJ, "pull_request", delivery(), fj),
                   post_webhook(addr, GH, "pull_request", delivery(), gone)]
    assert [r.body.get("ignored") for r in replies] == [True, True, True]
    assert "fork" in replies[0].body["reason"]
    assert app_deps.sink.events() == []


def test_a_replayed_delivery_is_a_duplicate_and_never_reaches_the_sink_again(tmp_path):
    app_deps = deps(tmp_path)
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    with served(app_deps) as addr:
        first = post_webhook(addr, GH, "pull_request", "same-id", doc)
        again = post_webhook(addr, GH, "pull_request", "same-id", doc)
        other_forge = post_webhook(addr, GT, "pull_request", "same-id",
                                   fixture("gitea-webhooks/HookPullRequestMerged.json", BRANCH))
    assert first.body["accepted"] and again.body == {"duplicate": True}
    assert other_forge.body["accepted"]         # ids are per forge family
    assert len(app_deps.sink.events()) == 2
    # a restarted controller (a new app on the same state dir) still knows it
    restarted = deps(tmp_path, sink=JournalSink(tmp_path / "journal2.jsonl"))
    with served(restarted) as addr:
        assert post_webhook(addr, GH, "pull_request", "same-id", doc).body == {"duplicate": True}
    assert restarted.sink.events() == []


def test_a_delivery_the_sink_refused_is_503_and_its_redelivery_is_applied(tmp_path):
    app_deps = deps(tmp_path)
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    app_deps.sink.refuse = TimeoutError("the engine loop did not answer in 10s")
    with served(app_deps) as addr:
        refused = post_webhook(addr, GH, "pull_request", "retry-me", doc)
        app_deps.sink.refuse = None
        redelivered = post_webhook(addr, GH, "pull_request", "retry-me", doc)
    assert refused.status == 503 and "redeliver" in refused.body["error"]
    assert redelivered.status == 200 and redelivered.body["accepted"]
    assert len(app_deps.sink.events()) == 1


def test_concurrent_twins_reach_the_sink_once(tmp_path):
    app_deps = deps(tmp_path)
    sink = app_deps.sink
    sink.hold = threading.Event()
    doc = fixture("github-webhooks/pull_request.opened.json", BRANCH)
    replies = []
    with served(app_deps) as addr:
        def send():
            replies.append(post_webhook(addr, GH, "pull_request", "twin", doc))
        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        assert sink.entered.wait(5)
        sink.hold.set()
        for t in threads:
            t.join(10)
    assert sorted(r.status for r in replies) == [200] * 4
    assert sum(1 for r in replies if r.body.get("accepted")) == 1
    assert sum(1 for r in replies if r.body.get("duplicate")) == 3
    assert len(sink.events()) == 1


def test_an_ignored_kind_is_not_confused_with_an_event(tmp_path):
    """Ignored never reaches the Sink, so the engine's journal only holds observations."""
    app_deps = deps(tmp_path)
    with served(app_deps) as addr:
        post_webhook(addr, GH, "ping", delivery(), fixture("github-webhooks/ping.json"))
    assert not (tmp_path / "journal.jsonl").exists()
    assert not any(isinstance(e, Ignored) for e in app_deps.sink.events())


def test_the_route_table_has_one_webhook_per_forge(tmp_path):
    with served(deps(tmp_path)) as addr:
        for forge in Forge:
            reply = request(addr, "GET", f"/api/v1/webhooks/{forge.value}")
            assert reply.status == 405 and "POST" in reply.body["error"]
