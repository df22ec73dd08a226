"""The status/<id>.yaml file format: model.Status to YAML bytes and back.

The engine calls `dumps` for every status it writes in a reconcile pass and
`loads` for every status file it reads from the fleet repository. People read
these files in `git log -p status/<id>.yaml`, so the output is stable: fixed key
order, one key per line, None fields left out, times as UTC ISO 8601 with `Z`
at second precision, and only the last HISTORY_LIMIT transitions kept.

The emitter is our own, written for this one known shape, because yaml.dump's
pure-Python emitter is far too slow for thousands of files per pass. A string
is written plain only when it is plainly safe; anything else is quoted with
json.dumps, whose escapes are all valid YAML double-quoted escapes, so any text
(newlines, quotes, `#`, `yes`, `010`, unicode) reads back exactly.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from json.encoder import encode_basestring as _json_quote  # json's quoting, the C one
import yaml

from controller.model import (HISTORY_LIMIT, Lease, Outcome, PullRequest, Result, ReviewNote, RunRef, State, Status, Tokens,
                              Transition)

# Plain (unquoted) only when it starts with a letter and holds nothing YAML
# reads specially: no flow or tag indicators, no `#`, no `: ` and no trailing
# blank or colon (the last two are checked outside the regex, which is faster).
_PLAIN_CHARS = re.compile(r"[A-Za-z][A-Za-z0-9_.,;:/()'+=@% -]*")
# Words that a YAML 1.1 reader (PyYAML, or others that also take y/n) turns into
# a bool or null; quoted so they stay strings for every reader.
_KEYWORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n"})
# Characters that must not reach YAML raw and that json quoting leaves alone:
# DEL and C1 controls (not printable in YAML), line/paragraph separators (YAML
# 1.1 folds them as line breaks), BOM and the non-characters get \u escapes;
# lone surrogates (not encodable as UTF-8, no YAML escape) become U+FFFD.
_ODD = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")

_EMPTY_TOKENS = Tokens()
_STATE_TEXT = {s: s.value for s in State}
_STATES = {s.value: s for s in State}         # the reading side: text -> State
_OUTCOMES = {o.value: o for o in Outcome}


# ---- emitting --------------------------------------------------------------

def dumps(status: Status) -> bytes:
    """Serialize one status to the bytes of status/<id>.yaml."""
    s = status
    out = [f"task: {_scalar(s.task)}", f"state: {_state(s.state)}",
           f"message: {_scalar(s.message)}", f"attempt: {int(s.attempt)}",
           f"review_count: {int(s.review_count)}"]
    _opt(out, "host", s.host)
    _opt(out, "run_id", s.run_id)
    _opt(out, "branch", s.branch)
    if s.pr is not None:
        out.append(f"pr:\n  number: {int(s.pr.number)}\n  url: {_scalar(s.pr.url)}")
    _opt(out, "spec_commit", s.spec_commit)
    for key in ("created_at", "started_at", "finished_at", "last_activity_at", "retry_at"):
        value = getattr(s, key)
        if value is not None:
            out.append(f"{key}: {_time(value)}")
    if s.lease is not None:
        # This key order (id last) is what the untyped mapping wrote: kept so the bytes stay.
        out.append(f"lease:\n  agent: {_scalar(s.lease.agent)}\n"
                   f"  expires_at: {_time(s.lease.expires_at)}\n  id: {_scalar(s.lease.lease_id)}")
    if s.result is not None:
        _result(out, s.result)
    if s.history:
        out.append("history:")
        for t in s.history[-HISTORY_LIMIT:]:
            came = "" if t.from_ is None else f"\n    from: {_state(t.from_)}"
            out.append(f"  - at: {_time(t.at)}{came}\n    to: {_state(t.to)}"
                       f"\n    reason: {_scalar(t.reason)}")
    out.append(f"runs: {int(s.runs)}")
    out.append(f"feedback_seen: {int(s.feedback_seen)}")
    _opt(out, "feedback_last", s.feedback_last)
    _opt(out, "rerun_seen", s.rerun_seen)
    if s.stopping is not None:
        host, run_id = s.stopping
        out.append(f"stopping:\n  host: {_scalar(host)}\n  run_id: {_scalar(run_id)}")
    if s.reviews:
        out.append("reviews:")
        out += [f"  - id: {_scalar(r.id)}\n    author: {_scalar(r.author)}\n"
                f"    url: {_scalar(r.url)}\n    text: {_scalar(r.text)}" for r in s.reviews]
    if s.pr_comments:
        out.append(f"pr_comments: {int(s.pr_comments)}")
    out.append("")
    return "\n".join(out).encode("utf-8")


def _state(state: State) -> str:
    # States are plain words; the dict lookup is much cheaper than Enum.__str__.
    return _STATE_TEXT.get(state) or _scalar(str(state))


def _opt(out: list[str], key: str, value: str | None) -> None:
    if value is not None:
        out.append(f"{key}: {_scalar(value)}")


def _result(out: list[str], r: Result) -> None:
    out.append("result:")
    out.append(f"  outcome: {_scalar(r.outcome)}")
    if r.exit_code is not None:
        out.append(f"  exit_code: {int(r.exit_code)}")
    out.append(f"  summary: {_scalar(r.summary)}")
    if r.session_id is not None:
        out.append(f"  session_id: {_scalar(r.session_id)}")
    if r.cost_usd is not None:
        out.append(f"  cost_usd: {_float(float(r.cost_usd))}")
    t = r.tokens or _EMPTY_TOKENS
    out.append("  tokens:")
    out.append(f"    input: {int(t.input)}")
    out.append(f"    output: {int(t.output)}")
    out.append(f"    cached: {int(t.cached)}")
    if r.commit is not None:
        out.append(f"  commit: {_scalar(r.commit)}")


def _scalar(text: str) -> str:
    if (_PLAIN_CHARS.fullmatch(text) and ": " not in text and text[-1] not in " :"
            and text.lower() not in _KEYWORDS):
        return text
    quoted = _json_quote(text)
    # json quoting leaves these characters raw, so they can be fixed afterwards.
    return _ODD.sub(_escape_odd, quoted) if _ODD.search(quoted) else quoted


def _escape_odd(m: re.Match[str]) -> str:
    c = ord(m.group())
    return "\ufffd" if 0xD800 <= c <= 0xDFFF else f"\\u{c:04x}"


def _float(x: float) -> str:
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    text = repr(x)
    # YAML 1.1 reads `1e-05` as a string: a float needs a dot before the exponent.
    if "." not in text:
        text = text.replace("e", ".0e") if "e" in text else text + ".0"
    return text


def _time(dt: datetime) -> str:
    # A naive datetime is taken to be UTC already: the controller's clock is UTC.
    if dt.tzinfo is not None and dt.tzinfo is not timezone.utc and dt.utcoffset():
        dt = dt.astimezone(timezone.utc)
    return dt.isoformat()[:19] + "Z"


# ---- loading ---------------------------------------------------------------

def loads(data: bytes | str, where: str = "status file") -> Status:
    """Parse status file bytes. Raises ValueError naming `where` and the problem."""
    try:
        doc = yaml.load(data, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected a mapping of status fields, "
                         f"got {type(doc).__name__}")
    r = _Reader(doc, where)
    return Status(
        task=r.required_text("task"),
        state=r.required_state("state"),
        message=r.text("message") or "",
        attempt=r.integer("attempt"),
        review_count=r.integer("review_count"),
        host=r.text("host"),
        run_id=r.text("run_id"),
        branch=r.text("branch"),
        pr=_load_pr(r.mapping("pr"), where),
        spec_commit=r.text("spec_commit"),
        created_at=r.time("created_at"),
        started_at=r.time("started_at"),
        finished_at=r.time("finished_at"),
        last_activity_at=r.time("last_activity_at"),
        retry_at=r.time("retry_at"),
        lease=_load_lease(r.mapping("lease"), where),
        result=_load_result(doc.get("result"), where),
        history=_load_history(doc.get("history"), where),
        runs=r.integer("runs"),
        feedback_seen=r.integer("feedback_seen"),
        feedback_last=r.text("feedback_last"),
        rerun_seen=r.text("rerun_seen"),
        stopping=_load_stopping(r.mapping("stopping"), where),
        reviews=_load_reviews(doc.get("reviews"), where),
        pr_comments=r.integer("pr_comments"),
    )


def _load_pr(doc: dict[str, object] | None, where: str) -> PullRequest | None:
    if doc is None:
        return None
    r = _Reader(doc, f"{where}: pr")
    number = r.optional_integer("number")
    if number is None or number < 1:
        raise ValueError(f"{where}: pr: field 'number' must be a PR number (a whole number "
                         f">= 1), got {doc.get('number')!r}")
    return PullRequest(number=number, url=r.required_text("url"))


def _load_reviews(doc: object, where: str) -> tuple[ReviewNote, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ValueError(f"{where}: reviews must be a list, got {type(doc).__name__}")
    readers = [_Reader(item, f"{where}: reviews[{i}]") for i, item in enumerate(doc)]
    return tuple(ReviewNote(id=r.required_text("id"), author=r.required_text("author"),
                            url=r.required_text("url"), text=r.text("text") or "")
                 for r in readers)


def _load_lease(doc: dict[str, object] | None, where: str) -> Lease | None:
    if doc is None:
        return None
    r = _Reader(doc, f"{where}: lease")
    return Lease(agent=r.required_text("agent"), lease_id=r.required_text("id"),
                 expires_at=r.required_time("expires_at"))


def _load_stopping(doc: dict[str, object] | None, where: str) -> RunRef | None:
    if doc is None:
        return None
    host, run_id = doc.get("host"), doc.get("run_id")
    if not isinstance(host, str) or not isinstance(run_id, str):
        raise ValueError(f"{where}: stopping: needs host and run_id strings, got {doc!r}")
    return RunRef(host, run_id)


def _load_result(doc: object, where: str) -> Result | None:
    if doc is None:
        return None
    r = _Reader(doc, f"{where}: result")
    tokens = _Reader(r.doc.get("tokens") or {}, f"{where}: result.tokens")
    cost = r.doc.get("cost_usd")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))):
        raise ValueError(f"{where}: result.cost_usd must be a number, got {cost!r}")
    return Result(
        outcome=r.outcome("outcome"),
        exit_code=r.optional_integer("exit_code"),
        summary=r.text("summary") or "",
        session_id=r.text("session_id"),
        cost_usd=None if cost is None else float(cost),
        tokens=Tokens(tokens.integer("input"), tokens.integer("output"), tokens.integer("cached")),
        commit=r.text("commit"),
    )


def _load_history(doc: object, where: str) -> tuple[Transition, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise ValueError(f"{where}: history must be a list, got {type(doc).__name__}")
    out = []
    for i, item in enumerate(doc):
        r = _Reader(item, f"{where}: history[{i}]")
        out.append(Transition(at=r.required_time("at"), from_=r.state("from"),
                              to=r.required_state("to"), reason=r.text("reason") or ""))
    return tuple(out)


class _Reader:
    """Typed field access on one parsed mapping, with errors that name the field.

    A field a status must have is read by a `required_*` method, which raises
    when it is missing; the others return None (or the integer default) then.
    """

    def __init__(self, doc: object, where: str):
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(doc).__name__}")
        self.doc: dict[object, object] = doc
        self.where = where

    def _get(self, key: str, required: bool) -> object:
        value = self.doc.get(key)
        if value is None and required:
            raise ValueError(f"{self.where}: required field {key!r} is missing")
        return value

    def _bad(self, key: str, want: str, value: object) -> ValueError:
        return ValueError(f"{self.where}: field {key!r} must be {want}, got {value!r}")

    def text(self, key: str) -> str | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return value

    def required_text(self, key: str) -> str:
        value = self._get(key, True)
        if not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return value

    def integer(self, key: str, default: int = 0) -> int:
        value = self.optional_integer(key)
        return default if value is None else value

    def optional_integer(self, key: str) -> int | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer", value)
        return value

    def state(self, key: str) -> State | None:
        value = self._get(key, False)
        return None if value is None else self._as_state(key, value)

    def required_state(self, key: str) -> State:
        return self._as_state(key, self._get(key, True))

    def _as_state(self, key: str, value: object) -> State:
        if isinstance(value, str) and value in _STATES:
            return _STATES[value]
        raise self._bad(key, f"one of {', '.join(_STATES)}", value)

    def outcome(self, key: str) -> Outcome:
        value = self._get(key, True)
        if isinstance(value, str) and value in _OUTCOMES:
            return _OUTCOMES[value]
        raise self._bad(key, f"one of {', '.join(_OUTCOMES)}", value)

    def time(self, key: str) -> datetime | None:
        value = self._get(key, False)
        return None if value is None else self._as_time(key, value)

    def required_time(self, key: str) -> datetime:
        return self._as_time(key, self._get(key, True))

    def _as_time(self, key: str, value: object) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self._bad(key, "an ISO 8601 time", value) from None
        if not isinstance(value, datetime):
            raise self._bad(key, "an ISO 8601 time", value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value.utcoffset() else value

    def mapping(self, key: str) -> dict[str, object] | None:
        value = self.doc.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._bad(key, "a mapping", value)
        return value
