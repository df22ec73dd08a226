"""claude-json: the output of `claude -p`, in any of its three shapes.

`--output-format json` prints one result object, `--verbose` a JSON array of
every message on one line, `--output-format stream-json` NDJSON. The last
`type: result` object is the outcome: its `result` text is the summary, with
`session_id`, `total_cost_usd`, `usage` (`input_tokens`, `output_tokens`,
`cache_read_input_tokens`), `is_error`, `subtype` and `errors` (an error
subtype or `is_error` is a failure) and `permission_denials` (not empty gives
`denied`, naming each refused call's tool and what it wanted). Without a
result object, the last `assistant` message's text is the detail. When the
4 MiB tail window cut off the head of a `--verbose` array, the last result
object is still found inside it. Called through the package's `parse`.
"""
from __future__ import annotations

import json
from typing import Any

from controller.executors.parsers.common import (
    as_count, as_dict, as_float, as_list, as_str, clip, honour_exit, json_lines, unfinished)
from controller.model import Outcome, Result, Tokens


def _events(text: str) -> list[dict[str, Any]]:
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
    events = list(json_lines(text))
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
        denial = as_dict(denial)
        tool = as_str(denial.get("tool_name")) or "unknown tool"
        tool_input = as_dict(denial.get("tool_input"))
        what = next((as_str(tool_input.get(k)) for k in _DENIAL_DETAIL if as_str(tool_input.get(k))), "")
        named.append(f"{tool} ({what[:200]})" if what else tool)
    return named


def _outcome(result: dict[str, Any], exit_code: int | None) -> tuple[Outcome, str]:
    text = as_str(result.get("result"))
    subtype = as_str(result.get("subtype")) or "unknown"
    errors = [e for e in as_list(result.get("errors")) if isinstance(e, str)]
    if result.get("is_error") is True or subtype != "success":
        detail = text or "; ".join(errors) or "no message"
        return Outcome.FAILURE, f"{subtype}: {detail}" if subtype != "success" else detail
    denied = _denials(result)
    if denied:
        return Outcome.DENIED, f"permission denied for {', '.join(denied)}; result: {text or '(none)'}"
    return honour_exit(Outcome.SUCCESS, text, exit_code)


def _last_assistant_text(events: list[dict[str, Any]]) -> str:
    for event in reversed(events):
        if event.get("type") != "assistant":
            continue
        blocks = as_dict(event.get("message")).get("content")
        texts = [as_str(as_dict(b).get("text")) for b in as_list(blocks) if as_dict(b).get("type") == "text"]
        if any(texts):
            return "\n".join(t for t in texts if t)
    return ""


def parse(text: str, exit_code: int | None) -> Result:
    events = _events(text)
    results = [e for e in events if e.get("type") == "result"]
    session_id = next((as_str(e.get("session_id")) for e in reversed(events)
                       if as_str(e.get("session_id"))), None)
    if not results:
        outcome, summary = unfinished(exit_code, "result message", _last_assistant_text(events))
        return Result(outcome=outcome, exit_code=exit_code, summary=clip(summary),
                      session_id=session_id)
    result = results[-1]
    usage = as_dict(result.get("usage"))
    tokens = Tokens(as_count(usage.get("input_tokens")), as_count(usage.get("output_tokens")),
                    as_count(usage.get("cache_read_input_tokens")))
    outcome, summary = _outcome(result, exit_code)
    return Result(outcome=outcome, exit_code=exit_code, summary=clip(summary),
                  session_id=as_str(result.get("session_id")) or session_id,
                  cost_usd=as_float(result.get("total_cost_usd")), tokens=tokens)
