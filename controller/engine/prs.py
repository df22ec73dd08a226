"""The engine's calls to the forge: the planner's OpenPR and CommentPR, and PR polls.

Made by core.Engine when the controller config has a `forge:`. Each call is a
blocking Forge method run in a worker thread (asyncio.to_thread), in the
background, at most one per task at a time. What a call found comes back to
the next pass as ForgeFacts (`take`): the PR opened, the comment made, and,
from a poll (observe.forge_poll), a PR merged or closed and its reviews. Its
failures in a row are kept per task as PrCalls, which the pure planner reads
to back off. Every call is counted in telemetry.pr_call.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Callable

from controller.forge import Forge, ForgeError, RepoRef, on_forge
from controller.model import (Action, CommentPR, Desired, ForgeChange, ForgeFact, OpenPR, PrCalls,
                              PullRequest, State, Status)
from controller.observe.forge_poll import poll_pr
from controller.plan.pulls import PR_BACKOFF_BASE, PR_BACKOFF_MAX, pr_backoff
from controller.status.book import StatusBook
from controller.telemetry import Telemetry

log = logging.getLogger("fleet")


def merge_facts(webhooks: Mapping[str, tuple[ForgeFact, ...]],
                found: Mapping[str, list[ForgeFact]]) -> dict[str, tuple[ForgeFact, ...]]:
    """The webhooks' facts, then what the engine's own forge calls found, by task."""
    out = dict(webhooks)
    for task, facts in found.items():
        out[task] = out.get(task, ()) + tuple(facts)
    return out


class PullRequests:
    def __init__(self, forge: Forge, telemetry: Telemetry, clock: Callable[[], datetime],
                 poll_interval: float,
                 retry: tuple[float, float] = (PR_BACKOFF_BASE, PR_BACKOFF_MAX)):
        self.forge = forge
        self._retry = retry
        self.poll_interval = poll_interval
        self._telemetry = telemetry
        self._clock = clock
        self._jobs: dict[str, asyncio.Task[None]] = {}       # task id -> its call going on
        self._failures: dict[str, PrCalls] = {}
        self._facts: dict[str, list[ForgeFact]] = {}
        self._polled_at = float("-inf")
        self._poll_soon: set[str] = set()

    # ---- for the pass -------------------------------------------------------------
    def take(self) -> tuple[dict[str, list[ForgeFact]], dict[str, PrCalls]]:
        """The facts found since the last pass, and the state of each task's calls."""
        facts, self._facts = self._facts, {}
        calls = dict(self._failures)
        for task in self._jobs:
            calls[task] = PrCalls(busy=True)
        return facts, calls

    def give_back(self, facts: Mapping[str, list[ForgeFact]]) -> None:
        """A pass whose statuses were not written: its facts go to the next one."""
        for task, found in facts.items():
            self._facts[task] = found + self._facts.get(task, [])

    def ask(self, action: OpenPR | CommentPR) -> None:
        if action.task in self._jobs:
            return
        self._run(action.task, self._open if isinstance(action, OpenPR) else self._comment,
                  action)

    def after_pass(self, actions: Iterable[Action], webhooks: Mapping[str, tuple[ForgeFact, ...]],
                   book: StatusBook, desired: Desired, reviewers: frozenset[str] | None) -> None:
        """Carry out the pass's forge actions, then poll the PRs that are due."""
        for a in actions:
            if isinstance(a, (OpenPR, CommentPR)):
                self.ask(a)
        if reviewers is None:
            self.poll_soon(t for t, facts in webhooks.items() if any(
                f.review is not None and f.association is None and f.write_access is None
                for f in facts))
        repos = {t: task.repo for t, task in desired.tasks.items()}
        self.poll(book.in_states(State.REVIEW_PENDING, State.REVISING), repos,
                  asyncio.get_running_loop().time())

    def poll_soon(self, tasks: Iterable[str]) -> None:
        """Read these tasks' PRs at the next poll check (a Forgejo review says nothing of
        its author's permission: the API's `official` flag does)."""
        self._poll_soon |= set(tasks)

    def poll(self, statuses: Iterable[Status], repos: Mapping[str, str], now: float) -> None:
        """Read the PRs of `statuses` when the poll is due (or asked for)."""
        due = now - self._polled_at >= self.poll_interval
        if due:
            self._polled_at = now
        for st in statuses:
            if st.pr is None or st.task not in repos or not (due or st.task in self._poll_soon):
                continue
            self._poll_soon.discard(st.task)
            ref = on_forge(repos[st.task], self.forge.web_url)
            if ref is not None and st.task not in self._jobs:
                self._run(st.task, self._poll, (ref, st.pr))

    def busy(self) -> bool:
        return bool(self._jobs)

    async def drain(self) -> None:
        if self._jobs:
            await asyncio.gather(*self._jobs.values(), return_exceptions=True)

    # ---- the calls ------------------------------------------------------------------
    def _run(self, task: str, call: Callable[[str, object], list[ForgeFact]], arg: object) -> None:
        async def job() -> None:
            try:
                found = await asyncio.to_thread(call, task, arg)
            except ForgeError as e:
                self._telemetry.pr_call("transient" if e.transient else "permanent")
                n, at = self._failures.get(task, PrCalls()).failures + 1, self._clock()
                wait = max(pr_backoff(n, *self._retry), e.retry_after or 0.0)
                self._failures[task] = PrCalls(failures=n, failed_at=at, error=e.message,
                                               retry_at=at + timedelta(seconds=wait))
                log.warning("forge call for task %s failed: %s", task, e.message)
            except Exception:
                self._telemetry.pr_call("permanent")
                log.exception("forge call for task %s failed", task)
            else:
                self._failures.pop(task, None)
                if found:
                    self._facts.setdefault(task, []).extend(found)
            finally:
                self._jobs.pop(task, None)
        self._jobs[task] = asyncio.get_running_loop().create_task(job())

    def _ok(self) -> None:
        self._telemetry.pr_call("ok")

    def _ref(self, repo: str) -> RepoRef:
        ref = on_forge(repo, self.forge.web_url)
        if ref is None:
            raise ForgeError(f"{repo} is not on the forge {self.forge.web_url}", transient=False)
        return ref

    def _open(self, task: str, arg: object) -> list[ForgeFact]:
        assert isinstance(arg, OpenPR)
        pr = self.forge.open_pr(self._ref(arg.repo), arg.head, arg.base, arg.title, arg.body)
        self._ok()
        log.info("task %s: pull request #%d open (%s)", task, pr.number, pr.html_url)
        return [ForgeFact(ForgeChange.PR_OPENED, self._clock(),
                          pr=PullRequest(pr.number, pr.html_url))]

    def _comment(self, task: str, arg: object) -> list[ForgeFact]:
        assert isinstance(arg, CommentPR)
        self.forge.comment(self._ref(arg.repo), arg.number, arg.body)
        self._ok()
        return [ForgeFact(ForgeChange.COMMENTED, self._clock(), pr=self._pr_of(arg),
                          revision=arg.revision)]

    def _pr_of(self, arg: CommentPR) -> PullRequest:
        return PullRequest(arg.number, "")

    def _poll(self, task: str, arg: object) -> list[ForgeFact]:
        assert isinstance(arg, tuple)
        ref, pr = arg
        return poll_pr(self.forge, ref, pr, self._clock(), self._ok)
