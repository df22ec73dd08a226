"""Forgejo and Gitea webhook bodies -> events (Forgejo is a fork of Gitea and sends the same).

Called by webhooks.py with the `X-Forgejo-Event` / `X-Gitea-Event` header and the
decoded body. A review arrives under its own event name (`pull_request_rejected`,
`pull_request_approved`, `pull_request_comment`; the `-Event-Type` spellings with
`_review_` are accepted too) with `review.type` and `review.content`; its author
is the sender. Returns Ignored for anything that changes no task; raises only
BadPayload.
"""
from __future__ import annotations

from controller.events import (Forge, Ignored, Ping, PrAction, PullRequestEvent,
                               Review, ReviewKind, WebhookEvent, cap_text)
from controller.http.parse_common import pr_basics, push, repo_ref
from controller.http.payload import Doc, shown, flag, opt_object, opt_text, text

PR_ACTIONS = {
    "opened": PrAction.OPENED,
    "reopened": PrAction.REOPENED,
    "synchronized": PrAction.SYNCHRONIZED,
    "synchronize": PrAction.SYNCHRONIZED,
    "closed": PrAction.CLOSED,
}
PR_EVENTS = frozenset({"pull_request", "pull_request_sync"})
REVIEW_EVENTS = {
    "pull_request_rejected": ReviewKind.CHANGES_REQUESTED,
    "pull_request_review_rejected": ReviewKind.CHANGES_REQUESTED,
    "pull_request_approved": ReviewKind.APPROVED,
    "pull_request_review_approved": ReviewKind.APPROVED,
    "pull_request_comment": ReviewKind.COMMENTED,
    "pull_request_review_comment": ReviewKind.COMMENTED,
}


def parse(forge: Forge, event: str, doc: Doc) -> WebhookEvent:
    """The event a Forgejo or Gitea delivery describes."""
    if event == "push":
        return push(event, doc)
    if event in PR_EVENTS:
        return _pull_request(forge, event, doc)
    if event in REVIEW_EVENTS:
        return _review(forge, event, doc)
    if event == "ping":
        return Ping(repo_ref(doc) if opt_object(doc, "repository") else None)
    return Ignored(event, f"{shown(event)} events change no task")


def _pull_request(forge: Forge, event: str, doc: Doc) -> WebhookEvent:
    action_name = text(doc, "action")
    action = PR_ACTIONS.get(action_name)
    if action is None:
        return Ignored(event, f"pull_request action {shown(action_name)} changes no task")
    basics = pr_basics(forge, event, doc)
    if isinstance(basics, Ignored):
        return basics
    merged = flag(doc, "pull_request.merged")
    return PullRequestEvent(
        repo=basics.repo, action=action, merged=merged, number=basics.number,
        html_url=basics.html_url, task_id=basics.task_id, head_ref=basics.head_ref,
        head_repo=basics.head_repo, base_repo=basics.base_repo, base_ref=basics.base_ref,
        merge_commit_sha=opt_text(doc, "pull_request.merge_commit_sha") if merged else None)


def _review(forge: Forge, event: str, doc: Doc) -> WebhookEvent:
    review = opt_object(doc, "review")
    if review is None:              # pull_request_comment is also a plain comment on the PR
        return Ignored(event, "a comment, not a review")
    kind_name = opt_text(doc, "review.type")
    kind = REVIEW_EVENTS.get(kind_name or "", REVIEW_EVENTS[event])
    basics = pr_basics(forge, event, doc)
    if isinstance(basics, Ignored):
        return basics
    return Review(
        repo=basics.repo, kind=kind, pr_number=basics.number, pr_url=basics.html_url,
        task_id=basics.task_id, reviewer=text(doc, "sender.login"),
        html_url=basics.html_url, body=cap_text(opt_text(doc, "review.content") or ""))
