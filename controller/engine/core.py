"""The reconcile engine: git -> desired -> plan -> actions -> executors -> git.

One asyncio loop owns all mutable state here. A pass fetches the fleet repo
(re-parsing only the files a tree diff names), observes the runs of unfinished
tasks and the merges of reviewed ones, asks the pure planner what to do, writes
every status change of the pass as one commit (pushed before anything starts,
so `assigned` with its run id is on record first), and only then starts and
stops runs. Called by the CLI (`fleet run`, `fleet plan`, `fleet demo`).

A read-only engine (`fleet plan`) syncs, checks hosts and observes like any
other but takes no step: it starts, stops and writes nothing, in the state
dir or on a host; its clone and target caches are the caller's scratch ones.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from controller.config import (DEFAULT_FORGE_POLL, DEFAULT_FORGE_RETRY_MAX, DEFAULT_FORGE_RETRY_MIN,
                               SSHConfig)
from controller.desired.builder import DesiredBuilder
from controller.engine.dispatch import Dispatcher, ExecutorFor
from controller.engine.inbox import Inbox
from controller.engine.inflight import InFlight
from controller.engine.journal import Journal
from controller.engine.prs import PullRequests, merge_facts
from controller.events import WebhookDelivery
from controller.executors.base import Executor
from controller.executors.local import LocalExecutor
from controller.forge import Forge
from controller.gitstore import SPEC_DIRS, GitError, GitStore, StatusConflict
from controller.model import (Action, DeleteStatus, Desired, Host, Observed, SetStatus,
                              Settings, StartRun, State, StopRun)
from controller.observe.health import HostWatch, busy_hosts
from controller.observe.known import LastKnown
from controller.observe.merges import Targets
from controller.observe.observer import Observer
from controller.plan.planner import plan
from controller.status import statusfile
from controller.status.book import StatusBook
from controller.telemetry import Telemetry

if TYPE_CHECKING:
    from controller.executors.ssh.executor import SSHExecutor

log = logging.getLogger("fleet")
SEEN_FOR = 3600.0           # seconds a seen change waits for its run to start, for /metrics
MAX_WRITE_FAILURES = 5      # --once exits with an error after this many in a row


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class PassResult:
    actions: list[Action] = field(default_factory=list)
    commit: str | None = None
    lines: list[str] = field(default_factory=list)   # one per transition
    written: bool = False                            # the pass's statuses are on record
    launched: int = 0                                # starts begun by this pass


class Engine:
    def __init__(self, store: GitStore, state_dir: Path,
                 clock: Callable[[], datetime] = utcnow,
                 executors: ExecutorFor | None = None,
                 ssh: SSHConfig | None = None, targets: Targets | None = None,
                 read_only: bool = False, reviewers: frozenset[str] | None = None,
                 telemetry: Telemetry | None = None, allowed_repos: tuple[str, ...] = (),
                 withhold: frozenset[str] = frozenset(), forge: Forge | None = None,
                 forge_poll: float = DEFAULT_FORGE_POLL,
                 forge_retry: tuple[float, float] = (DEFAULT_FORGE_RETRY_MIN,
                                                     DEFAULT_FORGE_RETRY_MAX)):
        self.store = store
        self.telemetry = telemetry or Telemetry()   # what /metrics reports
        self.state_dir = state_dir
        self.clock = clock
        self.read_only = read_only
        # Target repos are fetched at most every few seconds for merge checks;
        # run() asks for a fresh look when it starts.
        self.targets = targets or Targets(state_dir / "targets", min_interval=5.0)
        # The controller config's allowed_repos travel in each Desired the builder makes.
        self.builder = DesiredBuilder(allowed_repos=allowed_repos)
        self._withhold = withhold    # env names no run may get (the forge token's)
        self.book = StatusBook()
        self.desired: Desired | None = None
        self.commit: str | None = None
        self.focus: set[str] = set()             # changed since the last pass
        self.ssh_settings = ssh or SSHConfig()
        # Health checks, hosts lost mid-run and abandoned runs: the one record of them.
        self.watch = HostWatch(state_dir, self.ssh_settings.lost_grace, clock, read_only)
        self.work = InFlight()                   # starts, stops and cleanups going on
        self.known = LastKnown()                 # hosts and specs of the tasks in flight
        self._local = LocalExecutor(withhold=withhold)
        self._ssh: SSHExecutor | None = None
        self._executor_for: ExecutorFor = executors or self._default_executor
        self.observer = Observer(self._executor_for, self._host, self.watch, self.targets,
                                 self.known)
        self.dispatcher = Dispatcher(self._executor_for, self._host, self.watch, self.work,
                                     on_started=self._started)
        # Task id -> when a sync first saw its file change: dispatch latency for /metrics.
        self._seen_at: dict[str, float] = {}
        self._health_job: asyncio.Task[None] | None = None
        self._health_at = float("-inf")
        self.write_failures = 0                  # status commits failed in a row
        self._status_tree: str | None = None     # status/ as we last read or wrote it
        # Webhook deliveries: journaled in the state dir, applied by the next pass.
        self.inbox = Inbox(Journal(state_dir), store.source, store.branch, reviewers)
        self.last_pass_at: datetime | None = None   # the last pass whose statuses are on record
        self._poll_interval: float | None = None    # the config's, over fleet.yaml's
        # The forge's PRs: opened, commented and polled in the background (None: no forge).
        self.prs = (PullRequests(forge, self.telemetry, clock, forge_poll, forge_retry)
                    if forge else None)
        self._push_retries = 0                       # the store's, as last counted

    async def accept(self, delivery: WebhookDelivery) -> None:
        """A webhook delivery, on record (journaled) when this returns; the loop wakes."""
        await self.inbox.accept(delivery)

    @property
    def poll_interval(self) -> float:
        """Seconds between fetches of the fleet repo when no webhook says it moved."""
        if self._poll_interval:
            return self._poll_interval
        return self.desired.settings.poll_interval if self.desired else Settings().poll_interval

    def _default_executor(self, host: Host) -> Executor | None:
        if host.is_local:
            return self._local
        if self._ssh is None:
            # asyncssh is loaded only by fleets with SSH hosts
            from controller.executors.ssh.executor import SSHExecutor
            self._ssh = SSHExecutor(self.ssh_settings, resolve=lambda n: self._now().hosts.get(n),
                                    withhold=self._withhold)
        return self._ssh

    def _now(self) -> Desired:
        """The desired state of the last sync; every use of it comes after one."""
        if self.desired is None:
            raise RuntimeError("the engine has not read the fleet repository yet (sync first)")
        return self.desired

    def _host(self, name: str) -> Host | None:
        """The host by name; one removed from the repo while it has runs is still known."""
        return self.known.host(self._now(), name)

    # ---- git -> desired ----------------------------------------------------------
    async def sync(self) -> bool:
        """Fetch the fleet repo; True when it moved. Cold start loads every file."""
        tip = await asyncio.to_thread(self.store.sync)
        if tip == self.commit:
            return False
        cold = self.commit is None
        # status/ is ours and already in memory: diffing it would cost a walk of
        # its whole tree after each of our own commits.
        changes = await asyncio.to_thread(self.store.changes, self.commit, tip, SPEC_DIRS)
        self.desired = self.builder.apply(changes, self.store.read, tip)
        # Status is read where it is written: fleet.yaml's status_branch, or tip.
        at = await asyncio.to_thread(self.store.use_status_branch,
                                     self.desired.settings.status_branch)
        if cold:
            await self._load_statuses(at)
            self.focus |= self._cold_focus()   # not every task: most are finished
        else:
            self.focus |= self.builder.changed_tasks
            self._saw_changes(self.builder.changed_tasks)
            if self.store.status_tree(at) != self._status_tree:
                await self._reread_statuses(at)
        self.commit = tip
        self.targets.min_interval = self.desired.settings.poll_interval
        return True

    def _saw_changes(self, tasks: set[str]) -> None:
        now = time.monotonic()
        for task_id in tasks:
            self._seen_at.setdefault(task_id, now)
        # Changes that start nothing (edits of finished tasks) are forgotten after an hour.
        self._seen_at = {t: at for t, at in self._seen_at.items() if now - at < SEEN_FOR}

    def _started(self, task_id: str) -> None:
        at = self._seen_at.pop(task_id, None)
        if at is not None:
            self.telemetry.dispatch_latency(time.monotonic() - at)

    async def _reread_statuses(self, commit: str) -> None:
        log.warning("status/ was changed by someone other than this controller; re-reading it "
                    "(is a second controller writing to this repository?)")
        await self._load_statuses(commit)
        self.focus |= self._cold_focus()

    async def _load_statuses(self, tip: str) -> None:
        blobs = await asyncio.to_thread(self.store.status_blobs, tip)
        await asyncio.to_thread(self.book.load, blobs, self.store.read)
        self._status_tree = self.store.status_tree(tip)

    def _cold_focus(self) -> set[str]:
        """Tasks a first pass must look at; finished tasks with an unchanged spec need nothing."""
        d = self._now()
        todo = {t for t in d.tasks if t not in self.book}
        todo |= {t for t, task in d.tasks.items() if task.rerun is not None}
        todo |= set(d.invalid)
        todo |= {t for t in self.book if t not in d.tasks and t not in d.invalid}
        return todo

    # ---- observe ---------------------------------------------------------------------
    async def observe(self) -> Observed:
        """The facts of this pass, for the planner (read-only engines too)."""
        desired = self._now()
        self._remember(desired)
        return await self.observer.observe(desired, self.book, self.work)

    def _remember(self, desired: Desired) -> None:
        """Keep the hosts and last valid specs of in-flight tasks, so a host file
        removed or a task file broken mid-run does not lose the run."""
        flight = self.book.in_flight() + self.book.in_states(State.REVIEW_PENDING)
        self.known.update(desired, flight)
        live = {st.run_id for st in flight} | {st.stopping.run_id for st in flight if st.stopping}
        self.work.keep_failures(r for r in live if r is not None)

    # ---- one pass ------------------------------------------------------------------------
    async def step(self) -> PassResult:
        """One reconcile pass. The caller syncs first when it wants new specs."""
        if self.read_only:
            raise RuntimeError("a read-only engine (fleet plan) takes no actions")
        now = self.clock()
        began = time.perf_counter()
        try:
            result, observed = await self._pass(now)
        except Exception:
            self.telemetry.pass_done(time.perf_counter() - began, ok=False)
            raise
        self.telemetry.pass_done(time.perf_counter() - began, ok=result.written)
        self.telemetry.tasks_by_state({state.value: n for state, n in self.book.counts().items()})
        self.telemetry.hosts_up({name: name not in observed.hosts_down
                                 for name in self._now().hosts})
        return result

    async def _pass(self, now: datetime) -> tuple[PassResult, Observed]:
        observed = await self.observe()
        desired = self._now()
        taken, facts = self.inbox.take(desired.tasks)
        found, calls = self.prs.take() if self.prs else ({}, {})
        observed = replace(observed, forge=merge_facts(facts, found),
                           reviewers=self.inbox.reviewers, pr_calls=calls,
                           forge_url=self.prs.forge.web_url if self.prs else None)
        focus = self.focus | self.book.unfinished | set(observed.forge)
        actions = plan(desired, observed, now, focus=focus)
        result = PassResult(actions=actions)
        if not await self._write(actions, result):
            self.write_failures += 1
            if self.prs:
                self.prs.give_back(found)
            return result, observed     # nothing may start before its status is on record
        self.write_failures = 0
        result.written = True
        self.last_pass_at = now
        self.focus = set()
        await self.inbox.applied(taken)
        if self.prs:
            self.prs.after_pass(actions, facts, self.book, desired, self.inbox.reviewers)
        grace = desired.settings.cancel_grace
        for action in actions:
            if isinstance(action, StopRun):
                self.dispatcher.stop(action, grace)
        # Starts are independent and idempotent by run id: in the background, side
        # by side, so a fan-out costs the slowest start and a slow host holds up
        # no pass. A start still going is not asked for twice.
        for a in actions:
            if isinstance(a, StartRun):
                # A task whose file turned invalid after its assignment runs on its last valid spec.
                spec = desired.tasks.get(a.task) or observed.stale.get(a.task)
                if self.dispatcher.start(a, desired, spec, self.book.get(a.task)):
                    result.launched += 1
        return result, observed

    async def _write(self, actions: list[Action], result: PassResult) -> bool:
        writes: dict[str, bytes | None] = {}
        for a in actions:
            if isinstance(a, SetStatus):
                writes[a.status.task] = statusfile.dumps(a.status)
                result.lines += [f"{a.status.task}: {r}" for r in a.reasons]
            elif isinstance(a, DeleteStatus):
                writes[a.task] = None
                result.lines.append(f"{a.task}: status removed ({a.reason})")
        if not writes:
            return True
        expected = self._status_tree
        try:
            result.commit = await asyncio.to_thread(
                self.store.commit_statuses, writes, self._message(result.lines))
        except StatusConflict as e:
            # Someone else wrote the same status files: plan again from theirs.
            log.warning("%s", e)
            self._count_push_retries()
            await self._reread_statuses(self.store.status_tip())
            result.lines = []
            return False
        except GitError as e:
            log.error("status commit failed, will retry next pass: %s", e)
            self._count_push_retries()
            result.lines = []
            return False
        self._count_push_retries()
        if result.commit is not None:
            self._status_tree = self.store.status_tree(result.commit)
            base = self.store.parent(result.commit)
            if base and self.store.status_tree(base) != expected:
                # Ours went onto a tip where someone else had changed other status
                # files: take theirs in too, or sync would never notice them.
                await self._reread_statuses(result.commit)
        for a in actions:
            if isinstance(a, SetStatus):
                self.book.put(a.status)
                self.dispatcher.clean_if_done(a.status)
            elif isinstance(a, DeleteStatus):
                if (old := self.book.get(a.task)) is not None:
                    self.dispatcher.clean_if_done(replace(old, state=State.CANCELLED, stopping=None))
                self.book.remove(a.task)
        for line in result.lines:
            log.info("%s", line)
        return True

    def _count_push_retries(self) -> None:
        retries = getattr(self.store, "push_retries", 0)    # test doubles of the store have none
        for _ in range(retries - self._push_retries):
            self.telemetry.status_push_retry()
        self._push_retries = retries

    def _message(self, lines: list[str]) -> str:
        n = len(lines)
        head = f"fleet: {n} status change{'s' if n != 1 else ''}"
        if n == 1:
            head = f"fleet: {lines[0]}"[:200]
        trailers = [f"Fleet-Spec-Commit: {self.commit}"] if self.commit else []
        trailers += sorted({f"Fleet-Task: {line.split(':', 1)[0]}" for line in lines})
        return "\n".join([head, "", *lines, "", *trailers]) + "\n"

    # ---- hosts ---------------------------------------------------------------------------
    async def check_hosts(self) -> None:
        """One round of host health checks, then stop abandoned runs on hosts that are back
        (read-only: the checks only; `watch.to_stop` says what a real round would stop)."""
        desired = self._now()
        try:
            await self.watch.check(desired, self._executor_for, busy_hosts(self.book, self.watch))
        except Exception:       # a bug in a check must not stop the controller
            log.exception("host health check failed")
        if self.read_only:
            return
        for host, run_id in self.watch.to_stop(desired):
            self.dispatcher.stop(StopRun("", host.name, run_id, "abandoned: its task moved on"),
                                 desired.settings.cancel_grace)

    def _health_due(self, loop: asyncio.AbstractEventLoop, first: bool) -> asyncio.Task[None] | None:
        """The next round of checks when it is due (at once for a host never checked
        as it is now) and none is running."""
        if self._health_job is not None and not self._health_job.done():
            return None
        if not first and loop.time() < self._health_at and not self.observer.unchecked(self._now()):
            return None
        self._health_at = loop.time() + self.ssh_settings.health_interval
        self._health_job = loop.create_task(self.check_hosts())
        return self._health_job

    # ---- loops ---------------------------------------------------------------------------
    def busy(self) -> bool:
        """Runs in flight, retries pending or stops unfinished: --once keeps going."""
        waiting = self.book.in_states(State.ASSIGNED, State.RUNNING, State.RETRYING)
        forge = self.prs is not None and self.prs.busy()
        return bool(waiting or self.work.busy() or self.book.in_flight() or forge)

    async def run(self, once: bool, poll_interval: float | None = None,
                  tick: float = 0.5, max_passes: int | None = None) -> None:
        """The controller loop. --once: until nothing is in flight and nothing can start.

        However it ends (done, an error, cancelled), the polls and health checks it
        began are cancelled and SSH closed, so no task outlives the loop."""
        try:
            self._poll_interval = poll_interval
            await self.inbox.load()
            await self._loop(once, poll_interval, tick, max_passes)
            await self.work.drain()
            if self.prs:
                await self.prs.drain()
        finally:
            self.observer.cancel()
            if self._health_job is not None:
                self._health_job.cancel()
            await self.close()

    async def _loop(self, once: bool, poll_interval: float | None, tick: float,
                    max_passes: int | None) -> None:
        interval = poll_interval
        self.targets.refresh()
        passes = 0
        last_sync = float("-inf")
        loop = asyncio.get_running_loop()
        checked = False
        while max_passes is None or passes < max_passes:
            passes += 1
            every = interval or self.desired.settings.poll_interval if self.desired else 0
            if (self.desired is None or self.inbox.sync_wanted
                    or loop.time() - last_sync >= (every or 0)):
                self.inbox.sync_wanted = False     # a push to the fleet repo: fetch now
                await self._sync_logged()
                last_sync = loop.time()
            if self.desired is None:
                if once:
                    raise GitError("cannot read the fleet repository")
                await asyncio.sleep(tick)
                continue
            job = self._health_due(loop, first=not checked)
            if job is not None and not checked:
                await job       # the first round decides where the first runs may go
            checked = True
            try:
                result = await self.step()
            except Exception:
                if once:
                    raise
                # A bug in one pass must not end the controller: runs go on
                # detached, and the next pass starts from git and the hosts again.
                log.exception("reconcile pass failed; trying again")
                self.write_failures += 1
                await self._after_write_failure(once, tick)
                continue
            if not result.written:
                await self._after_write_failure(once, tick)
                continue
            started = result.launched > 0     # a start still going is not a reason to spin
            if once and not started and not self.busy():
                break
            if started:
                await asyncio.sleep(0)
            else:
                await self.inbox.wait(tick)       # a webhook cuts the wait short

    async def close(self) -> None:
        """Close the SSH connections (runs on the hosts go on)."""
        if self._ssh is not None:
            await self._ssh.close()

    async def _after_write_failure(self, once: bool, tick: float) -> None:
        """Back off after a failed status commit; --once gives up after a few."""
        if once and self.write_failures >= MAX_WRITE_FAILURES:
            raise GitError(f"status commits failed {self.write_failures} times in a row; "
                           "see the errors above (is the fleet repository writable?)")
        await asyncio.sleep(min(tick * 2 ** self.write_failures, 60.0))

    async def _sync_logged(self) -> None:
        try:
            await self.sync()
        except GitError as e:
            log.error("%s", e)
