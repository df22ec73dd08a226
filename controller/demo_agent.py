"""A tiny deterministic coding agent for `fleet demo` and for end-to-end tests.

Run by an agent profile as `python -m controller.demo_agent [--fail-first]
[--fail-always] [--prompt-file PATH]` inside a task's workspace (a git checkout
of the target repository on branch task/<id>). It reads the prompt built by
controller.plan.prompt (stdin by default), appends one line to NOTES.md (the task's
title, plus the newest reviewer note on a revision), commits it, and prints its
result the way `claude -p --output-format json` does, so the demo exercises the
real claude-json parser. No model, no network: the same prompt always gives the
same note and the same session id.

--fail-first fails when FLEET_ATTEMPT (exported by the run wrapper) is "1" on a
first run (not a revision, whose prompt carries reviewer feedback), so the demo
shows one retry; --fail-always fails every time, so it shows `failed`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from controller.plan.prompt import FEEDBACK_HEADING

NOTES = "NOTES.md"
# Fixed, so the session id depends on the prompt alone.
_NAMESPACE = uuid.UUID("6b1f3c1e-4a53-4f5e-9d0a-f1ee7de30a11")
_GIT = ["git", "-c", "user.name=demo-agent", "-c", "user.email=demo@fleet.invalid",
        "-c", "commit.gpgsign=false"]


def extract_title(prompt: str) -> str:
    """The first `# ` heading, else the first non-empty line."""
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("# "):
            return line[2:].strip()
    return lines[0] if lines else "untitled task"


def extract_feedback(prompt: str) -> list[str]:
    """The numbered notes under the reviewer-feedback heading, oldest first."""
    notes: list[str] = []
    inside = False
    for line in prompt.splitlines():
        if line.startswith("#"):
            inside = line.strip() == FEEDBACK_HEADING
            continue
        if not inside:
            continue
        item = re.match(r"^\d+\.\s+(.*)$", line)
        if item:
            notes.append(item.group(1).strip())
        elif notes and line.startswith("  ") and line.strip():
            notes[-1] += " " + line.strip()     # a multi-line note's continuation
    return notes


def note_line(title: str, feedback: list[str]) -> str:
    if feedback:
        return f"- {title}: revised after feedback: {feedback[-1]}\n"
    return f"- {title}\n"


def result_json(prompt: str, text: str, *, is_error: bool) -> str:
    """One result object in the shape of `claude -p --output-format json`."""
    session = uuid.uuid5(_NAMESPACE, prompt)
    return json.dumps({
        "type": "result",
        "subtype": "error_during_execution" if is_error else "success",
        "is_error": is_error,
        "duration_ms": 1,
        "num_turns": 1,
        "result": text,
        "stop_reason": "end_turn",
        "session_id": str(session),
        "total_cost_usd": 0,
        "usage": {"input_tokens": min(len(prompt) // 4, 100_000), "output_tokens": 12,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        "permission_denials": [],
        "terminal_reason": "completed",
        "uuid": str(uuid.uuid5(session, text)),
    })


def work(prompt: str, workdir: Path) -> str:
    """Append the note and commit it; returns the one-line summary."""
    title = extract_title(prompt)
    feedback = extract_feedback(prompt)
    notes = workdir / NOTES
    if not notes.exists():
        notes.write_text("# Notes\n\n", encoding="utf-8")
    with notes.open("a", encoding="utf-8") as out:
        out.write(note_line(title, feedback))
    verb = "revised" if feedback else "noted"
    _git(workdir, "add", NOTES)
    _git(workdir, "commit", "-q", "-m", f"demo-agent: {verb} {title}")
    if feedback:
        return f"Revised NOTES.md for '{title}' after feedback: {feedback[-1]}"
    return f"Added a note for '{title}' to NOTES.md and committed it"


def _git(workdir: Path, *args: str) -> None:
    proc = subprocess.run([*_GIT, *args], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def _read_prompt(prompt_file: str | None) -> str:
    data = Path(prompt_file).read_bytes() if prompt_file else sys.stdin.buffer.read()
    return data.decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.demo_agent",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--fail-first", action="store_true",
                        help="fail when FLEET_ATTEMPT is 1, except on a revision")
    parser.add_argument("--fail-always", action="store_true", help="fail every attempt")
    parser.add_argument("--prompt-file", help="read the prompt from this file, not stdin")
    args = parser.parse_args(argv)
    prompt = _read_prompt(args.prompt_file)
    first = os.environ.get("FLEET_ATTEMPT") == "1" and FEEDBACK_HEADING not in prompt
    if args.fail_always or (args.fail_first and first):
        why = "first attempt" if not args.fail_always else "every attempt (--fail-always)"
        print(result_json(prompt, f"demo failure on the {why}", is_error=True), flush=True)
        return 1
    try:
        summary = work(prompt, Path.cwd())
    except (OSError, RuntimeError) as exc:
        print(result_json(prompt, f"demo agent could not commit: {exc}", is_error=True),
              flush=True)
        return 1
    print(result_json(prompt, summary, is_error=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
