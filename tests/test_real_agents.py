"""The real Codex CLI and Claude Code CLI under fleet, against scripted model servers.

Each test pushes a task as YAML, runs `fleet run --once` (the engine, in
process) on the local host with the shipped agent profile (adjusted only by
provider settings and environment, see tests/realagents.py), and checks what a
person would: the state, the branch in the target repository, the status
message and result. The model is a scripted server on 127.0.0.1
(tests/modelservers.py), so the CLIs run offline, for real, in about a second.
The binaries come from `make test` (npm, pinned in tools/agents/package.json);
without node or npm these tests skip, and under CI they fail instead.
"""
from __future__ import annotations

import json

import pytest

from .modelservers import MessagesServer, ResponsesServer, error, hang, run, say, use, free_port
from .realagents import AgentWorld, agent_bin, claude_profile, codex_profile, history

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
