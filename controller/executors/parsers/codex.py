"""codex-jsonl: the output of `codex exec --json`, one event per line.

Reads `thread.started` (`thread_id`: the session id), the last
`turn.completed` (its `usage`, cumulative for the thread: `input_tokens`,
`output_tokens`, `cached_input_tokens`), the last `agent_message` item of
`item.started`/`item.updated`/`item.completed` (its `text`: the summary), and
`turn.failed` (ends the turn with its `error.message`); top-level `error`
events give the detail when no turn ended. A `turn.started` forgets the end
of any earlier turn. Called through the package's `parse`.
"""
from __future__ import annotations

import json
from typing import Any

from controller.executors.parsers.common import (
    as_count, as_dict, as_str, clip, honour_exit, json_lines, unfinished)
from controller.model import Outcome, Result, Tokens


def _error_text(message: str) -> str:
    """Codex passes the model endpoint's JSON error body through as a string."""
    try:
        body = json.loads(message)
    except ValueError:
        return message
    error = as_dict(as_dict(body).get("error"))
    inner = as_str(error.get("message"))
    if not inner:
        return message
    kind = as_str(error.get("type"))
    return f"{inner} ({kind})" if kind else inner


def parse(text: str, exit_code: int | None) -> Result:
    session_id = None
    usage: dict[str, Any] = {}
    message = ""
    last_error = ""
    terminal = None            # "completed" or "failed"
    failure = ""
    for event in json_lines(text):
        kind = event.get("type")
        if kind == "thread.started" and session_id is None:
            session_id = as_str(event.get("thread_id")) or None
        elif kind == "turn.started":
            terminal = None    # a new turn: only its own end counts
        elif kind == "turn.completed":
            terminal = "completed"
            usage = as_dict(event.get("usage"))   # cumulative for the thread: keep the last
        elif kind == "turn.failed":
            terminal = "failed"
            failure = _error_text(as_str(as_dict(event.get("error")).get("message")))
        elif kind == "error":
            last_error = _error_text(as_str(event.get("message")))
        elif kind in ("item.started", "item.updated", "item.completed"):
            item = as_dict(event.get("item"))
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                message = item["text"]
    tokens = Tokens(as_count(usage.get("input_tokens")), as_count(usage.get("output_tokens")),
                    as_count(usage.get("cached_input_tokens")))
    if terminal == "completed":
        outcome, summary = honour_exit(Outcome.SUCCESS, message, exit_code)
    elif terminal == "failed":
        outcome, summary = Outcome.FAILURE, f"turn failed: {failure or last_error or 'no error message'}"
    else:
        detail = f"last error: {last_error}" if last_error else message
        outcome, summary = unfinished(exit_code, "turn.completed or turn.failed", detail)
    return Result(outcome=outcome, exit_code=exit_code, summary=clip(summary),
                  session_id=session_id, tokens=tokens)
