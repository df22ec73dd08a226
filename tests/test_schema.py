"""The JSON Schemas and schema.py: well-formed for editors, fast path never looser than jsonschema.

The compiled fast path may only say "valid" where jsonschema does too; these
tests throw many mutated documents at both to hold it to that.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from controller.desired import schema

ROOT = Path(__file__).resolve().parents[1]

VALID = {
    "task": {"id": "fix-login", "title": "Fix login", "agent": "codex", "goal": "Fix it.",
             "constraints": ["small"], "validation": ["make test"], "repo": "/srv/web.git",
             "base": "release/1.2", "mode": "pull", "requires": ["gpu"], "priority": 2,
             "depends_on": ["setup"], "timeout": "1h30m", "stall_timeout": 600, "max_attempts": 3,
             "max_reviews": 0, "suspend": False, "cancel": False, "feedback": ["more"], "rerun": 4},
    "host": {"name": "gpu-1", "address": "10.0.0.5", "port": 2222, "user": "fleet",
             "capabilities": ["codex", "gpu"], "max_concurrent": 2, "workdir": "~/fleet",
             "jump": "bastion", "env": {"LANG": "C.UTF-8"}},
    "agent": {"name": "codex", "command": ["codex", "exec", "-"], "prompt": "file",
              "output": "codex-jsonl", "requires": ["codex"], "version": ["codex", "--version"],
              "env": {"A_1": "x"}},
    "fleet": {"poll_interval": "10s", "backoff": {"base": "10s", "max": "5m"}, "cancel_grace": 10,
              "defaults": {"base": "main", "timeout": "1h", "stall_timeout": "10m", "max_attempts": 3,
                           "max_reviews": 3, "priority": 0, "mode": "ssh", "requires": []},
              "prompt_template": "Do $goal"},
    "status": {"task": "fix-login", "state": "running", "message": "Running on gpu-1.", "attempt": 1,
               "review_count": 0, "host": "gpu-1", "run_id": "fix-login-1", "branch": "task/fix-login",
               "pr": {"number": 7, "url": "https://forge/pr/7"}, "spec_commit": "abc123",
               "created_at": "2025-01-31T09:30:00Z", "started_at": None, "finished_at": None,
               "last_activity_at": None, "retry_at": None,
               "lease": {"agent": "jeeves", "id": "l-1", "expires_at": "2025-01-31T10:00:00Z"},
               "result": {"outcome": "success", "exit_code": 0, "summary": "done", "session_id": None,
                          "cost_usd": 0.25, "tokens": {"input": 1, "output": 2, "cached": 0},
                          "commit": "def456"},
               "history": [{"at": "2025-01-31T09:30:00Z", "from": None, "to": "created", "reason": "new"}],
               "runs": 1, "feedback_seen": 0, "rerun_seen": None},
}

ODD_VALUES = [None, True, False, 0, 1, -1, 5.0, 1.5, 70000, "", "x", "x\n", "Codex", "-x", "45m",
              "0s", "1:30", "ssh", "running", "2025-01-31T09:30:00Z", [], ["a"], ["a", "a"], [1],
              [""], {}, {"A": "x"}, {"A": 1}, {"bad-key": "x"}, "a" * 70]


def mutations(doc):
    """Documents that differ from `doc` in one place, at any depth."""
    yield doc
    if isinstance(doc, dict):
        yield {**doc, "surprise": 1}
        for key in doc:
            yield {k: v for k, v in doc.items() if k != key}
            for odd in ODD_VALUES:
                yield {**doc, key: odd}
            for inner in itertools.islice(mutations(doc[key]), 1, None):
                yield {**doc, key: inner}
    elif isinstance(doc, list) and doc:
        for odd in ODD_VALUES:
            yield [odd, *doc[1:]]
        for inner in itertools.islice(mutations(doc[0]), 1, None):
            yield [inner, *doc[1:]]


@pytest.mark.parametrize("kind", schema.KINDS)
def test_schema_is_valid_2020_12_and_self_describing(kind: str) -> None:
    s = schema.load(kind)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"].endswith(f"/{kind}.schema.json") and s["title"] and s["description"]

    def walk(node, where):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, where
            for name, prop in node["properties"].items():
                assert prop.get("description"), f"{where}.{name} has no description"
                walk(prop, f"{where}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{where}[{key}]")
        for branch in node.get("anyOf", []):
            walk(branch, where)
    walk(s, kind)
    for name, d in s.get("$defs", {}).items():
        walk(d, f"$defs.{name}")


@pytest.mark.parametrize("kind", schema.KINDS)
def test_fast_path_is_compiled_and_never_looser_than_jsonschema(kind: str) -> None:
    checker = schema._checker(kind)
    assert checker.fast != checker.full.is_valid, "the schema uses a keyword the compiler lacks"
    agree = total = 0
    for doc in mutations(VALID[kind]):
        fast, full = checker.fast(doc), checker.full.is_valid(doc)
        assert full or not fast, f"fast path accepted what jsonschema rejects: {doc}"
        assert (schema.errors(kind, doc) == []) == full, doc
        agree += fast == full
        total += 1
    assert total > 300 and agree / total > 0.97    # too strict only in rare, odd cases


@pytest.mark.parametrize("kind", schema.KINDS)
def test_the_valid_samples_take_the_fast_path(kind: str) -> None:
    assert schema._checker(kind).fast(VALID[kind])


MESSAGES = [
    ("task", {"timeout": "45 minutes"},
     ("timeout",), "timeout: '45 minutes' is not a duration like 45m, 2h or 90s (or a whole number of seconds)"),
    ("task", {"priorty": 1}, ("priorty",), "unknown key 'priorty': did you mean 'priority'? (allowed: agent, "
                                          "base, cancel, constraints, depends_on, feedback, goal, id, "
                                          "max_attempts, max_reviews, mode, priority, repo, requires, rerun, "
                                          "stall_timeout, suspend, timeout, title, validation)"),
    ("task", {"max_attempts": "three"}, ("max_attempts",), "max_attempts: must be an integer >= 1, got 'three'"),
    ("task", {"title": ""}, ("title",), "title: must not be empty"),
    ("task", {"goal": None}, ("goal",), "goal: must be a string, got nothing (an empty value)"),
    ("task", {"depends_on": ["ok", "Not OK"]}, ("depends_on", 1),
     "depends_on[1]: 'Not OK' is not a name of lowercase letters, digits and '-'"),
    ("task", {"requires": "gpu"}, ("requires",), "requires: must be a list of capability words like "
                                                  "[codex, gpu], got 'gpu'"),
    ("task", {"base": "-main"}, ("base",), "base: '-main' is not a git branch name like main or release/1.2"),
    ("task", {"rerun": [1]}, ("rerun",), "rerun: must be a string or an integer or a number or true or "
                                          "false or empty (null), got a list"),
    ("host", {"port": 0}, ("port",), "port: must be an integer from 1 to 65535, got 0"),
    ("host", {"env": {"bad-key": "x"}}, ("env", "bad-key"), "env: 'bad-key' is not a valid variable name"),
    ("host", {"env": {"DEBUG": 1}}, ("env", "DEBUG"), "env.DEBUG: must be a string, got 1 (put it in quotes: \"1\")"),
    ("host", {"capabilities": ["GPU"]}, ("capabilities", 0), "capabilities[0]: 'GPU' is not a capability word"),
    ("host", {"address": "a b"}, ("address",), "address: 'a b' is not a host name or address without spaces"),
    ("agent", {"command": []}, ("command",), "command: must list at least 1 item"),
    ("agent", {"output": "json"}, ("output",), "output: must be one of codex-jsonl, claude-json, raw, got 'json'"),
    ("fleet", {"backoff": {"bse": "1s"}}, ("backoff", "bse"), "unknown key 'bse' in backoff: did you mean 'base'?"),
    ("status", {"state": "done"}, ("state",), "state: must be one of created, assigned, running"),
    ("status", {"history": [{"at": None, "to": "created", "from": "nowhere"}]}, ("history", 0, "from"),
     "history[0].from: must be one of created"),
]


@pytest.mark.parametrize("kind,change,path,message", MESSAGES)
def test_error_messages_name_the_field_and_say_what_to_write(kind, change, path, message) -> None:
    doc = {**copy.deepcopy(VALID[kind]), **change}
    found = schema.errors(kind, doc)
    assert any(p == path and m.startswith(message) for p, m in found), found


def test_missing_required_keys_are_named_with_their_meaning() -> None:
    found = schema.errors("task", {"id": "x"})
    assert ((), "missing required key 'repo': the target repository's clone URL or path, as the host running the agent sees it; a leading ~ is not expanded") in found
    assert [m for _, m in found if "missing" in m] == [
        f"missing required key '{k}'" + m[len(f"missing required key '{k}'"):]
        for k, m in zip(("title", "agent", "goal", "repo"), [m for _, m in found if "missing" in m])]


def test_schemas_load_from_any_directory_and_are_linked_at_the_top(tmp_path: Path) -> None:
    assert (ROOT / "schemas").is_symlink() and os.readlink(ROOT / "schemas") == "controller/schemas"
    assert sorted(p.name for p in (ROOT / "schemas").iterdir()) == sorted(
        f"{k}.schema.json" for k in schema.KINDS)
    code = "from controller.desired import schema; print(schema.errors('task', {'id': 'x', 'port': 1}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and "unknown key 'port'" in out.stdout, out.stderr
    assert json.loads((ROOT / "schemas" / "task.schema.json").read_text())["title"] == "fleet task"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schema kind 'tasks'"):
        schema.load("tasks")
