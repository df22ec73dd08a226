"""The Status fields a planner decision may change along with a transition.

Shared by planner._Pass.move/update and the forge decisions (forge_events), so
mypy checks every keyword at every call. Pure: the vocabulary only.
"""
from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from controller.model import PullRequest, Result, ReviewNote, Transition


class Changes(TypedDict, total=False):
    """The Status fields a transition may change along with the state, message,
    history and last_activity_at that `_Pass.move` sets itself."""
    attempt: int
    review_count: int
    host: str | None
    run_id: str | None
    spec_commit: str | None
    started_at: datetime | None
    finished_at: datetime | None
    retry_at: datetime | None
    result: Result | None
    runs: int
    feedback_seen: int
    feedback_last: str | None
    rerun_seen: str | None
    pr: PullRequest | None
    reviews: tuple[ReviewNote, ...]
    pr_comments: int


class Updates(Changes, total=False):
    """What `_Pass.update` (a change without a transition) may also set."""
    history: tuple[Transition, ...]
    last_activity_at: datetime | None
