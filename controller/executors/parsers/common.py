"""What the format parsers share: the outcome words, limits, and readers of untrusted JSON.

Imported by `codex`, `claude`, `raw` and the package's `parse`; imports the
vocabulary (`controller.model`) only. Agent output is untrusted input, so
every reader here turns a value of the wrong type into an empty one instead
of raising.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

from controller.model import Outcome, Result

SUMMARY_LIMIT = 4000
OUTCOMES = (Outcome.SUCCESS, Outcome.FAILURE, Outcome.INTERRUPTED, Outcome.DENIED)

# ANSI escapes and C0 controls would end up in status YAML and in people's terminals.
_CONTROL_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f]")


def json_lines(text: str) -> Iterator[dict[str, Any]]:
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


def as_count(value: Any) -> int:
    """A token count from untrusted JSON: anything but a non-negative int is 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def clean(text: str) -> str:
    """`text` without ANSI escapes, control characters, CRLFs and outer blanks."""
    return _CONTROL_RE.sub("", text.replace("\r\n", "\n")).strip()


def clip(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Keep the head of a message: an agent's first sentences carry its gist."""
    text = clean(text)
    if len(text) <= limit:
        return text
    marker = f" ... [{len(text) - limit} more characters]"
    return text[: limit - len(marker)] + marker


def killed(exit_code: int | None) -> bool:
    """Exit codes of a process ended by a signal (Python's -N, a shell's 128+N)."""
    return exit_code is not None and (exit_code < 0 or 128 < exit_code <= 192)


def unfinished(exit_code: int | None, what: str, detail: str) -> tuple[Outcome, str]:
    """Outcome and summary when the output holds no final result."""
    if exit_code is None or exit_code == 0 or killed(exit_code):
        outcome = Outcome.INTERRUPTED
    else:
        outcome = Outcome.FAILURE
    code = "unknown exit code" if exit_code is None else f"exit code {exit_code}"
    summary = f"no {what} in the output ({code})"
    return outcome, f"{summary}: {detail}" if detail else summary


def honour_exit(outcome: Outcome, summary: str, exit_code: int | None) -> tuple[Outcome, str]:
    """A final result that says success cannot beat a non-zero exit code."""
    if outcome == Outcome.SUCCESS and exit_code not in (None, 0):
        return Outcome.FAILURE, f"exit code {exit_code} after a successful result: {summary}"
    return outcome, summary
