"""DesiredBuilder and validate_files: hostile files, cross-file rules, defaults, increments.

Every bad input must come back as a `path:line: message` Problem (and an entry
in Desired.invalid for a task), never as an exception.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

from controller.desired.builder import DesiredBuilder, validate_files
from controller.model import Agent, Host, OutputFormat, PromptMode, Settings, Task, TaskMode

ROOT = Path(__file__).resolve().parents[1]
AGENT = "name: codex\ncommand: [codex, exec, '-']\nrequires: [codex]\n"
HOST = "name: h1\naddress: h1.example\ncapabilities: [codex]\n"


def task(tid: str = "t1", extra: str = "") -> str:
    return (f"id: {tid}\ntitle: Do {tid}\nagent: codex\ngoal: |\n  Make it so.\n"
            f"repo: https://git.example/acme/web.git\n{extra}")


class Repo:
    """A fleet repo as path -> bytes, fed to a builder as blob-id changes, like the engine does."""

    def __init__(self, files: dict[str, str | bytes] | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads = 0
        self.builder = DesiredBuilder()
        self.desired = self.apply(files or {})

    def read(self, blob: str) -> bytes:
        self.reads += 1
        return self.blobs[blob]

    def apply(self, files: dict[str, str | bytes | None]):
        changes = []
        for path, content in files.items():
            if content is None:
                changes.append((path, None))
                continue
            raw = content.encode() if isinstance(content, str) else content
            blob = hashlib.sha1(raw).hexdigest()
            self.blobs[blob] = raw
            changes.append((path, blob))
        self.desired = self.builder.apply(changes, self.read, "c")
        return self.desired

    def problems(self) -> list[str]:
        return [str(p) for p in self.builder.problems]


def base(**more: str | bytes) -> dict[str, str | bytes]:
    return {"agents/codex.yaml": AGENT, "hosts/h1.yaml": HOST, **more}


def only_problem(repo: Repo) -> str:
    found = repo.problems()
    assert len(found) == 1, found
    return found[0]


# ---- hostile files: each gives one clear problem and an invalid task ----------

HOSTILE = [
    ("not yaml", b"id: t1\ntitle: [unclosed\n", "tasks/t1.yaml:3: not valid YAML"),
    ("empty", b"", "tasks/t1.yaml:1: the file is empty"),
    ("only comments", b"# nothing here\n", "tasks/t1.yaml:1: the file is empty"),
    ("a list", b"- id: t1\n", "tasks/t1.yaml:1: the file must hold a mapping of keys to values"),
    ("a scalar", b"just words\n", "not a single value ('just words')"),
    ("two documents", task().encode() + b"---\nid: t2\n", "tasks/t1.yaml:7: a second YAML document starts at line 7"),
    ("duplicate key", task().encode() + b"title: again\n",
     "tasks/t1.yaml:7: duplicate key 'title' (first at line 2)"),
    ("latin-1", b"id: t1\ntitle: caf\xe9\n", "tasks/t1.yaml:2: not valid UTF-8 at byte offset 17"),
    ("utf-16", task().encode("utf-16"), "not valid UTF-8 at byte offset 0"),
    ("too big", b"id: t1\ngoal: " + b"x" * (1 << 20), "the limit is 1,048,576 bytes (1 MiB)"),
    ("billion laughs", b"id: t1\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a]\n"
                       b"c: &c [*b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c]\n",
     "tasks/t1.yaml:3: YAML aliases (*a) are not allowed"),
    ("deep flow", b"id: t1\ngoal: " + b"[" * 50 + b"]" * 50 + b"\n",
     "tasks/t1.yaml:2: nested more than 20 levels deep"),
    ("deep block", b"id: t1\ngoal:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 30)),
     "nested more than 20 levels deep"),
    ("python tag", b"id: t1\ngoal: !!python/object/apply:os.system ['rm -rf /']\n",
     "tasks/t1.yaml:2: the YAML tag '!!python/object/apply:os.system' is not allowed"),
    ("custom tag", b"id: t1\ngoal: !secret abc\n", "the YAML tag '!secret' is not allowed"),
    ("tab indent", b"id: t1\nconstraints:\n\t- x\n", "indent with spaces, YAML does not allow tabs"),
    ("control char", b"id: t1\ntitle: a\x07b\n", "tasks/t1.yaml:2: a character YAML does not allow"
                                                 " (#x0007) at byte offset 15"),
    ("list as key", b"id: t1\n? [a, b]\n: c\n", "tasks/t1.yaml:2: a key must be a plain word"),
    # YAML 1.1 leftovers are read as the strings they look like, and the schema says why.
    ("yes as boolean", task(extra="suspend: yes\n").encode(),
     "tasks/t1.yaml:7: suspend: must be true or false, got 'yes' (write true or false)"),
    ("on as boolean", task(extra="cancel: on\n").encode(), "cancel: must be true or false, got 'on'"),
    ("octal", task(extra="priority: 010\n").encode(),
     "priority: must be an integer, got '010' (write the number without leading zeros)"),
    ("sexagesimal", task(extra="timeout: 1:30\n").encode(),
     "timeout: '1:30' is not a duration like 45m, 2h or 90s (or a whole number of seconds) "
     "(write 1h30m or 90m, not 1:30)"),
    ("duration in words", task(extra="timeout: 45 minutes\n").encode(),
     "tasks/t1.yaml:7: timeout: '45 minutes' is not a duration like 45m, 2h or 90s"),
    ("zero duration", task(extra="stall_timeout: 0\n").encode(), "stall_timeout: 0 is not a duration"),
    ("typo", task(extra="priorty: 3\n").encode(),
     "tasks/t1.yaml:7: unknown key 'priorty': did you mean 'priority'? (allowed: agent, base,"),
    ("word for number", task(extra="max_attempts: three\n").encode(),
     "tasks/t1.yaml:7: max_attempts: must be an integer >= 1, got 'three'"),
    ("zero attempts", task(extra="max_attempts: 0\n").encode(), "max_attempts: must be an integer >= 1, got 0"),
    ("missing key", b"id: t1\ntitle: x\nagent: codex\ngoal: g\n",
     "tasks/t1.yaml:1: missing required key 'repo': the target repository's clone URL or path"),
    ("tilde repo", task().replace("repo: https://git.example/acme/web.git", "repo: ~/web.git").encode(),
     "repo: '~/web.git' is not a single line that does not start with '-' or '~' (a leading ~ is not expanded"),
    ("bad mode", task(extra="mode: push\n").encode(), "mode: must be one of ssh, pull, got 'push'"),
    ("bad agent name", task().replace("agent: codex", "agent: Codex").encode(),
     "tasks/t1.yaml:3: agent: 'Codex' is not a name of lowercase letters"),
    ("number as text", task(extra="constraints: [1.5]\n").encode(),
     "constraints[0]: must be a non-empty string, got 1.5 (put it in quotes: \"1.5\")"),
    ("duplicate dependency", task(extra="depends_on: [a, a]\n").encode(),
     "depends_on: lists 'a' more than once"),
    ("id not the file name", task("t2").encode(),
     "tasks/t1.yaml:1: id: 't2' does not match the file name: set id: t1, or rename the file "
     "to tasks/t2.yaml"),
    ("newline in id", b'id: "t1\\n"\n' + task().encode().split(b"\n", 1)[1],
     "tasks/t1.yaml:1: id: 't1\\n' is not a name"),
    ("option as repo", task().replace("repo: https://git.example/acme/web.git",
                                      "repo: --upload-pack=evil").encode(),
     "repo: '--upload-pack=evil' is not a single line that does not start with '-'"),
]


@pytest.mark.parametrize("content,expected", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_task_file_is_one_clear_problem(content: bytes, expected: str) -> None:
    repo = Repo(base(**{"tasks/t1.yaml": content}))
    problems = repo.problems()
    assert problems and all(p.startswith("tasks/t1.yaml:") for p in problems), problems
    assert any(expected in p for p in problems), problems
    assert "t1" not in repo.desired.tasks
    assert repo.desired.invalid["t1"] == problems[0] or repo.desired.invalid["t1"].startswith(
        problems[0])


def test_a_bad_file_blocks_only_its_own_task() -> None:
    repo = Repo(base(**{"tasks/good.yaml": task("good"), "tasks/bad.yaml": b"id: bad\n: :\n"}))
    assert set(repo.desired.tasks) == {"good"}
    assert set(repo.desired.invalid) == {"bad"}


def test_nesting_deep_enough_to_crash_libyaml_is_refused_cleanly() -> None:
    """libyaml's composer recurses in C and segfaults near 30k levels: run it in a child.

    Whichever refuses first (fleet's own scan, or libyaml's depth limit since
    PyYAML 6.0.4), the user sees one fleet sentence with the file and line.
    """
    script = ("import sys; from controller.desired.builder import validate_files\n"
              "for raw in (b'[' * 500000, b'- ' * 400000 + b'x', b'{a: ' * 200000,\n"
              "            b'a: ' + b'[' * 25 + b']' * 25, b'a: ' + b'[' * 2000 + b']' * 2000):\n"
              "    problems = validate_files({'tasks/t1.yaml': raw})\n"
              "    print(len(problems), problems[0])\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = ("1 tasks/t1.yaml:1: nested more than 20 levels deep: "
                "fleet files need only a few levels")
    assert out.stdout.splitlines() == [expected] * 5, out.stdout


# ---- file names ----------------------------------------------------------------

PATHS = [
    ("tasks/../x.yaml", "tasks/../x.yaml:1: task files live directly in tasks/"),
    ("tasks/a;rm -rf .yaml", "'a;rm -rf ' is not a valid task id"),
    ("tasks/t1.yml", "tasks/t1.yml:1: not a task file: name it tasks/<task id>.yaml (.yaml, not .yml)"),
    ("tasks/t1.json", "not a task file: name it tasks/<task id>.yaml"),
    ("tasks/sub/t1.yaml", "task files live directly in tasks/"),
    ("tasks/Fix-Login.yaml", "'Fix-Login' is not a valid task id"),
    ("tasks/" + "a" * 64 + ".yaml", "is not a valid task id"),
    ("hosts/h 2.yaml", "'h 2' is not a valid host name"),
    ("agents/x.yml", "agents/x.yml:1: not an agent file: name it agents/<agent name>.yaml"),
    ("fleet.yml", "fleet.yml:1: fleet settings are read from fleet.yaml: rename this file"),
]


@pytest.mark.parametrize("path,expected", PATHS)
def test_a_bad_file_name_is_a_problem_and_yields_nothing(path: str, expected: str) -> None:
    repo = Repo(base(**{path: task("t1")}))
    assert expected in only_problem(repo)
    assert not repo.desired.tasks and not repo.desired.invalid


@pytest.mark.parametrize("path", ["tasks/.gitkeep", "README.md", "status/t1.yaml", "docs/x.yaml",
                                  "hosts/.keep", "tasks"])
def test_files_that_are_not_fleet_files_are_ignored_unread(path: str) -> None:
    repo = Repo(base(**{path: b"\xff not even utf-8"}))
    assert repo.problems() == [] and repo.reads == 2


# ---- cross-file rules ------------------------------------------------------------

CROSS = [
    ("no such agent", {"tasks/t1.yaml": task().replace("agent: codex", "agent: claude")},
     {"t1": "tasks/t1.yaml:3: agent: no agent 'claude': add agents/claude.yaml or use one of: codex"}),
    ("invalid agent", {"agents/codex.yaml": "name: codex\ncommand: []\n", "tasks/t1.yaml": task()},
     {"t1": "tasks/t1.yaml:3: agent: agents/codex.yaml is invalid (agents/codex.yaml:2: command: "
            "must list at least 1 item): fix that file"}),
    ("missing dependency", {"tasks/t1.yaml": task(extra="depends_on: [setup]\n")},
     {"t1": "tasks/t1.yaml:7: depends_on: no task 'setup' (tasks/setup.yaml does not exist)"}),
    ("depends on itself", {"tasks/t1.yaml": task(extra="depends_on: [t1]\n")},
     {"t1": "tasks/t1.yaml:7: depends_on: lists the task itself: remove 't1'"}),
    ("two-task cycle", {"tasks/a.yaml": task("a", "depends_on: [b]\n"),
                        "tasks/b.yaml": task("b", "depends_on: [a]\n")},
     {"a": "tasks/a.yaml:7: depends_on: forms a cycle a -> b -> a: remove one of these dependencies",
      "b": "tasks/b.yaml:7: depends_on: forms a cycle b -> a -> b"}),
    ("three-task cycle", {"tasks/a.yaml": task("a", "depends_on: [b]\n"),
                          "tasks/b.yaml": task("b", "depends_on: [c]\n"),
                          "tasks/c.yaml": task("c", "depends_on: [a]\n"),
                          "tasks/d.yaml": task("d", "depends_on: [a]\n")},
     {"a": "cycle a -> b -> c -> a", "b": "cycle b -> c -> a -> b", "c": "cycle c -> a -> b -> c"}),
    ("an invalid dependency still exists", {"tasks/a.yaml": task("a", "depends_on: [b]\n"),
                                            "tasks/b.yaml": "id: b\n"}, {"b": "missing required key"}),
]


@pytest.mark.parametrize("files,invalid", [c[1:] for c in CROSS], ids=[c[0] for c in CROSS])
def test_cross_file_rules(files: dict, invalid: dict[str, str]) -> None:
    repo = Repo(base(**files))
    assert set(repo.desired.invalid) == set(invalid)
    for tid, message in invalid.items():
        assert message in repo.desired.invalid[tid]
    assert set(repo.desired.tasks) == {p[6:-5] for p in files if p.startswith("tasks/")} - set(invalid)
    assert repo.problems() == sorted(repo.problems())


HOSTS = [
    ("jump to nowhere", {"hosts/a.yaml": "name: a\naddress: a.example\njump: bastion\n"},
     {"a": "hosts/a.yaml:3: jump: no host 'bastion': add hosts/bastion.yaml"}),
    ("jump to itself", {"hosts/a.yaml": "name: a\naddress: a.example\njump: a\n"},
     {"a": "jump: a host cannot jump through itself"}),
    ("jump loop", {"hosts/a.yaml": "name: a\naddress: a.example\njump: b\n",
                   "hosts/b.yaml": "name: b\naddress: b.example\njump: a\n"},
     {"a": "hosts jump through each other in a loop: a -> b -> a",
      "b": "in a loop: b -> a -> b"}),
    ("jump to a broken host", {"hosts/a.yaml": "name: a\naddress: a.example\njump: b\n",
                               "hosts/b.yaml": "name: b\nport: 99999\n"},
     {"a": "jump: hosts/b.yaml is invalid (hosts/b.yaml:2: port: must be an integer from 1 to 65535",
      "b": "hosts/b.yaml:2: port"}),
    ("jump through a chain", {"hosts/a.yaml": "name: a\naddress: a.example\njump: b\n",
                              "hosts/b.yaml": "name: b\naddress: b.example\njump: c\n"},
     {"a": "jump: through a -> b: no host 'c'", "b": "jump: no host 'c'"}),
    ("name not the file name", {"hosts/a.yaml": "name: b\n"},
     {"a": "hosts/a.yaml:1: name: 'b' does not match the file name"}),
]


@pytest.mark.parametrize("files,bad", [h[1:] for h in HOSTS], ids=[h[0] for h in HOSTS])
def test_host_rules(files: dict, bad: dict[str, str]) -> None:
    repo = Repo(files)
    assert not set(bad) & set(repo.desired.hosts)
    for name, message in bad.items():
        assert any(p.startswith(f"hosts/{name}.yaml:") and message in p for p in repo.problems()), \
            repo.problems()


def test_a_host_may_jump_through_a_valid_host() -> None:
    repo = Repo({"hosts/a.yaml": "name: a\naddress: a.example\njump: b\n",
                 "hosts/b.yaml": "name: b\naddress: b.example\n"})
    assert repo.problems() == [] and repo.desired.hosts["a"].jump == "b"


# ---- conversion to model types and fleet.yaml defaults ---------------------------

def test_files_become_model_objects() -> None:
    repo = Repo({
        "agents/codex.yaml": AGENT + "version: [codex, --version]\nenv: {B: '2', A: x}\noutput: codex-jsonl\n",
        "hosts/h1.yaml": HOST + "port: 2222\nuser: fleet\nmax_concurrent: 4\nenv: {Z: z}\n",
        "tasks/t1.yaml": task(extra="constraints: [keep it small]\nvalidation: [make test]\n"
                                    "requires: [gpu]\npriority: -2\ndepends_on: [t2]\ntimeout: 1h30m\n"
                                    "stall_timeout: 90\nfeedback: [more tests]\nrerun: 2025-01-31\n"
                                    "suspend: true\n"),
        "tasks/t2.yaml": task("t2", "rerun: 3\n"),
    })
    assert repo.problems() == []
    d = repo.desired
    assert d.agents["codex"] == Agent(name="codex", command=("codex", "exec", "-"), output="codex-jsonl",
                                      requires=frozenset({"codex"}), version=("codex", "--version"),
                                      env=(("A", "x"), ("B", "2")))
    assert d.hosts["h1"] == Host(name="h1", address="h1.example", port=2222, user="fleet",
                                 capabilities=frozenset({"codex"}), max_concurrent=4, env=(("Z", "z"),))
    t1 = d.tasks["t1"]
    assert t1 == Task(id="t1", title="Do t1", agent="codex", goal="Make it so.\n",
                      repo="https://git.example/acme/web.git", constraints=("keep it small",),
                      validation=("make test",), requires=frozenset({"gpu"}), priority=-2,
                      depends_on=("t2",), timeout=5400.0, stall_timeout=90.0,
                      feedback=("more tests",), rerun="2025-01-31", suspend=True)
    assert d.tasks["t2"].rerun == "3" and d.tasks["t2"].timeout is None
    assert d.tasks["t2"].stall_timeout == 600.0 and d.commit == "c"
    # Enum members, not merely equal strings: code may rely on `is` and on .value.
    assert d.agents["codex"].output is OutputFormat.CODEX_JSONL
    assert d.agents["codex"].prompt is PromptMode.STDIN and t1.mode is TaskMode.SSH
    assert isinstance(d.tasks, MappingProxyType) and isinstance(d.invalid, MappingProxyType)


FLEET = """poll_interval: 30s
backoff: {base: 5s, max: 2m}
cancel_grace: 20
prompt_template: "Do $goal"
defaults:
  base: develop
  timeout: 2h
  max_attempts: 5
  priority: 7
  mode: pull
  requires: [linux]
"""


def test_fleet_yaml_settings_and_defaults_for_tasks_that_do_not_set_them() -> None:
    repo = Repo(base(**{"fleet.yaml": FLEET, "tasks/t1.yaml": task(),
                        "tasks/t2.yaml": task("t2", "timeout: 5m\npriority: 1\nrequires: []\n")}))
    assert repo.problems() == []
    s = repo.desired.settings
    assert (s.poll_interval, s.backoff_base, s.backoff_max, s.cancel_grace) == (30.0, 5.0, 120.0, 20.0)
    assert s.prompt_template == "Do $goal"
    t1, t2 = repo.desired.tasks["t1"], repo.desired.tasks["t2"]
    assert (t1.base, t1.timeout, t1.max_attempts, t1.priority, t1.mode, t1.requires) == (
        "develop", 7200.0, 5, 7, "pull", frozenset({"linux"}))
    assert (t2.base, t2.timeout, t2.priority, t2.requires) == ("develop", 300.0, 1, frozenset())
    assert t1.mode is TaskMode.PULL    # a default from fleet.yaml is converted too


@pytest.mark.parametrize("fleet,expected", [
    ("poll_interval: soon\n", "fleet.yaml:1: poll_interval: 'soon' is not a duration"),
    ("defaults:\n  agent: codex\n", "fleet.yaml:2: unknown key 'agent' in defaults"),
    ("backoff: {base: 10m, max: 1m}\n", "fleet.yaml:1: backoff: base (10m) is longer than max (1m)"),
    ("- a list\n", "fleet.yaml:1: the file must hold a mapping"),
])
def test_a_bad_fleet_yaml_is_a_problem_and_the_defaults_apply(fleet: str, expected: str) -> None:
    repo = Repo(base(**{"fleet.yaml": fleet, "tasks/t1.yaml": task()}))
    assert expected in only_problem(repo)
    assert repo.desired.settings == Settings()
    assert repo.desired.tasks["t1"].max_attempts == 3


# ---- incremental apply -------------------------------------------------------------

def test_one_changed_file_is_the_only_one_parsed() -> None:
    files = base(**{f"tasks/t{i}.yaml": task(f"t{i}") for i in range(50)})
    repo = Repo(files)
    assert repo.builder.parses == 52 and len(repo.desired.tasks) == 50
    repo.apply({"tasks/t7.yaml": task("t7", "priority: 9\n")})
    assert repo.builder.parses == 53 and repo.reads == 53
    assert repo.desired.tasks["t7"].priority == 9 and repo.builder.changed_tasks == {"t7"}
    repo.apply({"tasks/t8.yaml": files["tasks/t8.yaml"]})     # the same blob again: nothing to do
    assert repo.builder.parses == 53 and repo.builder.changed_tasks == set()


def test_add_modify_delete() -> None:
    repo = Repo(base(**{"tasks/t1.yaml": task()}))
    repo.apply({"tasks/t2.yaml": task("t2")})
    assert set(repo.desired.tasks) == {"t1", "t2"} and repo.builder.changed_tasks == {"t2"}
    repo.apply({"tasks/t2.yaml": task("t2", "priority: oops\n")})
    assert "t2" in repo.desired.invalid and "t2" not in repo.desired.tasks
    assert repo.builder.changed_tasks == {"t2"} and len(repo.problems()) == 1
    repo.apply({"tasks/t2.yaml": None})
    assert set(repo.desired.tasks) == {"t1"} and not repo.desired.invalid
    assert repo.builder.changed_tasks == {"t2"} and repo.problems() == []


def test_a_renamed_file_is_not_parsed_again() -> None:
    repo = Repo(base(**{"tasks/t1.yaml": task()}))
    blob = hashlib.sha1(task().encode()).hexdigest()
    repo.builder.apply([("tasks/t1.yaml", None), ("tasks/t2.yaml", blob)], repo.read, "c2")
    assert repo.builder.parses == 3
    assert repo.problems() == ["tasks/t2.yaml:1: id: 't1' does not match the file name: set id: t2, "
                               "or rename the file to tasks/t1.yaml"]


def test_a_changed_agent_revalidates_the_tasks_that_name_it() -> None:
    repo = Repo(base(**{"tasks/t1.yaml": task(), "tasks/t2.yaml": task("t2"),
                        "agents/other.yaml": "name: other\ncommand: [x]\n",
                        "tasks/t3.yaml": task("t3").replace("agent: codex", "agent: other")}))
    repo.apply({"agents/codex.yaml": "name: codex\ncommand: codex\n"})
    assert set(repo.desired.invalid) == {"t1", "t2"} and repo.builder.changed_tasks == {"t1", "t2"}
    assert "agents/codex.yaml is invalid (agents/codex.yaml:2: command: must be a list" in \
        repo.desired.invalid["t1"]
    repo.apply({"agents/codex.yaml": None})
    assert "no agent 'codex': add agents/codex.yaml or use one of: other" in repo.desired.invalid["t2"]
    repo.apply({"agents/codex.yaml": AGENT})
    assert set(repo.desired.tasks) == {"t1", "t2", "t3"} and not repo.desired.invalid
    assert repo.builder.changed_tasks == {"t1", "t2"}


def test_dependencies_follow_their_tasks() -> None:
    repo = Repo(base(**{"tasks/a.yaml": task("a", "depends_on: [b]\n")}))
    assert "no task 'b'" in repo.desired.invalid["a"]
    repo.apply({"tasks/b.yaml": task("b")})
    assert set(repo.desired.tasks) == {"a", "b"} and repo.builder.changed_tasks == {"a", "b"}
    repo.apply({"tasks/c.yaml": task("c", "depends_on: [a]\n")})
    repo.apply({"tasks/b.yaml": task("b", "depends_on: [c]\n")})          # closes a -> b -> c -> a
    assert set(repo.desired.invalid) == {"a", "b", "c"}
    assert "cycle b -> c -> a -> b" in repo.desired.invalid["b"]
    repo.apply({"tasks/c.yaml": task("c")})                               # opens it again
    assert set(repo.desired.tasks) == {"a", "b", "c"} and not repo.desired.invalid
    repo.apply({"tasks/b.yaml": None})
    assert set(repo.desired.invalid) == {"a"} and repo.builder.changed_tasks == {"a", "b"}


def test_a_changed_fleet_yaml_reapplies_defaults() -> None:
    repo = Repo(base(**{"tasks/t1.yaml": task(), "tasks/t2.yaml": task("t2", "max_attempts: 1\n")}))
    repo.apply({"fleet.yaml": "defaults:\n  max_attempts: 9\n"})
    assert [repo.desired.tasks[t].max_attempts for t in ("t1", "t2")] == [9, 1]
    assert repo.builder.changed_tasks == {"t1"}
    repo.apply({"fleet.yaml": "poll_interval: 1m\ndefaults:\n  max_attempts: 9\n"})
    assert repo.desired.settings.poll_interval == 60.0 and repo.builder.changed_tasks == set()
    repo.apply({"fleet.yaml": None})
    assert repo.desired.tasks["t1"].max_attempts == 3 and repo.desired.settings == Settings()


def test_hosts_come_and_go() -> None:
    repo = Repo({"hosts/a.yaml": "name: a\naddress: a.example\njump: b\n"})
    assert not repo.desired.hosts
    repo.apply({"hosts/b.yaml": "name: b\naddress: b.example\n"})
    assert set(repo.desired.hosts) == {"a", "b"} and repo.problems() == []
    repo.apply({"hosts/b.yaml": "name: b\naddress: b.example\nmax_concurrent: lots\n"})
    assert not repo.desired.hosts and len(repo.problems()) == 2


# ---- the shipped examples --------------------------------------------------------

EXAMPLES = [d for d in (ROOT / "fleet-state-example", ROOT / "controller" / "example") if d.is_dir()]


@pytest.mark.parametrize("root", EXAMPLES, ids=[d.name for d in EXAMPLES])
def test_example_fleet_repositories_validate_cleanly(root: Path) -> None:
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert validate_files(files) == []
    desired = DesiredBuilder().apply([(p, p) for p in files], files.__getitem__, "x")
    tasks = [p for p in files if p.startswith("tasks/") and p.endswith(".yaml")]
    assert len(desired.tasks) == len(tasks) and not desired.invalid


def test_bad_prompt_template_in_fleet_yaml_is_a_problem_with_its_line():
    from controller.desired.builder import validate_files
    problems = validate_files({"fleet.yaml": b"poll_interval: 10s\nprompt_template: |\n  Do $goall now\n"})
    assert len(problems) == 1
    assert str(problems[0]).startswith("fleet.yaml:2: prompt_template:") and "goall" in str(problems[0])


def test_prompt_template_in_agent_command_spelling_is_a_problem() -> None:
    from controller.desired.builder import validate_files
    problems = validate_files({"fleet.yaml": b"prompt_template: \"Do {goal} now\"\n"})
    assert [str(p) for p in problems] == [
        "fleet.yaml:1: prompt_template: prompt template placeholders are spelled $name or "
        "${name}: use $goal, not {goal}"]


def test_env_names_the_run_would_refuse_are_refused_by_validate():
    from controller.desired.builder import validate_files
    from controller.executors.shell import RESERVED_NAMES
    for name in sorted(RESERVED_NAMES):
        problems = validate_files({"agents/x.yaml": f"name: x\ncommand: [x]\nenv:\n  {name}: v\n".encode()})
        assert [p.line for p in problems] == [4] and "the shell's own" in problems[0].message, name


def test_a_broken_fleet_yaml_keeps_the_last_good_settings():
    from controller.desired.builder import DesiredBuilder
    blobs = {"good": b"poll_interval: 3s\ndefaults:\n  timeout: 1h\n", "bad": b"poll_interval: [\n",
             "t": b"id: t\ntitle: t\nagent: a\ngoal: g\nrepo: /r\n", "a": b"name: a\ncommand: [a]\n"}
    b = DesiredBuilder()
    d = b.apply([("fleet.yaml", "good"), ("tasks/t.yaml", "t"), ("agents/a.yaml", "a")], blobs.__getitem__, "c1")
    assert d.settings.poll_interval == 3 and d.tasks["t"].timeout == 3600
    d = b.apply([("fleet.yaml", "bad")], blobs.__getitem__, "c2")
    assert d.settings.poll_interval == 3 and d.tasks["t"].timeout == 3600
    assert [p.path for p in b.problems] == ["fleet.yaml"]
    d = b.apply([("fleet.yaml", None)], blobs.__getitem__, "c3")
    assert d.settings.poll_interval == 10 and d.tasks["t"].timeout is None
