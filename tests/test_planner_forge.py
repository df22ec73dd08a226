"""Table tests of the planner's decisions on forge facts (plan/forge_events.py): pure."""
from dataclasses import replace
from datetime import timedelta

import pytest

from controller.model import (ForgeChange, ForgeFact, Observed, Phase, PullRequest, ReviewNote,
                              RunReport, SetStatus, StartRun, State, Transition)
from controller.plan.forge_events import closed_prefix, reviewer_counts
from controller.plan.planner import plan
from tests.test_planner import NOW, OK, desired, running, status, stops, task

PR = PullRequest(7, "http://forge/o/r/pulls/7")
OTHER_PR = PullRequest(8, "http://forge/o/r/pulls/8")
AT = NOW - timedelta(seconds=5)


def fact(change, pr=PR, **kw):
    return ForgeFact(change=change, at=AT, pr=pr, **kw)


def review(rid="r1", author="alice", text="please rename x\nand more", **kw):
    kind = kw.pop("change", ForgeChange.CHANGES_REQUESTED)
    kw.setdefault("association", "COLLABORATOR")
    return fact(kind, review=ReviewNote(rid, author, f"{PR.url}#r-{rid}", text), **kw)


def pending(**kw):
    kw.setdefault("result", OK)
    kw.setdefault("pr", PR)
    return status(state=State.REVIEW_PENDING, attempt=1, runs=1, host="local",
                  run_id="t-run", finished_at=NOW - timedelta(minutes=1), **kw)


def failed_by_close():
    reason = f"{closed_prefix(7)} (x); reopen it"
    return status(state=State.FAILED, pr=PR, message=reason, result=OK,
                  history=(Transition(NOW, State.REVIEW_PENDING, State.FAILED, reason),))


def decide(st, *facts, reviewers=None, tsk=None):
    live = RunReport("t-run", Phase.RUNNING, last_output_at=NOW)
    obs = Observed(statuses={st.task: st}, runs={"t-run": live}, forge={st.task: tuple(facts)},
                   reviewers=reviewers)
    return plan(desired(tsk or task()), obs, NOW)


def written(actions):
    sets = [a.status for a in actions if isinstance(a, SetStatus)]
    return sets[0] if sets else None


def went_to(st, state):
    """In `state` now, or moved through it in this pass (revising is assigned at once)."""
    return st.state == state or any(t.to == state and t.at == NOW for t in st.history)


# name, status, facts, expected state (None: no status written), fields that must hold
CASES = [
    ("opened records the PR, the state stays", pending(pr=None), [fact(ForgeChange.PR_OPENED)],
     State.REVIEW_PENDING, {"pr": PR}),
    ("opened while the run is on records the PR too", running(), [fact(ForgeChange.PR_OPENED)],
     State.RUNNING, {"pr": PR}),
    ("the same PR recorded twice changes nothing", pending(), [fact(ForgeChange.PR_OPENED)],
     None, {}),
    ("synchronized with the PR known changes nothing", pending(),
     [fact(ForgeChange.PR_OPENED), fact(ForgeChange.PR_OPENED)], None, {}),
    ("merged completes", pending(), [fact(ForgeChange.PR_MERGED)], State.COMPLETED,
     {"message": "pull request #7 merged on the forge (http://forge/o/r/pulls/7)"}),
    ("merged twice is one completion", status(state=State.COMPLETED, pr=PR),
     [fact(ForgeChange.PR_MERGED)], None, {}),
    ("closed unmerged fails naming the PR with the rerun hint", pending(),
     [fact(ForgeChange.PR_CLOSED)], State.FAILED, {"pr": PR}),
    ("closed twice fails once", failed_by_close(), [fact(ForgeChange.PR_CLOSED)], None, {}),
    ("closed of another PR of the branch is not the task's", pending(),
     [fact(ForgeChange.PR_CLOSED, pr=OTHER_PR)], None, {}),
    ("reopened after the close returns to review", failed_by_close(),
     [fact(ForgeChange.PR_REOPENED)], State.REVIEW_PENDING, {"finished_at": None}),
    ("reopened of a task that failed otherwise stays failed",
     status(state=State.FAILED, pr=PR, message="attempts used up"),
     [fact(ForgeChange.PR_REOPENED)], None, {}),
    ("closed then reopened in one pass ends in review", pending(),
     [fact(ForgeChange.PR_CLOSED), fact(ForgeChange.PR_REOPENED)], State.REVIEW_PENDING, {}),
    ("changes requested by a collaborator revise", pending(), [review()], State.REVISING,
     {"review_count": 1, "attempt": 1}),
    ("a review id already kept is not counted twice",
     pending(reviews=(review().review,)), [review()], None, {}),
    ("changes requested by a member on GitHub revise", pending(),
     [review(association="MEMBER")], State.REVISING, {}),
    ("changes requested by a contributor change nothing", pending(),
     [review(association="CONTRIBUTOR")], None, {}),
    ("a Forgejo review (no association) of unknown access changes nothing", pending(),
     [review(association=None)], None, {}),
    ("a Forgejo review the API says may write revises", pending(),
     [review(association=None, write_access=True)], State.REVISING, {}),
    ("a review past max_reviews fails", pending(review_count=3), [review()], State.FAILED,
     {"review_count": 3}),
    ("a review while a revision runs is kept for the next one", running(review_count=1),
     [review()], State.RUNNING, {"review_count": 1}),
    ("an approval adds a history line only", pending(),
     [review(change=ForgeChange.APPROVED)], State.REVIEW_PENDING, {}),
    ("an approval twice is one history line",
     pending(history=(Transition(NOW, State.REVIEW_PENDING, State.REVIEW_PENDING,
                                 "pull request #7 approved by alice"),)),
     [review(change=ForgeChange.APPROVED)], None, {}),
    ("a push to the task branch is activity", pending(last_activity_at=NOW - timedelta(hours=1)),
     [fact(ForgeChange.BRANCH_PUSHED, pr=None)], State.REVIEW_PENDING, {"last_activity_at": AT}),
    ("an older push changes nothing", pending(last_activity_at=NOW),
     [fact(ForgeChange.BRANCH_PUSHED, pr=None)], None, {}),
    ("facts about a cancelled task change nothing", status(state=State.CANCELLED),
     [fact(ForgeChange.PR_MERGED), review()], None, {}),
]


@pytest.mark.parametrize("name,st,facts,state,fields", CASES, ids=[c[0] for c in CASES])
def test_forge_decisions(name, st, facts, state, fields):
    new = written(decide(st, *facts))
    if state is None:
        assert new is None, new
        return
    assert new is not None and went_to(new, state)
    for key, value in fields.items():
        assert getattr(new, key) == value, key


def test_closed_message_names_the_pr_and_says_how_to_start_again():
    new = written(decide(pending(), fact(ForgeChange.PR_CLOSED)))
    assert new.message.startswith(
        "pull request #7 closed without merging (http://forge/o/r/pulls/7)")
    assert "reopen it" in new.message and "set rerun: in tasks/t.yaml" in new.message


def test_merged_while_running_stops_the_run_and_completes():
    actions = decide(running(), fact(ForgeChange.PR_MERGED))
    assert written(actions).state == State.COMPLETED
    assert stops(actions) == [("t", "its pull request was merged")]


def test_the_review_is_kept_and_goes_into_the_revision_prompt():
    actions = decide(pending(), review(text="rename x"))
    new = written(actions)
    assert new.reviews == (review(text="rename x").review,)
    assert any(t.reason == "changes requested by alice on pull request #7: rename x"
               for t in new.history)
    start = next(a for a in actions if isinstance(a, StartRun))
    assert start.from_branch and any("rename x" in f and "alice" in f for f in start.feedback)


def test_task_feedback_and_reviews_both_reach_the_prompt():
    actions = decide(pending(feedback_seen=1), review(text="from the forge"),
                     tsk=task(feedback=("from the file",)))
    start = next(a for a in actions if isinstance(a, StartRun))
    assert start.feedback[0] == "from the file" and "from the forge" in start.feedback[1]


def test_the_reviewers_list_decides_alone():
    assert went_to(written(decide(pending(), review(author="Bob", association=None),
                                   reviewers=frozenset({"bob"}))), State.REVISING)
    # on the list or not, not GitHub's association
    assert written(decide(pending(), review(author="eve", association="OWNER"),
                          reviewers=frozenset({"bob"}))) is None


def test_reviewer_counts_says_why():
    ok, why = reviewer_counts(review(association=None), None)
    assert not ok and "reviewers:" in why
    ok, why = reviewer_counts(review(association="OWNER"), None)
    assert ok and "OWNER" in why


def test_facts_for_a_task_without_a_file_change_nothing():
    st = pending()
    obs = Observed(statuses={"t": st}, forge={"gone": (fact(ForgeChange.PR_MERGED),)})
    assert [a for a in plan(desired(task()), obs, NOW) if isinstance(a, SetStatus)] == []


def test_reapplied_facts_after_a_crash_change_nothing():
    """The journal is re-applied when the controller died between commit and truncate."""
    facts = (fact(ForgeChange.PR_OPENED), review(), review(change=ForgeChange.APPROVED, rid="a"))
    first = written(decide(pending(pr=None), *facts))
    again = decide(replace(first, state=State.REVISING), *facts)
    assert written(again) is None or written(again).reviews == first.reviews


def test_reviews_round_trip_through_the_status_file():
    from controller.status import statusfile
    note = ReviewNote("sha256:0123abcd", "alice", PR.url, 'rename "x"\n# not a comment: yes')
    st = pending(reviews=(note, replace(note, id="42", text="")))
    assert statusfile.loads(statusfile.dumps(st)).reviews == st.reviews
