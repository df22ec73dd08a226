"""Shell quoting: the one way any value reaches a POSIX shell.

Every value fleet hands to `sh` (run.env assignments, the agent's argv in
agent.sh, validation commands passed as arguments, and later the command lines
the SSH executor sends to a remote shell) goes through `quote`. Called by
`rundir` (which renders the run directory) and by the executors. Transport
neutral on purpose: no subprocess, no SSH, only strings.

The style is POSIX single quotes: inside '...' a shell gives every byte its
literal meaning, so the only character needing care is the single quote itself,
written as '"'"' (close, a double-quoted quote, reopen). NUL cannot be carried
by any C string, so it is refused rather than silently truncated.
"""
from __future__ import annotations

import re
from typing import Iterable

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Names a POSIX shell itself interprets: setting them from a host's or agent's
# env would change how the run wrapper parses its own script.
RESERVED_NAMES = frozenset({"IFS", "PWD", "OLDPWD", "PS4", "ENV", "CDPATH", "OPTIND"})


def quote(value: str) -> str:
    """`value` as one shell word that the shell turns back into exactly `value`."""
    if not isinstance(value, str):
        raise TypeError(f"quote() takes str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError("a NUL byte cannot be passed through a shell")
    # Always quote, even "safe" words: one rule is easier to trust than two.
    return "'" + value.replace("'", "'\"'\"'") + "'"


def check_env_name(name: str) -> str:
    """`name` itself when it is a valid, assignable environment variable name."""
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid environment variable name {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"environment variable {name} is reserved for the shell")
    return name


def assignment(name: str, value: str) -> str:
    """One `NAME='value'` line (no newline), safe to source."""
    return f"{check_env_name(name)}={quote(value)}"


def export_line(name: str, value: str) -> str:
    """`export NAME='value'`: the assignment, visible to child processes too."""
    return f"export {assignment(name, value)}"


def env_script(pairs: Iterable[tuple[str, str]], export: bool = True) -> str:
    """Newline-terminated assignment lines for `pairs`, in order (a later name wins)."""
    render = export_line if export else assignment
    return "".join(render(name, value) + "\n" for name, value in pairs)


def command_line(argv: Iterable[str]) -> str:
    """A command line that runs `argv` with each element as exactly one word."""
    words = [quote(arg) for arg in argv]
    if not words:
        raise ValueError("an empty argv is not a command")
    return " ".join(words)
