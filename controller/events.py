"""What a forge's webhook told us, as plain frozen types: the observations vocabulary.

controller/http/ parses a delivery's body into one of these and hands it, wrapped
in a WebhookDelivery, to the engine's Sink; the engine journals it and the planner
decides what it means for a task. Nothing here does IO or knows about HTTP: this
module imports only the standard library and controller.model, so the planner and
the engine can use it without pulling in bottle.

Only what the planner needs is kept: a task branch is `task/<id>` with a valid id
(anything else has task_id None or is never turned into a PR event), a review's
text is capped at REVIEW_TEXT_MAX bytes, and no secret or raw body is ever held.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime

from controller.model import ID_RE

TASK_BRANCH_PREFIX = "task/"
HEADS_PREFIX = "refs/heads/"
REVIEW_TEXT_MAX = 8 * 1024          # bytes of UTF-8 kept of a review's text


class Forge(str, enum.Enum):
    """The forge family a delivery came from (its route and signature family)."""
    FORGEJO = "forgejo"
    GITEA = "gitea"
    GITHUB = "github"

    def __str__(self) -> str:
        return self.value


class PrAction(str, enum.Enum):
    """The pull-request actions that matter; GitHub's `synchronize` is SYNCHRONIZED."""
    OPENED = "opened"
    REOPENED = "reopened"
    SYNCHRONIZED = "synchronized"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


class ReviewKind(str, enum.Enum):
    """What a submitted review says about the work."""
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    COMMENTED = "commented"

    def __str__(self) -> str:
        return self.value


def task_id_of_branch(branch: str) -> str | None:
    """The task id of a branch named `task/<id>`, or None for any other name.

    `task/../x`, `task/UPPER`, `task/a/b` and `task/` are None: an id becomes a
    file name and a remote directory name, so only ID_RE passes.
    """
    if not branch.startswith(TASK_BRANCH_PREFIX):
        return None
    rest = branch[len(TASK_BRANCH_PREFIX):]
    return rest if ID_RE.match(rest) else None


def cap_text(text: str, limit: int = REVIEW_TEXT_MAX) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


@dataclass(frozen=True, slots=True)
class RepoRef:
    """A repository as the forge names it; full_name is `OWNER/REPO` in the forge's case."""
    full_name: str
    clone_url: str | None = None
    ssh_url: str | None = None
    html_url: str | None = None


@dataclass(frozen=True, slots=True)
class Push:
    """A push of `ref` from `before` to `after` (40 zeros: created or deleted).

    The engine decides whether it is the fleet repository's branch (reconcile now)
    or a task branch of a task's target repository (`last_activity_at`).
    Tag pushes never become a Push.
    """
    repo: RepoRef
    ref: str
    before: str
    after: str

    @property
    def branch(self) -> str | None:
        return self.ref[len(HEADS_PREFIX):] if self.ref.startswith(HEADS_PREFIX) else None

    @property
    def task_id(self) -> str | None:
        branch = self.branch
        return task_id_of_branch(branch) if branch is not None else None


@dataclass(frozen=True, slots=True)
class PullRequestEvent:
    """A PR on `task/<task_id>` opened, reopened, given new commits, or closed.

    Only PRs whose head repository is the base repository become one (a fork's
    `task/x` never does). merge_commit_sha is set only when merged.
    """
    repo: RepoRef                  # the base repository, as the delivery's `repository`
    action: PrAction
    merged: bool
    number: int
    html_url: str
    task_id: str
    head_ref: str
    head_repo: str
    base_repo: str
    base_ref: str
    merge_commit_sha: str | None = None


@dataclass(frozen=True, slots=True)
class Review:
    """A review submitted on the PR of `task/<task_id>`.

    author_association is GitHub's (OWNER, MEMBER, COLLABORATOR, ...); Forgejo and
    Gitea send none, so whether the reviewer has write access is for the engine to
    ask (the forge API or the `reviewers` list). review_id is None on Gitea/Forgejo.
    """
    repo: RepoRef
    kind: ReviewKind
    pr_number: int
    pr_url: str
    task_id: str
    reviewer: str
    html_url: str
    body: str = ""
    author_association: str | None = None
    review_id: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """The forge checking that the hook works: answered 2xx, changes nothing."""
    repo: RepoRef | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event that changes nothing (labeled, a fork's PR, a tag push, ...), and why."""
    event: str
    reason: str


Observation = Push | PullRequestEvent | Review
WebhookEvent = Observation | Ping | Ignored


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One authenticated delivery that may change a task: what the Sink receives.

    delivery_id is the forge's `X-*-Delivery` header (the same on a redelivery), so
    the engine can recognise an event it already journaled.
    """
    forge: Forge
    delivery_id: str
    event_name: str
    received_at: datetime
    event: Observation


def review_digest(pr_number: int, reviewer: str, kind: ReviewKind, body: str) -> str:
    """The id of a review whose forge gives none in its webhook (Forgejo, Gitea): a
    digest of what identifies it, computed alike from a webhook and from the API."""
    digest = hashlib.sha256(f"{pr_number}\n{reviewer}\n{kind}\n{body}".encode()).hexdigest()
    return f"sha256:{digest[:16]}"
