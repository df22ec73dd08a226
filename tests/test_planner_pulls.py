"""Table tests of the planner's PR decisions (plan/pulls.py): open once, comment each
revision, back off after failures, gate by forge and allowed_repos. Pure."""
from dataclasses import replace
from datetime import timedelta

import pytest

from controller.model import (CommentPR, Desired, ForgeChange, ForgeFact, Observed, OpenPR,
                              PrCalls, PullRequest, SetStatus, State)
from controller.plan.planner import plan
from controller.plan.pulls import NOT_OPEN, pr_backoff
from tests.test_planner import NOW, OK, desired, status, task

FORGE = "http://forge.test:3000"
REPO = f"{FORGE}/team/app.git"
PR = PullRequest(4, f"{FORGE}/team/app/pulls/4")


def pending(**kw):
    kw.setdefault("result", replace(OK, summary="renamed x to y"))
    return status(state=State.REVIEW_PENDING, attempt=1, runs=1, host="local", run_id="t-run",
                  finished_at=NOW - timedelta(minutes=1), **kw)


def decide(st, calls=None, forge_url=FORGE, repo=REPO, allowed=(), facts=()):
    d = desired(task(repo=repo, title="Rename x", goal="rename x everywhere"))
    if allowed:
        d = Desired(**{**{f: getattr(d, f) for f in d.__dataclass_fields__},
                       "allowed_repos": allowed})
    obs = Observed(statuses={st.task: st}, forge_url=forge_url,
                   pr_calls={st.task: calls} if calls else {},
                   forge={st.task: tuple(facts)} if facts else {})
    return plan(d, obs, NOW)


def kinds(actions):
    return [type(a).__name__ for a in actions if not isinstance(a, SetStatus)]


def written(actions):
    return next((a.status for a in actions if isinstance(a, SetStatus)), None)


FAILED = PrCalls(failures=2, failed_at=NOW - timedelta(seconds=10), error="HTTP 500 from forge",
                 retry_at=NOW + timedelta(seconds=50))

# name, status, calls, forge_url, repo, allowed_repos, expected action kinds
CASES = [
    ("reviewed task without a pr: open it", pending(), None, FORGE, REPO, (), ["OpenPR"]),
    ("no forge configured: nothing", pending(), None, None, REPO, (), []),
    ("repo on another forge: nothing", pending(), None, FORGE, "https://else.test/a/b.git", (), []),
    ("local path repo: nothing", pending(), None, FORGE, "/r", (), []),
    ("repo not allowed: nothing", pending(), None, FORGE, REPO, ("https://other/*",), []),
    ("a call going on: nothing more", pending(), PrCalls(busy=True), FORGE, REPO, (), []),
    ("failed 10 s ago, backoff 60 s: wait", pending(), FAILED, FORGE, REPO, (), []),
    ("failed long ago: try again",
     pending(), replace(FAILED, retry_at=NOW - timedelta(minutes=4)), FORGE, REPO, (), ["OpenPR"]),
    ("pr recorded, no revision: nothing", pending(pr=PR), None, FORGE, REPO, (), []),
    ("a revision ended: comment it", pending(pr=PR, review_count=1), None, FORGE, REPO, (),
     ["CommentPR"]),
    ("the revision is commented already: nothing",
     pending(pr=PR, review_count=1, pr_comments=1), None, FORGE, REPO, (), []),
]


@pytest.mark.parametrize("name,st,calls,forge_url,repo,allowed,expected", CASES,
                         ids=[c[0] for c in CASES])
def test_pr_decisions(name, st, calls, forge_url, repo, allowed, expected):
    assert kinds(decide(st, calls, forge_url, repo, allowed)) == expected


def test_open_pr_carries_branch_base_title_and_a_body_with_summary_goal_and_status_path():
    (a,) = [a for a in decide(pending()) if isinstance(a, OpenPR)]
    assert (a.task, a.repo, a.head, a.base, a.title) == ("t", REPO, "task/t", "main", "Rename x")
    assert "renamed x to y" in a.body and "rename x everywhere" in a.body
    assert "status/t.yaml" in a.body


def test_a_failure_says_the_pr_is_not_open_yet_and_why_and_when_next():
    st = written(decide(pending(), FAILED))
    assert st is not None and st.state == State.REVIEW_PENDING
    assert st.message.startswith(NOT_OPEN) and "HTTP 500 from forge" in st.message
    assert "12:00:50" in st.message     # retry_at
    assert written(decide(st, FAILED)) is None      # said once, not rewritten every pass


def test_backoff_doubles_from_30_s_and_is_capped_at_10_min():
    assert [pr_backoff(n) for n in (1, 2, 3, 5, 10)] == [30, 60, 120, 480, 600]
    assert pr_backoff(3, 1.0, 3.0) == 3.0


def test_comment_names_the_revision_and_its_summary():
    (a,) = [a for a in decide(pending(pr=PR, review_count=2, pr_comments=1))
            if isinstance(a, CommentPR)]
    assert (a.number, a.revision) == (4, 2) and "renamed x to y" in a.body


def test_our_opened_fact_records_the_pr_and_counts_earlier_revisions_as_covered():
    st = pending(review_count=1, message=f"{NOT_OPEN} (x)")
    actions = decide(st, facts=[ForgeFact(ForgeChange.PR_OPENED, NOW, pr=PR)])
    new = written(actions)
    assert new.pr == PR and new.pr_comments == 1 and kinds(actions) == []
    assert new.message.startswith("pull request #4 open")


def test_commented_fact_records_the_revision_once():
    st = pending(pr=PR, review_count=1)
    fact = ForgeFact(ForgeChange.COMMENTED, NOW, pr=PullRequest(4, ""), revision=1)
    actions = decide(st, facts=[fact])
    assert written(actions).pr_comments == 1 and kinds(actions) == []
    assert written(actions).message.startswith("revision 1 commented on pull request #4")
    assert written(decide(replace(st, pr_comments=1), facts=[fact])) is None


def test_a_failed_poll_of_a_pr_with_nothing_to_comment_changes_no_message():
    assert decide(pending(pr=PR), FAILED) == []
