"""The planner's decisions on a reviewed task's PR: open it once, comment each revision.

Called by planner._Pass._review for a task in review_pending that no feedback
moved on. A task whose `repo` is on the configured forge (Observed.forge_url)
and allowed by `allowed_repos` gets an OpenPR while it has no `pr`, and a
CommentPR with the revision's summary when a revision ended (review_count
above `pr_comments`). The engine's answers come back as ForgeFacts (PR_OPENED,
COMMENTED); its failures as Observed.pr_calls, whose retry_at the engine sets
by pr_backoff: 30 s .. 10 min by default, doubling. Pure, no IO.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from controller.forge.repos import on_forge
from controller.model import (Action, CommentPR, Desired, Observed, OpenPR, PrCalls, Status,
                              Task)
from controller.repos import allowed

PR_BACKOFF_BASE = 30.0
PR_BACKOFF_MAX = 600.0
NOT_OPEN = "pull request not open yet"
BODY_MAX = 60_000       # the forges take 65535 characters


class Notes(Protocol):
    def note(self, st: Status, message: str) -> Status: ...


def pr_backoff(failures: int, base: float = PR_BACKOFF_BASE, cap: float = PR_BACKOFF_MAX) -> float:
    """Seconds before the next forge call after `failures` failed ones in a row
    (the engine's, with the config's forge.retry_min and retry_max)."""
    return min(base * (1 << max(failures - 1, 0)), cap)


def pr_actions(notes: Notes, st: Status, task: Task, desired: Desired, observed: Observed,
               now: datetime) -> list[Action]:
    """What the forge should be asked for the reviewed task `task` (status `st`) now."""
    if observed.forge_url is None or on_forge(task.repo, observed.forge_url) is None:
        return []
    if not allowed(task.repo, desired.allowed_repos):
        return []       # the task is blocked for it elsewhere; no PR on a repo not allowed
    action: OpenPR | CommentPR
    if st.pr is None:
        action = OpenPR(task.id, task.repo, task.branch, task.base, task.title, _body(st, task))
    elif st.review_count > st.pr_comments:
        action = CommentPR(task.id, task.repo, st.pr.number, st.review_count, _comment(st))
    else:
        return []
    calls = observed.pr_calls.get(task.id, PrCalls())
    if calls.busy:
        return []
    if calls.retry_at is not None and now < calls.retry_at:
        what = NOT_OPEN if st.pr is None else f"revision {st.review_count} not commented yet"
        at = f"{calls.retry_at:%Y-%m-%d %H:%M:%S}Z"
        notes.note(st, f"{what} ({calls.error}); trying again at {at}")
        return []
    return [action]


def _summary(st: Status) -> str:
    return (st.result.summary.strip() if st.result else "") or "(the agent gave no summary)"


def _body(st: Status, task: Task) -> str:
    text = (f"{_summary(st)}\n\n## Goal\n\n{task.goal.strip()}\n\n"
            f"---\nOpened by fleet for task `{task.id}`; its status is `status/{task.id}.yaml` "
            "in the fleet repository.")
    return text[:BODY_MAX]


def _comment(st: Status) -> str:
    return (f"Revision {st.review_count} pushed to this branch by fleet:\n\n"
            f"{_summary(st)}")[:BODY_MAX]
