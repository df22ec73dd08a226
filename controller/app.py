"""The composition root: builds the engine and its parts from the config.

The CLI (`fleet run`, `status`, `plan`, `hosts scan`, the demo) calls these;
they are the one place that decides which git store, state dir and merge
checker an engine gets, so commands and tests build it the same way, and
where the HTTP app meets the engine (run_controller). Imports the engine, the
HTTP app and what they are made of; only cli/ imports this.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.config import Config, ConfigError
from controller.engine.core import Engine
from controller.engine.sink import EngineSink
from controller.forge import Forge, ForgeSettingsError, make_forge
from controller.gitstore import GitStore
from controller.http.admin import make_admin_app
from controller.http.app import make_app
from controller.http.deps import AppDeps, HealthReport
from controller.http.server import Listener, ListenError, Server
from controller.observe.merges import Targets

DEFAULT_LISTEN = "127.0.0.1:8080"


def state_dir(config: Config, repo: str) -> Path:
    """The state dir of one fleet repository: its clone, run records and caches."""
    key = hashlib.sha256(repo.encode()).hexdigest()[:12]
    return config.state_dir / "repos" / key


def build_engine(config: Config, repo: str, state: Path | None = None,
                 forge: bool = False) -> Engine:
    """The controller's engine for `repo`, in its state dir (or `state`, for the demo).

    `forge`: give it the config's forge (`fleet run`), so it opens and reads PRs."""
    state = state or state_dir(config, repo)
    state.mkdir(parents=True, exist_ok=True)
    reviewers = frozenset(r.lower() for r in config.reviewers) or None
    client = build_forge(config, os.environ) if forge else None
    return Engine(GitStore(repo, state, config.branch), state, ssh=config.ssh,
                  reviewers=reviewers, allowed_repos=config.allowed_repos,
                  withhold=config.secret_env, forge=client,
                  **_forge_timing(config))


def _forge_timing(config: Config) -> dict[str, Any]:
    f = config.forge
    return {} if f is None else {"forge_poll": f.poll_interval,
                                 "forge_retry": (f.retry_min, f.retry_max)}


def build_forge(config: Config, environ: Mapping[str, str]) -> Forge | None:
    """The config's forge client, its token read from the variable `forge.token_env`
    names; None without `forge:`. A missing token is a ConfigError at start-up."""
    settings = config.forge
    if settings is None:
        return None
    token = environ.get(settings.token_env, "")
    if not token:
        raise ConfigError(f"forge: the token is missing: set the environment variable "
                          f"{settings.token_env} (named by forge.token_env) for fleet run")
    try:
        return make_forge(settings.type.value, settings.url, settings.api_url, token)
    except ForgeSettingsError as e:
        raise ConfigError(f"forge: {e}") from None


def build_look_only_engine(config: Config, repo: str, scratch: Path) -> Engine:
    """An engine for `fleet plan`: it reads the state dir, and clones and fetches
    into `scratch`, borrowing the state dir's objects so that costs little."""
    state = state_dir(config, repo)
    store = GitStore(repo, scratch, config.branch, borrow=state / "fleet.git")
    targets = Targets(scratch / "targets", borrow=state / "targets")
    return Engine(store, state, ssh=config.ssh, targets=targets, read_only=True,
                  allowed_repos=config.allowed_repos, withhold=config.secret_env)


def health(engine: Engine) -> HealthReport:
    """/healthz's answer: the age of the engine's last good pass, and its poll interval."""
    at = engine.last_pass_at
    age = None if at is None else max((engine.clock() - at).total_seconds(), 0.0)
    return HealthReport(age, engine.poll_interval)


def build_server(config: Config, engine: Engine, loop: asyncio.AbstractEventLoop,
                 once: bool) -> Server | None:
    """The listeners of `fleet run`, handing webhooks to `engine` on `loop`.

    None for --once without `listen:` in the config: a one-off reconcile serves
    nothing unless asked to."""
    if once and config.listen is None:
        return None
    deps = AppDeps(sink=EngineSink(engine.accept, loop), health=lambda: health(engine),
                   state_dir=engine.state_dir, webhook_secret=config.webhook_secret,
                   telemetry=engine.telemetry)
    return Server([Listener("listen", config.listen or DEFAULT_LISTEN, make_app(deps),
                            max_body=deps.max_body),
                   Listener("admin_listen", config.admin_listen, make_admin_app(engine.telemetry))])


async def run_controller(engine: Engine, config: Config, once: bool) -> None:
    """`fleet run`: serve HTTP (when configured) while the engine runs; close it after.

    A port in use is a ConfigError naming the address and the key, before any pass."""
    server = build_server(config, engine, asyncio.get_running_loop(), once)
    if server is not None:
        try:
            server.start()
        except ListenError as e:
            raise ConfigError(str(e)) from None
    try:
        await engine.run(once=once, poll_interval=config.poll_interval)
    finally:
        if server is not None:
            # In a thread: a request still in flight may need the loop to answer it.
            await asyncio.to_thread(server.close)
