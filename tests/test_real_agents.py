"""The real Codex CLI and Claude Code CLI under fleet, against scripted model servers.

Each test pushes a task as YAML, runs `fleet run --once` (the engine, in
process) on the local host with the shipped agent profile (adjusted only by
provider settings and environment, see tests/realagents.py), and checks what a
person would: the state, the branch in the target repository, the status
message and result. The model is a scripted server on 127.0.0.1
(tests/modelservers.py), so the CLIs run offline, for real, in about a second.
One runs over SSH to the test sshd. The binaries come from `make test` (npm,
pinned in tools/agents/package.json); without node or npm these tests skip,
and under CI they fail instead.
"""
from __future__ import annotations

import json
import os

import pytest

from controller.app import build_engine as cli_engine
from controller.config import load_config

from .modelservers import MessagesServer, ResponsesServer, error, free_port, hang, run, say, use
from .realagents import AgentWorld, agent_bin, claude_profile, codex_profile, history, profile
from .sshd import Sshd

HELLO = "printf 'hello from the agent\\n' > hello.txt"


@pytest.fixture
def codex_bin():
    return agent_bin("codex")


@pytest.fixture
def claude_bin():
    return agent_bin("claude")


def first_user_text(server) -> str:
    """All of the first model request, as text: the prompt fleet sent must be in it."""
    return json.dumps(server.model_requests()[0].body)


# ---- the main line -----------------------------------------------------------------

def test_codex_task_reaches_review_with_its_work(tmp_path, codex_bin):
    w = AgentWorld(tmp_path)
    with ResponsesServer([run(HELLO), say("Created hello.txt with a greeting.")]) as model:
        w.add_agent(codex_profile(model.url, codex_bin, w.home))
        w.add_task("hello-codex", "codex", validation=["grep -q hello hello.txt"])
        w.push()
        w.run_once()
    st = w.status("hello-codex")
    assert st["state"] == "review_pending", st["message"]
    assert w.target_file("task/hello-codex", "hello.txt") == "hello from the agent\n"
    result = st["result"]
    assert result["outcome"] == "success"
    assert result["summary"] == "Created hello.txt with a greeting."
    assert result["session_id"]                                  # Codex's thread id
    assert result["tokens"] == {"input": 20, "output": 10, "cached": 4}   # two turns, cumulative
    assert len(model.model_requests()) == 2
    assert "Task `hello-codex`, attempt 1" in first_user_text(model)     # the prompt, via stdin
    assert model.model_requests()[0].headers["authorization"] == "Bearer test-key"
    # CODEX_HOME and TMPDIR were the run's own: Codex's session file is in the run dir.
    (run_dir,) = w.run_dirs()
    assert list((run_dir / "codex-home" / "sessions").rglob("*.jsonl"))
    assert not (w.home / ".codex").exists()


CODEX_CONFIG = """\
model = "gpt-5.5"
model_provider = "proxy"

[model_providers.proxy]
name = "company proxy"
base_url = "{url}/v1"
wire_api = "responses"
requires_openai_auth = true      # the key of `codex login --with-api-key`
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
"""


def test_codex_uses_the_host_users_login_and_config(tmp_path, codex_bin):
    """No provider flags: ~/.codex/config.toml and the login in auth.json reach the run."""
    w = AgentWorld(tmp_path)
    with ResponsesServer([run(HELLO), say("Done.")]) as model:
        user_home = w.home / ".codex"
        user_home.mkdir(parents=True)
        (user_home / "config.toml").write_text(CODEX_CONFIG.format(url=model.url))
        (user_home / "auth.json").write_text('{"auth_mode": "apikey", "OPENAI_API_KEY": "sk-login"}')
        doc = profile("codex")
        doc["env"] = {"HOME": str(w.home), "PATH": f"{codex_bin}:{os.environ['PATH']}"}
        w.add_agent(doc)
        w.add_task("logged-in", "codex")
        w.push()
        w.run_once()
    st = w.status("logged-in")
    assert st["state"] == "review_pending", st["message"]
    assert model.model_requests()[0].headers["authorization"] == "Bearer sk-login"
    (run_dir,) = w.run_dirs()
    assert (run_dir / "codex-home" / "auth.json").is_symlink()
    assert (user_home / "config.toml").read_text() == CODEX_CONFIG.format(url=model.url)


def test_claude_task_reaches_review_with_cost(tmp_path, claude_bin):
    w = AgentWorld(tmp_path)
    with MessagesServer([run(HELLO), say("Created hello.txt with a greeting.")]) as model:
        w.add_agent(claude_profile(model.url, claude_bin, w.home))
        w.add_task("hello-claude", "claude-code")
        w.push()
        w.run_once()
    st = w.status("hello-claude")
    assert st["state"] == "review_pending", st["message"]
    assert w.target_file("task/hello-claude", "hello.txt") == "hello from the agent\n"
    result = st["result"]
    assert result["outcome"] == "success"
    assert result["summary"] == "Created hello.txt with a greeting."
    assert result["session_id"] and result["cost_usd"] > 0
    assert result["tokens"] == {"input": 20, "output": 10, "cached": 6}
    assert "Task `hello-claude`, attempt 1" in first_user_text(model)
    assert model.model_requests()[0].headers["x-api-key"] == "test-key"
    (run_dir,) = w.run_dirs()
    assert list((run_dir / "claude-config" / "projects").rglob("*.jsonl"))   # the transcript
    assert not (w.home / ".claude").exists() and not (w.home / ".claude.json").exists()



def test_claude_uses_the_host_users_login_and_settings(tmp_path, claude_bin):
    """No key in the env: ~/.claude/settings.json's apiKeyHelper reaches the run."""
    w = AgentWorld(tmp_path)
    with MessagesServer([run(HELLO), say("Done.")]) as model:
        user_conf = w.home / ".claude"
        user_conf.mkdir(parents=True)
        (user_conf / "settings.json").write_text('{"apiKeyHelper": "echo sk-helper"}')
        (user_conf / ".credentials.json").write_text("{}")
        doc = claude_profile(model.url, claude_bin, w.home)
        del doc["env"]["ANTHROPIC_API_KEY"]
        w.add_agent(doc)
        w.add_task("logged-in", "claude-code")
        w.push()
        w.run_once()
    st = w.status("logged-in")
    assert st["state"] == "review_pending", st["message"]
    assert model.model_requests()[0].headers["x-api-key"] == "sk-helper"
    (run_dir,) = w.run_dirs()
    assert (run_dir / "claude-config" / ".credentials.json").is_symlink()


# ---- the model endpoint fails ------------------------------------------------------

def test_codex_http_500_fails_the_attempt_and_the_retry_succeeds(tmp_path, codex_bin):
    w = AgentWorld(tmp_path)
    script = [error(500, "upstream overloaded"), run(HELLO), say("Created hello.txt.")]
    with ResponsesServer(script) as model:
        w.add_agent(codex_profile(model.url, codex_bin, w.home))
        w.add_task("flaky-model", "codex", max_attempts=2)
        w.push()
        w.run_once()
    st = w.status("flaky-model")
    assert st["state"] == "review_pending" and st["attempt"] == 2, st["message"]
    assert history(st) == ["created", "assigned", "running", "retrying", "created",
                           "assigned", "running", "review_pending"]
    failed = next(h["reason"] for h in st["history"] if h["to"] == "retrying")
    assert failed.startswith("agent exited 1: turn failed: ")
    assert "attempt 2 of 2" in failed
    assert "Why the previous attempt failed" in json.dumps(model.model_requests()[1].body)


def test_claude_http_500_is_a_failed_attempt(tmp_path, claude_bin):
    w = AgentWorld(tmp_path)
    with MessagesServer([error(500, "upstream overloaded")]) as model:
        w.add_agent(claude_profile(model.url, claude_bin, w.home))
        w.add_task("broken-model", "claude-code", max_attempts=1)
        w.push()
        w.run_once()
    st = w.status("broken-model")
    assert st["state"] == "failed"
    assert st["message"].startswith("agent exited 1: API Error: 500 upstream overloaded")
    assert st["message"].endswith("attempts used up (1 of 1); set rerun: in "
                                  "tasks/broken-model.yaml to any new value to start it again")
    assert st["result"]["outcome"] == "failure"
    assert w.target_file("task/broken-model", "README.md") is None     # nothing pushed


def test_codex_with_no_endpoint_is_ended_by_the_task_timeout(tmp_path, codex_bin):
    """Nothing listens: Codex prints `Reconnecting...` and retries for ever; fleet ends it."""
    w = AgentWorld(tmp_path)
    w.add_agent(codex_profile(f"http://127.0.0.1:{free_port()}", codex_bin, w.home))
    w.add_task("no-endpoint", "codex", timeout="3s", max_attempts=1)
    w.push()
    w.run_once()
    st = w.status("no-endpoint")
    assert st["state"] == "failed"
    assert st["message"] == ("timed out after 3s; attempts used up (1 of 1)"
                             "; set rerun: in tasks/no-endpoint.yaml to any new value to start it again")
    assert st["result"]["outcome"] == "timeout"
    (run_dir,) = w.run_dirs()
    assert "Reconnecting" in (run_dir / "output").read_text()
    assert "step_failed=cancelled" in (run_dir / "result").read_text()


# ---- stalls ----------------------------------------------------------------------------

def test_codex_that_goes_quiet_is_stopped_as_stalled(tmp_path, codex_bin):
    w = AgentWorld(tmp_path)
    with ResponsesServer([hang()]) as model:
        w.add_agent(codex_profile(model.url, codex_bin, w.home))
        w.add_task("quiet", "codex", stall_timeout="2s", timeout="1m", max_attempts=1)
        w.push()
        w.run_once()
    st = w.status("quiet")
    assert st["state"] == "failed"
    assert st["message"] == ("stalled: no output for 2s; attempts used up (1 of 1)"
                             "; set rerun: in tasks/quiet.yaml to any new value to start it again")
    assert st["result"]["outcome"] == "stalled"


def test_claude_stall_timeout_from_fleet_defaults(tmp_path, claude_bin):
    w = AgentWorld(tmp_path, defaults={"stall_timeout": "2s", "max_attempts": 1})
    with MessagesServer([hang()]) as model:
        w.add_agent(claude_profile(model.url, claude_bin, w.home))
        w.add_task("quiet", "claude-code")
        w.push()
        w.run_once()
    st = w.status("quiet")
    assert st["state"] == "failed"
    assert st["message"] == ("stalled: no output for 2s; attempts used up (1 of 1)"
                             "; set rerun: in tasks/quiet.yaml to any new value to start it again")
    assert st["result"]["outcome"] == "stalled"


# ---- permissions -----------------------------------------------------------------------

def test_claude_permission_denial_is_not_a_clean_success(tmp_path, claude_bin):
    """A tool outside the profile's list is refused; Claude still says `subtype: success`."""
    w = AgentWorld(tmp_path)
    script = [use("WebFetch", url="http://127.0.0.1:9/docs", prompt="summarize"),
              run(HELLO), say("Could not fetch the docs; wrote hello.txt anyway.")]
    with MessagesServer(script) as model:
        w.add_agent(claude_profile(model.url, claude_bin, w.home))
        w.add_task("denied", "claude-code", max_attempts=1)
        w.push()
        w.run_once()
    st = w.status("denied")
    assert st["state"] == "failed"
    assert st["result"]["outcome"] == "denied"
    assert st["message"].startswith("permission denied for WebFetch (http://127.0.0.1:9/docs); "
                                    "result: Could not fetch the docs")


@pytest.mark.skipif(os.geteuid() != 0, reason="Claude Code's root refusal needs root")
@pytest.mark.parametrize("sandbox", [False, True])
def test_claude_bypass_permissions_as_root_needs_is_sandbox(tmp_path, claude_bin, sandbox):
    """What the profile's root note says: bypassPermissions as root only with IS_SANDBOX=1."""
    w = AgentWorld(tmp_path)
    with MessagesServer([run(HELLO), say("Done.")]) as model:
        doc = claude_profile(model.url, claude_bin, w.home)
        doc["command"] = ["bypassPermissions" if a == "acceptEdits" else a for a in doc["command"]]
        if sandbox:
            doc["env"]["IS_SANDBOX"] = "1"
        w.add_agent(doc)
        w.add_task("as-root", "claude-code", max_attempts=1)
        w.push()
        w.run_once()
    st = w.status("as-root")
    if sandbox:
        assert st["state"] == "review_pending", st["message"]
        return
    assert st["state"] == "failed" and st["message"].startswith("agent exited 1")
    (run_dir,) = w.run_dirs()
    assert "cannot be used with root/sudo privileges" in (run_dir / "stderr").read_text()


@pytest.mark.parametrize("fmt, state", [("stream-json", "review_pending"), ("json", "failed")])
def test_claude_progress_keeps_a_busy_run_from_stalling(tmp_path, claude_bin, fmt, state):
    """Why the profile uses stream-json: `json` prints nothing until the end of the run."""
    w = AgentWorld(tmp_path)
    # Four silent seconds in all, never more than about one at a time: a margin
    # of two seconds either way around the stall_timeout of three.
    steps = [run(f"sleep 1; echo step {n} >> hello.txt") for n in range(4)]
    with MessagesServer([*steps, say("Four steps done.")]) as model:
        doc = claude_profile(model.url, claude_bin, w.home)
        i = doc["command"].index("--output-format")
        assert doc["command"][i + 1:i + 3] == ["stream-json", "--verbose"]
        if fmt == "json":
            doc["command"][i + 1:i + 3] = ["json"]
        w.add_agent(doc)
        w.add_task("busy", "claude-code", stall_timeout="3s", max_attempts=1)
        w.push()
        w.run_once()
    st = w.status("busy")
    assert st["state"] == state, st["message"]
    if fmt == "json":
        assert st["message"].startswith("stalled: no output for 3s")
    else:
        assert st["result"]["summary"] == "Four steps done."



# ---- over SSH ------------------------------------------------------------------------

@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.kill()


def test_codex_over_ssh_reaches_review(tmp_path, codex_bin, sshd):
    """The same profile on an SSH host (the test sshd on 127.0.0.1) instead of `local`."""
    w = AgentWorld(tmp_path)
    (w.person / "hosts" / "local.yaml").unlink()
    w.write("hosts/ssh-1.yaml", sshd.host("ssh-1", w.workdir, capabilities=["codex"]))
    config = tmp_path / "controller.yaml"
    config.write_text(sshd.config_text(tmp_path / "state"))
    with ResponsesServer([run(HELLO), say("Created hello.txt over SSH.")]) as model:
        w.add_agent(codex_profile(model.url, codex_bin, w.home))
        w.add_task("hello-ssh", "codex")
        w.push()
        w.run_once(cli_engine(load_config(str(config)), str(w.fleet)))
    st = w.status("hello-ssh")
    assert st["state"] == "review_pending", st["message"]
    assert st["host"] == "ssh-1"
    assert w.target_file("task/hello-ssh", "hello.txt") == "hello from the agent\n"
    assert st["result"]["summary"] == "Created hello.txt over SSH."
    assert st["result"]["session_id"] and st["result"]["tokens"]["input"] == 20
