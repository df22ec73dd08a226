"""The planner: every decision of the task state machine, as one pure function.

`plan(desired, observed, now)` reads the parsed fleet repository, the status
files and the executors' run reports, and returns the actions that move each task
along DESIGN.md's state machine. It does no IO, reads no clock and draws no random
numbers, so the engine can call it any number of times and tests can drive it
with tables of cases.

A pass has two phases. First every task reacts to what happened (a run ended, a
branch was merged, feedback arrived, the file was deleted or cancelled). Then the
tasks that want a host are placed in priority order, so slots freed in the first
phase are used in the same pass.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Iterable, Unpack

from controller.model import (ACTIVE, HISTORY_LIMIT, TERMINAL, Action, DeleteStatus, Desired, Observed,
                    Outcome, Phase, Result, RunRef, SetStatus, StartRun, State, Status, StopRun,
                    Task, Transition)
from controller.plan import forge_events, pulls
from controller.plan.changes import Changes, Updates
from controller.plan.placement import Placement
from controller.plan.wording import lead_line, rerun_hint

WANTS_HOST = (State.CREATED, State.BLOCKED, State.REVISING)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    return min(base * (1 << max(attempt - 1, 0)), cap)     # 1 << n: 2 ** n typed as an int


def run_id_for(task_id: str, seq: int, now: datetime) -> str:
    """Unique per run, also across a deleted and re-added task of the same id."""
    return f"{task_id}-{now:%Y%m%d%H%M%S}-{seq}"


def plan(desired: Desired, observed: Observed, now: datetime,
         focus: Iterable[str] | None = None) -> list[Action]:
    """The actions of one reconcile pass.

    `focus` limits the pass to these task ids, so a pass costs what changed
    rather than the size of the repository; it must hold every task that has a
    file but no status, every non-terminal task, and every task whose file or
    status changed since the last pass. None means all tasks.
    """
    return _Pass(desired, observed, now).run(focus)


class _Pass:
    """The working state of one plan() call; discarded when it returns."""

    def __init__(self, desired: Desired, observed: Observed, now: datetime):
        self.desired = desired
        self.observed = observed
        self.now = now
        self.statuses: dict[str, Status] = {}      # changed in this pass
        self.reasons: dict[str, list[str]] = {}
        self.deleted: dict[str, str] = {}
        self.runs: list[Action] = []
        self.stops: dict[str, RunRef] = {}   # task -> the run stopped in this pass

    # ---- the pass ------------------------------------------------------------
    def run(self, focus: Iterable[str] | None) -> list[Action]:
        ids = sorted(self._ids() if focus is None else set(focus))
        for task_id in ids:
            self._react(task_id)
        self._place([i for i in ids if i not in self.deleted])
        return self._actions()

    def _ids(self) -> set[str]:
        d = self.desired
        return set(d.tasks) | set(d.invalid) | set(self.observed.statuses)

    def _actions(self) -> list[Action]:
        for task_id, stopping in self.stops.items():
            st = self.status(task_id)
            if st is not None and task_id not in self.deleted:
                self.statuses[task_id] = replace(st, stopping=stopping)
        out: list[Action] = [DeleteStatus(t, r) for t, r in self.deleted.items()]
        out += [SetStatus(s, tuple(self.reasons.get(t, ())))
                for t, s in self.statuses.items() if t not in self.deleted]
        return out + self.runs

    # ---- small helpers ---------------------------------------------------------
    def status(self, task_id: str) -> Status | None:
        st = self.statuses.get(task_id)
        return st if st is not None else self.observed.statuses.get(task_id)

    def move(self, st: Status, to: State, reason: str, **changes: Unpack[Changes]) -> Status:
        hist = st.history + (Transition(self.now, st.state, to, reason),)
        new = replace(st, state=to, message=reason, history=hist[-HISTORY_LIMIT:],
                      last_activity_at=self.now, **changes)
        self.statuses[st.task] = new
        self.reasons.setdefault(st.task, []).append(f"{st.state} -> {to} ({reason})")
        return new

    def update(self, st: Status, reason: str, **changes: Unpack[Updates]) -> Status:
        """Change fields without a transition; `reason` is the commit message's line."""
        new = replace(st, **changes)
        self.statuses[st.task] = new
        self.reasons.setdefault(st.task, []).append(f"{st.state}: {reason}")
        return new

    def note(self, st: Status, message: str) -> Status:
        """Change only the message (no transition), when it says something new."""
        if st.message == message:
            return st
        new = replace(st, message=message)
        self.statuses[st.task] = new
        self.reasons.setdefault(st.task, []).append(f"{st.state}: {message}")
        return new

    def stop(self, st: Status, reason: str) -> None:
        """Stop the task's run; the status keeps `stopping` until the run is seen gone."""
        if st.state in ACTIVE and st.run_id and st.host:
            self.runs.append(StopRun(st.task, st.host, st.run_id, reason))
            self.stops[st.task] = RunRef(st.host, st.run_id)

    def _settle_stop(self, st: Status, stopping: RunRef) -> Status:
        """A stop asked for earlier (`st.stopping`): clear it once the run is gone, else ask again."""
        host, run_id = stopping
        report = self.observed.runs.get(run_id)
        if report is None and host in self.observed.hosts_down:
            return st   # unknown while its host is down: keep waiting, claim nothing
        if report is not None and report.phase in (Phase.RUNNING, Phase.STARTING):
            self.runs.append(StopRun(st.task, host, run_id, "still stopping"))
            return st
        new = replace(st, stopping=None)
        self.statuses[st.task] = new
        self.reasons.setdefault(st.task, []).append(f"{st.state}: run {run_id} stopped")
        return new

    # ---- phase 1: react to what happened ----------------------------------------
    def _react(self, task_id: str) -> None:
        task = self.desired.tasks.get(task_id)
        invalid = self.desired.invalid.get(task_id)
        st = self.status(task_id)
        if st is not None and st.stopping is not None:
            st = self._settle_stop(st, st.stopping)
        if task is None:
            if invalid is None:
                if st is not None:
                    self._deleted(st)
            else:
                self._react_invalid(task_id, st if st is not None else self._create(task_id, None),
                                    invalid)
            return
        if st is None:
            st = self._create(task_id, task)
        st = self._rerun(st, task)
        if task.cancel:
            self._cancel(st, task)
            return
        facts = self.observed.forge.get(task_id)
        if facts:
            st = forge_events.react(self, st, task, facts, self.observed.reviewers)
        handler = _REACTIONS.get(st.state)
        if handler is not None:
            handler(self, st, task)

    def _react_invalid(self, task_id: str, st: Status, why: str) -> None:
        """A task whose file does not parse: follow a run of its last valid spec, else block."""
        stale = self.observed.stale.get(task_id)
        if stale is not None and st.state in (State.ASSIGNED, State.RUNNING,
                                              State.REVIEW_PENDING):
            _REACTIONS[st.state](self, st, stale)   # follow it to its end
        else:
            self._invalid(st, why)

    def _create(self, task_id: str, task: Task | None) -> Status:
        st = Status(task=task_id, state=State.CREATED, created_at=self.now,
                    branch=f"task/{task_id}", spec_commit=self.desired.commit or None,
                    rerun_seen=task.rerun if task else None,
                    feedback_seen=len(task.feedback) if task else 0,
                    feedback_last=_feedback_digest(task.feedback) if task else None)
        st = replace(st, history=(Transition(self.now, None, State.CREATED, "task file added"),),
                     message="task file added", last_activity_at=self.now)
        self.statuses[task_id] = st
        self.reasons[task_id] = ["new -> created (task file added)"]
        return st

    def _deleted(self, st: Status) -> None:
        """The task file is gone: stop its run, and drop the status once it stopped."""
        if st.state in ACTIVE:
            self.stop(st, "task file deleted")
            self.move(st, State.CANCELLED, "task file deleted; stopping its run",
                      finished_at=self.now)
        elif st.stopping is None:
            self.deleted[st.task] = "task file deleted"

    def _invalid(self, st: Status, why: str) -> None:
        # A running attempt goes on; only new starts are blocked. A retry still
        # waits out its backoff, so fixing the file does not skip it.
        if st.state in TERMINAL or st.state in ACTIVE or st.state == State.REVIEW_PENDING:
            return
        if st.state == State.RETRYING and st.retry_at is not None and self.now < st.retry_at:
            return
        message = f"invalid spec: {why}"
        if st.state != State.BLOCKED:
            self.move(st, State.BLOCKED, message)
        else:
            self.note(st, message)

    def _rerun(self, st: Status, task: Task) -> Status:
        if task.rerun is None or task.rerun == st.rerun_seen:
            return st
        self.stop(st, "rerun requested")
        return self.move(st, State.CREATED, f"rerun requested ({task.rerun})",
                         attempt=0, review_count=0, result=None, host=None,
                         run_id=None, retry_at=None, started_at=None,
                         finished_at=None, rerun_seen=task.rerun,
                         feedback_seen=len(task.feedback),
                         feedback_last=_feedback_digest(task.feedback))

    def _cancel(self, st: Status, task: Task) -> None:
        if st.state in TERMINAL:
            return
        self.stop(st, "cancelled")
        self.move(st, State.CANCELLED, f"cancelled: cancel is true in tasks/{task.id}.yaml",
                  finished_at=self.now)

    def _active(self, st: Status, task: Task) -> None:
        report = self.observed.runs.get(st.run_id or "")
        if report is None:
            self._no_report(st, task)
        elif report.phase == Phase.UNREACHABLE:
            self._unreachable(st, report.error)
        elif report.phase in (Phase.RUNNING, Phase.STARTING):
            if report.phase == Phase.STARTING and st.state == State.ASSIGNED:
                # Maybe the controller died between writing the run dir and
                # launching it: starting again is harmless (the wrapper's lock).
                self.runs.append(self._start_action(st, task))
            self._follow(st, task, report.last_output_at, report.phase)
        elif report.phase == Phase.EXITED:
            st = self._started(st)
            self._exited(st, task, report.result, report.changes, report.error)
        else:
            st = self._started(st)
            if not report.abandoned:
                # Its wrapper is gone, but an agent it started may live on: stop
                # what is left before another run of the task shares the workspace.
                # (A run lost with its host is abandoned: the engine kills it when
                # the host returns, and the task need not wait for that.)
                self.stop(st, "run lost")
            self._fail_attempt(st, task, f"run lost: {report.error or 'it died without a result'}")

    def _started(self, st: Status) -> Status:
        """A run that ended between two passes did run: the history says so."""
        if st.state == State.ASSIGNED:
            return self.move(st, State.RUNNING, f"run {st.run_id} started on {st.host}")
        return st

    def _unreachable(self, st: Status, why: str) -> None:
        self.move(st, State.CREATED,
                  f"host {st.host} unreachable before the start ({why}); no attempt spent",
                  attempt=max(st.attempt - 1, 0), host=None, run_id=None, started_at=None)

    def _no_report(self, st: Status, task: Task) -> None:
        host = st.host or ""
        down = self.observed.hosts_down.get(host)
        if down is not None:
            if self._never_started(st):
                # The host answers but is down: it has no trace of the run, and
                # nothing starts there while it is down. Placing the task elsewhere
                # spends no attempt.
                self._unreachable(st, f"{host} is down: {down}")
            return  # wait for the host; the SSH executor decides when it is lost
        if st.state == State.ASSIGNED:
            # Written before the start: the controller may have died before it. The
            # start is idempotent by run id, so asking again never runs it twice.
            self.runs.append(self._start_action(st, task))
        else:
            self._fail_attempt(st, task, f"run {st.run_id} vanished from host {host}")

    def _never_started(self, st: Status) -> bool:
        """An assignment no start of this process began (it died before the
        start) and of which its host, answering, has no trace. A run this
        process started may be just being set up, so it is never taken for one."""
        run_id = st.run_id or ""
        return (st.state == State.ASSIGNED and run_id in self.observed.absent
                and run_id not in self.observed.launched)

    def _follow(self, st: Status, task: Task, last_output: datetime | None, phase: Phase) -> None:
        if phase == Phase.RUNNING:
            st = self._started(st)
        started = st.started_at or self.now
        if task.timeout is not None and self.now - started >= timedelta(seconds=task.timeout):
            self.stop(st, "timeout")
            self._fail_attempt(st, task, f"timed out after {_human(task.timeout)}",
                               Result(outcome=Outcome.TIMEOUT))
            return
        last = max(last_output or started, started)
        if self.now - last >= timedelta(seconds=task.stall_timeout):
            self.stop(st, "stalled")
            self._fail_attempt(st, task, f"stalled: no output for {_human(task.stall_timeout)}",
                               Result(outcome=Outcome.STALLED))

    def _exited(self, st: Status, task: Task, result: Result | None, changes: bool,
                error: str) -> None:
        result = _accumulate(st.result, result or Result(outcome=Outcome.FAILURE, summary=error))
        if result.outcome != Outcome.SUCCESS:
            why = error or lead_line(result.summary)
            self._fail_attempt(st, task, why or f"agent failed (exit code {result.exit_code})", result)
        elif not changes and st.review_count == 0:
            self._fail_attempt(st, task, "the agent exited successfully but changed nothing",
                               replace(result, outcome=Outcome.NO_CHANGES))
        else:
            self.move(st, State.REVIEW_PENDING, f"branch {task.branch} pushed: merge {task.branch} "
                      f"into {task.base}, or add a feedback entry to tasks/{task.id}.yaml",
                      result=result, finished_at=self.now)

    def _fail_attempt(self, st: Status, task: Task, why: str, result: Result | None = None) -> None:
        result = result or st.result
        if st.attempt >= task.max_attempts:
            self.move(st, State.FAILED,
                      f"{why}; attempts used up ({st.attempt} of {task.max_attempts})"
                      + rerun_hint(task), result=result, finished_at=self.now)
            return
        s = self.desired.settings
        delay = backoff(st.attempt, s.backoff_base, s.backoff_max)
        self.move(st, State.RETRYING,
                  f"{why}; attempt {st.attempt + 1} of {task.max_attempts} in {_human(delay)}",
                  result=result, finished_at=self.now,
                  retry_at=self.now + timedelta(seconds=delay))

    def _retrying(self, st: Status, task: Task) -> None:
        if st.attempt >= task.max_attempts:
            self.move(st, State.FAILED, f"attempts used up ({st.attempt} of max_attempts "
                      f"{task.max_attempts})" + rerun_hint(task), retry_at=None,
                      finished_at=self.now)
        elif st.retry_at is None or self.now >= st.retry_at:
            self.move(st, State.CREATED, "backoff over", retry_at=None)

    def _review(self, st: Status, task: Task) -> None:
        if st.task in self.observed.merged:
            self.move(st, State.COMPLETED, f"{task.branch} merged into {task.base}",
                      finished_at=self.now)
            return
        if not _new_feedback(st, task):
            self.runs += pulls.pr_actions(self, st, task, self.desired, self.observed, self.now)
            return
        seen, digest = len(task.feedback), _feedback_digest(task.feedback)
        if st.review_count >= task.max_reviews:
            self.move(st, State.FAILED, f"new feedback but the review limit is reached "
                      f"({st.review_count} of max_reviews {task.max_reviews})" + rerun_hint(task),
                      finished_at=self.now, feedback_seen=seen, feedback_last=digest)
            return
        self.move(st, State.REVISING, f"feedback: {lead_line(task.feedback[-1])[:120]}",
                  review_count=st.review_count + 1, attempt=0, feedback_seen=seen,
                  feedback_last=digest)

    # ---- phase 2: place the tasks that want a host -------------------------------
    def _place(self, ids: list[str]) -> None:
        place = Placement(self.desired, self.observed, [self.status(i) for i in ids])
        waiting = [(t, st) for t, st in ((self.desired.tasks.get(i), self.status(i)) for i in ids)
                   if t is not None and st is not None and st.state in WANTS_HOST]
        waiting.sort(key=lambda p: (-p[0].priority, p[1].created_at or self.now, p[0].id))
        for task, st in waiting:
            if task.suspend:
                self.note(st, f"suspended: suspend is true in tasks/{task.id}.yaml")
                continue
            if st.stopping is not None or task.id in self.stops:
                continue    # one task never has two live runs
            why = place.blocker(task, self.status)
            if why is not None:
                self._block(st, why)
                continue
            host, why = place.choose(task)
            if host is None:
                self._wait(st, why)
                continue
            place.take(host)
            self._assign(st, task, host)

    def _block(self, st: Status, why: str) -> None:
        if st.state == State.BLOCKED:
            self.note(st, why)
        elif st.state == State.REVISING:
            self.note(st, why)   # stays revising: the revision still has to run
        else:
            self.move(st, State.BLOCKED, why)

    def _wait(self, st: Status, why: str) -> None:
        if st.state == State.BLOCKED:
            self.move(st, State.CREATED, why)
        else:
            self.note(st, why)

    def _assign(self, st: Status, task: Task, host: str) -> None:
        if st.state == State.BLOCKED:
            st = self.move(st, State.CREATED, "unblocked")
        seq = st.runs + 1
        attempt = st.attempt + 1
        st = self.move(st, State.ASSIGNED,
                       f"assigned to {host}, attempt {attempt} of {task.max_attempts}",
                       host=host, run_id=run_id_for(task.id, seq, self.now), runs=seq,
                       attempt=attempt, started_at=self.now, finished_at=None,
                       retry_at=None, spec_commit=self.desired.commit or st.spec_commit)
        self.runs.append(self._start_action(st, task))

    def _start_action(self, st: Status, task: Task) -> StartRun:
        revision = st.review_count > 0
        return StartRun(task=task.id, host=st.host or "", run_id=st.run_id or "",
                        attempt=st.attempt, from_branch=revision,
                        feedback=(task.feedback + forge_events.review_feedback(st)
                                  if revision else ()),
                        previous_failure=_last_failure(st))


def _accumulate(previous: Result | None, new: Result) -> Result:
    """The new attempt's result, with cost and tokens summed over the task's runs.

    The pushed commit carries over from an earlier run when this one pushed
    nothing (a revision that changed nothing), so the merge check still has it.
    """
    if previous is None:
        return new
    costs = [c for c in (previous.cost_usd, new.cost_usd) if c is not None]
    return replace(new, tokens=previous.tokens + new.tokens,
                   cost_usd=round(sum(costs), 6) if costs else None,
                   commit=new.commit or previous.commit)


def _feedback_digest(feedback: tuple[str, ...]) -> str | None:
    return hashlib.sha256(feedback[-1].encode()).hexdigest()[:16] if feedback else None


def _new_feedback(st: Status, task: Task) -> bool:
    """An entry was added, or the last one was rewritten (people edit their notes)."""
    if len(task.feedback) != st.feedback_seen:
        return len(task.feedback) > st.feedback_seen    # fewer: notes were tidied away
    return (bool(task.feedback) and st.feedback_last is not None
            and _feedback_digest(task.feedback) != st.feedback_last)


def _last_failure(st: Status) -> str:
    for t in reversed(st.history):
        if t.to == State.RETRYING:
            return t.reason
    return ""


def _human(seconds: float) -> str:
    s = int(seconds)
    if s % 3600 == 0 and s >= 3600:
        return f"{s // 3600}h"
    if s % 60 == 0 and s >= 60:
        return f"{s // 60}m"
    return f"{s}s"


_REACTIONS = {
    State.ASSIGNED: _Pass._active,
    State.RUNNING: _Pass._active,
    State.RETRYING: _Pass._retrying,
    State.REVIEW_PENDING: _Pass._review,
}
