"""Command line: `fleet init|validate|plan|run|status|hosts|demo` (also `python -m controller`).

Parses arguments, loads the controller config, and hands over to the engine,
the validator or the demo. Errors a person can fix are printed as one line on
stderr with exit code 2 (1 is kept for `validate` finding problems).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import tempfile
from pathlib import Path

from .config import Config, ConfigError, load_config
from .gitstore import GitError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", True) else logging.WARNING,
                        format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except (ConfigError, GitError) as e:
        print(f"fleet: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


REPO_HELP = ("the fleet repository: a bare path or a URL (default: `repo:` in the config file, "
             "else the origin remote of the fleet repository clone you are in)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet", description="GitOps controller for AI coding agents")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help="create a new fleet-state repository (bare) with example content")
    s.add_argument("dir")
    s.set_defaults(func=_cmd_init)

    s = sub.add_parser("validate", help="check every file against its schema and the cross-file rules")
    s.add_argument("--repo", help="a repository path or URL (default: the working tree in .)")
    s.add_argument("--rev", help="validate this revision instead of the files on disk")
    s.set_defaults(func=_cmd_validate)

    for name, helptext, func in (("plan", "print what the next reconcile would do", _cmd_plan),
                                 ("run", "run the controller", _cmd_run),
                                 ("status", "tasks, states, hosts and load", _cmd_status)):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--repo", help=REPO_HELP)
        s.add_argument("--config", help="controller config file (or $FLEET_CONFIG)")
        s.set_defaults(func=func)
    sub.choices["run"].add_argument("--once", action="store_true",
                                    help="reconcile until nothing is in flight, then exit")
    sub.choices["status"].add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("hosts", help="SSH hosts: `fleet hosts scan NAME` prints the known_hosts line")
    s.add_argument("action", choices=["scan"])
    s.add_argument("name", help="the host's name (hosts/NAME.yaml)")
    s.add_argument("--repo", help=REPO_HELP)
    s.add_argument("--config", help="controller config file (or $FLEET_CONFIG)")
    s.set_defaults(func=_cmd_hosts)

    s = sub.add_parser("demo", help="a self-contained tour in a temporary directory")
    s.add_argument("--keep", action="store_true", help="keep the temporary directory")
    s.set_defaults(func=_cmd_demo)
    return p


def _settings(args) -> tuple[Config, str]:
    """The config and the fleet repository: --repo, else `repo:` in the config,
    else the origin of the fleet repository clone the command runs in."""
    from .workspace import origin_of_clone
    config = load_config(getattr(args, "config", None))
    repo = args.repo or config.repo or origin_of_clone()
    if not repo:
        raise ConfigError("no fleet repository: pass --repo PATH_OR_URL, run this inside a clone "
                          "of the fleet repository, or set `repo:` in the config file")
    return config, repo


def _state(config: Config, repo: str) -> Path:
    """The state dir of one fleet repository: its clone, run records and caches."""
    key = hashlib.sha256(repo.encode()).hexdigest()[:12]
    return config.state_dir / "repos" / key


def _engine(config: Config, repo: str):
    from .engine import Engine
    from .gitstore import GitStore
    state = _state(config, repo)
    state.mkdir(parents=True, exist_ok=True)
    return Engine(GitStore(repo, state, config.branch), state, ssh=config.ssh)


def _look_only_engine(config: Config, repo: str, scratch: Path):
    """An engine for `fleet plan`: it reads the state dir, and clones and fetches
    into `scratch`, borrowing the state dir's objects so that costs little."""
    from .engine import Engine
    from .gitstore import GitStore
    from .targets import Targets
    state = _state(config, repo)
    store = GitStore(repo, scratch, config.branch, borrow=state / "fleet.git")
    targets = Targets(scratch / "targets", borrow=state / "targets")
    return Engine(store, state, ssh=config.ssh, targets=targets, read_only=True)


def _cmd_init(args) -> int:
    from .repoinit import init_repo
    path = init_repo(Path(args.dir))
    print(f"created {path}\nnext: git clone {path} fleet-state && cd fleet-state")
    return 0


def _cmd_validate(args) -> int:
    from .validate import validate
    problems, summary = validate(args.repo, args.rev)
    for problem in problems:
        print(problem)
    print(summary, file=sys.stderr)
    return 1 if problems else 0


def _cmd_plan(args) -> int:
    from .report import print_plan
    config, repo = _settings(args)
    # It "changes nothing" (DESIGN.md): not the state dir, which a running
    # `fleet run` owns, nor a host. What it must fetch goes to a scratch dir.
    with tempfile.TemporaryDirectory(prefix="fleet-plan-") as scratch:
        engine = _look_only_engine(config, repo, Path(scratch))
        return asyncio.run(print_plan(engine))


def _cmd_run(args) -> int:
    config, repo = _settings(args)
    engine = _engine(config, repo)
    _lock(engine.state_dir)
    asyncio.run(engine.run(once=args.once, poll_interval=config.poll_interval))
    return 0


def _lock(state_dir: Path) -> None:
    """One controller per repository and state dir: a second one would start runs twice."""
    import fcntl
    handle = open(state_dir / "controller.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"another fleet run is already using {state_dir}: stop it first") from None
    _LOCKS.append(handle)     # held until the process exits


_LOCKS: list = []


def _cmd_status(args) -> int:
    from .report import print_status
    config, repo = _settings(args)
    engine = _engine(config, repo)
    return asyncio.run(print_status(engine, as_json=args.json))


def _cmd_hosts(args) -> int:
    from .hosts import scan_command
    config, repo = _settings(args)
    return asyncio.run(scan_command(_engine(config, repo), args.name))


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(keep=args.keep)
