"""status/<id>.yaml: exact format, exact round-trips, clear errors, speed."""
from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from controller.status import statusfile
from controller.model import (Lease, Outcome, PullRequest, Result, RunRef, State, Status, Tokens,
                              Transition)

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

NASTY = [
    "", " ", "  leading blanks", "trailing blank ", "a  b", "\t", "tab\there",
    "\n", "a\nb", "a\r\nb", "\r", "line\n  indented\n\n", "ends with newline\n",
    "yes", "No", "TRUE", "off", "On", "y", "n", "null", "Null", "~", "=", "<<",
    "010", "0x1F", "0o17", "1e3", "1.5", "-1", "+1", ".inf", "-.inf", ".nan", "1_000", "12:30",
    "2024-01-01", "2024-01-01T00:00:00Z", "3f2a9c0d1e2b3c4d5e6f708192a3b4c5d6e7f809",
    "- dash", "-", "--- doc", "...", "key: value", "key:", ":", "a:b", "http://x:80/y?q=1#f",
    "a #comment", "#hash", "a#b", "'single'", "it's", '"double"', 'say "hi"',
    "back\\slash", "C:\\users\\u1234", "\\n not a newline", "[list]", "{map: 1}", "a, b",
    "&anchor", "*alias", "!tag", "!!str x", "%directive", "@at", "`tick`", "|", "|-\n x", ">", "?", "? q",
    "é ünïcödé", "日本語のテキスト", "emoji 😀 and 👩‍💻", "\u2028", "\u2029", "\x85", "\x7f",
    "\x00", "\x1b[31mred\x1b[0m", "\ufeffbom", "\uffff", "\ufffe", "\xa0nbsp", "\u200bzero width",
    "x" * 5000, "multi\nline\nsummary: with `code`,\n- bullets\n# and headings\n",
]


def full_status(text: str = "plain words") -> Status:
    return Status(
        task="fix-login", state=State.REVIEW_PENDING, message=text, attempt=2, review_count=1,
        host="host-a", run_id="fix-login-3", branch="task/fix-login",
        pr=PullRequest(12, "https://forge.example/o/r/pulls/12"),
        spec_commit="3f2a9c0d1e2b3c4d5e6f708192a3b4c5d6e7f809",
        created_at=T0, started_at=T0 + timedelta(seconds=5), finished_at=T0 + timedelta(minutes=9),
        last_activity_at=T0 + timedelta(minutes=8), retry_at=T0 + timedelta(hours=1),
        lease=Lease("jeeves", text, T0 + timedelta(minutes=10)),
        result=Result("success", 0, text, "sess-1", 0.4231, Tokens(12000, 3400, 800), "ab12cd"),
        history=(Transition(T0, None, State.CREATED, text),
                 Transition(T0 + timedelta(seconds=1), State.CREATED, State.ASSIGNED, "to host-a")),
        runs=3, feedback_seen=1, rerun_seen=text)


GOLDEN = """\
task: fix-login
state: review_pending
message: plain words
attempt: 2
review_count: 1
host: host-a
run_id: fix-login-3
branch: task/fix-login
pr:
  number: 12
  url: https://forge.example/o/r/pulls/12
spec_commit: "3f2a9c0d1e2b3c4d5e6f708192a3b4c5d6e7f809"
created_at: 2024-05-01T12:00:00Z
started_at: 2024-05-01T12:00:05Z
finished_at: 2024-05-01T12:09:00Z
last_activity_at: 2024-05-01T12:08:00Z
retry_at: 2024-05-01T13:00:00Z
lease:
  agent: jeeves
  expires_at: 2024-05-01T12:10:00Z
  id: plain words
result:
  outcome: success
  exit_code: 0
  summary: plain words
  session_id: sess-1
  cost_usd: 0.4231
  tokens:
    input: 12000
    output: 3400
    cached: 800
  commit: ab12cd
history:
  - at: 2024-05-01T12:00:00Z
    to: created
    reason: plain words
  - at: 2024-05-01T12:00:01Z
    from: created
    to: assigned
    reason: to host-a
runs: 3
feedback_seen: 1
rerun_seen: plain words
"""


def test_full_status_has_the_documented_layout():
    assert statusfile.dumps(full_status()).decode() == GOLDEN
    assert statusfile.loads(GOLDEN.encode()) == full_status()


def test_the_documented_layout_is_valid_by_the_status_schema():
    from controller.desired import schema, yamlfile
    assert schema.errors("status", yamlfile.load(GOLDEN.encode()).data) == []


def test_none_fields_are_left_out():
    text = statusfile.dumps(Status(task="t1", state=State.CREATED)).decode()
    assert text == ("task: t1\nstate: created\nmessage: \"\"\nattempt: 0\nreview_count: 0\n"
                    "runs: 0\nfeedback_seen: 0\n")
    result = Result("failure", summary="x")
    text = statusfile.dumps(Status(task="t1", state=State.FAILED, result=result)).decode()
    assert "exit_code" not in text and "session_id" not in text and "cost_usd" not in text
    assert statusfile.loads(text.encode()).result == result


@pytest.mark.parametrize("text", NASTY)
def test_nasty_strings_round_trip_exactly(text):
    status = full_status(text)
    data = statusfile.dumps(status)
    assert statusfile.loads(data) == status
    # Any YAML reader must see the same strings, not only our loader.
    assert yaml.safe_load(data)["result"]["summary"] == text


def test_every_code_point_round_trips():
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(points), 8192):
        text = "".join(map(chr, points[i:i + 8192]))
        status = Status(task="t", state=State.CREATED, message=text)
        assert statusfile.loads(statusfile.dumps(status)).message == text


def test_lone_surrogates_become_replacement_characters():
    status = Status(task="t", state=State.CREATED, message="bad \udc80 byte")
    assert statusfile.loads(statusfile.dumps(status)).message == "bad \ufffd byte"


def test_history_keeps_the_last_twenty():
    history = tuple(Transition(T0 + timedelta(minutes=i), State.CREATED, State.ASSIGNED, f"n{i}")
                    for i in range(30))
    back = statusfile.loads(statusfile.dumps(Status(task="t", state=State.ASSIGNED, history=history)))
    assert back.history == history[-20:]


def test_times_are_utc_with_z_at_second_precision():
    cet = timezone(timedelta(hours=1))
    status = Status(task="t", state=State.RUNNING,
                    created_at=datetime(2024, 5, 1, 13, 0, 0, 999999, tzinfo=cet),
                    started_at=datetime(2024, 5, 1, 12, 0, 1))  # naive: taken as UTC
    text = statusfile.dumps(status).decode()
    assert "created_at: 2024-05-01T12:00:00Z\n" in text
    assert "started_at: 2024-05-01T12:00:01Z\n" in text
    back = statusfile.loads(text.encode())
    assert back.created_at == T0 and back.created_at.tzinfo is not None
    assert back.started_at == T0 + timedelta(seconds=1)


@pytest.mark.parametrize("cost", [0.0, 0.1, 3.0, 1e-05, 2.5e-07, 1e16, 1.5e300, 12345678.9])
def test_costs_stay_floats(cost):
    status = Status(task="t", state=State.COMPLETED, result=Result("success", cost_usd=cost))
    data = statusfile.dumps(status)
    assert statusfile.loads(data).result.cost_usd == cost
    assert isinstance(yaml.safe_load(data)["result"]["cost_usd"], float)


def test_odd_costs():
    def back(cost):
        status = Status(task="t", state=State.COMPLETED, result=Result("success", cost_usd=cost))
        return statusfile.loads(statusfile.dumps(status)).result.cost_usd
    assert back(math.inf) == math.inf and back(-math.inf) == -math.inf
    assert math.isnan(back(math.nan))


def test_missing_optional_fields_take_defaults():
    status = statusfile.loads(b"task: t\nstate: blocked\nresult:\n  outcome: failure\n"
                              b"history:\n  - at: 2024-05-01T12:00:00Z\n    to: blocked\n")
    assert status == Status(task="t", state=State.BLOCKED, result=Result("failure"),
                            history=(Transition(T0, None, State.BLOCKED, ""),))


def test_a_time_written_as_a_string_is_accepted():
    status = statusfile.loads(b'task: t\nstate: running\nstarted_at: "2024-05-01T14:00:00+02:00"\n')
    assert status.started_at == T0


@pytest.mark.parametrize("data, words", [
    (b"task: [unclosed", ["status/t.yaml", "not valid YAML"]),
    (b"- a list\n", ["status/t.yaml", "mapping", "list"]),
    (b"", ["status/t.yaml", "mapping", "NoneType"]),
    (b"state: running\n", ["'task'", "missing"]),
    (b"task: t\n", ["'state'", "missing"]),
    (b"task: t\nstate: sleeping\n", ["'state'", "sleeping", "running"]),
    (b"task: t\nstate: running\nattempt: two\n", ["'attempt'", "integer"]),
    (b"task: t\nstate: running\nattempt: true\n", ["'attempt'", "integer"]),
    (b"task: 12\nstate: running\n", ["'task'", "string"]),
    (b"task: t\nstate: running\nstarted_at: soon\n", ["'started_at'", "ISO 8601"]),
    (b"task: t\nstate: running\nstarted_at: 2024-05-01\n", ["'started_at'", "ISO 8601"]),
    (b"task: t\nstate: running\npr: 12\n", ["'pr'", "mapping"]),
    (b"task: t\nstate: running\nresult: done\n", ["result", "mapping"]),
    (b"task: t\nstate: running\nresult:\n  summary: x\n", ["result", "'outcome'"]),
    (b"task: t\nstate: running\nresult:\n  outcome: x\n  cost_usd: lots\n", ["cost_usd", "number"]),
    (b"task: t\nstate: running\nresult:\n  outcome: x\n  tokens: [1]\n", ["tokens", "mapping"]),
    (b"task: t\nstate: running\nhistory: {}\n", ["history", "list"]),
    (b"task: t\nstate: running\nhistory:\n  - to: running\n", ["history[0]", "'at'"]),
])
def test_corrupt_files_raise_a_clear_value_error(data, words):
    with pytest.raises(ValueError) as info:
        statusfile.loads(data, "status/t.yaml")
    for word in words:
        assert word in str(info.value)


def test_a_stopping_run_round_trips_with_its_names():
    data = statusfile.dumps(Status(task="t", state=State.CANCELLED, stopping=RunRef("h1", "t-1")))
    assert b"stopping:\n  host: h1\n  run_id: t-1\n" in data
    stopping = statusfile.loads(data).stopping
    assert isinstance(stopping, RunRef) and (stopping.host, stopping.run_id) == ("h1", "t-1")


LEASE = b"task: t\nstate: running\nlease:\n  agent: a\n  expires_at: 2024-05-01T12:00:00Z\n"


@pytest.mark.parametrize("data, words", [
    (b"task: t\nstate: running\npr:\n  url: u\n", ["pr", "'number'", "None"]),
    (b"task: t\nstate: running\npr:\n  number: 0\n  url: u\n", ["pr", "'number'", ">= 1"]),
    (b"task: t\nstate: running\npr:\n  number: 3\n", ["pr", "'url'", "missing"]),
    (LEASE, ["lease", "'id'", "missing"]),
    (LEASE.replace(b"2024-05-01T12:00:00Z", b"soon") + b"  id: l\n", ["lease", "'expires_at'", "ISO"]),
])
def test_pr_and_lease_say_which_field_is_wrong(data, words):
    with pytest.raises(ValueError) as info:
        statusfile.loads(data, "status/t.yaml")
    for word in words:
        assert word in str(info.value)


def test_enums_load_from_the_plain_words_of_older_files():
    status = statusfile.loads(GOLDEN.encode())
    assert status.result.outcome is Outcome.SUCCESS and status.state is State.REVIEW_PENDING
    assert isinstance(status.pr, PullRequest) and isinstance(status.lease, Lease)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_round_trips_as_its_word(outcome):
    data = statusfile.dumps(Status(task="t", state=State.FAILED, result=Result(outcome)))
    assert f"  outcome: {outcome.value}\n".encode() in data
    assert statusfile.loads(data).result.outcome is outcome


def test_an_unknown_outcome_names_the_known_ones():
    with pytest.raises(ValueError, match="'outcome'.*one of success, .*no_changes, got 'done'"):
        statusfile.loads(b"task: t\nstate: running\nresult:\n  outcome: done\n", "status/t.yaml")


def test_a_thousand_statuses_serialize_fast():
    statuses = [full_status(f"summary number {i}\nwith: two lines") for i in range(1000)]
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for s in statuses:
            statusfile.dumps(s)
        best = min(best, time.perf_counter() - start)
    assert best < 0.1, f"1,000 dumps took {best * 1000:.0f} ms"


def test_round_trips_with_hypothesis():
    import hypothesis
    import hypothesis.strategies as st
    times = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))
    states, text = st.sampled_from(list(State)), st.text()   # st.text() has no surrogates

    def opt(strategy):
        return st.one_of(st.none(), strategy)

    result = st.builds(
        Result, outcome=st.sampled_from(list(Outcome)), exit_code=opt(st.integers(-255, 255)), summary=text,
        session_id=opt(text), cost_usd=opt(st.floats(allow_nan=False)), commit=opt(text),
        tokens=st.builds(Tokens, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9)))
    history = st.lists(st.builds(Transition, at=times, from_=opt(states), to=states, reason=text),
                       max_size=20).map(tuple)
    status = st.builds(
        Status, task=text, state=states, message=text, attempt=st.integers(0, 10**6),
        review_count=st.integers(0, 99), host=opt(text), run_id=opt(text), branch=opt(text),
        pr=opt(st.builds(PullRequest, number=st.integers(1, 10**9), url=text)),
        spec_commit=opt(text), created_at=opt(times), started_at=opt(times),
        finished_at=opt(times), last_activity_at=opt(times), retry_at=opt(times),
        lease=opt(st.builds(Lease, agent=text, lease_id=text, expires_at=times)),
        result=opt(result), history=history, runs=st.integers(0, 1000),
        feedback_seen=st.integers(0, 100), rerun_seen=opt(text))

    @hypothesis.settings(max_examples=500, deadline=None)
    @hypothesis.given(status)
    def check(s):
        assert statusfile.loads(statusfile.dumps(s)) == s

    check()
