"""A run's environment is an allow-list: the controller's secrets never reach an agent.

Real runs, locally and over the real test sshd, whose agent prints its whole
environment with `env -0`: the base names, pass_env, the host's and agent's
env and fleet's own variables are there, with hostile values intact; the
controller's FLEET_WEBHOOK_SECRET and forge token, and anything not listed,
are not. Plus the unit rules of controller/executors/runenv.py.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.executors import rundir, runenv
from controller.executors.local import LocalExecutor
from controller.executors.ssh.executor import SSHExecutor
from controller.model import Host, Phase, RunSpec

from .sshd import Sshd
from .sshkit import settings
from .test_shell import CANARY, HOSTILE

SECRETS = {"FLEET_WEBHOOK_SECRET": "webhook-s3cret", "FLEET_FORGE_TOKEN": "forge-t0ken",
           "GITEA_TOKEN": "custom-forge-t0ken", "FLEET_CONFIG": "/etc/fleet/controller.yaml"}
HOSTILE_VALUE = "\n".join(v for v in HOSTILE if v)      # every hostile string in one value


@pytest.fixture
def no_canary():
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    yield
    assert not os.path.exists(CANARY), "a value was executed by a shell"


def make_target(path: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    seed = path.parent / "seed"
    for args in (["init", "-q", "-b", "main", str(seed)], ["-C", str(seed), "commit", "-q",
                 "--allow-empty", "-m", "init"], ["clone", "-q", "--bare", str(seed), str(path)]):
        subprocess.run(["git", *args], check=True, env=env, capture_output=True)
    return str(path)


def env_spec(host: Host, repo: str, **kw: object) -> RunSpec:
    spec = RunSpec(run_id="env-1", task_id="env", host=host, command=("env", "-0"),
                   prompt="", prompt_mode="stdin", output_format="raw", repo=repo, base="main",
                   branch="task/env", from_branch=False,
                   env=(("HOST_VAR", "from-host"), ("HOSTILE", HOSTILE_VALUE),
                        ("AGENT_VAR", "from-agent")),
                   pass_env=("MY_API_KEY", "GITEA_TOKEN", "FLEET_WEBHOOK_SECRET"))
    return dataclasses.replace(spec, **kw)  # type: ignore[arg-type]


async def run_to_end(ex: LocalExecutor | SSHExecutor, spec: RunSpec) -> None:
    await ex.start(spec)
    for _ in range(400):
        report = await ex.poll(spec.host, spec.run_id)
        if report is not None and report.phase in (Phase.EXITED, Phase.LOST):
            assert report.phase == Phase.EXITED, report
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never ended")


def printed_env(run_dir: Path) -> dict[str, str]:
    data = (run_dir / "output").read_bytes().decode()
    return dict(item.split("=", 1) for item in data.split("\0") if item)


def assert_allow_listed(env: dict[str, str], run_dir: Path, api_key: str) -> None:
    every = "\0".join(f"{k}={v}" for k, v in env.items())
    for name, value in SECRETS.items():
        assert name not in env, f"{name} reached the agent"
        assert value not in every, f"the value of {name} reached the agent"
    assert "UNLISTED" not in env                    # the rest of the environment stays behind
    assert env["MY_API_KEY"] == api_key            # pass_env
    assert env["HOST_VAR"] == "from-host" and env["AGENT_VAR"] == "from-agent"
    assert env["HOSTILE"] == HOSTILE_VALUE         # quoted all the way, byte for byte
    assert env["FLEET_TASK_ID"] == "env" and env["FLEET_RUN_DIR"] == str(run_dir)
    assert env["HOME"] and env["PATH"]
    assert "TERM" not in env
    # pass_env values live in the process only, never in the run dir's files.
    for f in run_dir.iterdir():
        if f.is_file() and f.name != "output":
            assert api_key.encode() not in f.read_bytes(), f"{f.name} holds a pass_env value"


# ---- local ---------------------------------------------------------------------

def test_a_local_agent_sees_only_its_allowed_environment(tmp_path, monkeypatch, no_canary):
    for name, value in {**SECRETS, "UNLISTED": "not-for-runs", "MY_API_KEY": "sk-local",
                        "TERM": "xterm", "LANG": "C.UTF-8", "TZ": "Europe/Paris"}.items():
        monkeypatch.setenv(name, value)
    host = Host(name="box", address="local", workdir=str(tmp_path / "w"))
    spec = env_spec(host, make_target(tmp_path / "target.git"))
    asyncio.run(run_to_end(LocalExecutor(withhold={"GITEA_TOKEN"}), spec))
    run_dir = tmp_path / "w" / "runs" / "env-1"
    env = printed_env(run_dir)
    assert_allow_listed(env, run_dir, "sk-local")
    assert env["LANG"] == "C.UTF-8" and env["TZ"] == "Europe/Paris"
    # Today's PATH rule: the controller's own bin dir first, then the controller's PATH.
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_host_and_agent_pass_env_reach_a_run_through_the_engine(tmp_path, monkeypatch):
    """From the YAML files to the agent: pass_env of the host and of the agent."""
    from .fleetkit import World
    from .sshkit import run_once
    from controller.app import build_engine
    from controller.config import load_config
    for name, value in {**SECRETS, "HOST_KEY": "k-host", "AGENT_KEY": "k-agent"}.items():
        monkeypatch.setenv(name, value)
    w = World(tmp_path)
    w.write("hosts/local.yaml", {"name": "local", "address": "local", "capabilities": ["demo"],
                                 "workdir": str(w.workdir), "pass_env": ["HOST_KEY"]})
    w.write("agents/envy.yaml", {"name": "envy", "command": ["env", "-0"], "output": "raw",
                                 "requires": ["demo"], "pass_env": ["AGENT_KEY"]})
    w.task("env", agent="envy")
    w.push()
    config = tmp_path / "controller.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    run_once(build_engine(load_config(str(config)), str(w.fleet)))
    st = w.status("env")
    env = printed_env(w.workdir / "runs" / st["run_id"])
    assert env["HOST_KEY"] == "k-host" and env["AGENT_KEY"] == "k-agent"
    assert not set(SECRETS) & set(env)


# ---- SSH -----------------------------------------------------------------------

def test_an_ssh_agent_sees_only_its_allowed_login_environment(tmp_path, no_canary, monkeypatch):
    """pass_env over SSH reads the host's own login environment, never the controller's."""
    for name, value in {**SECRETS, "MY_API_KEY": "sk-controller"}.items():
        monkeypatch.setenv(name, value)
    remote_env = {"MY_API_KEY": "sk-remote", "UNLISTED": "login-only", "TERM": "xterm",
                  "GITEA_TOKEN": "custom-forge-t0ken", "FLEET_WEBHOOK_SECRET": "webhook-s3cret"}
    sshd = Sshd(tmp_path / "sshd", setenv=remote_env).start()
    try:
        host = Host(name="h", address=sshd.address, port=sshd.port, user=sshd.user,
                    workdir=str(tmp_path / "remote"))
        spec = env_spec(host, make_target(tmp_path / "target.git"))

        async def go() -> None:
            ex = SSHExecutor(settings(sshd), withhold={"GITEA_TOKEN"})
            try:
                await run_to_end(ex, spec)
            finally:
                await ex.close()
        asyncio.run(go())
    finally:
        sshd.kill()
    run_dir = tmp_path / "remote" / "runs" / "env-1"
    env = printed_env(run_dir)
    assert_allow_listed(env, run_dir, "sk-remote")
    assert "sk-controller" not in "\0".join(env.values())


# ---- the rules -------------------------------------------------------------------

def test_fleet_names_and_withheld_names_are_never_passed(caplog):
    got = runenv.names(["MY_KEY", "FLEET_WEBHOOK_SECRET", "GITEA_TOKEN", "MY_KEY"],
                       withhold={"GITEA_TOKEN"}, run_id="r-1")
    assert got[:len(runenv.BASE_NAMES)] == runenv.BASE_NAMES
    assert got[len(runenv.BASE_NAMES):] == ("MY_KEY",)
    assert "FLEET_WEBHOOK_SECRET is not passed" in caplog.text and "GITEA_TOKEN" in caplog.text


def test_a_local_environ_holds_only_allowed_names():
    environ = {"PATH": "/bin", "HOME": "/h", "LC_TIME": "C", "TERM": "xterm",
               "SSH_AUTH_SOCK": "/tmp/agent", "MY_KEY": "v", **SECRETS}
    assert runenv.local_environ(environ, ["MY_KEY", "GITEA_TOKEN"], {"GITEA_TOKEN"}) == {
        "PATH": "/bin", "HOME": "/h", "LC_TIME": "C", "MY_KEY": "v"}
    assert runenv.local_environ({}, [])["PATH"] == runenv.DEFAULT_PATH


@pytest.mark.parametrize("name", ["A B", "X;touch /tmp/x", "$(id)", "1A", "IFS", "A\n", ""])
def test_a_hostile_pass_env_name_is_refused_before_any_shell_sees_it(name):
    with pytest.raises(ValueError):
        runenv.remote_env_words([name])
    with pytest.raises(ValueError):
        rundir.render(env_spec(Host(name="h"), "/r", pass_env=(name,)),
                      rundir.paths("/w", "env", "env-1"))


def test_remote_env_words_read_each_name_on_the_host_and_skip_unset_ones(no_canary):
    words = runenv.remote_env_words(["MY_KEY", "UNSET_ONE"])
    script = f"env -i {words} sh -c 'env -0'"
    env = {"MY_KEY": HOSTILE_VALUE, "HOME": "/h", "PATH": os.environ["PATH"], "OTHER": "x"}
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, check=True).stdout
    got = dict(i.split("=", 1) for i in out.decode().split("\0") if i)
    got.pop("PWD", None)                          # the inner sh sets it
    assert got == {"MY_KEY": HOSTILE_VALUE, "HOME": "/h", "PATH": os.environ["PATH"]}
