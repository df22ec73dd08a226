"""JSON Schema checking of fleet files: the only module that imports jsonschema.

desired.py (and anything else that checks a fleet file) calls
`errors(kind, data)` on the plain dicts, lists and scalars that yamlfile.py
built. The schemas ship inside the package (controller/schemas/, also linked as
schemas/ at the top of the repository) and are read with importlib.resources,
so `fleet` works from any directory.

Speed: jsonschema needs ~80 us for one small task document, 8 s for 100k task
files. So each schema is also compiled here into plain Python predicates that
answer "certainly valid?" in a few microseconds. Only a document they do not
pass goes to jsonschema, and jsonschema alone decides which errors it has: the
fast path can only be too strict (costing time), never wrongly accepting.
jsonschema's errors are then rewritten into sentences a person can act on.
"""
from __future__ import annotations

import difflib
import functools
import json
import math
import re
from importlib import resources
from typing import Callable, TypeAlias, TypedDict, cast

import jsonschema

from controller.desired.yamlfile import Data, Path, Scalar

KINDS = ("host", "agent", "task", "status", "fleet")
Check: TypeAlias = Callable[[object], bool]
# The draft 2020-12 keywords our schemas use (the compiler below refuses others).
# Functional syntax: "$ref" and "$defs" are not identifiers.
Schema = TypedDict("Schema", {
    "$schema": str, "$id": str, "$comment": str, "$ref": str, "$defs": "dict[str, Schema]",
    "title": str, "description": str, "default": Data, "examples": "list[Data]",
    "deprecated": bool, "format": str, "markdownDescription": str,
    "type": "str | list[str]", "enum": "list[Scalar]", "anyOf": "list[Schema]",
    "pattern": str, "minLength": int, "minimum": float, "maximum": float,
    "items": "Schema", "minItems": int, "maxItems": int, "uniqueItems": bool,
    "properties": "dict[str, Schema]", "required": "list[str]",
    "additionalProperties": "Schema | bool", "propertyNames": "Schema",
}, total=False)

# What values of a named $defs entry, or of a bare pattern, look like, in words.
_PHRASES = {
    "name": "a name of lowercase letters, digits and '-' that starts with a letter or digit "
            "(at most 63 characters), like fix-login",
    "duration": "a duration like 45m, 2h or 90s (or a whole number of seconds)",
    "word": "a capability word of lowercase letters, digits, '.', '_' and '-', like claude-code",
    "words": "a list of capability words like [codex, gpu]",
    "texts": "a list of non-empty strings",
    "argv": "a list of command arguments, program first, like [codex, exec, -]",
    "env": "a mapping of variable names to string values",
    "text": "a non-empty string",
    "time": "a UTC ISO 8601 time like 2025-01-31T09:30:00Z",
    "branch": "a git branch name like main or release/1.2",
    r"^(?!-)[^\s]+(?!\n)$": "a host name or address without spaces, not starting with '-'",
    r"^(?!-)[A-Za-z0-9._-]{1,64}(?!\n)$": "a user name of letters, digits, '.', '_' and '-'",
    r"^(?![-~])[^\n\r]+(?!\n)$": ("a single line that does not start with '-' or '~' (a leading ~ "
                                  "is not expanded: write the full path)"),
    r"^(?!-)[^\n\r]+(?!\n)$": "a single line that does not start with '-'",
    r"^(?!FLEET_)(?!(IFS|PWD|OLDPWD|PS4|ENV|CDPATH|OPTIND)$)[A-Za-z_][A-Za-z0-9_]*(?!\n)$": (
        "a variable name of letters, digits and '_', not FLEET_* (fleet's own variables and the "
        "controller's secrets, never passed to a run) nor one the shell reserves (IFS, PWD, ...)"),
}


@functools.cache
def load(kind: str) -> Schema:
    """The parsed JSON Schema of one file kind ('host', 'agent', 'task', 'status', 'fleet')."""
    if kind not in KINDS:
        raise ValueError(f"unknown schema kind {kind!r}; known: {', '.join(KINDS)}")
    ref = resources.files("controller").joinpath("schemas", f"{kind}.schema.json")
    schema: Schema = json.loads(ref.read_text(encoding="utf-8"))
    return schema


class _Checker:
    """One kind's compiled fast predicate and its authoritative jsonschema validator."""

    def __init__(self, kind: str) -> None:
        self.schema = load(kind)
        self.full = jsonschema.Draft202012Validator(self.schema)
        self.def_names = {id(d): n for n, d in self.schema.get("$defs", {}).items()}
        try:
            self.fast: Check = _Compiler(self.schema).compile(self.schema)
        except _Unsupported:  # a keyword the compiler does not know: stay correct, go slow
            self.fast = self.full.is_valid


@functools.cache
def _checker(kind: str) -> _Checker:
    return _Checker(kind)


def is_valid(kind: str, data: object) -> bool:
    c = _checker(kind)
    return c.fast(data) or c.full.is_valid(data)


def errors(kind: str, data: object) -> list[tuple[Path, str]]:
    """Every schema error in `data` as (path in the document, message); [] when valid.

    A path is a tuple of keys and list indexes, e.g. ('depends_on', 1); the
    message starts with the field, e.g. "timeout: '45 minutes' is not a duration ...".
    """
    c = _checker(kind)
    if c.fast(data):
        return []
    out: dict[tuple[Path, str], None] = {}   # ordered, without duplicates
    for err in c.full.iter_errors(data):
        for item in _explain(c, err):
            out[item] = None
    return list(out)


# ---- the fast path: a schema compiled into predicates ------------------------
# Each predicate must never accept what jsonschema rejects; rejecting too much
# only costs a trip through jsonschema. So anything unusual answers False.

class _Unsupported(Exception):
    pass


_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description",
                          "default", "examples", "deprecated", "format", "markdownDescription"})
_SCALARS = frozenset({str, int, float, bool, type(None)})
_PY_TYPES: dict[str, tuple[type[object], ...]] = {
    "string": (str,), "boolean": (bool,), "null": (type(None),), "array": (list,),
    "object": (dict,), "integer": (int,), "number": (int, float)}
# Keywords a typed schema's one fused predicate handles (an int is never a bool here:
# type(v) is compared exactly; 5.0 as an integer is left to jsonschema).
_FUSED = {"string": {"pattern", "minLength"}, "integer": {"minimum", "maximum"},
          "array": {"items", "minItems", "maxItems", "uniqueItems"},
          "object": {"properties", "required", "additionalProperties", "propertyNames"},
          "boolean": set(), "null": set(), "number": set()}
_GENERIC = {"type", "$ref", "enum", "anyOf", "pattern", "minimum"}


class _Compiler:
    """Turns the subset of draft 2020-12 our schemas use into one closure per schema."""

    def __init__(self, root: Schema) -> None:
        self.root = root
        self.defs: dict[str, Check] = {}

    def compile(self, s: Schema | bool) -> Check:
        if isinstance(s, bool):
            return (lambda v: True) if s else (lambda v: False)
        keys = set(s) - _ANNOTATIONS
        t = s.get("type")
        if isinstance(t, str) and keys - {"type"} <= _FUSED[t]:
            fused: Callable[[Schema], Check] = getattr(self, "_" + t)
            return fused(s)
        if keys - _GENERIC:
            raise _Unsupported(", ".join(sorted(keys - _GENERIC)))
        checks: list[Check] = []
        if "type" in s:
            t = s["type"]
            types = tuple(x for name in ([t] if isinstance(t, str) else t) for x in _PY_TYPES[name])
            checks.append(lambda v: type(v) in types)
        if "$ref" in s:
            checks.append(self._ref(s["$ref"]))
        if "enum" in s:
            checks.append(self._enum(s["enum"]))
        if "anyOf" in s:
            branches = [self.compile(b) for b in s["anyOf"]]
            checks.append(lambda v: any(b(v) for b in branches))
        if "pattern" in s:     # untyped: applies to strings only, as jsonschema does
            search = re.compile(s["pattern"]).search
            checks.append(lambda v: type(v) is not str or search(v) is not None)
        if "minimum" in s:
            low = s["minimum"]
            checks.append(lambda v: not (type(v) is int or type(v) is float) or v >= low)
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(c(v) for c in checks)

    def _ref(self, ref: str) -> Check:
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in self.root.get("$defs", {}):
            raise _Unsupported(f"$ref {ref}")
        if name not in self.defs:      # our schemas are not recursive: compile each def once
            self.defs[name] = self.compile(self.root["$defs"][name])
        return self.defs[name]

    @staticmethod
    def _enum(values: list[Scalar]) -> Check:
        if any(type(e) not in _SCALARS for e in values):
            raise _Unsupported("enum of containers")
        pairs = frozenset((type(e), e) for e in values)    # type-strict: true is not 1
        return lambda v: type(v) in _SCALARS and (type(v), v) in pairs

    def _string(self, s: Schema) -> Check:
        search = re.compile(s["pattern"]).search if "pattern" in s else None
        least = s.get("minLength", 0)
        if search:
            return lambda v: type(v) is str and len(v) >= least and search(v) is not None
        return lambda v: type(v) is str and len(v) >= least

    def _integer(self, s: Schema) -> Check:
        low, high = s.get("minimum", -math.inf), s.get("maximum", math.inf)
        return lambda v: type(v) is int and low <= v <= high

    def _number(self, s: Schema) -> Check:
        return lambda v: type(v) is int or type(v) is float

    def _boolean(self, s: Schema) -> Check:
        return lambda v: type(v) is bool

    def _null(self, s: Schema) -> Check:
        return lambda v: v is None

    def _array(self, s: Schema) -> Check:
        each = self.compile(s["items"]) if "items" in s else None
        low, high = s.get("minItems", 0), s.get("maxItems", math.inf)
        unique = s.get("uniqueItems", False)

        def check(v: object) -> bool:
            if type(v) is not list or not low <= len(v) <= high:
                return False
            if each is not None:
                for x in v:
                    if not each(x):
                        return False
            # Only lists of strings are judged unique here; others go the slow way.
            return not unique or (len(set(v)) == len(v) and all(type(x) is str for x in v))
        return check

    def _object(self, s: Schema) -> Check:
        props = {k: self.compile(p) for k, p in s.get("properties", {}).items()}
        extra = s.get("additionalProperties", True)
        closed = extra is False
        other = self.compile(extra)   # never asked when closed: unknown keys fail first
        names = self.compile(s["propertyNames"]) if "propertyNames" in s else None
        need, known = frozenset(s.get("required", ())), frozenset(props)

        def check(v: object) -> bool:
            if type(v) is not dict or not v.keys() >= need:
                return False
            if closed and not v.keys() <= known:
                return False
            for k, x in v.items():
                c = props.get(k, other)
                if not c(x):
                    return False
            return names is None or all(names(k) for k in v)
        return check


# ---- the slow path: jsonschema errors rewritten for people -------------------

def field_name(path: Path) -> str:
    """('env', 'PATH') -> 'env.PATH'; ('depends_on', 1) -> 'depends_on[1]'."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def show(v: object) -> str:
    """A value as a person would write it in YAML."""
    if v is None:
        return "nothing (an empty value)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return repr(v if len(v) <= 60 else v[:57] + "...")
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return str(v)


def _explain(c: _Checker, err: jsonschema.ValidationError) -> list[tuple[Path, str]]:
    path = tuple(err.absolute_path)
    at = f"{field_name(path)}: " if path else ""
    # iter_errors sets these on every error it yields. Each keyword judges one kind
    # of instance (required a mapping, uniqueItems a list, propertyNames a key), so
    # those branches say which; the schema holding the keyword is a mapping in ours.
    kw, inst, value = cast(str, err.validator), cast(Data, err.instance), err.validator_value
    sch = cast(Schema, err.schema)
    if "propertyNames" in err.absolute_schema_path:
        key = cast(str, inst)
        return [(path + (key,), f"{at}{show(key)} is not a valid variable name: "
                 "use letters, digits and '_', not starting with a digit, and none of "
                 "IFS, PWD, OLDPWD, PS4, ENV, CDPATH, OPTIND (the shell's own)")]
    if kw == "additionalProperties" and value is False:
        given = cast("dict[str, Data]", inst)
        return [_unknown_key(path, k, sch) for k in given if k not in sch.get("properties", {})]
    if kw == "required":
        props, given = sch.get("properties", {}), cast("dict[str, Data]", inst)
        return [(path, f"{at}missing required key '{k}'{_about(c, props.get(k))}")
                for k in cast("list[str]", value) if k not in given]
    if kw == "minLength":
        return [(path, f"{at}must not be empty")]
    if kw in ("minItems", "maxItems"):
        most = "least" if kw == "minItems" else "most"
        return [(path, f"{at}must list at {most} {value} item{'s' if value != 1 else ''}")]
    if kw == "uniqueItems":
        items = cast("list[Data]", inst)
        dup = next((x for i, x in enumerate(items) if x in items[:i]), None)
        return [(path, f"{at}lists {show(dup)} more than once: remove the repeat")]
    name = c.def_names.get(id(sch))
    if kw == "pattern" or name == "duration":
        return [(path, f"{at}{show(inst)} is not {_expect(c, sch)}{_hint(sch, inst, name)}")]
    return [(path, f"{at}must be {_expect(c, sch)}, got {show(inst)}{_hint(sch, inst, name)}")]


def _unknown_key(path: Path, key: str, sch: Schema) -> tuple[Path, str]:
    allowed = sorted(sch.get("properties", {}))
    guess = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    where = f" in {field_name(path)}" if path else ""
    mean = f": did you mean '{guess[0]}'?" if guess else ""
    return (path + (key,), f"unknown key {show(key)}{where}{mean} (allowed: {', '.join(allowed)})")


def _about(c: _Checker, sch: Schema | None) -> str:
    if not sch:
        return ""
    desc = sch.get("description") or c.schema.get("$defs", {}).get(
        sch.get("$ref", "").rpartition("/")[2], {}).get("description", "")
    return f": {desc[0].lower()}{desc[1:].rstrip('.')}" if desc else ""


def _expect(c: _Checker, sch: Schema) -> str:
    """What a valid value of `sch` looks like, in words."""
    ref = sch.get("$ref", "").rpartition("/")[2]
    phrase = (_PHRASES.get(c.def_names.get(id(sch), "")) or _PHRASES.get(ref)
              or _PHRASES.get(sch.get("pattern", "")))
    if phrase:
        return phrase
    if ref:
        return _expect(c, c.schema["$defs"][ref])
    if "enum" in sch:
        return "one of " + ", ".join("null" if e is None else str(e) for e in sch["enum"])
    if "anyOf" in sch:
        return " or ".join(_expect(c, s) for s in sch["anyOf"])
    if "pattern" in sch:
        return f"text matching {sch['pattern']}"
    types = sch.get("type", [])
    return " or ".join(_type_words(t, sch) for t in (types if isinstance(types, list) else [types]))


def _type_words(t: str, sch: Schema) -> str:
    if t in ("integer", "number"):
        words = "an integer" if t == "integer" else "a number"
        if "minimum" in sch and "maximum" in sch:
            return f"{words} from {sch['minimum']} to {sch['maximum']}"
        return f"{words} >= {sch['minimum']}" if "minimum" in sch else words
    return {"string": "a string", "boolean": "true or false", "null": "empty (null)",
            "array": "a list", "object": "a mapping"}.get(t, t)


def _hint(sch: Schema, inst: Data, name: str | None) -> str:
    """A nudge for the YAML 1.1 habits that trip people up (yamlfile reads YAML 1.2 scalars)."""
    t = sch.get("type")
    types = t if isinstance(t, list) else [t]
    if isinstance(inst, str):
        if "boolean" in types and inst.lower() in ("yes", "no", "on", "off", "y", "n"):
            return " (write true or false)"
        if re.fullmatch(r"[-+]?0\d+", inst) and ("integer" in types or name == "duration"):
            return " (write the number without leading zeros)"
        if name == "duration" and re.fullmatch(r"\d+:\d+(:\d+)?", inst):
            return " (write 1h30m or 90m, not 1:30)"
    elif not isinstance(inst, (list, dict, type(None))) and "string" in types:
        return f" (put it in quotes: \"{show(inst)}\")"
    return ""
