"""GitHub webhook bodies -> events.

Called by webhooks.py with the `X-GitHub-Event` header and the decoded body.
GitHub spells new commits `synchronize`, sends reviews as `pull_request_review`
(action `submitted`, `review.state` lowercase) with the reviewer's
`author_association`, and `ping` once when a hook is made. Returns Ignored for
anything that changes no task; raises only BadPayload.
"""
from __future__ import annotations

from controller.events import (Forge, Ignored, Ping, PrAction, PullRequestEvent,
                               Review, ReviewKind, WebhookEvent, cap_text)
from controller.http.parse_common import pr_basics, push, repo_ref
from controller.http.payload import Doc, shown, flag, opt_integer, opt_object, opt_text, text

PR_ACTIONS = {
    "opened": PrAction.OPENED,
    "reopened": PrAction.REOPENED,
    "synchronize": PrAction.SYNCHRONIZED,
    "closed": PrAction.CLOSED,
}
REVIEW_STATES = {
    "changes_requested": ReviewKind.CHANGES_REQUESTED,
    "approved": ReviewKind.APPROVED,
    "commented": ReviewKind.COMMENTED,
}


def parse(event: str, doc: Doc) -> WebhookEvent:
    """The event a GitHub delivery describes."""
    if event == "push":
        return push(event, doc)
    if event == "pull_request":
        return _pull_request(event, doc)
    if event == "pull_request_review":
        return _review(event, doc)
    if event == "ping":
        return Ping(repo_ref(doc) if opt_object(doc, "repository") else None)
    return Ignored(event, f"{shown(event)} events change no task")


def _pull_request(event: str, doc: Doc) -> WebhookEvent:
    action_name = text(doc, "action")
    action = PR_ACTIONS.get(action_name)
    if action is None:
        return Ignored(event, f"pull_request action {shown(action_name)} changes no task")
    basics = pr_basics(Forge.GITHUB, event, doc)
    if isinstance(basics, Ignored):
        return basics
    merged = flag(doc, "pull_request.merged")
    # GitHub fills merge_commit_sha with a test merge while the PR is open.
    return PullRequestEvent(
        repo=basics.repo, action=action, merged=merged, number=basics.number,
        html_url=basics.html_url, task_id=basics.task_id, head_ref=basics.head_ref,
        head_repo=basics.head_repo, base_repo=basics.base_repo, base_ref=basics.base_ref,
        merge_commit_sha=opt_text(doc, "pull_request.merge_commit_sha") if merged else None)


def _review(event: str, doc: Doc) -> WebhookEvent:
    action = text(doc, "action")
    if action != "submitted":
        return Ignored(event, f"pull_request_review action {shown(action)} changes no task")
    state = text(doc, "review.state")
    kind = REVIEW_STATES.get(state.lower())
    if kind is None:
        return Ignored(event, f"review state {shown(state)} changes no task")
    basics = pr_basics(Forge.GITHUB, event, doc)
    if isinstance(basics, Ignored):
        return basics
    return Review(
        repo=basics.repo, kind=kind, pr_number=basics.number, pr_url=basics.html_url,
        task_id=basics.task_id, reviewer=text(doc, "review.user.login"),
        html_url=opt_text(doc, "review.html_url") or basics.html_url,
        body=cap_text(opt_text(doc, "review.body") or ""),
        author_association=opt_text(doc, "review.author_association"),
        review_id=opt_integer(doc, "review.id"))
