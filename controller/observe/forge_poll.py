"""One task's PR as the forge's API shows it now, in the words of the webhooks.

Called by engine.prs in a worker thread, at start-up and every
`forge.poll_interval` for each review_pending or revising task with a `pr`:
it makes certain of what webhooks may have missed (a delivery lost, the
controller down). A merged PR is PR_MERGED, a closed one PR_CLOSED; each
change request and approval not dismissed nor stale is a review fact, its id
the one its webhook gives (GitHub's review id; for Forgejo and Gitea the
digest of events.review_digest), so a review seen both ways counts once.
`write_access` is the forge's `official` flag (Forgejo, Gitea); GitHub's
author_association travels as `association`. Blocking; raises ForgeError.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from controller.events import ReviewKind, cap_text, review_digest
from controller.forge import Forge, ForgeReview, PRState, RepoRef, ReviewState
from controller.model import ForgeChange, ForgeFact, PullRequest, ReviewNote

_KINDS = {ReviewState.CHANGES_REQUESTED: (ForgeChange.CHANGES_REQUESTED,
                                          ReviewKind.CHANGES_REQUESTED),
          ReviewState.APPROVED: (ForgeChange.APPROVED, ReviewKind.APPROVED)}


def poll_pr(forge: Forge, repo: RepoRef, pr: PullRequest, now: datetime,
            counted: Callable[[], None]) -> list[ForgeFact]:
    """The facts about `pr` now; `counted` is called after each successful forge call."""
    status = forge.pr_status(repo, pr.number)
    counted()
    if status.merged:
        return [ForgeFact(ForgeChange.PR_MERGED, now, pr=pr)]
    if status.state == PRState.CLOSED:
        return [ForgeFact(ForgeChange.PR_CLOSED, now, pr=pr)]
    reviews = forge.reviews(repo, pr.number)
    counted()
    return [f for f in (_review(forge, r, pr, now) for r in reviews) if f is not None]


def _review(forge: Forge, r: ForgeReview, pr: PullRequest, now: datetime) -> ForgeFact | None:
    kinds = _KINDS.get(r.state)
    if kinds is None or r.stale:
        return None
    change, kind = kinds
    text = cap_text(r.body)
    if forge.kind == "github":
        note = ReviewNote(str(r.id), r.author, r.html_url, text)
        return ForgeFact(change, now, pr=pr, review=note, association=r.association or None)
    note = ReviewNote(review_digest(pr.number, r.author, kind, text), r.author, r.html_url, text)
    return ForgeFact(change, now, pr=pr, review=note, write_access=r.official)
