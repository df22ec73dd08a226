"""The desired state: what one fleet-repo commit asks for, built incrementally.

The engine calls DesiredBuilder.apply() with the files a tree diff says changed
and gets a model.Desired; `fleet validate` calls validate_files(). Each file is
parsed once per blob id (yamlfile.py, then schema.py), and a change costs what
it touches: an edited task rechecks that task, plus its dependents when its
depends_on or its existence changed; a changed agent rechecks the tasks naming
it; a changed fleet.yaml re-applies the defaults to every task.

A bad file blocks only itself: a task whose file or cross-file checks fail is
left out of Desired.tasks and listed in Desired.invalid with the reason.
"""
from __future__ import annotations

import functools
import gc
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, TypeAlias, TypedDict, TypeVar, cast

from controller.desired import schema
from controller.desired import yamlfile
from controller.desired.yamlfile import Data, Errors
from controller.desired.depgraph import DependsOn
from controller.desired.template import check_template
from controller.durations import parse_duration as _parse_duration
from controller.model import (ID_RE, Agent, Desired, Host, OutputFormat, Problem, PromptMode,
                              Settings, Task, TaskMode)
from controller.text import has_credentials, redact

# The same few durations ("45m") recur across thousands of task files.
parse_duration = functools.lru_cache(maxsize=4096, typed=True)(_parse_duration)
_KINDS = ("task", "host", "agent", "fleet")
_DIRS = {"hosts": "host", "agents": "agent", "tasks": "task"}
_NAME_KEY = {"host": "name", "agent": "name", "task": "id"}
_CITED = {"task": ("id", "agent", "depends_on", "repo"), "host": ("name", "jump"),
          "agent": ("name",), "fleet": ("backoff", "prompt_template")}
# Model-typed values by the dataclass field they fill, for Task(**fields) and the
# like: each key has its own type (the field's), which no one value type names.
Fields: TypeAlias = dict[str, Any]
# classify(): a fleet file's (kind, name, None), else (None, None, problem or None).
Classified: TypeAlias = "tuple[str, str, None] | tuple[None, None, str | None]"
_V = TypeVar("_V")

# Each converter takes the value its key's schema allows (a list, a duration...).
_CONVERT: dict[str, dict[str, Callable[[Any], object]]] = {
    "task": {"constraints": tuple, "validation": tuple, "depends_on": tuple, "feedback": tuple,
             "requires": frozenset, "timeout": parse_duration, "stall_timeout": parse_duration,
             "priority": int, "max_attempts": int, "max_reviews": int, "mode": TaskMode,
             "rerun": lambda v: None if v is None else str(v)},
    "host": {"capabilities": frozenset, "env": lambda v: tuple(sorted(v.items())),
             "pass_env": tuple, "port": int, "max_concurrent": int},
    "agent": {"command": tuple, "version": tuple, "requires": frozenset,
              "prompt": PromptMode, "output": OutputFormat,
              "env": lambda v: tuple(sorted(v.items())), "pass_env": tuple},
}
_MAKE: dict[str, Callable[..., Host | Agent]] = {"host": Host, "agent": Agent}


class _Backoff(TypedDict, total=False):
    base: str | int
    max: str | int


class _FleetFile(TypedDict, total=False):
    """fleet.yaml as its schema lets it be."""
    poll_interval: str | int
    backoff: _Backoff
    cancel_grace: str | int
    defaults: dict[str, Data]
    prompt_template: str
    status_branch: str


@dataclass(slots=True)
class _Parsed:
    """What one blob holds, whatever its path: cached by (kind, blob id)."""
    fields: Fields | None          # model-typed values of the keys it sets; None when unusable
    errors: Errors                 # [(line, message)]
    name: Data = None              # its own id/name value
    # The line of each top-level key cross-file messages cite (empty: never read).
    lines: Mapping[str, int] = field(default_factory=dict)
    obj: Host | Agent | Task | Settings | None = None   # what it makes, by its kind
    made_with: Fields | None = None   # the task defaults a Task in obj was made with
    refs: int = 0


@dataclass(slots=True)
class _File:
    """One tracked path: its blob and the problems of the file on its own."""
    path: str
    blob: str
    parsed: _Parsed | None         # None when the path itself is wrong (tasks/x.yml)
    problems: list[Problem]


def _parse(kind: str, raw: bytes, defaults: Fields) -> _Parsed:
    loaded = yamlfile.load(raw)
    data = loaded.data
    if data is None:      # load() gives data exactly when it found no errors
        return _Parsed(None, loaded.errors)
    lines = loaded.key_lines(_CITED[kind])
    name = data.get(_NAME_KEY.get(kind, ""))
    errors = sorted((loaded.line(path), msg) for path, msg in schema.errors(kind, data))
    if not errors and kind == "task":
        errors = _credentials(data, lines)
    if errors:
        return _Parsed(None, errors, name, lines)
    try:
        if kind == "fleet":
            return _parse_settings(cast(_FleetFile, data), lines)   # as its schema checked
        conv = _CONVERT[kind]
        fields: Fields = {k: conv[k](v) if k in conv else v for k, v in data.items()}
        if kind == "task":    # made now, while its data is hot in the CPU caches
            return _Parsed(fields, [], name, lines, Task(**{**defaults, **fields}), defaults)
        return _Parsed(fields, [], name, lines, _MAKE[kind](**fields))
    except (ValueError, TypeError) as e:   # the schema should make this unreachable
        return _Parsed(None, [(1, f"cannot use this file: {e}")], name, lines)


def _credentials(data: object, lines: Mapping[str, int]) -> list[tuple[int, str]]:
    """The problem of a task `repo` URL with credentials in it, if it has any."""
    repo = data.get("repo") if isinstance(data, dict) else None
    if not isinstance(repo, str) or not has_credentials(repo):
        return []
    return [(lines.get("repo", 1), f"repo: {redact(repo)!r} has credentials in it: remove them; "
             "git authenticates with an SSH key or a git credential helper "
             "(git config credential.helper), never a token in the URL")]


def _parse_settings(data: _FleetFile, lines: Mapping[str, int]) -> _Parsed:
    def seconds(v: str | int | None, default: float) -> float:
        return default if v is None else parse_duration(v)
    d, backoff = Settings(), data.get("backoff", {})
    base = seconds(backoff.get("base"), d.backoff_base)
    most = seconds(backoff.get("max"), d.backoff_max)
    if base > most:
        why = (f"backoff: base ({backoff.get('base', base)}) is longer than max "
               f"({backoff.get('max', most)}): raise max")
        return _Parsed(None, [(lines.get("backoff", 1), why)])
    template = data.get("prompt_template")
    if template is not None:
        try:
            check_template(template)
        except ValueError as e:
            return _Parsed(None, [(lines.get("prompt_template", 1), f"prompt_template: {e}")])
    conv = _CONVERT["task"]
    defaults = {k: conv[k](v) if k in conv else v for k, v in data.get("defaults", {}).items()}
    settings = Settings(poll_interval=seconds(data.get("poll_interval"), d.poll_interval),
                        backoff_base=base, backoff_max=most,
                        cancel_grace=seconds(data.get("cancel_grace"), d.cancel_grace),
                        task_defaults=MappingProxyType(defaults),
                        prompt_template=data.get("prompt_template"),
                        status_branch=data.get("status_branch"))
    return _Parsed(defaults, [], None, lines, settings)


def classify(path: str) -> Classified:
    """(kind, name, problem) of a repo path; kind and problem None: not a fleet file."""
    if path == "fleet.yaml":
        return "fleet", "fleet", None
    if path == "fleet.yml":
        return None, None, "fleet settings are read from fleet.yaml: rename this file"
    top, _, rest = path.partition("/")
    kind = _DIRS.get(top)
    if kind is None or not rest or (rest.startswith(".") and "/" not in rest):
        return None, None, None     # not ours, or hidden (.gitkeep)
    what = "task id" if kind == "task" else f"{kind} name"
    if "/" in rest:
        return None, None, f"{kind} files live directly in {top}/: move it to {top}/<{what}>.yaml"
    stem, dot, ext = rest.rpartition(".")
    if not dot or ext != "yaml":
        article = "an" if kind == "agent" else "a"
        return None, None, (f"not {article} {kind} file: name it {top}/<{what}>.yaml"
                            + (" (.yaml, not .yml)" if ext == "yml" and dot else ""))
    if not ID_RE.fullmatch(stem):
        return None, None, (f"{stem!r} is not a valid {what}: use lowercase letters, digits and "
                            "'-', starting with a letter or digit, at most 63 characters")
    return kind, stem, None


class DesiredBuilder:
    """Keeps one fleet commit's parsed files and derives Desired from them, change by change.

    The Desired that apply() returns holds read-only views of the builder's own
    dicts (copying 100k tasks each pass would cost more than the change): it is
    current until the next apply().
    """

    def __init__(self, allowed_repos: tuple[str, ...] = ()) -> None:
        self.allowed_repos = allowed_repos     # the controller config's, carried into Desired
        self._paths: dict[str, _File] = {}                      # every tracked path
        self._named: dict[str, dict[str, _File]] = {k: {} for k in _KINDS}
        self._cache: dict[tuple[str, str], _Parsed] = {}        # (kind, blob id) -> parsed
        self._cross: dict[str, list[Problem]] = {}              # path -> cross-file problems
        self._tasks: dict[str, Task] = {}
        self._invalid: dict[str, str] = {}
        self._hosts: dict[str, Host] = {}
        self._agents: dict[str, Agent] = {}
        self._settings = Settings()
        self._defaults: Fields = {}
        self._graph = DependsOn()
        self._agent_of: dict[str, str] = {}                     # task id -> agent it names
        self._by_agent: dict[str, set[str]] = {}                # agent name -> task ids
        self._sorted: list[Problem] | None = None
        self._views = (MappingProxyType(self._tasks), MappingProxyType(self._hosts),
                       MappingProxyType(self._agents), MappingProxyType(self._invalid))
        self.changed_tasks: set[str] = set()
        self.parses = 0                                         # files parsed, ever

    @property
    def problems(self) -> list[Problem]:
        """Every current problem, sorted by path, then line."""
        if self._sorted is None:
            found = [p for f in self._paths.values() for p in f.problems]
            found += [p for ps in self._cross.values() for p in ps]
            self._sorted = sorted(found, key=lambda p: (p.path, p.line or 0, p.message))
        return list(self._sorted)

    def apply(self, changes: Iterable[tuple[str, str | None]], read: Callable[[str], bytes],
              commit: str) -> Desired:
        """Take in changed files: (path, blob id), or (path, None) for a deleted one."""
        collecting = gc.isenabled()
        gc.disable()   # a cold load makes millions of acyclic objects: no cycle hunting meanwhile
        try:
            self._take_changes(changes, read)
        finally:
            if collecting:
                gc.enable()
        tasks, hosts, agents, invalid = self._views
        return Desired(tasks=tasks, hosts=hosts, agents=agents, settings=self._settings,
                       invalid=invalid, commit=commit, allowed_repos=self.allowed_repos)

    # ---- files -------------------------------------------------------------------
    def _take_changes(self, changes: Iterable[tuple[str, str | None]],
                      read: Callable[[str], bytes]) -> None:
        latest: dict[str, tuple[str | None, Classified]] = {}
        for path, blob in changes:
            old = self._paths.get(path)
            if (old.blob if old else None) != blob:
                latest[path] = (blob, classify(path))
        touched: dict[str, set[str]] = {k: set() for k in _KINDS}
        # fleet.yaml first: task files are then parsed with the defaults they will use.
        fleet = latest.pop("fleet.yaml", None)
        if fleet:
            self._swap({"fleet.yaml": fleet}, read, touched)
        defaults_changed = bool(fleet) and self._take_settings()
        self._swap(latest, read, touched)
        self._sorted = None
        self.changed_tasks = set()
        self._rebuild(touched, defaults_changed)

    def _swap(self, latest: dict[str, tuple[str | None, Classified]],
              read: Callable[[str], bytes], touched: dict[str, set[str]]) -> None:
        # Parse the new blobs before dropping the old, so a renamed file is not re-read.
        new = {path: self._parsed(where[0], blob, read) for path, (blob, where) in latest.items()
               if blob is not None and where[0] is not None}
        for path in latest:
            self._forget(path)
        for path, (blob, where) in latest.items():
            if where[0] is not None:
                if blob is not None:
                    self._add(path, blob, where[0], where[1], new[path])
                touched[where[0]].add(where[1])
            elif blob is not None and where[2]:   # not a fleet file as named: kept for its problem
                self._paths[path] = _File(path, blob, None, [Problem(path, 1, where[2])])

    def _parsed(self, kind: str, blob: str, read: Callable[[str], bytes]) -> _Parsed:
        parsed = self._cache.get((kind, blob))
        if parsed is None:
            parsed = self._cache[(kind, blob)] = _parse(kind, read(blob), self._defaults)
            self.parses += 1
        parsed.refs += 1
        return parsed

    def _forget(self, path: str) -> None:
        old = self._paths.pop(path, None)
        self._cross.pop(path, None)
        if old is None or old.parsed is None:
            return
        kind, name, _ = cast("tuple[str, str, None]", classify(path))   # parsed: a fleet file
        del self._named[kind][name]
        old.parsed.refs -= 1
        if old.parsed.refs <= 0:
            del self._cache[(kind, old.blob)]

    def _add(self, path: str, blob: str, kind: str, name: str, parsed: _Parsed) -> None:
        found: list[Problem] = []
        if parsed.errors or parsed.name != name:
            found += [Problem(path, line, msg) for line, msg in parsed.errors]
            key = _NAME_KEY.get(kind)
            if key and isinstance(parsed.name, str) and parsed.name != name \
                    and ID_RE.fullmatch(parsed.name):   # else the schema has said what is wrong
                found.append(Problem(path, parsed.lines.get(key, 1), (
                    f"{key}: '{parsed.name}' does not match the file name: set {key}: {name}, "
                    f"or rename the file to {path.rpartition('/')[0]}/{parsed.name}.yaml")))
        self._paths[path] = entry = _File(path, blob, parsed, found)
        self._named[kind][name] = entry

    def _usable(self, kind: str, name: str) -> _Parsed | None:
        """The parsed file of a host, agent or task with no problem of its own."""
        entry = self._named[kind].get(name)
        return entry.parsed if entry is not None and not entry.problems else None

    # ---- deriving the desired state ----------------------------------------------
    def _rebuild(self, touched: dict[str, set[str]], defaults_changed: bool) -> None:
        dirty = set(touched["task"])
        if defaults_changed:
            dirty = set(self._named["task"]) | set(self._tasks) | set(self._invalid)
        if touched["host"]:
            self._rebuild_hosts()
        for name in touched["agent"]:
            usable = self._usable("agent", name)
            if usable:
                self._agents[name] = cast(Agent, usable.obj)
            else:
                self._agents.pop(name, None)
            dirty |= self._by_agent.get(name, set())
        moved = {tid for tid in touched["task"] if self._track(tid)}
        dirty |= self._graph.recompute(moved)
        for tid in dirty:
            self._recheck(tid)

    def _take_settings(self) -> bool:
        """Take in fleet.yaml; True when the task defaults changed."""
        old = self._defaults
        usable = self._usable("fleet", "fleet")
        if usable is not None:
            self._settings = cast(Settings, usable.obj)
        elif "fleet" not in self._named["fleet"]:
            self._settings = Settings()         # no fleet.yaml: the built-in defaults
        # else: a broken fleet.yaml keeps the last good settings (its problem is
        # reported), so one typo does not change every task's timeout at once.
        new = dict(self._settings.task_defaults)   # a plain dict: ** on it is fastest
        if new == old:
            return False      # keep the old dict: Tasks made with it stay current
        self._defaults = new
        return True

    def _track(self, tid: str) -> bool:
        """Index a changed task by agent and dependencies; True when its edges moved."""
        entry = self._named["task"].get(tid)
        # (Every named file was parsed: only a misplaced one has no _Parsed.)
        fields = (cast(_Parsed, entry.parsed).fields if entry is not None and not entry.problems
                  else None)
        agent = fields["agent"] if fields else None
        old = self._agent_of.pop(tid, None)
        if old is not None:
            self._by_agent[old].discard(tid)
        if agent is not None:
            self._agent_of[tid] = agent
            self._by_agent.setdefault(agent, set()).add(tid)
        deps = fields.get("depends_on", ()) if fields else ()
        return self._graph.set(tid, deps, entry is not None)

    def _recheck(self, tid: str) -> None:
        task: Task | None = None
        why: str | None = None
        entry = self._named["task"].get(tid)
        if entry is not None:
            if self._cross:
                self._cross.pop(entry.path, None)
            parsed = cast(_Parsed, entry.parsed)    # a named file, so parsed
            found = entry.problems or self._task_cross(tid, parsed, entry.path)
            if found:
                why = f"{found[0]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
            else:   # no problems: its fields are usable, its obj a Task
                if parsed.made_with is not self._defaults:
                    parsed.obj = Task(**{**self._defaults, **cast(Fields, parsed.fields)})
                    parsed.made_with = self._defaults
                task = cast(Task, parsed.obj)
        old_task, old_why = _put(self._tasks, tid, task), _put(self._invalid, tid, why)
        if why != old_why or (task is not old_task and task != old_task):
            self.changed_tasks.add(tid)

    def _task_cross(self, tid: str, parsed: _Parsed, path: str) -> list[Problem]:
        fields, named = cast(Fields, parsed.fields), self._named["task"]   # no problems of its own
        deps = fields.get("depends_on", ())
        if fields["agent"] in self._agents and tid not in self._graph.cycles and (
                not deps or all(d in named and d != tid for d in deps)):
            return []
        lines, found = parsed.lines, []
        agent = fields["agent"]
        if agent not in self._agents:
            found.append(Problem(path, lines.get("agent"), "agent: " + self._why_missing(
                "agent", agent)))
        at = lines.get("depends_on")
        for dep in fields.get("depends_on", ()):
            if dep == tid:
                found.append(Problem(path, at, f"depends_on: lists the task itself: "
                                     f"remove '{tid}'"))
            elif dep not in named:
                found.append(Problem(path, at, f"depends_on: no task '{dep}' "
                                     f"(tasks/{dep}.yaml does not exist)"))
        cycle = self._graph.cycles.get(tid)
        if cycle:
            found.append(Problem(path, at, f"depends_on: forms a cycle {cycle}: "
                                 "remove one of these dependencies"))
        if found:
            self._cross[path] = found
        return found

    def _why_missing(self, kind: str, name: str) -> str:
        entry = self._named[kind].get(name)
        path = f"{kind}s/{name}.yaml"
        if entry is None:
            known = sorted(self._agents if kind == "agent" else self._hosts)
            hint = f" or use one of: {', '.join(known[:10])}" if known else ""
            return f"no {kind} '{name}': add {path}{hint}"
        own = entry.problems or self._cross.get(path)
        return f"{path} is invalid ({own[0] if own else 'see that file'}): fix that file"

    def _rebuild_hosts(self) -> None:
        for entry in self._named["host"].values():
            self._cross.pop(entry.path, None)
        self._hosts.clear()
        usable = {n: p for n in self._named["host"] if (p := self._usable("host", n))}
        for name, parsed in sorted(usable.items()):
            why = self._jump_problem(name, usable)
            if why:
                path = f"hosts/{name}.yaml"
                self._cross[path] = [Problem(path, parsed.lines.get("jump"), why)]
            else:
                self._hosts[name] = cast(Host, parsed.obj)

    def _jump_problem(self, name: str, usable: dict[str, _Parsed]) -> str | None:
        chain = [name]
        while (jump := cast(Fields, usable[chain[-1]].fields).get("jump")) is not None:
            if jump == name and len(chain) == 1:
                return "jump: a host cannot jump through itself: remove jump or name another host"
            if jump in chain:
                loop = " -> ".join(chain + [jump])
                return f"jump: hosts jump through each other in a loop: {loop}"
            if jump not in usable:
                via = "" if len(chain) == 1 else f"through {' -> '.join(chain)}: "
                return f"jump: {via}" + self._why_missing("host", jump)
            chain.append(jump)
        return None


def _put(d: dict[str, _V], key: str, value: _V | None) -> _V | None:
    """Set d[key], or remove it for None; return what was there."""
    old = d.get(key)
    if value is None:
        if old is not None:
            del d[key]
    elif value is not old:
        d[key] = value
    return old


def validate_files(files: Mapping[str, bytes]) -> list[Problem]:
    """Every problem in a set of fleet files (repo-relative path -> bytes), sorted."""
    builder = DesiredBuilder()
    builder.apply(((path, path) for path in files), files.__getitem__, "")
    return builder.problems
