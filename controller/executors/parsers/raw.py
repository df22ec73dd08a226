"""raw: the output of any other CLI, read as plain text.

The exit code is the outcome (0 success; a signal or an unknown code
interrupted; anything else failure); the last 20 non-empty lines of the
output, at most 2,000 characters and without control characters, are the
summary. Nothing else is read. Called through the package's `parse`; the run
directory also asks for it when a run names a format this controller does not
know.
"""
from __future__ import annotations

from controller.executors.parsers.common import clean, killed
from controller.model import Outcome, Result

RAW_SUMMARY_LIMIT = 2000
RAW_SUMMARY_LINES = 20


def parse(text: str, exit_code: int | None) -> Result:
    # The summary needs only the tail; don't split megabytes into lines for it.
    tail = clean(text[-64 * 1024:])
    lines = [line.rstrip() for line in tail.split("\n") if line.strip()]
    summary = "\n".join(lines[-RAW_SUMMARY_LINES:])
    if len(summary) > RAW_SUMMARY_LIMIT:
        summary = "..." + summary[-(RAW_SUMMARY_LIMIT - 3):]
    if exit_code == 0:
        outcome = Outcome.SUCCESS
    elif exit_code is None or killed(exit_code):
        outcome = Outcome.INTERRUPTED
    else:
        outcome = Outcome.FAILURE
    return Result(outcome=outcome, exit_code=exit_code, summary=summary)
