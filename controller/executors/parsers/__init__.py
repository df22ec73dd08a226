"""Read an agent's stdout and say what the attempt produced, as a `model.Result`.

Called by the executors (local and SSH) when a run has exited, with the agent
profile's `output` format, the run's stdout (at most its last 4 MiB, so the first
line may be cut in half) and the exit code (None when it is unknown). Parsing
never raises on any data (only on an unknown format name): garbage lines, a
truncated tail, non-UTF-8 bytes or megabytes of output all give a Result, and
the summary says what was missing.

One module per format, each with a `parse(text, exit_code)` that documents
what it reads: `codex` (codex-jsonl), `claude` (claude-json), `raw` (raw);
`common` holds what they share. Imports the vocabulary (`controller.model`) only.

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

from typing import Callable

from controller.executors.parsers import claude, codex, raw
from controller.executors.parsers.common import OUTCOMES, SUMMARY_LIMIT, clip
from controller.executors.parsers.raw import RAW_SUMMARY_LIMIT
from controller.model import Outcome, Result

__all__ = ["OUTCOMES", "RAW_SUMMARY_LIMIT", "SUMMARY_LIMIT", "parse"]

# The agent profile's `output` value -> the parser of that format.
_PARSERS: dict[str, Callable[[str, int | None], Result]] = {
    "codex-jsonl": codex.parse,
    "claude-json": claude.parse,
    "raw": raw.parse,
}


def parse(fmt: str, data: bytes, exit_code: int | None) -> Result:
    """Parse `data` (an agent's stdout, or its tail) in format `fmt`."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise ValueError(f"unknown output format {fmt!r}; known: {', '.join(sorted(_PARSERS))}")
    text = data.decode("utf-8", errors="replace")
    try:
        return parser(text, exit_code)
    except Exception as e:   # an agent's output is untrusted input: never a crash
        return Result(outcome=Outcome.FAILURE, exit_code=exit_code,
                      summary=clip(f"could not read the agent's {fmt} output ({type(e).__name__}: {e})"))
