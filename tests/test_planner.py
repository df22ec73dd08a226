"""Table-driven tests of the pure planner: each case is inputs -> expected decisions."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from controller.model import (Agent, DeleteStatus, Desired, Host, Observed, Phase, RunRef,
                              Result, RunReport, SetStatus, Settings, StartRun, State,
                              Status, StopRun, Task)
from controller.plan.planner import backoff, plan

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)
AGENTS = {"demo": Agent("demo", ("demo",), requires=frozenset({"demo"})), "codex": Agent("codex", ("codex",), requires=frozenset({"codex"}))}
HOSTS = {"local": Host("local", capabilities=frozenset({"demo"}), max_concurrent=2),
         "big": Host("big", address="10.0.0.1", capabilities=frozenset({"codex", "gpu"}))}


TWO_BIG = {**HOSTS, "big2": Host("big2", address="10.0.0.2", capabilities=frozenset({"codex"}))}


def task(tid="t", **kw):
    base = dict(id=tid, title=tid, agent="demo", goal="g", repo="/r")
    base.update(kw)
    return Task(**base)


def status(tid="t", state=State.CREATED, **kw):
    kw.setdefault("created_at", NOW - timedelta(hours=1))
    return Status(task=tid, state=state, branch=f"task/{tid}", **kw)


def running(tid="t", state=State.RUNNING, host="local", attempt=1, **kw):
    return status(tid, state, host=host, run_id=f"{tid}-run", attempt=attempt, runs=attempt,
                  started_at=NOW - timedelta(minutes=5), **kw)


def desired(*tasks, hosts=HOSTS, invalid=None, settings=Settings()):
    return Desired(tasks={t.id: t for t in tasks}, hosts=hosts, agents=AGENTS,
                   settings=settings, invalid=invalid or {}, commit="c0ffee")


def observed(*statuses, runs=(), merged=(), down=None, absent=(), launched=()):
    return Observed(statuses={s.task: s for s in statuses}, runs={r.run_id: r for r in runs},
                    merged=frozenset(merged), hosts_down=down or {},
                    absent=frozenset(absent), launched=frozenset(launched))


def report(phase, tid="t", **kw):
    return RunReport(run_id=f"{tid}-run", phase=phase, **kw)


def states(actions):
    return {a.status.task: a.status.state for a in actions if isinstance(a, SetStatus)}


def starts(actions):
    return [(a.task, a.host) for a in actions if isinstance(a, StartRun)]


def stops(actions):
    return [(a.task, a.reason) for a in actions if isinstance(a, StopRun)]


def message(actions, tid="t"):
    return next(a.status.message for a in actions if isinstance(a, SetStatus) and a.status.task == tid)


OK = Result(outcome="success", exit_code=0, summary="done", commit="abc")
FAIL = Result(outcome="failure", exit_code=1, summary="boom\nmore")

# name, desired, observed, expected states, expected starts, expected stops, message fragment
CASES = [
    ("new task is assigned to the only capable host",
     desired(task()), observed(), {"t": State.ASSIGNED}, [("t", "local")], [], "assigned to local"),
    ("no capable host blocks with the capabilities",
     desired(task(requires=frozenset({"tpu"}))), observed(), {"t": State.BLOCKED}, [], [],
     "capabilities [demo, tpu]"),
    ("all capable hosts down blocks with their reasons",
     desired(task()), observed(down={"local": "ssh refused"}), {"t": State.BLOCKED}, [], [],
     "local: ssh refused"),
    ("unmet depends_on blocks",
     desired(task(depends_on=("a",)), task("a")), observed(running("a"), runs=[report(Phase.RUNNING, tid="a", last_output_at=NOW)]),
     {"t": State.BLOCKED}, [], [], "waiting for depends_on: a"),
    ("met depends_on unblocks and assigns",
     desired(task(depends_on=("a",)), task("a")),
     observed(status("t", State.BLOCKED), status("a", State.COMPLETED)),
     {"t": State.ASSIGNED}, [("t", "local")], [], "assigned"),
    ("invalid spec blocks with the message",
     desired(invalid={"t": "tasks/t.yaml:3: timeout: bad"}), observed(), {"t": State.BLOCKED}, [], [],
     "invalid spec: tasks/t.yaml:3"),
    ("invalid spec leaves a running attempt alone",
     desired(invalid={"t": "bad"}), observed(running()), {}, [], [], None),
    ("suspended task starts nothing",
     desired(task(suspend=True)), observed(status()), {"t": State.CREATED}, [], [], "suspended"),
    ("agent profile requirement picks the codex host",
     desired(task(agent="codex")), observed(), {"t": State.ASSIGNED}, [("t", "big")], [], "big"),
    ("assigned run starts running",
     desired(task()), observed(running(state=State.ASSIGNED), runs=[report(Phase.RUNNING)]),
     {"t": State.RUNNING}, [], [], "started on local"),
    ("assigned with no report is started again by the same run id (restart)",
     desired(task()), observed(running(state=State.ASSIGNED)), {}, [("t", "local")], [], None),
    ("running run vanished spends an attempt",
     desired(task()), observed(running()), {"t": State.RETRYING}, [], [], "vanished"),
    ("running on a down host waits",
     desired(task()), observed(running(), down={"local": "gone"}), {}, [], [], None),
    ("success with changes goes to review",
     desired(task()), observed(running(), runs=[report(Phase.EXITED, result=OK, changes=True)]),
     {"t": State.REVIEW_PENDING}, [], [], "branch task/t pushed"),
    ("review_pending says how to finish or revise",
     desired(task()), observed(running(), runs=[report(Phase.EXITED, result=OK, changes=True)]),
     {"t": State.REVIEW_PENDING}, [], [],
     "merge task/t into main, or add a feedback entry to tasks/t.yaml"),
    ("a dependency awaiting review must be merged",
     desired(task(depends_on=("a",)), task("a", base="develop")),
     observed(status("a", State.REVIEW_PENDING)), {"t": State.BLOCKED}, [], [],
     "waiting for depends_on: a (review_pending: it must be merged first: "
     "merge task/a into develop)"),
    ("a failed task says how to start it again",
     desired(task()), observed(running(attempt=3), runs=[report(Phase.EXITED, result=FAIL)]),
     {"t": State.FAILED}, [], [],
     "(3 of 3); set rerun: in tasks/t.yaml to any new value to start it again"),
    ("failed at the review limit says how to start it again",
     desired(task(feedback=("a", "b"), max_reviews=1)),
     observed(status(state=State.REVIEW_PENDING, review_count=1, feedback_seen=1)),
     {"t": State.FAILED}, [], [], "max_reviews 1); set rerun: in tasks/t.yaml to any new value"),
    ("failed by a lowered max_attempts says how to start it again",
     desired(task(max_attempts=1)), observed(status(state=State.RETRYING, attempt=1, retry_at=NOW)),
     {"t": State.FAILED}, [], [], "max_attempts 1); set rerun: in tasks/t.yaml"),
    ("success without changes is a failed attempt",
     desired(task()), observed(running(), runs=[report(Phase.EXITED, result=OK)]),
     {"t": State.RETRYING}, [], [], "changed nothing"),
    ("failure with attempts left retries with backoff",
     desired(task()), observed(running(), runs=[report(Phase.EXITED, result=FAIL)]),
     {"t": State.RETRYING}, [], [], "boom; attempt 2 of 3 in 10s"),
    ("failure on the last attempt fails the task",
     desired(task()), observed(running(attempt=3), runs=[report(Phase.EXITED, result=FAIL)]),
     {"t": State.FAILED}, [], [], "attempts used up (3 of 3)"),
    ("validation error message wins over the summary",
     desired(task()), observed(running(), runs=[report(Phase.EXITED, result=FAIL, error="validation `make` failed")]),
     {"t": State.RETRYING}, [], [], "validation `make` failed"),
    ("unreachable before start spends no attempt and goes elsewhere",
     desired(task(agent="codex"), hosts={**HOSTS, "big2": Host("big2", capabilities=frozenset({"codex"}))}),
     observed(running(host="big", state=State.ASSIGNED), runs=[report(Phase.UNREACHABLE, error="refused")],
              down={"big": "refused"}),
     {"t": State.ASSIGNED}, [("t", "big2")], [], "attempt 1 of 3"),
    ("an assignment never started, absent from its down host, goes elsewhere without an attempt",
     desired(task(agent="codex"), hosts=TWO_BIG),
     observed(running(host="big", state=State.ASSIGNED), down={"big": "version check failed"},
              absent=["t-run"]),
     {"t": State.ASSIGNED}, [("t", "big2")], [], "big2, attempt 1 of 3"),
    ("an assignment this process started is not taken for never started",
     desired(task(agent="codex"), hosts=TWO_BIG),
     observed(running(host="big", state=State.ASSIGNED), down={"big": "version check failed"},
              absent=["t-run"], launched=["t-run"]),
     {}, [], [], None),
    ("an assignment on a down host that did not answer waits for it",
     desired(task(agent="codex"), hosts=TWO_BIG),
     observed(running(host="big", state=State.ASSIGNED), down={"big": "refused"}),
     {}, [], [], None),
    ("an assignment absent from a healthy host is started again (idempotent by run id)",
     desired(task(agent="codex"), hosts=TWO_BIG),
     observed(running(host="big", state=State.ASSIGNED), absent=["t-run"]),
     {}, [("t", "big")], [], None),
    ("a running task absent from its down host waits: it did start",
     desired(task(agent="codex"), hosts=TWO_BIG),
     observed(running(host="big"), down={"big": "version check failed"}, absent=["t-run"]),
     {}, [], [], None),
    ("lost run spends an attempt and what is left of it is stopped",
     desired(task()), observed(running(), runs=[report(Phase.LOST, error="no result")]),
     {"t": State.RETRYING}, [], [("t", "run lost")], "run lost: no result"),
    ("timeout stops the run",
     desired(task(timeout=60)), observed(running(), runs=[report(Phase.RUNNING, last_output_at=NOW)]),
     {"t": State.RETRYING}, [], [("t", "timeout")], "timed out after 1m"),
    ("stall stops the run",
     desired(task(stall_timeout=120)),
     observed(running(), runs=[report(Phase.RUNNING, last_output_at=NOW - timedelta(minutes=3))]),
     {"t": State.RETRYING}, [], [("t", "stalled")], "stalled: no output for 2m"),
    ("recent output is not a stall",
     desired(task(stall_timeout=120)),
     observed(running(), runs=[report(Phase.RUNNING, last_output_at=NOW - timedelta(seconds=30))]),
     {}, [], [], None),
    ("backoff not over keeps retrying",
     desired(task()), observed(status(state=State.RETRYING, attempt=1, retry_at=NOW + timedelta(seconds=5))),
     {}, [], [], None),
    ("backoff over goes back to created and assigns",
     desired(task()), observed(status(state=State.RETRYING, attempt=1, retry_at=NOW)),
     {"t": State.ASSIGNED}, [("t", "local")], [], "attempt 2 of 3"),
    ("merged branch completes",
     desired(task()), observed(status(state=State.REVIEW_PENDING), merged=["t"]),
     {"t": State.COMPLETED}, [], [], "task/t merged into main"),
    ("new feedback starts a revision on the branch",
     desired(task(feedback=("please add tests",))), observed(status(state=State.REVIEW_PENDING)),
     {"t": State.ASSIGNED}, [("t", "local")], [], "assigned"),
    ("feedback past max_reviews fails",
     desired(task(feedback=("a", "b"), max_reviews=1)),
     observed(status(state=State.REVIEW_PENDING, review_count=1, feedback_seen=1)),
     {"t": State.FAILED}, [], [], "review limit is reached (1 of max_reviews 1)"),
    ("cancel stops the run",
     desired(task(cancel=True)), observed(running()), {"t": State.CANCELLED}, [], [("t", "cancelled")],
     "cancel is true"),
    ("cancel leaves a completed task alone",
     desired(task(cancel=True)), observed(status(state=State.COMPLETED)), {}, [], [], None),
    ("rerun restarts a failed task afresh",
     desired(task(rerun="2")), observed(status(state=State.FAILED, attempt=3, rerun_seen="1")),
     {"t": State.ASSIGNED}, [("t", "local")], [], "attempt 1 of 3"),
    ("rerun of a running task stops the old run and waits for it",
     desired(task(rerun="x")), observed(running()), {"t": State.CREATED}, [],
     [("t", "rerun requested")], "rerun requested (x)"),
    ("a waiting retry honours a lowered max_attempts",
     desired(task(max_attempts=1)), observed(status(state=State.RETRYING, attempt=1, retry_at=NOW)),
     {"t": State.FAILED}, [], [], "attempts used up (1 of max_attempts 1)"),
    ("invalid spec does not skip a retry's backoff",
     desired(invalid={"t": "bad"}),
     observed(status(state=State.RETRYING, attempt=1, retry_at=NOW + timedelta(seconds=5))),
     {}, [], [], None),
    ("an assigned run still starting is asked to start again",
     desired(task()), observed(running(state=State.ASSIGNED), runs=[report(Phase.STARTING)]),
     {}, [("t", "local")], [], None),
    ("a drained host does not count: the task is blocked with the down host's reason",
     desired(task(), hosts={**HOSTS, "drained": Host("drained", capabilities=frozenset({"demo"}), max_concurrent=0)}),
     observed(down={"local": "ssh refused"}), {"t": State.BLOCKED}, [], [], "local: ssh refused"),
    ("only drained hosts block the task",
     desired(task(), hosts={"drained": Host("drained", capabilities=frozenset({"demo"}), max_concurrent=0)}),
     observed(), {"t": State.BLOCKED}, [], [], "drained (max_concurrent: 0)"),
    ("pull mode waits for a pull agent",
     desired(task(mode="pull")), observed(), {"t": State.CREATED}, [], [], "pull agent"),
    ("completed task is left alone",
     desired(task()), observed(status(state=State.COMPLETED)), {}, [], [], None),
]


@pytest.mark.parametrize("name,d,o,want_states,want_starts,want_stops,fragment", CASES,
                         ids=[c[0] for c in CASES])
def test_plan_table(name, d, o, want_states, want_starts, want_stops, fragment):
    actions = plan(d, o, NOW)
    assert states(actions) == want_states
    assert starts(actions) == want_starts
    assert stops(actions) == want_stops
    if fragment is not None:
        assert fragment in message(actions)


def test_deleted_task_file_stops_run_then_deletes_status():
    actions = plan(desired(), observed(running()), NOW)
    assert stops(actions) == [("t", "task file deleted")]
    st = next(a.status for a in actions if isinstance(a, SetStatus))
    assert st.state == State.CANCELLED and st.stopping == ("local", "t-run")
    still = plan(desired(), observed(st, runs=[report(Phase.RUNNING)]), NOW)
    assert stops(still) == [("t", "still stopping")] and not any(isinstance(a, DeleteStatus) for a in still)
    gone = plan(desired(), observed(st, runs=[report(Phase.EXITED)]), NOW)
    assert gone == [DeleteStatus("t", "task file deleted")]


def test_deleted_task_without_run_deletes_status_at_once():
    assert plan(desired(), observed(status()), NOW) == [DeleteStatus("t", "task file deleted")]


def test_a_stopping_run_keeps_its_slot_and_blocks_a_second_run():
    d = desired(task(timeout=60))
    first = plan(d, observed(running(), runs=[report(Phase.RUNNING, last_output_at=NOW)]), NOW)
    st = next(a.status for a in first if isinstance(a, SetStatus))
    assert st.state == State.RETRYING and st.stopping == ("local", "t-run")
    later = NOW + timedelta(minutes=5)
    blocked = plan(d, observed(st, runs=[report(Phase.RUNNING)]), later)
    assert starts(blocked) == [] and stops(blocked) == [("t", "still stopping")]
    other = plan(desired(task(timeout=60), task("u"), hosts={"local": Host("local", capabilities=frozenset({"demo"}))}),
                 observed(st, runs=[report(Phase.RUNNING)]), later)
    assert starts(other) == []                  # the stopping run holds the only slot
    freed = plan(d, observed(st, runs=[report(Phase.EXITED)]), later)
    assert starts(freed) == [("t", "local")]
    assert next(a.status for a in freed if isinstance(a, SetStatus)).stopping is None


def test_stale_spec_follows_a_run_to_its_end():
    d = desired(invalid={"t": "tasks/t.yaml:3: bad"})
    stale = {"t": task()}
    o = replace(observed(running(), runs=[report(Phase.EXITED, result=OK, changes=True)]),
                stale=stale)
    assert states(plan(d, o, NOW)) == {"t": State.REVIEW_PENDING}
    o = replace(observed(status(state=State.REVIEW_PENDING), merged=["t"]), stale=stale)
    assert states(plan(d, o, NOW)) == {"t": State.COMPLETED}
    assert states(plan(d, replace(o, stale={}), NOW)) == {}    # without it: nothing to follow


def test_priority_order_and_max_concurrent():
    tasks = [task("low", priority=0), task("high", priority=5), task("mid", priority=1)]
    actions = plan(desired(*tasks), observed(), NOW)
    assert starts(actions) == [("high", "local"), ("mid", "local")]
    assert "free slot" in message(actions, "low")


def test_least_loaded_host_with_deterministic_tie_break():
    hosts = {n: Host(n, capabilities=frozenset({"demo"}), max_concurrent=2) for n in ("b", "a", "c")}
    busy = running("x", host="a")
    live = report(Phase.RUNNING, tid="x", last_output_at=NOW)
    actions = plan(desired(task("t1"), task("t2"), task("x"), hosts=hosts), observed(busy, runs=[live]), NOW)
    assert starts(actions) == [("t1", "b"), ("t2", "c")]


def test_finished_run_frees_its_slot_in_the_same_pass():
    hosts = {"local": Host("local", capabilities=frozenset({"demo"}), max_concurrent=1)}
    live = report(Phase.RUNNING, tid="a", last_output_at=NOW)
    done = report(Phase.EXITED, tid="a", result=OK, changes=True)
    actions = plan(desired(task("a"), task("b"), hosts=hosts), observed(running("a"), runs=[live]), NOW)
    assert starts(actions) == []
    actions = plan(desired(task("a"), task("b"), hosts=hosts), observed(running("a"), runs=[done]), NOW)
    assert starts(actions) == [("b", "local")]


def test_revision_run_continues_branch_with_feedback_and_history_lines():
    d = desired(task(feedback=("old", "use a dict")))
    o = observed(status(state=State.REVIEW_PENDING, review_count=0, feedback_seen=1, runs=1, attempt=1))
    actions = plan(d, o, NOW)
    start = next(a for a in actions if isinstance(a, StartRun))
    assert start.from_branch and start.feedback == ("old", "use a dict") and start.attempt == 1
    st = next(a for a in actions if isinstance(a, SetStatus))
    assert st.status.review_count == 1 and st.status.feedback_seen == 2
    assert [t.to for t in st.status.history] == [State.REVISING, State.ASSIGNED]
    assert st.reasons[0] == "review_pending -> revising (feedback: use a dict)"


def test_retry_carries_previous_failure_and_runs_fresh():
    o = observed(running(), runs=[report(Phase.EXITED, result=FAIL)])
    first = plan(desired(task()), o, NOW)
    st = next(a.status for a in first if isinstance(a, SetStatus))
    later = plan(desired(task()), observed(st), NOW + timedelta(seconds=10))
    start = next(a for a in later if isinstance(a, StartRun))
    assert "boom" in start.previous_failure and not start.from_branch and start.attempt == 2
    assert start.run_id != "t-run"


def test_new_task_status_fields():
    actions = plan(desired(task("fix-login")), observed(), NOW)
    st = next(a.status for a in actions if isinstance(a, SetStatus))
    assert st.run_id == "fix-login-20261121120000-1" and st.runs == 1 and st.attempt == 1
    assert st.spec_commit == "c0ffee" and st.branch == "task/fix-login" and st.created_at == NOW
    assert [(t.from_, t.to) for t in st.history] == [(None, State.CREATED), (State.CREATED, State.ASSIGNED)]


def test_history_is_bounded():
    st = status()
    for i in range(30):
        st = next(a.status for a in plan(desired(task(rerun=str(i))), observed(replace(st, state=State.FAILED)), NOW)
                  if isinstance(a, SetStatus))
    assert len(st.history) == 20


def test_focus_limits_the_pass():
    actions = plan(desired(task("a"), task("b")), observed(), NOW, focus=["b"])
    assert starts(actions) == [("b", "local")]


def test_same_inputs_same_actions():
    d, o = desired(task("a"), task("b", priority=2)), observed()
    assert plan(d, o, NOW) == plan(d, o, NOW)


@pytest.mark.parametrize("attempt,want", [(1, 10), (2, 20), (3, 40), (6, 300), (20, 300)])
def test_backoff(attempt, want):
    assert backoff(attempt, 10, 300) == want


def test_failed_dependency_says_what_to_do():
    actions = plan(desired(task(depends_on=("a",)), task("a")), observed(status("a", State.FAILED)), NOW)
    assert "a (failed: rerun it or drop it from depends_on)" in message(actions)


def test_cost_and_tokens_add_up_over_attempts_and_commit_carries_over():
    from controller.model import Tokens
    first = Result(outcome="failure", exit_code=1, cost_usd=0.5, tokens=Tokens(10, 20, 5))
    o = observed(running(), runs=[report(Phase.EXITED, result=first)])
    st = next(a.status for a in plan(desired(task()), o, NOW) if isinstance(a, SetStatus))
    second = Result(outcome="success", exit_code=0, cost_usd=0.25, tokens=Tokens(1, 2, 3), commit="c1")
    st = replace(st, state=State.RUNNING, run_id="t-run", attempt=2)
    o = observed(st, runs=[report(Phase.EXITED, result=second, changes=True)])
    done = next(a.status for a in plan(desired(task()), o, NOW) if isinstance(a, SetStatus))
    assert done.result.cost_usd == 0.75 and done.result.tokens == Tokens(11, 22, 8)
    revision = replace(done, state=State.RUNNING, review_count=1, run_id="t-run")
    o = observed(revision, runs=[report(Phase.EXITED, result=Result(outcome="success"))])
    again = next(a.status for a in plan(desired(task()), o, NOW) if isinstance(a, SetStatus))
    assert again.state == State.REVIEW_PENDING and again.result.commit == "c1"


def test_a_stop_on_a_down_host_is_not_taken_as_done():
    st = replace(status(state=State.CANCELLED), stopping=RunRef("local", "t-run"))
    assert plan(desired(task(cancel=True)), observed(st, down={"local": "gone"}), NOW) == []
    cleared = plan(desired(task(cancel=True)), observed(st), NOW)
    assert next(a.status for a in cleared if isinstance(a, SetStatus)).stopping is None


def test_an_edited_last_feedback_entry_asks_for_a_revision_too():
    from controller.plan.planner import _feedback_digest
    seen = status(state=State.REVIEW_PENDING, feedback_seen=1, feedback_last=_feedback_digest(("add tests",)))
    assert plan(desired(task(feedback=("add tests",))), observed(seen), NOW) == []
    edited = plan(desired(task(feedback=("add tests for the parser",))), observed(seen), NOW)
    assert states(edited) == {"t": State.ASSIGNED}
    st = next(a.status for a in edited if isinstance(a, SetStatus))
    assert st.feedback_last == _feedback_digest(("add tests for the parser",)) and st.review_count == 1
    old_file = replace(seen, feedback_last=None)     # a status written before the digest existed
    assert plan(desired(task(feedback=("changed",))), observed(old_file), NOW) == []


def test_a_run_lost_with_its_host_is_not_waited_for():
    o = observed(running(), runs=[report(Phase.LOST, error="host gone", abandoned=True)],
                 down={"local": "gone"})
    actions = plan(desired(task()), o, NOW)
    assert stops(actions) == [] and states(actions) == {"t": State.RETRYING}
    assert next(a.status for a in actions if isinstance(a, SetStatus)).stopping is None


def test_a_run_lost_on_a_host_that_answers_is_stopped_even_if_the_host_is_marked_down():
    o = observed(running(), runs=[report(Phase.LOST, error="wrapper died")],
                 down={"local": "agent version check failed"})
    assert stops(plan(desired(task()), o, NOW)) == [("t", "run lost")]


def test_deleting_feedback_entries_asks_for_nothing():
    from controller.plan.planner import _feedback_digest
    seen = status(state=State.REVIEW_PENDING, feedback_seen=2, feedback_last=_feedback_digest(("a", "b")))
    assert plan(desired(task(feedback=("a",))), observed(seen), NOW) == []


def test_a_never_started_assignment_says_why_it_moved():
    o = observed(running(host="big", state=State.ASSIGNED), down={"big": "version check failed"},
                 absent=["t-run"])
    actions = plan(desired(task(agent="codex"), hosts=TWO_BIG), o, NOW)
    st = next(a.status for a in actions if isinstance(a, SetStatus))
    assert st.attempt == 1 and st.host == "big2"
    assert ("host big unreachable before the start (big is down: version check failed); "
            "no attempt spent") in [h.reason for h in st.history]
