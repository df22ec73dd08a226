"""Command line: `fleet init|validate|plan|run|status|hosts|demo` (also `python -m controller`).

Parses arguments, loads the controller config, and hands over to the engine
(built by controller.app), the validator or the demo. Errors a person can fix are printed as one line on
stderr with exit code 2 (1 is kept for `validate` finding problems).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable

from controller.config import Config, ConfigError, load_config
from controller.gitstore import GitError


class Args:
    """The parsed command line, typed: argparse sets these attributes on it
    (parse_args(namespace=Args())). Each command's parser sets `func`, its
    handler, and `usage_of`, itself; the options are set only by the commands
    that have them, and each handler reads only its own. Annotations only, no
    class defaults: argparse sets a default only where the namespace lacks the
    attribute, so a class value would hide the parsers' defaults."""
    func: Handler
    usage_of: argparse.ArgumentParser
    dir: str                    # init
    repo: str | None            # validate, plan, run, status, hosts scan
    rev: str | None             # validate
    config: str | None          # plan, run, status, hosts scan
    once: bool                  # run
    json: bool                  # status
    name: str                   # hosts scan
    keep: bool                  # demo


Handler = Callable[[Args], int]     # a command: its parsed arguments -> the exit code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv, namespace=Args())
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except (ConfigError, GitError) as e:
        print(f"fleet: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


REPO_HELP = ("the fleet repository: a bare path or a URL (default: `repo:` in the config file, "
             "else the origin remote of the fleet repository clone you are in)")
CONFIG_HELP = "controller config file (default: $FLEET_CONFIG, else none)"
# name: (one-line description, an example); `fleet hosts scan` is "hosts scan".
COMMANDS = {
    "init": ("create a new fleet-state repository (bare) with example content",
             "fleet init ~/fleet.git && git clone ~/fleet.git fleet-state"),
    "validate": ("check every file against its schema and the cross-file rules",
                 "cd fleet-state && fleet validate"),
    "plan": ("print what the next reconcile would do; changes nothing",
             "fleet plan --repo ~/fleet.git"),
    "run": ("run the controller: reconcile, start and watch runs, commit status",
            "fleet run --repo ~/fleet.git --once"),
    "status": ("tasks, states, hosts and load",
               "fleet status --repo ~/fleet.git --json"),
    "hosts": ("SSH hosts: `fleet hosts scan NAME` prints the known_hosts line",
              "fleet hosts scan build-1 --repo ~/fleet.git"),
    "hosts scan": ("print an SSH host's known_hosts line; its key fingerprint goes to stderr",
                   "fleet hosts scan build-1 --repo ~/fleet.git >> ~/.ssh/known_hosts"),
    "demo": ("a self-contained tour in a temporary directory", "fleet demo --keep"),
}


def _version() -> str:
    """The installed distribution's version; the package's own when not installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("fleet")
    except PackageNotFoundError:
        from controller import __version__
        return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet", description="GitOps controller for AI coding agents",
                                epilog="new here? try `fleet demo`, then `fleet init DIR`;\n"
                                "`fleet COMMAND --help` explains each command",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           help="one of these (`fleet COMMAND --help` for its options)")

    s = _command(sub, "init", _cmd_init)
    s.add_argument("dir", metavar="DIR", help="where to create it: a new or empty directory")

    s = _command(sub, "validate", _cmd_validate)
    s.add_argument("--repo", help="a repository path or URL (default: the working tree in .)")
    s.add_argument("--rev", help="validate this revision instead of the files on disk")

    for name, func in (("plan", _cmd_plan), ("run", _cmd_run), ("status", _cmd_status)):
        _repo_options(_command(sub, name, func))
    sub.choices["run"].add_argument("--once", action="store_true",
                                    help="reconcile until nothing is in flight, then exit")
    sub.choices["status"].add_argument("--json", action="store_true", help="machine-readable output")

    hosts = _command(sub, "hosts", _cmd_usage).add_subparsers(
        dest="action", metavar="ACTION", help="what to do with the hosts")
    s = _command(hosts, "hosts scan", _cmd_hosts)
    s.add_argument("name", metavar="NAME", help="the host's name (hosts/NAME.yaml)")
    _repo_options(s)

    s = _command(sub, "demo", _cmd_demo)
    s.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.set_defaults(func=_cmd_usage, usage_of=p)
    return p


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             func: Handler) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its description and an example."""
    description, example = COMMANDS[name]
    s = sub.add_parser(name.split()[-1], help=description, description=description,
                       epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.set_defaults(func=func, usage_of=s)
    return s


def _repo_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--repo", help=REPO_HELP)
    s.add_argument("--config", help=CONFIG_HELP)


def _cmd_usage(args: Args) -> int:
    """`fleet` or `fleet hosts` alone: say what could follow, as a usage error."""
    args.usage_of.print_help(sys.stderr)
    return 2


def _settings(args: Args) -> tuple[Config, str]:
    """The config and the fleet repository: --repo, else `repo:` in the config,
    else the origin of the fleet repository clone the command runs in."""
    from controller.cli.workspace import origin_of_clone
    config = load_config(args.config)
    repo = args.repo or config.repo or origin_of_clone()
    if not repo:
        raise ConfigError("no fleet repository: pass --repo PATH_OR_URL, run this inside a clone "
                          "of the fleet repository, or set `repo:` in the config file")
    return config, repo


def _cmd_init(args: Args) -> int:
    from controller.cli.init import init_repo
    path = init_repo(Path(args.dir))
    print(f"created {path}\nnext: git clone {path} fleet-state && cd fleet-state")
    return 0


def _cmd_validate(args: Args) -> int:
    from controller.cli.validate import validate
    problems, warnings, summary = validate(args.repo, args.rev)
    for problem in problems:
        print(problem)
    sys.stdout.flush()            # before stderr: a terminal shows both in this order
    for warning in warnings:      # stderr: stdout stays the problems, one per line, for scripts
        print(warning, file=sys.stderr)
    print(summary, file=sys.stderr)
    return 1 if problems else 0


def _cmd_plan(args: Args) -> int:
    from controller.app import build_look_only_engine
    from controller.cli.output import print_plan
    config, repo = _settings(args)
    # It "changes nothing" (DESIGN.md): not the state dir, which a running
    # `fleet run` owns, nor a host. What it must fetch goes to a scratch dir.
    with tempfile.TemporaryDirectory(prefix="fleet-plan-") as scratch:
        engine = build_look_only_engine(config, repo, Path(scratch))
        return asyncio.run(print_plan(engine))


def _cmd_run(args: Args) -> int:
    from controller.app import build_engine, run_controller
    config, repo = _settings(args)
    engine = build_engine(config, repo, forge=True)
    _lock(engine.state_dir)
    asyncio.run(run_controller(engine, config, once=args.once))
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


_LOCKS: list[IO[str]] = []


def _cmd_status(args: Args) -> int:
    from controller.app import build_engine
    from controller.cli.output import print_status
    config, repo = _settings(args)
    engine = build_engine(config, repo)
    return asyncio.run(print_status(engine, as_json=args.json))


def _cmd_hosts(args: Args) -> int:
    from controller.app import build_engine
    from controller.observe.health import scan_command
    config, repo = _settings(args)
    return asyncio.run(scan_command(build_engine(config, repo), args.name))


def _cmd_demo(args: Args) -> int:
    from controller.cli.demo import run_demo
    return run_demo(keep=args.keep)
