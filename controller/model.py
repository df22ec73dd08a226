"""Our own small types: the language every module speaks.

Desired state (parsed from the fleet repository), observed state (status files
and run reports), the actions the planner emits, and the RunSpec an executor
is handed to start one of them. Everything here is a frozen
dataclass or an enum, so the planner can be a pure function over them. No module
in this file imports an outside library.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, NamedTuple

# The forge calls' own vocabulary lives in a leaf module; it is part of this language.
from controller.prcalls import CommentPR as CommentPR, OpenPR as OpenPR, PrCalls as PrCalls

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
HISTORY_LIMIT = 20      # transitions a Status keeps: the planner trims to it, status files hold it


class State(enum.StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    RUNNING = "running"
    RETRYING = "retrying"
    BLOCKED = "blocked"
    REVIEW_PENDING = "review_pending"
    REVISING = "revising"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})
ACTIVE = frozenset({State.ASSIGNED, State.RUNNING})

# The enums below are StrEnums: a member equals the word written in YAML
# ("stdin" == PromptMode.STDIN), so code and tests that still hold a plain
# string keep working, and a member prints and serializes as that word.


class PromptMode(enum.StrEnum):
    """How an agent receives its prompt (agents/<name>.yaml `prompt`)."""
    STDIN = "stdin"
    FILE = "file"                  # written to a file named by {prompt_file}


class OutputFormat(enum.StrEnum):
    """How an agent's stdout is read (agents/<name>.yaml `output`)."""
    CODEX_JSONL = "codex-jsonl"
    CLAUDE_JSON = "claude-json"
    RAW = "raw"


class TaskMode(enum.StrEnum):
    """Who starts a task's runs (tasks/<id>.yaml `mode`)."""
    SSH = "ssh"                    # the controller, locally or over SSH
    PULL = "pull"                  # an external agent dequeues it over HTTP


class Outcome(enum.StrEnum):
    """What one attempt came to (status `result.outcome`)."""
    SUCCESS = "success"            # the agent finished its turn, exit code 0 or unknown
    FAILURE = "failure"            # the agent or a wrapper step reported an error
    INTERRUPTED = "interrupted"    # cut short without a final result (signal, cancel)
    DENIED = "denied"              # finished, but tool calls were refused
    TIMEOUT = "timeout"            # the planner stopped it at the task's timeout
    STALLED = "stalled"            # the planner stopped it: no output for stall_timeout
    NO_CHANGES = "no_changes"      # succeeded but pushed nothing to review


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str = "local"
    port: int = 22
    user: str | None = None
    capabilities: frozenset[str] = frozenset()
    max_concurrent: int = 1
    workdir: str = "~/fleet"
    jump: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    pass_env: tuple[str, ...] = ()     # names read from the host's own environment per run

    @property
    def is_local(self) -> bool:
        return self.address == "local"


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    command: tuple[str, ...]
    prompt: PromptMode = PromptMode.STDIN
    output: OutputFormat = OutputFormat.RAW
    requires: frozenset[str] = frozenset()
    version: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    pass_env: tuple[str, ...] = ()     # names read from the host's own environment per run


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    title: str
    agent: str
    goal: str
    repo: str
    constraints: tuple[str, ...] = ()
    validation: tuple[str, ...] = ()
    base: str = "main"
    mode: TaskMode = TaskMode.SSH
    requires: frozenset[str] = frozenset()
    priority: int = 0
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None   # seconds
    stall_timeout: float = 600.0   # seconds
    max_attempts: int = 3
    max_reviews: int = 3
    suspend: bool = False
    cancel: bool = False
    feedback: tuple[str, ...] = ()
    rerun: str | None = None       # any value, kept as its string form

    @property
    def branch(self) -> str:
        return f"task/{self.id}"


@dataclass(frozen=True, slots=True)
class Settings:
    """fleet.yaml: fleet-wide, non-secret settings."""
    poll_interval: float = 10.0
    backoff_base: float = 10.0     # seconds; retry n waits min(base * 2^(n-1), backoff_max)
    backoff_max: float = 300.0
    cancel_grace: float = 10.0     # seconds between TERM and KILL
    task_defaults: Mapping[str, object] = field(default_factory=dict)
    prompt_template: str | None = None
    status_branch: str | None = None   # status commits go there, not to the branch people edit


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation finding: printed as `path:line: message`."""
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line or 1}: {self.message}"


@dataclass(frozen=True, slots=True)
class Desired:
    """Everything parsed from one commit of the fleet repository."""
    tasks: Mapping[str, Task]
    hosts: Mapping[str, Host]
    agents: Mapping[str, Agent]
    settings: Settings = Settings()
    invalid: Mapping[str, str] = field(default_factory=dict)  # task id -> why its spec is unusable
    commit: str = ""
    # The controller config's allowed_repos, never the repository's: URL patterns
    # of the only target repos tasks may name; () allows every repo.
    allowed_repos: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cached: int = 0

    def __add__(self, other: "Tokens") -> "Tokens":
        return Tokens(self.input + other.input, self.output + other.output,
                      self.cached + other.cached)


@dataclass(frozen=True, slots=True)
class Result:
    """What a finished attempt produced, parsed from the agent's output."""
    outcome: Outcome
    exit_code: int | None = None
    summary: str = ""
    session_id: str | None = None
    cost_usd: float | None = None
    tokens: Tokens = Tokens()
    commit: str | None = None      # head of task/<id> the run pushed, if any


@dataclass(frozen=True, slots=True)
class PullRequest:
    """The PR that carries a task's branch on the forge (status `pr`)."""
    number: int
    url: str


@dataclass(frozen=True, slots=True)
class ReviewNote:
    """A change request made on the forge (status `reviews`): it asks for a revision.

    `id` is the forge's review id (GitHub), or, where a webhook carries none
    (Forgejo, Gitea), `sha256:` and a digest of the PR number, author and text,
    so that the same review seen twice is one review."""
    id: str
    author: str
    url: str
    text: str                      # capped at 8 KiB of UTF-8 (events.REVIEW_TEXT_MAX)


@dataclass(frozen=True, slots=True)
class Lease:
    """A pull agent's hold on a task (status `lease`), written as `id` in YAML."""
    agent: str                     # the pull agent's name in the config's pull_agents
    lease_id: str                  # quoted by the holder in every update
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    from_: State | None
    to: State
    reason: str


class RunRef(NamedTuple):
    """One run on one host. A NamedTuple rather than a dataclass so that code
    written for the (host, run id) pair it replaced can still index or unpack it."""
    host: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Status:
    """status/<id>.yaml: written by the controller only."""
    task: str
    state: State
    message: str = ""
    attempt: int = 0
    review_count: int = 0
    host: str | None = None
    run_id: str | None = None
    branch: str | None = None
    pr: PullRequest | None = None
    spec_commit: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_activity_at: datetime | None = None
    retry_at: datetime | None = None
    lease: Lease | None = None
    result: Result | None = None
    history: tuple[Transition, ...] = ()
    runs: int = 0                  # runs ever started: makes run ids unique
    feedback_seen: int = 0         # feedback entries already acted on
    feedback_last: str | None = None  # digest of the last entry acted on: an edit is new feedback
    rerun_seen: str | None = None  # the task's `rerun` value this status has honoured
    # A run asked to stop and not yet seen gone: until it is, the task starts
    # nothing new and the run keeps its slot on that host.
    stopping: RunRef | None = None
    reviews: tuple[ReviewNote, ...] = ()   # change requests from the forge, oldest first
    pr_comments: int = 0           # the last revision (review_count) commented on the PR


class Phase(enum.StrEnum):
    STARTING = "starting"          # start asked for, wrapper not yet confirmed
    RUNNING = "running"
    EXITED = "exited"              # the wrapper finished and wrote its result
    LOST = "lost"                  # the run died without a result
    UNREACHABLE = "unreachable"    # the host could not be reached before the start


@dataclass(frozen=True, slots=True)
class RunReport:
    """What an executor observed about one run, by run id."""
    run_id: str
    phase: Phase
    result: Result | None = None   # set when EXITED
    changes: bool = False          # the run pushed commits beyond base
    last_output_at: datetime | None = None
    error: str = ""                # why, for LOST / UNREACHABLE / a failed step
    abandoned: bool = False        # LOST with its host: the engine kills it when the host returns


@dataclass(frozen=True, slots=True)
class Observed:
    statuses: Mapping[str, Status]
    runs: Mapping[str, RunReport] = field(default_factory=dict)   # by run id
    merged: frozenset[str] = frozenset()      # task ids whose pushed commit is in base
    hosts_down: Mapping[str, str] = field(default_factory=dict)   # host -> reason
    # The last valid spec of in-flight tasks whose file is now invalid: their
    # run is still followed to its end, but nothing new starts.
    stale: Mapping[str, Task] = field(default_factory=dict)
    launched: frozenset[str] = frozenset()    # run ids whose start this process began
    absent: frozenset[str] = frozenset()      # run ids a host answered it has no trace of
    # What the forge said about each task's branch and PR since the last pass,
    # oldest first, by task id (webhooks now; the forge's API may add more).
    forge: Mapping[str, tuple[ForgeFact, ...]] = field(default_factory=dict)
    # The controller config's `reviewers`, lower case: the only users whose
    # change requests count. None: users with write access to the repository.
    reviewers: frozenset[str] | None = None
    forge_url: str | None = None              # the configured forge (None: fleet opens no PRs)
    pr_calls: Mapping[str, PrCalls] = field(default_factory=dict)   # by task id


class ForgeChange(enum.StrEnum):
    """What happened on the forge to a task's branch or PR."""
    PR_OPENED = "pr_opened"            # opened, or given new commits
    PR_REOPENED = "pr_reopened"
    PR_MERGED = "pr_merged"
    PR_CLOSED = "pr_closed"            # closed without merging
    BRANCH_PUSHED = "branch_pushed"    # a push to task/<id> of the task's repo
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    COMMENTED = "commented"            # our comment on a revision (ForgeFact.revision) is on the PR


@dataclass(frozen=True, slots=True)
class ForgeFact:
    """One thing the forge reported about a task, already matched to the task's own
    repository (its host, port and OWNER/REPO); the planner decides what it means.

    For a review: `association` is GitHub's author_association of the reviewer
    (OWNER, MEMBER, COLLABORATOR, ...; None from Forgejo and Gitea), and
    `write_access` the forge API's answer on the reviewer's permission (None: not
    asked)."""
    change: ForgeChange
    at: datetime
    pr: PullRequest | None = None
    review: ReviewNote | None = None
    association: str | None = None
    write_access: bool | None = None
    revision: int = 0                  # COMMENTED: the review_count the comment was about


# ---- actions: what the planner asks the engine to do -------------------------

@dataclass(frozen=True, slots=True)
class SetStatus:
    """Write this status (one or more transitions happened) in this pass's commit."""
    status: Status
    reasons: tuple[str, ...] = ()  # one line per transition, for the commit message


@dataclass(frozen=True, slots=True)
class DeleteStatus:
    task: str
    reason: str


@dataclass(frozen=True, slots=True)
class StartRun:
    """Start (or reattach to) run `run_id` of `task` on `host`. Idempotent by run id."""
    task: str
    host: str
    run_id: str
    attempt: int
    from_branch: bool              # continue task/<id> (revision) instead of resetting it to base
    feedback: tuple[str, ...] = () # review notes the prompt must carry
    previous_failure: str = ""     # why the last attempt failed, for the prompt


@dataclass(frozen=True, slots=True)
class StopRun:
    task: str
    host: str
    run_id: str
    reason: str


Action = SetStatus | DeleteStatus | StartRun | StopRun | OpenPR | CommentPR


# ---- runs: what an executor is handed ---------------------------------------

@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything a host needs to run one attempt of a task: built from a
    StartRun by plan.runspec, started by an executor."""
    run_id: str
    task_id: str
    host: Host
    command: tuple[str, ...]       # the agent's argv, placeholders not yet substituted
    prompt: str
    prompt_mode: PromptMode
    output_format: OutputFormat
    repo: str                      # target repository clone URL or path
    base: str
    branch: str                    # task/<id>
    from_branch: bool              # continue the existing branch instead of resetting it
    validation: tuple[str, ...] = ()
    attempt: int = 1               # exported to the run as FLEET_ATTEMPT
    env: tuple[tuple[str, str], ...] = ()   # host env, then agent env (agent wins)
    # Names (never values) of variables the run takes from its host's own
    # environment: the controller's for a local host, the login's over SSH.
    pass_env: tuple[str, ...] = ()
