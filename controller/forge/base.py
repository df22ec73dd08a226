"""The forge's vocabulary: the Protocol every forge client meets, its types and its error.

The engine holds one `Forge` (made by `controller.forge.make_forge`) and calls
its methods from worker threads (`asyncio.to_thread`): every method is a plain
blocking call that either returns one of the frozen types below or raises
`ForgeError`, whose `transient` flag says whether retrying later can help.
Nothing here does IO.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from controller.forge.repos import RepoRef


class PRState(enum.Enum):
    """A pull request is open or closed; a merged one is closed with `merged` set."""
    OPEN = "open"
    CLOSED = "closed"


class ReviewState(enum.Enum):
    """A review's verdict, in one spelling for all forges.

    Forgejo/Gitea say REQUEST_CHANGES, COMMENT, REQUEST_REVIEW; GitHub says
    CHANGES_REQUESTED, COMMENTED. A Forgejo/Gitea review flagged `dismissed`
    is DISMISSED whatever its type, as on GitHub.
    """
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    COMMENTED = "COMMENTED"
    PENDING = "PENDING"
    DISMISSED = "DISMISSED"
    REVIEW_REQUESTED = "REVIEW_REQUESTED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ForgePR:
    """An open (or just opened) pull request: enough to record `pr: {number, url}`."""
    number: int
    html_url: str
    head_ref: str
    base_ref: str
    state: PRState


@dataclass(frozen=True)
class PRStatus:
    """What the forge says about one pull request now.

    `merge_commit_sha` is set only when `merged` (an open GitHub PR carries a
    test-merge sha that means nothing to us). `head_ref` is the branch, or
    Forgejo's `refs/pull/<n>/head` once the branch is gone.
    """
    number: int
    state: PRState
    merged: bool
    merge_commit_sha: str | None
    head_ref: str
    head_sha: str
    base_ref: str
    html_url: str


@dataclass(frozen=True)
class ForgeReview:
    """One review of a pull request.

    `official` is what the forge says about the reviewer's standing: Forgejo's
    and Gitea's `official` flag (a reviewer whose approval counts, i.e. with
    write access or on the branch's approvers list), or GitHub's
    `author_association` being OWNER, MEMBER or COLLABORATOR. `association`
    keeps GitHub's raw word ("" on Forgejo/Gitea). `stale` means the review
    was made on an older head commit (Forgejo/Gitea only).
    """
    id: int
    author: str
    state: ReviewState
    body: str
    html_url: str
    official: bool
    association: str = ""
    commit_id: str = ""
    submitted_at: str = ""
    stale: bool = False


class ForgeError(Exception):
    """A forge call that did not succeed.

    `transient` is True when the same call may succeed later (5xx, timeouts,
    refused or dropped connections, rate limits); `retry_after` is the number
    of seconds the forge asked us to wait, when it said. `status` is the HTTP
    code, None when no answer came. The message names the call and the
    forge's own words, never the token.
    """

    def __init__(self, message: str, *, transient: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (f"ForgeError({self.message!r}, transient={self.transient}, "
                f"status={self.status}, retry_after={self.retry_after})")


@runtime_checkable
class Forge(Protocol):
    """Pull requests on one forge. Blocking calls; raise ForgeError on failure.

    `repo` is always a RepoRef of a repository on this forge
    (`controller.forge.repos.on_forge` makes one from a task's `repo`).
    Only PRs whose head branch lives in `repo` itself count: a fork's branch
    of the same name is never "ours".
    """

    @property
    def kind(self) -> str:
        """"forgejo", "gitea" or "github"."""
        ...

    @property
    def web_url(self) -> str:
        """The forge's web address, to decide which task repos are on it."""
        ...

    def find_open_pr(self, repo: RepoRef, head_branch: str, base: str) -> ForgePR | None:
        """The open PR from `head_branch` into `base` of `repo`, or None."""
        ...

    def open_pr(self, repo: RepoRef, head_branch: str, base: str, title: str,
                body: str) -> ForgePR:
        """Open a PR, or return the one already open for that head and base.

        Idempotent: looks first, creates only when none is open, and takes the
        forge's "already exists" answer (Forgejo/Gitea 409, GitHub 422) as "find it".
        """
        ...

    def comment(self, repo: RepoRef, number: int, body: str) -> None:
        """Add a comment to PR `number`."""
        ...

    def pr_status(self, repo: RepoRef, number: int) -> PRStatus:
        """The state of PR `number` now."""
        ...

    def reviews(self, repo: RepoRef, number: int) -> list[ForgeReview]:
        """Every review of PR `number`, oldest first, across all pages."""
        ...
