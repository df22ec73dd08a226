"""The vocabulary of the engine's forge calls: the planner's OpenPR and CommentPR
actions, and PrCalls, the state of one task's calls it is shown.

A leaf under controller.model (which re-exports every name here), so that the
model stays one readable page. Frozen dataclasses; imports nothing of ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PrCalls:
    """The engine's calls to the forge for one task: one going on, or the failures in a row."""
    busy: bool = False
    failures: int = 0
    failed_at: datetime | None = None
    error: str = ""                # the forge's words (never the token)
    retry_at: datetime | None = None   # no new call before (the engine's backoff)


@dataclass(frozen=True, slots=True)
class OpenPR:
    """Open (or find, when one is open) the PR of `task`'s branch on the forge."""
    task: str
    repo: str                      # the task's clone URL, on the configured forge
    head: str
    base: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class CommentPR:
    """Say on PR `number` what revision `revision` of the task changed."""
    task: str
    repo: str
    number: int
    revision: int
    body: str
