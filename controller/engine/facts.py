"""Webhook deliveries -> the planner's ForgeFacts, and which repository a push is for.

Called by engine.inbox.Inbox. An event counts for a task only when its branch
is `task/<id>` of a task that exists and its repository is the task's own
`repo`: the same host (and port, for http(s) clone URLs) as one of the event's
clone/ssh/web URLs, and OWNER/REPO equal to its `full_name`, case-insensitively.
A task whose `repo` is a local path has no forge, so no event counts for it.
Anything else is logged and dropped here; what a fact means is the planner's
decision. No IO but the log.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from controller.events import (PrAction, Push, PullRequestEvent, RepoRef, Review, ReviewKind,
                               WebhookDelivery, review_digest)
from controller.forge.repos import RepoURLError, matches_full_name, parse_repo_url
from controller.model import ForgeChange, ForgeFact, PullRequest, ReviewNote, Task
from controller.plan.forge_events import reviewer_counts

log = logging.getLogger("fleet")
ZEROS = "0" * 40
_WEB = ("http", "https")


def _urls(repo: RepoRef) -> list[str]:
    return [u for u in (repo.clone_url, repo.ssh_url, repo.html_url) if u]


def repo_matches(task_repo: str, event_repo: RepoRef) -> bool:
    """Whether the event's repository is the one `task_repo` (a clone URL) names."""
    try:
        ref = parse_repo_url(task_repo)
    except RepoURLError:
        return False
    if not matches_full_name(ref, event_repo.full_name):
        return False
    for url in _urls(event_repo):
        try:
            other = parse_repo_url(url)
        except RepoURLError:
            continue
        if other.host != ref.host:
            continue
        # An http(s) URL names its port; an SSH clone runs on a port of its own.
        if ref.scheme not in _WEB or (other.scheme in _WEB and other.port == ref.port):
            return True
    return False


def is_fleet_push(delivery: WebhookDelivery, source: str, branch: str) -> bool:
    """A push to `branch` of the fleet repository at `source` (a URL or a local path).

    A URL is matched like a task's repo. A bare repository on this machine has no
    forge identity, so a push counts when one of its URLs is that path (plain or
    file://), or when its full_name is the path's last two parts (OWNER/NAME.git,
    as a forge keeps its repositories on disk)."""
    push = delivery.event
    if not isinstance(push, Push) or push.branch != branch:
        return False
    if "://" in source and not source.startswith("file://") or _scp_like(source):
        return repo_matches(source, push.repo)
    path = Path(source.removeprefix("file://"))
    for url in _urls(push.repo):
        if not url.startswith("/") and not url.startswith("file://"):
            continue
        if Path(url.removeprefix("file://")).resolve() == path.resolve():
            return True
    tail = f"{path.parent.name}/{path.name.removesuffix('.git')}"
    return push.repo.full_name.lower() == tail.lower()


def _scp_like(source: str) -> bool:
    head = source.split("/", 1)[0]
    return ":" in head and not source.startswith("/")


def facts_for(deliveries: Iterable[WebhookDelivery], tasks: Mapping[str, Task],
              reviewers: frozenset[str] | None) -> dict[str, tuple[ForgeFact, ...]]:
    """The facts of `deliveries` by task id, oldest first; the rest is logged."""
    out: dict[str, list[ForgeFact]] = {}
    for d in deliveries:
        event = d.event
        task_id = event.task_id
        if task_id is None:
            continue                    # a push to another branch: nothing for a task
        task = tasks.get(task_id)
        if task is None:
            log.info("webhook %s (%s): no task %s; nothing to do", d.delivery_id, d.event_name,
                     task_id)
            continue
        if not repo_matches(task.repo, event.repo):
            log.info("webhook %s (%s): %s is not the repo of task %s; ignored", d.delivery_id,
                     d.event_name, event.repo.full_name, task_id)
            continue
        fact = _fact(d)
        if fact is None:
            continue
        if fact.review is not None:
            counts, why = reviewer_counts(fact, reviewers)
            if not counts:
                log.info("webhook %s: review of task %s by %s does not count: %s",
                         d.delivery_id, task_id, fact.review.author, why)
        out.setdefault(task_id, []).append(fact)
    return {t: tuple(f) for t, f in out.items()}


def _fact(d: WebhookDelivery) -> ForgeFact | None:
    event, at = d.event, d.received_at
    if isinstance(event, Push):
        return None if event.after == ZEROS else ForgeFact(ForgeChange.BRANCH_PUSHED, at)
    if isinstance(event, PullRequestEvent):
        pr = PullRequest(event.number, event.html_url)
        change = {PrAction.OPENED: ForgeChange.PR_OPENED,
                  PrAction.SYNCHRONIZED: ForgeChange.PR_OPENED,
                  PrAction.REOPENED: ForgeChange.PR_REOPENED}.get(event.action)
        if change is None:
            change = ForgeChange.PR_MERGED if event.merged else ForgeChange.PR_CLOSED
        return ForgeFact(change, at, pr=pr)
    return _review_fact(event, d)


def _review_fact(event: Review, d: WebhookDelivery) -> ForgeFact | None:
    change = {ReviewKind.CHANGES_REQUESTED: ForgeChange.CHANGES_REQUESTED,
              ReviewKind.APPROVED: ForgeChange.APPROVED}.get(event.kind)
    if change is None:
        log.info("webhook %s: a comment on task %s's PR; nothing to do", d.delivery_id,
                 event.task_id)
        return None
    note = ReviewNote(review_id(event), event.reviewer, event.html_url, event.body)
    return ForgeFact(change, d.received_at, pr=PullRequest(event.pr_number, event.pr_url),
                     review=note, association=event.author_association)


def review_id(event: Review) -> str:
    """The forge's review id, or (Forgejo, Gitea send none) a digest of what identifies it."""
    if event.review_id is not None:
        return str(event.review_id)
    return review_digest(event.pr_number, event.reviewer, event.kind, event.body)
