"""The planner's decisions on what the forge reported: PRs, merges, reviews, pushes.

Called by planner._Pass for each task with ForgeFacts in Observed.forge, oldest
first, before the task's state handler runs, so that a fact and a run's own
result are decided by one pure function and never race. Every decision is
idempotent: the engine re-applies a journal entry after a crash between its
status commit and the journal's truncation, so a PR already recorded, a review
id already in `reviews` or an approval already in the history changes nothing,
and a PR merged or closed leaves a finished task alone. Pure, no IO.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol, Unpack

from controller.model import (HISTORY_LIMIT, TERMINAL, ForgeChange, ForgeFact, PullRequest, State,
                              Status, Task, Transition)
from controller.plan.changes import Changes, Updates
from controller.plan.wording import lead_line, rerun_hint

WRITE_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


class Moves(Protocol):
    """What planner._Pass lends these decisions: its clock and its ways to change a status."""
    now: datetime

    def move(self, st: Status, to: State, reason: str, **changes: Unpack[Changes]) -> Status: ...
    def update(self, st: Status, reason: str, **changes: Unpack[Updates]) -> Status: ...
    def stop(self, st: Status, reason: str) -> None: ...
    def note(self, st: Status, message: str) -> Status: ...


def closed_prefix(number: int) -> str:
    """How a failure by a closed PR begins: a reopened PR recognises it by this."""
    return f"pull request #{number} closed without merging"


def reviewer_counts(fact: ForgeFact, reviewers: frozenset[str] | None) -> tuple[bool, str]:
    """Whether the review's author may ask for changes here, and why (for the log).

    The config's `reviewers` list, when set, decides alone. Without it, GitHub's
    author_association says whether the reviewer has write access; Forgejo and
    Gitea send none, so only the forge API's answer (`write_access`) can."""
    author = fact.review.author if fact.review else "?"
    if reviewers is not None:
        ok = author.lower() in reviewers
        return ok, f"{author} is {'' if ok else 'not '}in `reviewers:` of the controller config"
    if fact.association is not None:
        ok = fact.association.upper() in WRITE_ASSOCIATIONS
        return ok, f"{author} is {fact.association} of the repository"
    if fact.write_access is not None:
        return fact.write_access, (f"{author} {'has' if fact.write_access else 'has no'} "
                                   "write access to the repository")
    return False, (f"cannot tell whether {author} has write access (the webhook does not say): "
                   "list whose reviews count in `reviewers:` of the controller config")


def react(moves: Moves, st: Status, task: Task, facts: tuple[ForgeFact, ...],
          reviewers: frozenset[str] | None) -> Status:
    """`st` after the forge's facts about `task`, applied in order."""
    for fact in facts:
        st = _one(moves, st, task, fact, reviewers)
    return st


def _one(moves: Moves, st: Status, task: Task, fact: ForgeFact,
         reviewers: frozenset[str] | None) -> Status:
    pr = fact.pr
    if fact.change == ForgeChange.PR_REOPENED and pr is not None and _closed_by(st, pr):
        return moves.move(st, State.REVIEW_PENDING,
                          f"pull request #{pr.number} reopened: review it on the forge ({pr.url})",
                          pr=pr, finished_at=None)
    if st.state in TERMINAL:
        return st                       # finished: only a person's rerun starts it again
    if fact.change == ForgeChange.BRANCH_PUSHED:
        if st.last_activity_at is not None and st.last_activity_at >= fact.at:
            return st
        return moves.update(st, f"push to {task.branch} seen on the forge",
                            last_activity_at=fact.at)
    if pr is None:
        return st
    if fact.change in (ForgeChange.PR_OPENED, ForgeChange.PR_REOPENED):
        return _opened(moves, st, pr)
    if fact.change == ForgeChange.COMMENTED:
        return _commented(moves, st, fact.revision)
    if fact.change == ForgeChange.PR_MERGED:
        moves.stop(st, "its pull request was merged")
        return moves.move(st, State.COMPLETED, f"pull request #{pr.number} merged on the forge "
                          f"({pr.url})", pr=pr, finished_at=moves.now)
    if fact.change == ForgeChange.PR_CLOSED:
        if st.pr is not None and st.pr.number != pr.number:
            return st                   # another PR of the branch: not the task's
        moves.stop(st, "its pull request was closed")
        return moves.move(st, State.FAILED, f"{closed_prefix(pr.number)} ({pr.url}); reopen it "
                          "to review the work again" + rerun_hint(task), pr=pr,
                          finished_at=moves.now)
    if fact.review is None or not reviewer_counts(fact, reviewers)[0]:
        return st                       # logged by the engine; changes nothing
    if fact.change == ForgeChange.APPROVED:
        return _approved(moves, st, fact)
    return _changes_requested(moves, st, task, fact)


def _opened(moves: Moves, st: Status, pr: PullRequest) -> Status:
    """Record the PR; its description covers every revision so far, so none is commented."""
    if st.pr == pr:
        return st
    st = moves.update(st, f"pull request #{pr.number} recorded ({pr.url})", pr=pr,
                      pr_comments=max(st.pr_comments, st.review_count))
    if st.state == State.REVIEW_PENDING:
        st = moves.note(st, f"pull request #{pr.number} open: review it on the forge ({pr.url})")
    return st


def _commented(moves: Moves, st: Status, revision: int) -> Status:
    if st.pr is None or st.pr_comments >= revision:
        return st
    pr = st.pr
    st = moves.update(st, f"revision {revision} commented on pull request #{pr.number}",
                      pr_comments=revision)
    if st.state == State.REVIEW_PENDING:
        st = moves.note(st, f"revision {revision} commented on pull request #{pr.number}: "
                        f"review it on the forge ({pr.url})")
    return st


def _closed_by(st: Status, pr: PullRequest) -> bool:
    """Failed because this PR was closed unmerged (and nothing happened since)."""
    return (st.state == State.FAILED and bool(st.history)
            and st.history[-1].to == State.FAILED
            and st.history[-1].reason.startswith(closed_prefix(pr.number)))


def _approved(moves: Moves, st: Status, fact: ForgeFact) -> Status:
    assert fact.review is not None and fact.pr is not None
    reason = f"pull request #{fact.pr.number} approved by {fact.review.author}"
    if any(t.reason == reason for t in st.history):
        return st
    line = Transition(moves.now, st.state, st.state, reason)
    return moves.update(st, reason, history=(st.history + (line,))[-HISTORY_LIMIT:])


def _changes_requested(moves: Moves, st: Status, task: Task, fact: ForgeFact) -> Status:
    review = fact.review
    assert review is not None and fact.pr is not None
    if any(r.id == review.id for r in st.reviews):
        return st
    reviews = st.reviews + (review,)
    who = f"changes requested by {review.author} on pull request #{fact.pr.number}"
    if st.state != State.REVIEW_PENDING:
        # A run is on its way (or queued): the review goes into the next revision's prompt.
        return moves.update(st, f"{who}; kept for the next revision", reviews=reviews)
    if st.review_count >= task.max_reviews:
        return moves.move(st, State.FAILED, f"{who} but the review limit is reached "
                          f"({st.review_count} of max_reviews {task.max_reviews})"
                          + rerun_hint(task), reviews=reviews, finished_at=moves.now)
    text = lead_line(review.text)[:120]
    return moves.move(st, State.REVISING, f"{who}" + (f": {text}" if text else ""),
                      reviews=reviews, review_count=st.review_count + 1, attempt=0)


def review_feedback(st: Status) -> tuple[str, ...]:
    """The forge's change requests as feedback entries for a revision's prompt."""
    return tuple(f"{r.text.strip() or '(no text)'}\n(review by {r.author} on the forge: {r.url})"
                 for r in st.reviews)
