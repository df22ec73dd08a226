"""Run directories: what an executor writes before a run and reads after it.

A run lives in `<workdir>/runs/<run_id>` on its host and works in the task's
workspace `<workdir>/work/<task_id>`. Before the start, `render` turns a RunSpec
into the files runwrapper.sh needs (as bytes, so any transport can write them);
while and after it runs, `report` turns what the wrapper left there into a
`model.RunReport`. Shared by the local executor and the SSH executor: nothing
here touches a process or a socket, and the only file access is
`read_snapshot`, for run dirs on this box.

Layout of a run dir (written by us / by the wrapper):
  run.env agent.sh validation.sh prompt format runwrapper.sh   (render)
  lock/ pid output stderr wrapper.log validation.log validation.tail result
The run dir carries its own copy of the wrapper and its output format, so a
controller restarted after an upgrade still reads and follows it from the dir alone.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import resources
from typing import Mapping

from controller.executors import parsers
from controller.executors import shell
from controller.model import (ID_RE, Outcome, OutputFormat, Phase, PromptMode, Result, RunReport,
                              RunSpec)
from controller.text import first_line

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
OUTPUT_TAIL = 4 * 1024 * 1024     # the parsers need the end of the output, not all of it
STDERR_TAIL = 64 * 1024
WRAPPER = "runwrapper.sh"
_PLACEHOLDER_RE = re.compile(r"\{(workdir|task_id|run_id|branch|prompt_file)\}")
_WORKSPACE_STEPS = ("clone", "fetch", "checkout")


@dataclass(frozen=True, slots=True)
class RunPaths:
    """Where one run lives on its host: POSIX paths, already resolved (no `~`)."""
    run_dir: str
    workspace: str

    @property
    def prompt_file(self) -> str:
        return posixpath.join(self.run_dir, "prompt")


def run_dir(workdir: str, run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    return posixpath.join(workdir, "runs", run_id)


def workspace(workdir: str, task_id: str) -> str:
    # The id becomes a directory name; a `/` or `..` in it would escape workdir.
    # fullmatch: `$` alone would let a trailing newline through.
    if not isinstance(task_id, str) or not ID_RE.fullmatch(task_id):
        raise ValueError(f"invalid task id {task_id!r}")
    return posixpath.join(workdir, "work", task_id)


def paths(workdir: str, task_id: str, run_id: str) -> RunPaths:
    return RunPaths(run_dir(workdir, run_id), workspace(workdir, task_id))


def wrapper_script() -> bytes:
    return resources.files(__package__).joinpath(WRAPPER).read_bytes()


# ---- before the run: RunSpec -> files ----------------------------------------

def substitute(command: tuple[str, ...], values: Mapping[str, str]) -> tuple[str, ...]:
    """The argv with its placeholders replaced, element by element, in one pass.

    One pass, so a value that itself contains `{branch}` is never substituted again.
    """
    return tuple(_PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], arg) for arg in command)


def render(spec: RunSpec, where: RunPaths) -> dict[str, bytes]:
    """The run dir's files, by name, ready to be written by any transport."""
    values = {"workdir": where.workspace, "task_id": spec.task_id, "run_id": spec.run_id,
              "branch": spec.branch, "prompt_file": where.prompt_file}
    argv = substitute(spec.command, values)
    checks = "".join(f"fleet_check {shell.quote(cmd)}\n" for cmd in spec.validation)
    parsers.parse(spec.output_format, b"", None)   # an unknown format fails now, not after the run
    for name in spec.pass_env:          # a bad name fails now, before any file is written
        shell.check_env_name(name)
    return {
        "run.env": _encode(_run_env(spec, where)),
        "agent.sh": _encode("# The agent's argv, written by fleet; run by runwrapper.sh.\n"
                            f"exec {shell.command_line(argv)}\n"),
        "validation.sh": _encode(checks),
        "prompt": _encode(spec.prompt),
        "format": _encode(spec.output_format + "\n"),
        WRAPPER: wrapper_script(),
    }


def _run_env(spec: RunSpec, where: RunPaths) -> str:
    # The host/agent env first, fleet's own after: a FLEET_* name in a profile
    # cannot redirect the run. A later duplicate name wins, as in the spec.
    user = dict(spec.env)
    fleet = {
        "FLEET_TASK_ID": spec.task_id,
        "FLEET_RUN_ID": spec.run_id,
        "FLEET_ATTEMPT": str(spec.attempt),
        "FLEET_REPO": spec.repo,
        "FLEET_BASE": spec.base,
        "FLEET_BRANCH": spec.branch,
        "FLEET_FROM_BRANCH": "1" if spec.from_branch else "0",
        "FLEET_WORKSPACE": where.workspace,
        "FLEET_RUN_DIR": where.run_dir,
        "FLEET_PROMPT_MODE": spec.prompt_mode,
        "FLEET_PROMPT_FILE": where.prompt_file,
    }
    if spec.prompt_mode not in tuple(PromptMode):
        raise ValueError(f"invalid prompt mode {spec.prompt_mode!r}")
    user = {k: v for k, v in user.items() if k not in fleet}
    return ("# Written by fleet, sourced by runwrapper.sh: every value is quoted.\n"
            + shell.env_script(user.items()) + shell.env_script(fleet.items()))


def _encode(text: str) -> bytes:
    # surrogateescape lets a str that came from undecodable bytes travel unchanged.
    return text.encode("utf-8", "surrogateescape")


# ---- after the run: files -> RunReport ---------------------------------------

@dataclass(frozen=True, slots=True)
class Snapshot:
    """One look at a run dir: everything `report` needs, however it was fetched."""
    result: bytes | None = None        # the `result` file; None while running
    output_tail: bytes = b""           # at most the last OUTPUT_TAIL bytes of `output`
    stderr_tail: bytes = b""
    fmt: str = "raw"                   # str: a run dir may name a format we do not know
    pid: int | None = None
    locked: bool = False               # a wrapper claimed the run
    last_output_at: float | None = None  # newest mtime of output/stderr/wrapper.log


def read_snapshot(path: str) -> Snapshot | None:
    """A local run dir's snapshot, or None when there is no such run dir."""
    if not os.path.isdir(path):
        return None
    mtimes = [m for m in (_mtime(os.path.join(path, n)) for n in ("output", "stderr", "wrapper.log"))
              if m is not None]
    fmt = (_read(os.path.join(path, "format")) or b"raw").decode("utf-8", "replace").strip()
    pid_text = (_read(os.path.join(path, "pid")) or b"").strip()
    result = _read(os.path.join(path, "result"))
    # Only a finished run's output is parsed: don't read megabytes on every poll.
    output = _read(os.path.join(path, "output"), OUTPUT_TAIL) if result is not None else None
    return Snapshot(
        result=result,
        output_tail=output or b"",
        stderr_tail=_read(os.path.join(path, "stderr"), STDERR_TAIL) or b"",
        fmt=fmt or "raw",
        pid=int(pid_text) if pid_text.isdigit() else None,
        locked=os.path.isdir(os.path.join(path, "lock")),
        last_output_at=max(mtimes) if mtimes else None,
    )


def _read(path: str, tail: int | None = None) -> bytes | None:
    try:
        with open(path, "rb") as f:
            if tail is not None:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(size - tail, 0))
            return f.read()
    except FileNotFoundError:
        return None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def report(run_id: str, snap: Snapshot, alive: bool) -> RunReport:
    """The RunReport for a snapshot; `alive`: the wrapper's pid still runs.

    The caller checks `alive` before taking the snapshot, so a wrapper that
    wrote its result and then died is seen as EXITED, not LOST.
    """
    at = _utc(snap.last_output_at)
    if snap.result is not None:
        return exited(run_id, snap, at)
    if snap.pid is None:
        return RunReport(run_id, Phase.STARTING, last_output_at=at)
    if alive:
        return RunReport(run_id, Phase.RUNNING, last_output_at=at)
    why = f"the run wrapper (pid {snap.pid}) is gone and left no result"
    last = _last_line(snap.stderr_tail)
    return RunReport(run_id, Phase.LOST, last_output_at=at,
                     error=f"{why}; agent stderr: {last}" if last else why)


def parse_result(data: bytes) -> dict[str, str]:
    """The wrapper's `result` file as a dict; unknown or malformed lines are kept or skipped."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key] = value.strip()
    return out


def exited(run_id: str, snap: Snapshot, at: datetime | None = None) -> RunReport:
    """Phase EXITED: the agent's parsed output, corrected by what the wrapper saw."""
    kv = parse_result(snap.result or b"")
    agent_exit = _int_or_none(kv.get("agent_exit"))
    try:
        result = parsers.parse(snap.fmt, snap.output_tail, agent_exit)
    except ValueError:          # a format this controller does not know: still report
        result = parsers.parse(OutputFormat.RAW, snap.output_tail, agent_exit)
    pushed = kv.get("pushed") == "1"
    if pushed and kv.get("head"):
        result = replace(result, commit=kv["head"])
    result, error = _step_failure(kv, result, snap)
    return RunReport(run_id, Phase.EXITED, result=result, error=error, last_output_at=at,
                     changes=pushed and kv.get("changes") == "1")


def _step_failure(kv: dict[str, str], result: Result, snap: Snapshot) -> tuple[Result, str]:
    """The outcome and one-line error when a step of the wrapper failed."""
    step, err = kv.get("step_failed", ""), kv.get("error", "")
    if not step:
        return result, ""
    if step == "agent":
        # A structured format's summary says why; a raw CLI says it on stderr.
        if snap.fmt == OutputFormat.RAW:
            detail = _last_line(snap.stderr_tail) or _last_line(snap.output_tail)
        else:
            # A CLI that fails before its first event says why only on stderr
            # (Claude Code's root refusal): keep that line beside the summary.
            detail = first_line(result.summary, 300, sep="\n")
            said = _last_line(snap.stderr_tail)[:300]
            if said and said not in detail:
                detail = f"{detail} (stderr: {said})" if detail else said
        why = f"agent exited {kv.get('agent_exit', '?')}"
        return result, f"{why}: {detail}" if detail else why
    if step == "cancelled":
        return replace(result, outcome=Outcome.INTERRUPTED), f"cancelled: {err}"
    if step == "validation":
        cmd = kv.get("validation_failed", "")
        why = f"validation `{cmd}` failed (exit {kv.get('validation_exit', '?')})"
        last = kv.get("validation_output", "")
        return replace(result, outcome=Outcome.FAILURE), f"{why}: {last}" if last else why
    if step in _WORKSPACE_STEPS:
        return replace(result, outcome=Outcome.FAILURE), f"workspace {step} failed: {err}"
    return replace(result, outcome=Outcome.FAILURE), f"{step} failed: {err}"


def _int_or_none(value: str | None) -> int | None:
    """What int() reads of `value` (a sign allowed), None for empty or unreadable."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts is not None else None


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").split("\n") if ln.strip()]
    return lines[-1][:300] if lines else ""
