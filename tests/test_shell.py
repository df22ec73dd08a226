"""controller.executors.shell against hostile input, checked by a real /bin/sh.

Each value is quoted, handed to `sh -c`, and must come back byte for byte,
with nothing executed along the way (a canary file must never appear).
"""
import os
import subprocess

import pytest

from controller.executors import shell

CANARY = "/tmp/fleet-shell-test-pwned"

HOSTILE = [
    "",
    " ",
    "plain",
    "it's",
    "'",
    "''",
    "'\"'",
    '"',
    "\\",
    "trailing backslash\\",
    "\\'",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"'$(touch {CANARY})'",
    f"\"$(touch {CANARY})\"",
    f"'; touch {CANARY}; echo '",
    f"a\nb\ntouch {CANARY}",
    "line\r\nbreak",
    "; ls",
    "&& true",
    "| cat",
    "> /dev/null",
    "*",
    "/*",
    "?",
    "[a-z]",
    "~",
    "~root",
    "$HOME",
    "${HOME}",
    "$1 $@ $* $# $? $$ $!",
    "!!",
    "-n",
    "-e foo",
    "--",
    "-",
    "#comment",
    "{a,b}",
    "tab\there",
    "ünïcödé ✓ 日本語 🚀",
    "\x01\x02\x1b[31mred\x7f",
    "x" * 100_000,
    "'" * 1000,
]


@pytest.fixture(autouse=True)
def no_canary():
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    yield
    assert not os.path.exists(CANARY), "a quoted value was executed"


def sh(script: str, *args: str) -> bytes:
    res = subprocess.run(["/bin/sh", "-c", script, "sh", *args], capture_output=True, check=True)
    return res.stdout


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_quoted_word_arrives_byte_identical(value):
    out = sh(f"printf '%s' {shell.quote(value)}")
    assert out == value.encode()


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_assignment_arrives_byte_identical(value):
    out = sh(f"{shell.assignment('V', value)}\nprintf '%s' \"$V\"")
    assert out == value.encode()


def test_exported_assignments_reach_a_child_process():
    script = shell.env_script([("A", "$(id)"), ("B", "x\ny"), ("A", "later wins")])
    out = sh(script + "exec env")
    assert b"A=later wins\n" in out
    assert b"B=x\ny\n" in out


def test_command_line_keeps_every_element_one_word():
    argv = ["printf", "%s\\0"] + HOSTILE
    out = sh(shell.command_line(argv))
    assert out.split(b"\0")[:-1] == [v.encode() for v in HOSTILE]


def test_command_line_leading_dash_is_an_argument_not_an_option():
    out = sh(shell.command_line(["printf", "[%s]", "-n"]))
    assert out == b"[-n]"


def test_command_line_refuses_an_empty_argv():
    with pytest.raises(ValueError):
        shell.command_line([])


@pytest.mark.parametrize("value", ["\0", "a\0b", "tail\0"])
def test_nul_is_refused(value):
    with pytest.raises(ValueError):
        shell.quote(value)


def test_non_str_is_refused():
    with pytest.raises(TypeError):
        shell.quote(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A=B", "$A", "A\n", "é", "a;b", "IFS"])
def test_bad_env_names_are_refused(name):
    with pytest.raises(ValueError):
        shell.assignment(name, "x")


@pytest.mark.parametrize("name", ["A", "_", "_a1", "PATH", "FLEET_TASK_ID", "lower_case"])
def test_good_env_names_pass(name):
    assert shell.assignment(name, "v") == f"{name}='v'"


def test_quote_never_leaves_a_word_unquoted():
    # One rule for every value: even a harmless word is single-quoted.
    assert shell.quote("abc") == "'abc'"
    assert shell.quote("") == "''"
    assert shell.quote("it's") == "'it'\"'\"'s'"
