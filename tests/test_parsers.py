"""controller.executors.parsers against the real CLIs' recorded output and hostile input."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.model import Tokens
from controller.executors.parsers import OUTCOMES, RAW_SUMMARY_LIMIT, SUMMARY_LIMIT, parse

# Real CLI outputs, copied into the repository (tests/data/README.md names the source).
REFERENCE = Path(__file__).parent / "data" / "reference" / "agent-outputs"
FAKE_AGENTS = Path(__file__).parent / "fake_agents"


def ref(name: str) -> bytes:
    return (REFERENCE / name).read_bytes()


# ---- the real outputs ------------------------------------------------------------

# file, format, outcome, summary, session id, cost, tokens
REAL = [
    ("codex_exec_json_e2e_login_false.jsonl", "codex-jsonl", "success", "done",
     "01a1fe2b-0572-7b23-99f7-2de2cb6d764c", None, Tokens(20, 10, 0)),
    ("codex_exec_json_apply_patch.jsonl", "codex-jsonl", "success", "done",
     "01a1fe25-987e-7d12-a3af-f79c840e38c6", None, Tokens(20, 10, 0)),
    ("codex_exec_json_workspace-write_shell.jsonl", "codex-jsonl", "success", "done",
     "01a1fe25-76fb-7ef1-87c4-ca20df1c537f", None, Tokens(20, 10, 0)),
    # The sandbox denial is only a failed command: Codex still completes the turn.
    ("codex_exec_json_read-only_denied.jsonl", "codex-jsonl", "success", "done",
     "01a1fe25-79c3-7662-ac21-4ea3ce3ea778", None, Tokens(20, 10, 0)),
    ("codex_exec_json_http400.jsonl", "codex-jsonl", "failure",
     "turn failed: scripted bad request (invalid_request_error)",
     "01a1fe28-7534-74a2-99be-46c6fb3aa54d", None, Tokens()),
    ("claude_p_json_bypass.json", "claude-json", "success", "done",
     "6f02fb1e-cb66-45ad-9059-700399b7cf73", 0.00035, Tokens(20, 10, 0)),
    ("claude_p_json_default_mode_denied.json", "claude-json", "denied",
     "permission denied for Bash (echo hello > hello.txt); result: done",
     "5c31d4ec-7f82-4520-bfc6-f14bd60f08a4", 0.00035, Tokens(20, 10, 0)),
    ("claude_p_json_server_down_maxretries0.json", "claude-json", "failure",
     "API Error: Unable to connect to API (ConnectionRefused)",
     "75d6cf98-b95b-4506-b07c-525d5aac5fc0", 0.0, Tokens()),
    ("claude_p_stream-json_verbose.jsonl", "claude-json", "success", "done",
     "29cc63a1-f702-44a9-8a5a-0c3d1576562b", 0.00035, Tokens(20, 10, 0)),
]


@pytest.mark.parametrize("name, fmt, outcome, summary, session, cost, tokens", REAL)
def test_real_outputs(name, fmt, outcome, summary, session, cost, tokens):
    result = parse(fmt, ref(name), 0)
    assert (result.outcome, result.summary, result.session_id) == (outcome, summary, session)
    assert result.cost_usd == cost and result.tokens == tokens and result.exit_code == 0


@pytest.mark.parametrize("exit_code", [None, -15, 143, 0])
def test_codex_hang_without_terminal_event_is_interrupted(exit_code):
    result = parse("codex-jsonl", ref("codex_exec_json_server_down_hang.jsonl"), exit_code)
    assert result.outcome == "interrupted"
    assert "Reconnecting... waiting for network" in result.summary
    assert result.session_id == "01a1fe26-9030-78a2-a7d2-0590df160e4a"


def test_no_terminal_event_and_an_error_exit_is_failure():
    result = parse("codex-jsonl", ref("codex_exec_json_server_down_hang.jsonl"), 1)
    assert result.outcome == "failure" and "exit code 1" in result.summary


@pytest.mark.parametrize("name, fmt", [(r[0], r[1]) for r in REAL])
def test_non_zero_exit_is_never_success(name, fmt):
    assert parse(fmt, ref(name), 2).outcome != "success"


def test_claude_verbose_json_array():
    lines = ref("claude_p_stream-json_verbose.jsonl").decode().splitlines()
    array = "[" + ",".join(lines) + "]"
    result = parse("claude-json", array.encode(), 0)
    assert (result.outcome, result.summary) == ("success", "done")
    assert result.session_id == "29cc63a1-f702-44a9-8a5a-0c3d1576562b"


def test_claude_array_with_its_head_cut_off_still_finds_the_result():
    lines = ref("claude_p_stream-json_verbose.jsonl").decode().splitlines()
    array = "[" + ",".join(lines) + "]"
    result = parse("claude-json", array[len(array) // 2:].encode(), 0)
    assert (result.outcome, result.summary) == ("success", "done")


def test_claude_stream_without_result_is_interrupted_and_keeps_what_it_knows():
    lines = ref("claude_p_stream-json_verbose.jsonl").decode().splitlines()[:-1]
    result = parse("claude-json", "\n".join(lines).encode(), None)
    assert result.outcome == "interrupted"
    assert result.session_id == "29cc63a1-f702-44a9-8a5a-0c3d1576562b"
    assert result.summary.endswith("done")


def test_truncated_first_and_last_lines_are_skipped():
    data = ref("codex_exec_json_e2e_login_false.jsonl")
    cut = data[30:] + b'{"type":"item.completed","item":{"type":"agent_mes'
    result = parse("codex-jsonl", cut, 0)
    assert (result.outcome, result.summary, result.session_id) == ("success", "done", None)


def test_codex_usage_is_the_last_not_the_sum():
    data = ref("codex_exec_json_e2e_login_false.jsonl")
    second = (b'{"type":"turn.started"}\n{"type":"turn.completed","usage":'
              b'{"input_tokens":50,"cached_input_tokens":30,"output_tokens":25}}\n')
    assert parse("codex-jsonl", data + second, 0).tokens == Tokens(50, 25, 30)


def test_codex_turn_started_after_completion_is_unfinished():
    data = ref("codex_exec_json_e2e_login_false.jsonl") + b'{"type":"turn.started"}\n'
    assert parse("codex-jsonl", data, None).outcome == "interrupted"


# ---- table cases: shapes and garbage -----------------------------------------------

def claude_result(**fields) -> bytes:
    base = {"type": "result", "subtype": "success", "is_error": False, "result": "ok",
            "session_id": "s-1", "total_cost_usd": 0.5, "num_turns": 3,
            "usage": {"input_tokens": 7, "output_tokens": 8, "cache_read_input_tokens": 9},
            "permission_denials": []}
    base.update(fields)
    return json.dumps(base).encode()


@pytest.mark.parametrize("data, exit_code, outcome, summary", [
    (claude_result(), 0, "success", "ok"),
    (claude_result(), None, "success", "ok"),
    (claude_result(), 1, "failure", "exit code 1 after a successful result: ok"),
    (claude_result(is_error=True, result="boom"), 0, "failure", "boom"),
    (claude_result(subtype="error_max_turns", is_error=True, result=""), 1, "failure",
     "error_max_turns: no message"),
    (claude_result(subtype="error_during_execution", result=None, errors=["x", "y"]), 0,
     "failure", "error_during_execution: x; y"),
    (claude_result(permission_denials=[{"tool_name": "Write",
                                        "tool_input": {"file_path": "/etc/passwd"}}]),
     0, "denied", "permission denied for Write (/etc/passwd); result: ok"),
    (claude_result(permission_denials=[{"tool_name": "WebFetch", "tool_use_id": "toolu_1",
                                        "tool_input": {"url": "http://127.0.0.1:9/docs",
                                                       "prompt": "summarize"}}]),
     0, "denied", "permission denied for WebFetch (http://127.0.0.1:9/docs); result: ok"),
    (claude_result(permission_denials="??"), 0, "denied",
     "permission denied for (unreadable permission_denials); result: ok"),
    (b"\n\n" + claude_result() + b"\n", 0, "success", "ok"),
    (json.dumps(json.loads(claude_result()), indent=2).encode(), 0, "success", "ok"),
    (b'{"type":"system","session_id":"s-9"}\n' + claude_result(result="first") + b"\n"
     + claude_result(result="second") + b"\n", 0, "success", "second"),
    (b"", 0, "interrupted", "no result message in the output (exit code 0)"),
    (b"", 1, "failure", "no result message in the output (exit code 1)"),
    (b"not json at all\n{broken", None, "interrupted",
     "no result message in the output (unknown exit code)"),
])
def test_claude_table(data, exit_code, outcome, summary):
    result = parse("claude-json", data, exit_code)
    assert (result.outcome, result.summary) == (outcome, summary)
    assert result.outcome in OUTCOMES


def test_claude_result_without_subtype_is_not_trusted():
    data = b'{"type":"result","result":"maybe"}'
    assert parse("claude-json", data, 0).outcome == "failure"


def test_claude_fields_of_the_wrong_type_do_not_raise():
    data = claude_result(usage=[1], total_cost_usd="free", session_id=7, result=["x"])
    result = parse("claude-json", data, 0)
    assert result.tokens == Tokens() and result.cost_usd is None and result.session_id is None


def test_claude_records_cost_tokens_and_session():
    result = parse("claude-json", claude_result(), 0)
    assert (result.session_id, result.cost_usd, result.tokens) == ("s-1", 0.5, Tokens(7, 8, 9))


@pytest.mark.parametrize("data, exit_code, outcome", [
    (b"", None, "interrupted"),
    (b'{"type":"thread.started","thread_id":"t"}\n{"type":"turn.started"}\n', -9, "interrupted"),
    (b'{"type":"turn.completed","usage":{"input_tokens":"many"}}\n', 0, "success"),
    (b'{"type":"turn.completed"}\n', 3, "failure"),
    (b'{"type":"turn.failed"}\n', 0, "failure"),
    (b'{"type":"turn.failed","error":"not an object"}\n', 0, "failure"),
    (b'[1,2]\n"str"\n{"type":\n{"type":"item.completed","item":null}\n', None, "interrupted"),
])
def test_codex_table(data, exit_code, outcome):
    result = parse("codex-jsonl", data, exit_code)
    assert result.outcome == outcome


def test_codex_failure_keeps_a_plain_error_message():
    data = b'{"type":"turn.failed","error":{"message":"quota exceeded"}}\n'
    assert parse("codex-jsonl", data, 1).summary == "turn failed: quota exceeded"


def test_codex_message_with_line_separators_stays_one_event():
    event = {"type": "item.completed", "item": {"type": "agent_message", "text": "a\u2028b\x1cc"}}
    data = (json.dumps(event, ensure_ascii=False) + '\n{"type":"turn.completed"}\n').encode()
    assert parse("codex-jsonl", data, 0).summary == "a\u2028bc"


@pytest.mark.parametrize("data, exit_code, outcome", [
    (b"built\nok\n", 0, "success"),
    (b"oops\n", 2, "failure"),
    (b"", None, "interrupted"),
    (b"killed\n", -15, "interrupted"),
    (b"killed\n", 137, "interrupted"),
    (b"ssh said no\n", 255, "failure"),
])
def test_raw_outcome_follows_the_exit_code(data, exit_code, outcome):
    assert parse("raw", data, exit_code).outcome == outcome


def test_raw_summary_is_the_last_twenty_non_empty_lines():
    data = "".join(f"line {i}\n\n" for i in range(100)).encode()
    assert parse("raw", data, 0).summary.split("\n") == [f"line {i}" for i in range(80, 100)]


def test_raw_summary_is_bounded_and_cleaned():
    data = b"\x1b[31mred\x1b[0m\r\n" + b"x" * 10_000 + b"\n"
    summary = parse("raw", data, 0).summary
    assert len(summary) == RAW_SUMMARY_LIMIT and summary.endswith("xxx")
    assert parse("raw", b"\x1b[31mred\x1b[0m\r\n", 0).summary == "red"


@pytest.mark.parametrize("fmt, summary", [
    ("codex-jsonl", "no turn.completed or turn.failed in the output (exit code 0)"),
    ("claude-json", "caf\ufffd"),
    ("raw", '\ufffd\ufffd garbage \ufffd(\n{"type":"result","subtype":"success","result":"caf\ufffd"}'),
])
def test_non_utf8_bytes_are_replaced(fmt, summary):
    data = b"\xff\xfe garbage \xc3\x28\n" + b'{"type":"result","subtype":"success","result":"caf\xe9"}\n'
    assert parse(fmt, data, 0).summary == summary


def test_non_utf8_inside_a_message_is_replaced():
    data = b'{"type":"item.completed","item":{"type":"agent_message","text":"caf\xe9"}}\n' \
           b'{"type":"turn.completed"}\n'
    assert parse("codex-jsonl", data, 0).summary == "caf\ufffd"


@pytest.mark.parametrize("fmt", ["codex-jsonl", "claude-json"])
def test_long_messages_are_bounded(fmt):
    text = "word " * 5_000
    if fmt == "codex-jsonl":
        event = {"type": "item.completed", "item": {"type": "agent_message", "text": text}}
        data = (json.dumps(event) + '\n{"type":"turn.completed"}\n').encode()
    else:
        data = claude_result(result=text)
    summary = parse(fmt, data, 0).summary
    assert len(summary) <= SUMMARY_LIMIT and summary.startswith("word word")
    assert summary.endswith("more characters]")


def big_codex_stream(size: int) -> bytes:
    event = {"type": "item.completed",
             "item": {"type": "command_execution", "aggregated_output": "y" * 1000}}
    line = json.dumps(event).encode() + b"\n" + b"garbage \xff line\n"
    head = b'{"type":"thread.started","thread_id":"t-big"}\n{"type":"turn.started"}\n'
    tail = (b'{"type":"item.completed","item":{"type":"agent_message","text":"big done"}}\n'
            b'{"type":"turn.completed","usage":{"input_tokens":1,"output_tokens":2}}\n')
    return head + line * (size // len(line)) + tail


@pytest.mark.parametrize("fmt", ["codex-jsonl", "claude-json", "raw"])
def test_twenty_megabytes_parse_quickly(fmt):
    data = big_codex_stream(20 * 1024 * 1024)
    if fmt == "claude-json":
        data = data + claude_result(result="claude done") + b"\n"
    started = time.monotonic()
    result = parse(fmt, data, 0)
    assert time.monotonic() - started < 10
    assert result.outcome == "success"
    assert len(result.summary) <= SUMMARY_LIMIT
    if fmt == "codex-jsonl":
        assert (result.summary, result.session_id) == ("big done", "t-big")


def test_one_twenty_megabyte_line_does_not_raise():
    data = b"{" + b"\xff" * (20 * 1024 * 1024)
    for fmt in ("codex-jsonl", "claude-json", "raw"):
        assert parse(fmt, data, None).outcome == "interrupted"


def test_unknown_format_is_a_value_error():
    with pytest.raises(ValueError, match="known: claude-json, codex-jsonl, raw"):
        parse("yaml", b"", 0)


# ---- the fake agent CLI ------------------------------------------------------------

def test_fake_agent_replays_bytes_and_exit_code(tmp_path):
    name = "codex_exec_json_http400.jsonl"
    saved = tmp_path / "prompt.txt"
    proc = subprocess.run(
        [str(FAKE_AGENTS / "replay"), name, "--exit", "3", "--save-prompt", str(saved),
         "--stderr", "claude_root_refusal.stderr"],
        input=b"the prompt\n", capture_output=True, timeout=30)
    assert proc.returncode == 3
    assert proc.stdout == (REFERENCE / name).read_bytes()
    assert proc.stderr.startswith(b"--dangerously-skip-permissions")
    assert saved.read_bytes() == b"the prompt\n"
    assert parse("codex-jsonl", proc.stdout, proc.returncode).outcome == "failure"


def test_fake_agent_hang_runs_until_killed():
    proc = subprocess.Popen([sys.executable, str(FAKE_AGENTS / "replay"),
                             "codex_exec_json_server_down_hang.jsonl", "--hang"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        assert b"thread.started" in first
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("line", [
    b'{"type":"assistant","message":{"content":7}}',
    b'{"type":"result","subtype":"error_during_execution","is_error":true,"errors":5}',
    b'{"type":"assistant","message":[1,2]}',
    b'[{"type":"result","usage":[],"subtype":{}}]',
])
def test_claude_shapes_of_the_wrong_type_never_raise(line):
    result = parse("claude-json", line, 1)
    assert result.outcome != "success"
