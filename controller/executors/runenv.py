"""The environment a run starts from: an allow-list, never the controller's own.

A run's environment is built from four parts, later ones winning:
  1. a small base, read from the host's own environment: `BASE_NAMES`;
  2. the variables its host and agent name in `pass_env`, read from the same
     place (names only ever sit in git, never values);
  3. the host's `env`, then the agent's `env` (in run.env, see `rundir`);
  4. fleet's own FLEET_* variables (run.env, last).
"The host's own environment" is the controller's for a local host and the SSH
login's for any other: the local executor hands `local_environ` to Popen, the
SSH executor starts the wrapper under `env -i` with `remote_env_words`, which
read the same names on the far side, so no value crosses the wire.

Never passed, even when a host or agent lists it: any FLEET_* name (the run
wrapper's own variables, and the controller's secrets FLEET_WEBHOOK_SECRET,
FLEET_FORGE_TOKEN, FLEET_CONFIG; the schemas refuse these already) and the names
an executor is told to withhold (the configured forge `token_env`). Those are
dropped and logged at start rather than failing the run: the run still gets
everything else it asked for. Values of pass_env never reach run.env, so they
are not left on disk in the run dir.
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping

from controller.executors import shell

log = logging.getLogger("fleet")

LOCALE_NAMES = ("LANG", "LANGUAGE", "LC_ALL", "LC_ADDRESS", "LC_COLLATE", "LC_CTYPE",
                "LC_IDENTIFICATION", "LC_MEASUREMENT", "LC_MESSAGES", "LC_MONETARY", "LC_NAME",
                "LC_NUMERIC", "LC_PAPER", "LC_TELEPHONE", "LC_TIME")
# TERM is left out on purpose: a run is detached and has no terminal.
BASE_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TZ") + LOCALE_NAMES
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
FLEET_PREFIX = "FLEET_"


def withheld(name: str, withhold: Iterable[str] = ()) -> bool:
    """`name` is never passed to a run: fleet's own namespace, or a controller secret."""
    return name.startswith(FLEET_PREFIX) or name in frozenset(withhold)


def names(pass_env: Iterable[str], withhold: Iterable[str] = (), run_id: str = ""
          ) -> tuple[str, ...]:
    """The base names and the pass_env names a run may take, each once, in order.

    A withheld pass_env name is dropped with a warning naming the run; a name
    that is not a valid one (the schemas refuse it) raises ValueError."""
    keep = frozenset(withhold)
    out: dict[str, None] = dict.fromkeys(BASE_NAMES)
    for name in pass_env:
        shell.check_env_name(name)
        if withheld(name, keep):
            log.warning("run %s: pass_env %s is not passed: it is fleet's own or holds one of "
                        "the controller's secrets", run_id or "?", name)
            continue
        out[name] = None
    return tuple(out)


def local_environ(environ: Mapping[str, str], pass_env: Iterable[str],
                  withhold: Iterable[str] = (), run_id: str = "") -> dict[str, str]:
    """The environment a local run's wrapper starts with, taken from `environ`
    (the controller's): the allowed names that are set there, PATH always."""
    env = {n: environ[n] for n in names(pass_env, withhold, run_id) if n in environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def remote_env_words(pass_env: Iterable[str], withhold: Iterable[str] = (),
                     run_id: str = "") -> str:
    """Arguments for `env -i` in a POSIX sh script on the host: each allowed
    name that is set there, as NAME=value read there (`${NAME+"NAME=$NAME"}`).

    Names are embedded in the script as code, so each is checked to be a plain
    variable name first (letters, digits and `_`); values are never seen here."""
    return " ".join(f'${{{n}+"{n}=${n}"}}' for n in names(pass_env, withhold, run_id))


def env_words(pairs: Iterable[tuple[str, str]]) -> str:
    """`'NAME=value'` arguments for `env`, every value quoted (a later name wins in env too)."""
    return " ".join(shell.quote(f"{shell.check_env_name(n)}={v}") for n, v in pairs)
