"""The shell side of the SSH executor: the commands it sends, and how to read their answers.

Pure strings and bytes, no sockets: `ssh.SSHExecutor` sends these command lines
over SSH, the tests also run them with a local /bin/sh. Every script is a fixed
POSIX sh text; the values it works on (run dirs, grace periods, env) reach it
only as positional arguments or assignments quoted by `shell.quote`, so a
hostile path or value is data, never code (the one exception, variable names
in `env -i` words, are checked to be plain names first: see `runenv`). The scripts assume only what
runwrapper.sh assumes of a host (sh, cat, tail, mkdir, mv, date) plus `stat`
for output times, and `setsid` or `perl` to detach a run.
"""
from __future__ import annotations

import posixpath
import secrets
from typing import Iterable, TypeVar

from controller.executors import runenv, shell
from controller.executors.rundir import OUTPUT_TAIL, STDERR_TAIL, Snapshot

POLL_BATCH = 100          # run dirs per poll command: keeps the command line short


def sh(script: str, *args: str) -> str:
    """A command line for the remote login shell: `sh -c SCRIPT sh ARGS...`, all quoted."""
    return shell.command_line(("sh", "-c", script, "sh", *args))


# ---- start ------------------------------------------------------------------------

# The wrapper leads a new session and process group, with no tie to the SSH
# session: closing the channel (or losing the connection) sends it nothing.
# Every descriptor is redirected, so the channel closes at once. It starts
# under `env -i` with only the allowed names of the login's environment
# (runenv: the base and pass_env), read here on the host: {ENV} is replaced by
# `${NAME+"NAME=$NAME"}` words for checked names, never by values.
LAUNCH = r"""
d=$1
cd "$d" || exit 3
if command -v setsid >/dev/null 2>&1; then
    setsid env -i {ENV} sh "$d/runwrapper.sh" "$d" </dev/null >>"$d/wrapper.out" 2>&1 &
elif command -v perl >/dev/null 2>&1; then
    perl -MPOSIX -e 'POSIX::setsid(); exec @ARGV or exit 127' \
        env -i {ENV} sh "$d/runwrapper.sh" "$d" </dev/null >>"$d/wrapper.out" 2>&1 &
else
    echo "neither setsid nor perl is installed: cannot detach the run" >&2
    exit 4
fi
"""


def launch(run_dir: str, pass_env: Iterable[str] = (), withhold: Iterable[str] = (),
           run_id: str = "") -> str:
    words = runenv.remote_env_words(pass_env, withhold, run_id)
    return sh(LAUNCH.replace("{ENV}", words), run_dir)


# ---- poll -------------------------------------------------------------------------

# One command reads every run dir of a batch. Each field is written as
# "\n<boundary> <name>\n<raw bytes>"; the boundary is random per poll, so no
# output of an agent can forge a field. `alive` is decided before `result` is
# read: a wrapper that wrote its result and then died is seen as exited. A
# running run costs no process at all (builtins only); the output times of the
# whole batch come from one `stat`, and only an ended run's files are read.
POLL = r"""
B=$1; shift
alive() {
    if [ -r "/proc/$1/stat" ]; then
        s=
        read -r s <"/proc/$1/stat" 2>/dev/null || [ -n "$s" ] || { echo 0; return; }
        s=${s##*) }
        set -f; set -- "$1" $s; set +f
        # state is $2, the process group $4: alive means not a zombie and still its own group
        [ "$2" != Z ] && [ "$4" = "$1" ] && echo 1 || echo 0
    elif kill -0 "$1" 2>/dev/null; then echo 1; else echo 0; fi
}
field() { printf '\n%s %s\n' "$B" "$1"; }
field now; date +%s
for d in "$@"; do
    field run; printf '%s' "$d"
    [ -d "$d" ] || continue
    pid=
    [ -f "$d/pid" ] && { read -r pid <"$d/pid" || true; }
    case $pid in ''|*[!0-9]*) pid= ;; esac
    field pid; printf '%s' "$pid"
    a=0
    [ -n "$pid" ] && { a=$(alive "$pid"); field alive; printf '%s' "$a"; }
    [ -d "$d/lock" ] && { field lock; printf 1; }
    f=; [ -f "$d/format" ] && { read -r f <"$d/format" || true; }
    field format; printf '%s' "$f"
    if [ -f "$d/result" ]; then
        field result; cat "$d/result"
        [ -f "$d/output" ] && { field output; tail -c {OUTPUT_TAIL} "$d/output"; }
    elif [ "$a" = 1 ]; then
        continue    # still running: its output is read once it has ended
    fi
    [ -f "$d/stderr" ] && { field stderr; tail -c {STDERR_TAIL} "$d/stderr"; }
done
n=$#; i=0
while [ "$i" -lt "$n" ]; do     # rotate: each run dir out, its output files in
    d=$1; shift; i=$((i + 1))
    for f in output stderr wrapper.log; do [ -f "$d/$f" ] && set -- "$@" "$d/$f"; done
done
field mtimes
[ "$#" -gt 0 ] && { stat -c '%Y %n' "$@" 2>/dev/null || stat -f '%m %N' "$@" 2>/dev/null; }
field end
""".replace("{OUTPUT_TAIL}", str(OUTPUT_TAIL)).replace("{STDERR_TAIL}", str(STDERR_TAIL))


def poll(run_dirs: Iterable[str]) -> tuple[str, bytes]:
    """(command line, boundary) reading a batch of run dirs."""
    boundary = "fleet-" + secrets.token_hex(16)
    return sh(POLL, boundary, *run_dirs), boundary.encode()


def parse_poll(data: bytes, boundary: bytes, local_now: float
               ) -> dict[str, tuple[Snapshot, bool] | None]:
    """(snapshot, alive) per run dir, or None for a run dir that does not exist.

    Output times are turned from the host's clock into ours by their age, so a
    host whose clock is off does not make runs look stalled or fresh.
    """
    # pieces[0] is whatever the login shell's startup files printed first: ignored.
    pieces = data.split(b"\n" + boundary + b" ")
    if len(pieces) < 3 or not pieces[1].startswith(b"now\n") or not pieces[-1].startswith(b"end"):
        raise ValueError("the poll answer is cut short")
    skew = local_now - _digits(pieces[1][4:].strip(), 0)
    runs: dict[str, dict[str, bytes]] = {}
    fields: dict[str, bytes] = {}
    mtimes: dict[str, list[int]] = {}
    for piece in pieces[2:-1]:
        name, _, value = piece.partition(b"\n")
        if name == b"run":
            fields = runs.setdefault(value.decode("utf-8", "surrogateescape"), {})
        elif name == b"mtimes":
            for line in value.split(b"\n"):
                stamp, _, path = line.partition(b" ")
                if stamp.isdigit():
                    run = posixpath.dirname(path.decode("utf-8", "surrogateescape"))
                    mtimes.setdefault(run, []).append(int(stamp))
        else:
            fields[name.decode()] = value
    return {path: _snapshot(f, mtimes.get(path, []), skew) for path, f in runs.items()}


def _snapshot(f: dict[str, bytes], mtimes: list[int], skew: float
              ) -> tuple[Snapshot, bool] | None:
    if "pid" not in f:
        return None             # no run dir: the field list stopped after `run`
    fmt = f.get("format", b"").decode("utf-8", "replace").strip() or "raw"
    snap = Snapshot(result=f.get("result"), output_tail=f.get("output", b""),
                    stderr_tail=f.get("stderr", b""), fmt=fmt, pid=_digits(f["pid"], None),
                    locked="lock" in f,
                    last_output_at=max(mtimes) + skew if mtimes else None)
    return snap, f.get("alive", b"").strip() == b"1"


_D = TypeVar("_D", int, None)


def _digits(data: bytes, default: _D) -> int | _D:
    """A non-negative decimal number (a pid, a clock) from the remote shell, else
    `default`. Stricter than rundir._int_or_none: no sign, no `1_000`."""
    text = data.strip()
    return int(text) if text.isdigit() else default


# ---- stop -------------------------------------------------------------------------

# Mirrors LocalExecutor.stop: claim a never-started run so it can no longer
# start; signal the group only while it is still this run's (a stale pid may
# name someone else's processes after a reboot); TERM, KILL after the grace;
# and leave a result saying why it ended. Every wait is bounded.
STOP = r"""
d=$1; grace=$2
[ -d "$d" ] || exit 0
result() {
    [ -f "$d/result" ] && return 0
    printf 'step_failed=cancelled\nerror=%s\npushed=0\nchanges=0\n' "$1" >"$d/result.tmp" &&
        mv -f "$d/result.tmp" "$d/result"
}
nap() { sleep 0.1 2>/dev/null || sleep 1; }
members() {     # live (not zombie) pids of process group $1, or just "$1" without /proc
    if [ -d /proc/self ]; then
        for p in /proc/[0-9]*; do
            s=; read -r s <"$p/stat" 2>/dev/null || [ -n "$s" ] || continue
            s=${s##*) }; set -f; set -- "$1" $s; set +f
            [ "$2" != Z ] && [ "$4" = "$1" ] && echo "${p#/proc/}"
        done
    else
        kill -0 -- "-$1" 2>/dev/null && echo "$1"
    fi
}
owns() {        # a live member of group $1 is this run's wrapper, or runs with its env
    [ -d /proc/self ] || return 0
    for p in $(members "$1"); do
        tr '\000' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -Fxq -- "$d" && return 0
        tr '\000' '\n' <"/proc/$p/environ" 2>/dev/null | grep -Fxq -- "FLEET_RUN_DIR=$d" && return 0
    done
    return 1
}
pid=; i=0
while [ "$i" -lt 40 ]; do       # a claimed run writes its pid right after the claim
    [ -f "$d/pid" ] && { read -r pid <"$d/pid" || true; break; }
    [ -f "$d/result" ] && exit 0
    mkdir "$d/lock" 2>/dev/null && { result "stopped before the run started"; exit 0; }
    nap; i=$((i + 1))
done
case $pid in ''|*[!0-9]*) exit 0 ;; esac
if owns "$pid"; then
    kill -s TERM -- "-$pid" 2>/dev/null
    end=$(( $(date +%s) + grace )); i=0
    while [ -n "$(members "$pid")" ] && [ "$(date +%s)" -lt "$end" ] && [ "$i" -lt 3000 ]; do
        nap; i=$((i + 1))
    done
    if [ -n "$(members "$pid")" ]; then
        kill -s KILL -- "-$pid" 2>/dev/null
        i=0
        while [ -n "$(members "$pid")" ] && [ "$i" -lt 50 ]; do nap; i=$((i + 1)); done
    fi
fi
result "stopped; the run wrapper left no result"
"""


def stop(run_dir: str, grace: float) -> str:
    # Whole seconds: `date +%s` is the clock every sh host has. At least one.
    return sh(STOP, run_dir, str(max(1, int(round(grace)))))


# ---- health -----------------------------------------------------------------------

# What every run needs of a host, checked before any run goes there.
_TOOLS = r"""
w=$1
command -v git >/dev/null 2>&1 || { echo "git is not installed (runs clone and push with it)"; exit 3; }
command -v setsid >/dev/null 2>&1 || command -v perl >/dev/null 2>&1 ||
    { echo "neither setsid nor perl is installed (needed to detach runs)"; exit 3; }
"""
PROBE = _TOOLS + r"""
mkdir -p "$w/runs" 2>/dev/null && [ -w "$w/runs" ] ||
    { echo "cannot create or write $w/runs"; exit 3; }
git --version
"""
# The same question asked without creating anything (for `fleet plan`): the
# nearest existing directory on the way to $w/runs must be writable.
LOOK = _TOOLS + r"""
r=$w/runs
while [ ! -e "$r" ]; do r=$(dirname -- "$r"); done
[ -d "$r" ] && [ -w "$r" ] || { echo "cannot create or write $w/runs"; exit 3; }
git --version
"""


def probe(workdir: str, create: bool = True) -> str:
    """The health probe; create=False only looks, for a check that must write nothing."""
    return sh(PROBE if create else LOOK, workdir)


def version(argv: tuple[str, ...], env: Iterable[tuple[str, str]],
            pass_env: Iterable[str] = (), withhold: Iterable[str] = ()) -> str:
    """An agent's `version` argv, stdin closed, in the environment its runs get:
    the allowed names of the login's (runenv), then the host's and agent's env."""
    script = (f"exec env -i {runenv.remote_env_words(pass_env, withhold)} "
              f"{runenv.env_words(env)} sh -c 'exec \"$@\" </dev/null 2>&1' sh "
              f"{shell.command_line(argv)}\n")
    return sh(script)


HOME = 'printf %s "$HOME"'
