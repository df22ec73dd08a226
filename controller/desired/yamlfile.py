"""Reading one fleet YAML file safely: bytes in, plain data and line numbers out.

desired.py calls `load(raw)` for every file a commit changed; anything else that
reads a person-written YAML file can too. Every hostile input becomes a
(line, message) error, never an exception: a file too big, not UTF-8, not YAML,
empty, several documents, not a mapping, duplicate keys, tags (`!!python/...`),
anchors and aliases (billion laughs), or nesting deep enough to crash libyaml's
recursive composer (it segfaults near 30k levels).

Parsing is libyaml's composer (yaml.CSafeLoader) building a node tree, which
keeps line numbers, followed by our own small constructor. Scalars are read the
YAML 1.2 way, as people's editors do: only true/false are booleans, only plain
decimal numbers are numbers. So `on`, `yes`, `010`, `1:30` or `2025-01-31` stay
the strings they look like, and the schema reports a wrong type in words instead
of YAML 1.1 silently turning them into True, 8, 90 or a date.
"""
from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, TypeAlias, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# What a loaded file holds: YAML 1.2 core scalars, lists, and mappings with text keys.
Scalar: TypeAlias = "str | int | float | bool | None"
Data: TypeAlias = "Scalar | list[Data] | dict[str, Data]"
# Where a value sits in a document: keys and list indexes, e.g. ('depends_on', 1).
Path: TypeAlias = "tuple[str | int, ...]"
Errors: TypeAlias = "list[tuple[int, str]]"   # [(1-based line, message)]

MAX_BYTES = 1 << 20
MAX_DEPTH = 20          # fleet files need four levels at most
_SAFE_COMPOSE = 1000    # libyaml's composer recurses in C; this deep is far from the stack's end

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_PLAIN = "fleet:plain"  # an untagged plain scalar, typed by _plain() below



class _Missing(enum.Enum):
    """A sentinel with a type of its own, so `is not _MISSING` narrows what _WORDS gave."""
    MISSING = enum.auto()


_MISSING = _Missing.MISSING
_WORDS: dict[str, bool | None] = {"": None, "~": None, "null": None, "Null": None, "NULL": None,
          "true": True, "True": True, "TRUE": True,
          "false": False, "False": False, "FALSE": False}
_NUMBER = re.compile(r"[-+]?(?:(?:0|[1-9][0-9]*)(\.[0-9]*)?|(\.[0-9]+))([eE][-+]?[0-9]+)?\Z")
_NUMBER_START = frozenset("0123456789+-.")


class _Loader(yaml.CSafeLoader):
    """CSafeLoader whose resolver only marks plain scalars: _plain() types them."""

    # The composer calls these for every node, for path resolvers we do not use;
    # C-level no-ops instead of PyYAML's Python methods save ~10% of a parse.
    if TYPE_CHECKING:   # what they stand in for: mypy cannot type a builtin as a method
        def descend_resolver(self, current_node: object, current_index: object) -> None: ...
        def ascend_resolver(self) -> None: ...
    else:
        descend_resolver = {}.get
        ascend_resolver = tuple

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _MAP if kind is MappingNode else _SEQ


class Loaded:
    """A loaded file: `data` (a dict) when `errors` is empty, and where things are."""

    __slots__ = ("data", "errors", "_root")

    def __init__(self, data: dict[str, Data] | None, errors: Errors,
                 root: MappingNode | None = None) -> None:
        self.data = data
        self.errors = errors          # [(1-based line, message)]
        self._root = root

    def key_lines(self, keys: tuple[str, ...]) -> dict[str, int]:
        """The line of each of `keys` that the top-level mapping has ({} when none was read)."""
        if self._root is None:
            return {}
        return {k.value: k.start_mark.line + 1 for k, _ in self._root.value if k.value in keys}

    def line(self, path: Path = ()) -> int:
        """1-based line of the value at `path` (a key's own line for a mapping entry).

        An unresolvable path gives the line of its deepest existing part.
        """
        node: Node | None = self._root
        if node is None:
            return 1
        line: int = node.start_mark.line + 1
        for step in path:
            if isinstance(node, MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == step), None)
                if pair is None:
                    return line
                line, node = pair[0].start_mark.line + 1, pair[1]
            elif isinstance(node, SequenceNode) and isinstance(step, int) \
                    and 0 <= step < len(node.value):
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                return line
        return line


class _Stop(Exception):
    """Abandon construction: the one error recorded says why."""


def load(raw: bytes) -> Loaded:
    """Parse one file's bytes into a mapping; see Loaded. Never raises for bad input."""
    problem = _precheck(raw)
    if problem:
        return Loaded(None, [problem])
    loader = _Loader(raw)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        return Loaded(None, [_yaml_error(raw, e)])
    except yaml.YAMLError as e:   # ReaderError: a character YAML forbids
        return Loaded(None, [_reader_error(raw, e)])
    except Exception as e:   # noqa: BLE001 - whatever libyaml throws at hostile bytes is a problem
        return Loaded(None, [(1, f"cannot read this file as YAML ({type(e).__name__}: {e})")])
    finally:
        loader.dispose()
    if root is None:
        return Loaded(None, [(1, "the file is empty (or only comments): it must hold a "
                                 "mapping of keys to values, like `name: value`")])
    if not isinstance(root, MappingNode):
        return Loaded(None, [(root.start_mark.line + 1, "the file must hold a mapping of keys "
                              f"to values, like `name: value`, not {_kind(root)}")])
    errors: Errors = []
    data: dict[str, Data] | None
    try:   # a MappingNode constructs to a dict
        data = cast("dict[str, Data]", _construct(root, 0, errors))
    except _Stop:
        data = None
    return Loaded(None if errors else data, errors, root)


def _precheck(raw: bytes) -> tuple[int, str] | None:
    """Refusals decided before libyaml sees the bytes."""
    if len(raw) > MAX_BYTES:
        return (1, f"the file is {len(raw):,} bytes; the limit is {MAX_BYTES:,} bytes (1 MiB): "
                   "make it shorter")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return (raw.count(b"\n", 0, e.start) + 1,
                f"not valid UTF-8 at byte offset {e.start} (byte 0x{raw[e.start]:02x}): "
                "save the file as UTF-8")
    aliases = b"&" in raw and b"*" in raw
    # Each level takes at least half a byte of text: small files need no counting.
    if aliases or (2 * len(raw) + 2 > _SAFE_COMPOSE and _depth_bound(raw) > _SAFE_COMPOSE):
        return _scan(raw)
    return None


def _depth_bound(raw: bytes) -> int:
    """A cheap upper bound on nesting depth, from the bytes that can open a level.

    A block level starts on a new line or after `- `, `? ` or `: ` on the same
    line; a flow level at `[` or `{`, possibly with an implicit pair inside.
    """
    c = raw.count
    return 2 * (c(b"\n") + c(b"[") + c(b"{") + c(b"- ") + c(b"-\t") + c(b"? ") + c(b"?\t")
                + c(b": ") + c(b":\t")) + 2


def _scan(raw: bytes) -> tuple[int, str] | None:
    """Walk libyaml's event stream (iterative, no recursion) for aliases and deep nesting."""
    loader = _Loader(raw)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                return (_event_line(event), f"YAML aliases (*{event.anchor}) are not "
                        "allowed in fleet files: write the value out in full")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return (_event_line(event), _too_deep())
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as e:
        if _is_too_deep(e):   # libyaml >= 0.2.6 (PyYAML 6.0.4) has a depth limit of its own
            return (_line(e), _too_deep())
        return None   # let the composer report the syntax error with its usual message
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None


def _event_line(event: yaml.Event) -> int:
    mark = event.start_mark   # libyaml marks every event; the types allow None
    return mark.line + 1 if mark else 1


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep: fleet files need only a few levels"


def _is_too_deep(e: yaml.MarkedYAMLError) -> bool:
    """libyaml's own nesting limit, worded by the library: one fleet sentence instead."""
    return "nesting depth" in (e.problem or "")


def _line(e: yaml.MarkedYAMLError) -> int:
    mark = e.problem_mark or e.context_mark
    return mark.line + 1 if mark else 1


def _yaml_error(raw: bytes, e: yaml.MarkedYAMLError) -> tuple[int, str]:
    line = _line(e)
    if _is_too_deep(e):
        return (line, _too_deep())
    if e.context and "single document" in e.context:
        return (line, f"a second YAML document starts at line {line}: "
                      "keep one document per file (remove the extra '---')")
    context = ""
    if e.context and e.context_mark:
        context = f" ({e.context} at line {e.context_mark.line + 1})"
    text = raw.split(b"\n")[line - 1] if line <= raw.count(b"\n") + 1 else b""
    indent = text[:len(text) - len(text.lstrip())]
    tabs = ": indent with spaces, YAML does not allow tabs" if b"\t" in indent else ""
    return (line, f"not valid YAML: {e.problem or e.context}{context}{tabs}")


def _reader_error(raw: bytes, e: yaml.YAMLError) -> tuple[int, str]:
    pos = getattr(e, "position", 0) or 0
    char = getattr(e, "character", None)
    what = f" (#x{char:04x})" if isinstance(char, int) and char >= 0 else ""
    return (raw.count(b"\n", 0, pos) + 1,
            f"a character YAML does not allow{what} at byte offset {pos}: remove it")


def _kind(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    return f"a single value ({node.value[:40]!r})"


def _plain(text: str) -> Scalar:
    """The YAML 1.2 core type of an untagged plain scalar (no leading zeros allowed)."""
    word = _WORDS.get(text, _MISSING)
    if word is not _MISSING:
        return word
    if text[0] in _NUMBER_START:
        m = _NUMBER.match(text)
        if m:
            return int(text) if m.groups() == (None, None, None) else float(text)
    return text


def _construct(node: Node, depth: int, errors: Errors) -> Data:
    cls = node.__class__
    if cls is ScalarNode:
        if node.tag == _PLAIN:
            return _plain(node.value)
        if node.tag != _STR:
            _bad_tag(node, errors)
        text: str = node.value
        return text
    if depth >= MAX_DEPTH:
        errors.append((node.start_mark.line + 1, _too_deep()))
        raise _Stop
    if cls is SequenceNode:
        if node.tag != _SEQ:
            _bad_tag(node, errors)
        return [_construct(item, depth + 1, errors) for item in node.value]
    if node.tag != _MAP:
        _bad_tag(node, errors)
    out: dict[str, Data] = {}
    for key_node, value in node.value:
        key = key_node.value if key_node.tag == _PLAIN else _key(key_node, errors)
        if key in out:
            _duplicate(node, key_node, errors)
        # Plain scalars are most values: typed here, without a call per node.
        if value.tag == _PLAIN and value.__class__ is ScalarNode:
            out[key] = _plain(value.value)
        else:
            out[key] = _construct(value, depth + 1, errors)
    return out


def _duplicate(mapping: Node, key_node: Node, errors: Errors) -> None:
    first = next(k for k, _ in mapping.value if k.value == key_node.value)
    errors.append((key_node.start_mark.line + 1, f"duplicate key {key_node.value!r} (first at "
                   f"line {first.start_mark.line + 1}): YAML would keep only the last one; "
                   "remove one of them"))


def _key(node: Node, errors: Errors) -> str:
    if node.__class__ is not ScalarNode:
        errors.append((node.start_mark.line + 1, f"a key must be a plain word, not {_kind(node)}"))
        return f"<{_kind(node)} at line {node.start_mark.line + 1}>"
    if node.tag not in (_PLAIN, _STR):
        _bad_tag(node, errors)
    key: str = node.value   # a scalar's value is its text
    return key


def _bad_tag(node: Node, errors: Errors) -> None:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    errors.append((node.start_mark.line + 1, f"the YAML tag '{tag}' is not allowed: fleet "
                   "files hold plain data (text, numbers, lists, mappings); remove the tag"))
