"""Read an agent's stdout and say what the attempt produced, as a `model.Result`.

Called by the executors (local and SSH) when a run has exited, with the agent
profile's `output` format, the run's stdout (at most its last 4 MiB, so the first
line may be cut in half) and the exit code (None when it is unknown). Parsing
never raises on any data (only on an unknown format name): garbage lines, a truncated tail, non-UTF-8 bytes or megabytes of
output all give a Result, and the summary says what was missing.

Formats:
  codex-jsonl  `codex exec --json`: one event per line. `thread.started` gives the
               session id, the last `turn.completed` the (cumulative) usage, the
               last `agent_message` item the summary; `turn.failed` ends the turn
               with an error.
  claude-json  `claude -p --output-format json` (one result object), the JSON
               array that `--verbose` prints, or `--output-format stream-json`
               NDJSON. The last `type: result` object is the outcome.
  raw          any other CLI: the exit code is the outcome, the last 20 non-empty
               lines (at most 2,000 characters) are the summary.

Outcome vocabulary (`Result.outcome`):
  success      the agent reported a finished turn and the exit code is 0 or unknown.
  failure      the agent reported an error (`turn.failed`, `is_error`, an error
               subtype), or the process exited non-zero, or exited 1..128 without
               a final result.
  interrupted  the output holds no final result and the process was killed by a
               signal, exited 0, or its exit code is unknown: the run was cut
               short (timeout, stall, lost connection), not finished.
  denied       Claude Code finished but refused tool calls (`permission_denials`
               is not empty); the summary names the denied tools. Codex has no
               such report: its sandbox denials appear as failed commands only.
A non-zero exit code is never reported as success. The executor may replace the
outcome with `timeout` or `stalled` when it was the one that stopped the run.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator

from controller.model import Result, Tokens

SUMMARY_LIMIT = 4000
RAW_SUMMARY_LIMIT = 2000
RAW_SUMMARY_LINES = 20
OUTCOMES = ("success", "failure", "interrupted", "denied")

# ANSI escapes and C0 controls would end up in status YAML and in people's terminals.
_CONTROL_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f]")


def parse(fmt: str, data: bytes, exit_code: int | None) -> Result:
    """Parse `data` (an agent's stdout, or its tail) in format `fmt`."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown output format {fmt!r}; known: {', '.join(sorted(_PARSERS))}")
    text = data.decode("utf-8", errors="replace")
    try:
        return parser(text, exit_code)
    except Exception as e:   # an agent's output is untrusted input: never a crash
        return Result(outcome="failure", exit_code=exit_code,
                      summary=_clip(f"could not read the agent's {fmt} output ({type(e).__name__}: {e})"))


# ---- shared helpers ----------------------------------------------------------

def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects among `text`'s lines; anything else is skipped.

    Split on "\\n" only: str.splitlines() would also split inside JSON strings
    that hold a raw U+2028 or \\x1c, which serde_json does not escape.
    """
    for line in text.split("\n"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:   # a cut first line, garbage, a truncated last line
            continue
        if isinstance(obj, dict):
            yield obj


def _int(value: Any) -> int:
    """A token count from untrusted JSON: anything but a non-negative int is 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clean(text: str) -> str:
    return _CONTROL_RE.sub("", text.replace("\r\n", "\n")).strip()


def _clip(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Keep the head of a message: an agent's first sentences carry its gist."""
    text = _clean(text)
    if len(text) <= limit:
        return text
    marker = f" ... [{len(text) - limit} more characters]"
    return text[: limit - len(marker)] + marker


def _killed(exit_code: int | None) -> bool:
    """Exit codes of a process ended by a signal (Python's -N, a shell's 128+N)."""
    return exit_code is not None and (exit_code < 0 or 128 < exit_code <= 192)


def _unfinished(exit_code: int | None, what: str, detail: str) -> tuple[str, str]:
    """Outcome and summary when the output holds no final result."""
    if exit_code is None or exit_code == 0 or _killed(exit_code):
        outcome = "interrupted"
    else:
        outcome = "failure"
    code = "unknown exit code" if exit_code is None else f"exit code {exit_code}"
    summary = f"no {what} in the output ({code})"
    return outcome, f"{summary}: {detail}" if detail else summary


def _honour_exit(outcome: str, summary: str, exit_code: int | None) -> tuple[str, str]:
    """A final result that says success cannot beat a non-zero exit code."""
    if outcome == "success" and exit_code not in (None, 0):
        return "failure", f"exit code {exit_code} after a successful result: {summary}"
    return outcome, summary


# ---- codex exec --json -------------------------------------------------------

def _error_text(message: str) -> str:
    """Codex passes the model endpoint's JSON error body through as a string."""
    try:
        body = json.loads(message)
    except ValueError:
        return message
    error = _dict(_dict(body).get("error"))
    inner = _str(error.get("message"))
    if not inner:
        return message
    kind = _str(error.get("type"))
    return f"{inner} ({kind})" if kind else inner


def _parse_codex(text: str, exit_code: int | None) -> Result:
    session_id = None
    usage: dict[str, Any] = {}
    message = ""
    last_error = ""
    terminal = None            # "completed" or "failed"
    failure = ""
    for event in _json_lines(text):
        kind = event.get("type")
        if kind == "thread.started" and session_id is None:
            session_id = _str(event.get("thread_id")) or None
        elif kind == "turn.started":
            terminal = None    # a new turn: only its own end counts
        elif kind == "turn.completed":
            terminal = "completed"
            usage = _dict(event.get("usage"))   # cumulative for the thread: keep the last
        elif kind == "turn.failed":
            terminal = "failed"
            failure = _error_text(_str(_dict(event.get("error")).get("message")))
        elif kind == "error":
            last_error = _error_text(_str(event.get("message")))
        elif kind in ("item.started", "item.updated", "item.completed"):
            item = _dict(event.get("item"))
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                message = item["text"]
    tokens = Tokens(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                    _int(usage.get("cached_input_tokens")))
    if terminal == "completed":
        outcome, summary = _honour_exit("success", message, exit_code)
    elif terminal == "failed":
        outcome, summary = "failure", f"turn failed: {failure or last_error or 'no error message'}"
    else:
        detail = f"last error: {last_error}" if last_error else message
        outcome, summary = _unfinished(exit_code, "turn.completed or turn.failed", detail)
    return Result(outcome=outcome, exit_code=exit_code, summary=_clip(summary),
                  session_id=session_id, tokens=tokens)


# ---- claude -p --output-format json / stream-json ----------------------------

def _claude_events(text: str) -> list[dict[str, Any]]:
    """The messages in Claude Code's output, whichever of its three shapes it is."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None     # NDJSON, or a document cut by the tail window
        if isinstance(doc, dict):
            return [doc]
        if isinstance(doc, list):
            return [m for m in doc if isinstance(m, dict)]
    events = list(_json_lines(text))
    if not any(e.get("type") == "result" for e in events):
        events.extend(_salvage_result(text))
    return events


def _salvage_result(text: str, tries: int = 5) -> list[dict[str, Any]]:
    """Find the last result object inside a JSON array whose head was cut off.

    The `--verbose` array is a single line, so losing its start to the tail
    window makes it unparseable as a whole, while its last element is intact.
    """
    decoder = json.JSONDecoder()
    end = len(text)
    for _ in range(tries):
        pos = text.rfind('"type":"result"', 0, end)
        if pos < 0:
            return []
        start = text.rfind("{", 0, pos)
        end = pos
        if start < 0:
            continue
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "result":
            return [obj]
    return []


# The input field that says what a denied call wanted: Bash's command, Edit's
# and Write's file, WebFetch's url (seen from the real 2.1.197), Grep's pattern.
_DENIAL_DETAIL = ("command", "file_path", "url", "pattern", "path")


def _denials(result: dict[str, Any]) -> list[str]:
    """`Bash (echo hi > x)` for each denied tool call."""
    denials = result.get("permission_denials") or []
    if not isinstance(denials, list):
        return ["(unreadable permission_denials)"]
    named = []
    for denial in denials:
        denial = _dict(denial)
        tool = _str(denial.get("tool_name")) or "unknown tool"
        tool_input = _dict(denial.get("tool_input"))
        what = next((_str(tool_input.get(k)) for k in _DENIAL_DETAIL if _str(tool_input.get(k))), "")
        named.append(f"{tool} ({what[:200]})" if what else tool)
    return named


def _claude_outcome(result: dict[str, Any], exit_code: int | None) -> tuple[str, str]:
    text = _str(result.get("result"))
    subtype = _str(result.get("subtype")) or "unknown"
    errors = [e for e in _list(result.get("errors")) if isinstance(e, str)]
    if result.get("is_error") is True or subtype != "success":
        detail = text or "; ".join(errors) or "no message"
        return "failure", f"{subtype}: {detail}" if subtype != "success" else detail
    denied = _denials(result)
    if denied:
        return "denied", f"permission denied for {', '.join(denied)}; result: {text or '(none)'}"
    return _honour_exit("success", text, exit_code)


def _last_assistant_text(events: list[dict[str, Any]]) -> str:
    for event in reversed(events):
        if event.get("type") != "assistant":
            continue
        blocks = _dict(event.get("message")).get("content")
        texts = [_str(_dict(b).get("text")) for b in _list(blocks) if _dict(b).get("type") == "text"]
        if any(texts):
            return "\n".join(t for t in texts if t)
    return ""


def _parse_claude(text: str, exit_code: int | None) -> Result:
    events = _claude_events(text)
    results = [e for e in events if e.get("type") == "result"]
    session_id = next((_str(e.get("session_id")) for e in reversed(events)
                       if _str(e.get("session_id"))), None)
    if not results:
        outcome, summary = _unfinished(exit_code, "result message", _last_assistant_text(events))
        return Result(outcome=outcome, exit_code=exit_code, summary=_clip(summary),
                      session_id=session_id)
    result = results[-1]
    usage = _dict(result.get("usage"))
    tokens = Tokens(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                    _int(usage.get("cache_read_input_tokens")))
    outcome, summary = _claude_outcome(result, exit_code)
    return Result(outcome=outcome, exit_code=exit_code, summary=_clip(summary),
                  session_id=_str(result.get("session_id")) or session_id,
                  cost_usd=_float(result.get("total_cost_usd")), tokens=tokens)


# ---- raw ---------------------------------------------------------------------

def _parse_raw(text: str, exit_code: int | None) -> Result:
    # The summary needs only the tail; don't split megabytes into lines for it.
    tail = _clean(text[-64 * 1024:])
    lines = [line.rstrip() for line in tail.split("\n") if line.strip()]
    summary = "\n".join(lines[-RAW_SUMMARY_LINES:])
    if len(summary) > RAW_SUMMARY_LIMIT:
        summary = "..." + summary[-(RAW_SUMMARY_LIMIT - 3):]
    if exit_code == 0:
        outcome = "success"
    elif exit_code is None or _killed(exit_code):
        outcome = "interrupted"
    else:
        outcome = "failure"
    return Result(outcome=outcome, exit_code=exit_code, summary=summary)


_PARSERS: dict[str, Callable[[str, int | None], Result]] = {
    "codex-jsonl": _parse_codex,
    "claude-json": _parse_claude,
    "raw": _parse_raw,
}
