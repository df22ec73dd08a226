"""Request bodies -> JSON objects, and typed reads of their fields that name what is wrong.

Called by webhooks.py (decode) and the parse_* modules (the field readers). Every
problem is a BadPayload whose message starts with the dotted path of the field
(`pull_request.head.ref: expected a string`), which the route answers as a 400;
no input may raise anything else, so a hostile body can never become a 500.
"""
from __future__ import annotations

import json
import urllib.parse
from typing import Any, Mapping

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
FORM_MAX_FIELDS = 64

Doc = Mapping[str, Any]


class BadPayload(ValueError):
    """The body is not what the route expects; the message names the field."""


class UnsupportedMediaType(ValueError):
    """The Content-Type is neither JSON nor a form."""


def shown(value: str, limit: int = 80) -> str:
    """`value` quoted for a message or log line: escaped, and cut when long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode(raw: bytes, content_type: str | None) -> Doc:
    """The JSON object in a body sent as application/json or as a form's `payload=`."""
    kind = media_type(content_type)
    if kind == FORM_TYPE:
        return _json_object(_form_payload(raw), "payload")
    if kind in JSON_TYPES or kind == "" or kind.endswith("+json"):
        return _json_object(raw, "body")
    raise UnsupportedMediaType(
        f"unsupported Content-Type {shown(kind)}: send application/json or {FORM_TYPE} with payload=")


def _form_payload(raw: bytes) -> bytes:
    try:
        text = raw.decode("ascii")
        fields = urllib.parse.parse_qs(text, keep_blank_values=True,
                                       max_num_fields=FORM_MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPayload(f"body: not a valid form ({exc.__class__.__name__})") from None
    values = fields.get("payload")
    if not values:
        raise BadPayload("payload: missing from the form body")
    return values[0].encode("utf-8")


def _json_object(data: bytes, where: str) -> Doc:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and bytes that are not UTF-8.
        raise BadPayload(f"{where}: not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise BadPayload(f"{where}: expected a JSON object, got {_kind(doc)}")
    return doc


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _lookup(doc: Doc, path: str) -> object:
    """The value at dotted `path`, None when any step is absent or null."""
    node: object = doc
    walked: list[str] = []
    for step in path.split("."):
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise BadPayload(f"{'.'.join(walked)}: expected an object, got {_kind(node)}")
        node = node.get(step)
        walked.append(step)
    return node


def opt_text(doc: Doc, path: str) -> str | None:
    value = _lookup(doc, path)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadPayload(f"{path}: expected a string, got {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPayload(f"{path}: not valid Unicode text") from None
    return value


def text(doc: Doc, path: str) -> str:
    value = opt_text(doc, path)
    if value is None:
        raise BadPayload(f"{path}: missing")
    return value


def opt_integer(doc: Doc, path: str) -> int | None:
    value = _lookup(doc, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadPayload(f"{path}: expected an integer, got {_kind(value)}")
    return value


def integer(doc: Doc, path: str) -> int:
    value = opt_integer(doc, path)
    if value is None:
        raise BadPayload(f"{path}: missing")
    return value


def flag(doc: Doc, path: str) -> bool:
    """A boolean; absent or null is False."""
    value = _lookup(doc, path)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadPayload(f"{path}: expected a boolean, got {_kind(value)}")
    return value


def opt_object(doc: Doc, path: str) -> Doc | None:
    value = _lookup(doc, path)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadPayload(f"{path}: expected an object, got {_kind(value)}")
    return value


def obj(doc: Doc, path: str) -> Doc:
    value = opt_object(doc, path)
    if value is None:
        raise BadPayload(f"{path}: missing")
    return value
