"""The request checker of the scripted forge: every API call against the forge's own spec.

Forgejo and Gitea: the swagger subsets in tests/data/reference/forgejo-api/
(read from their sources), so a call the real server does not have, a query
parameter it does not read (Gitea's missing `head` filter), or a body that
does not fit the definition is an error. Go's decoder ignores unknown JSON
fields, which would hide a misspelt field for ever, so bodies are checked
strictly (no properties the definition lacks), and the fields the Go structs
mark `binding:"Required"` but the swagger does not are required here.
GitHub: the calls of tests/data/reference/github-api/README.md, written in
the same swagger form, plus the headers GitHub insists on.

Used by tests/forgeserver.py; `Spec.check` returns the matched route and a
list of problems, empty when the request is one the forge would accept.
"""
from __future__ import annotations

import copy
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

REFERENCE = Path(__file__).parent / "data" / "reference" / "forgejo-api"
# binding:"Required" in modules/structs (see the forgejo-api README).
GO_REQUIRED = {"CreatePullRequestOption": ("head", "base", "title"),
               "CreateIssueCommentOption": ("body",)}

_INT = {"type": "integer"}
_STR = {"type": "string"}
GITHUB_DOCUMENT: dict[str, Any] = {
    "basePath": "/api/v3",
    "definitions": {
        "CreatePull": {"type": "object", "required": ["title", "head", "base"], "properties": {
            "title": _STR, "head": _STR, "base": _STR, "body": _STR, "head_repo": _STR,
            "draft": {"type": "boolean"}, "maintainer_can_modify": {"type": "boolean"},
            "issue": _INT}},
        "CreateComment": {"type": "object", "required": ["body"], "properties": {"body": _STR}},
    },
    "paths": {
        "/repos/{owner}/{repo}/pulls": {
            "get": {"parameters": [
                {"name": "state", "in": "query", "type": "string",
                 "enum": ["open", "closed", "all"]},
                # GitHub ignores a head filter without the owner: prefix.
                {"name": "head", "in": "query", "type": "string", "pattern": "^[^:]+:.+$"},
                {"name": "base", "in": "query", "type": "string"},
                {"name": "sort", "in": "query", "type": "string",
                 "enum": ["created", "updated", "popularity", "long-running"]},
                {"name": "direction", "in": "query", "type": "string", "enum": ["asc", "desc"]},
                {"name": "per_page", "in": "query", "type": "integer", "maximum": 100},
                {"name": "page", "in": "query", "type": "integer"}]},
            "post": {"parameters": [{"name": "body", "in": "body",
                                     "schema": {"$ref": "#/definitions/CreatePull"}}]}},
        "/repos/{owner}/{repo}/pulls/{pull_number}": {"get": {"parameters": [
            {"name": "pull_number", "in": "path", "type": "integer", "required": True}]}},
        "/repos/{owner}/{repo}/pulls/{pull_number}/reviews": {"get": {"parameters": [
            {"name": "pull_number", "in": "path", "type": "integer", "required": True},
            {"name": "per_page", "in": "query", "type": "integer", "maximum": 100},
            {"name": "page", "in": "query", "type": "integer"}]}},
        "/repos/{owner}/{repo}/issues/{issue_number}/comments": {"post": {"parameters": [
            {"name": "issue_number", "in": "path", "type": "integer", "required": True},
            {"name": "body", "in": "body", "schema": {"$ref": "#/definitions/CreateComment"}}]}},
    },
}
GITHUB_HEADERS = {"accept": "application/vnd.github+json", "x-github-api-version": "2022-11-28"}


@dataclass(frozen=True)
class Route:
    """One operation: method, path template and its declared parameters."""
    method: str
    template: str
    pattern: re.Pattern[str]
    literals: int
    params: dict[str, dict[str, Any]]
    body_schema: dict[str, Any] | None


@dataclass
class Checked:
    """What `Spec.check` found: the route (None if unknown), its values, the problems."""
    route: Route | None
    path_params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    problems: list[str] = field(default_factory=list)


class Spec:
    """The operations of one forge flavour, checked request by request."""

    def __init__(self, document: dict[str, Any], flavour: str) -> None:
        self.flavour = flavour
        self.base_path = str(document.get("basePath") or "")
        self._definitions = document.get("definitions", {})
        self._routes = [self._route(m.upper(), t, op, item.get("parameters", []))
                        for t, item in document["paths"].items()
                        for m, op in item.items() if m != "parameters"]

    @classmethod
    def for_flavour(cls, flavour: str) -> Spec:
        """The spec of "forgejo", "gitea" or "github"."""
        if flavour == "github":
            return cls(GITHUB_DOCUMENT, flavour)
        name = "swagger-subset-gitea.json" if flavour == "gitea" else "swagger-subset.json"
        return cls(json.loads((REFERENCE / name).read_text()), flavour)

    def check(self, method: str, path: str, query: dict[str, list[str]],
              headers: dict[str, str], raw_body: bytes) -> Checked:
        """Match and check one request (path still percent-encoded, below basePath)."""
        candidates = [(r, m) for r in self._routes if (m := r.pattern.fullmatch(path))]
        if not candidates:
            return Checked(None, problems=[f"{method} {path}: no such route in the spec"])
        with_method = [(r, m) for r, m in candidates if r.method == method]
        if not with_method:
            return Checked(None, problems=[f"{method} {path}: the route has no {method}"])
        route, match = max(with_method, key=lambda pair: pair[0].literals)
        found = Checked(route, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()})
        where = f"{method} {route.template}"
        for name, value in found.path_params.items():
            found.problems += _check_value(where, name, value, route.params.get(name, {}))
        for name, values in query.items():
            spec = route.params.get(name)
            if spec is None or spec.get("in") != "query":
                found.problems.append(f"{where}: query parameter {name!r} is not in the spec")
                continue
            if len(values) > 1 and spec.get("type") != "array":
                found.problems.append(f"{where}: query parameter {name!r} given twice")
            found.query[name] = values[-1]
            found.problems += _check_value(where, name, values[-1], spec)
        found.problems += self._check_headers(where, headers)
        found.body, body_problems = self._check_body(where, route, headers, raw_body)
        found.problems += body_problems
        return found

    def _route(self, method: str, template: str, op: dict[str, Any],
               shared: list[dict[str, Any]]) -> Route:
        params = {p["name"]: p for p in [*shared, *op.get("parameters", [])]}
        body = next((p for p in params.values() if p.get("in") == "body"), None)
        regex, literals = "", 0
        segments = template.strip("/").split("/")
        for i, segment in enumerate(segments):
            name = segment[1:-1] if segment.startswith("{") else None
            if name is None:
                regex, literals = regex + "/" + re.escape(segment), literals + 1
            elif name == "head" and i == len(segments) - 1:
                regex += f"/(?P<{name}>.+)"  # Forgejo/Gitea route /{base}/*: head may hold "/"
            else:
                regex += f"/(?P<{name}>[^/]+)"
        schema = self._strict(body["schema"]) if body else None
        return Route(method, template, re.compile(regex), literals, params, schema)

    def _strict(self, schema: dict[str, Any]) -> dict[str, Any]:
        name = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
        definition = copy.deepcopy(self._definitions[name])
        definition["additionalProperties"] = False
        required = set(definition.get("required", [])) | set(GO_REQUIRED.get(name, ()))
        definition["required"] = sorted(required)
        for key in GO_REQUIRED.get(name, ()):
            definition["properties"][key] = {**definition["properties"][key], "minLength": 1}
        return {**definition, "definitions": self._definitions, "title": name}

    def _check_headers(self, where: str, headers: dict[str, str]) -> list[str]:
        problems = []
        if "authorization" not in headers:
            problems.append(f"{where}: no Authorization header")
        if self.flavour == "github":
            for name, value in GITHUB_HEADERS.items():
                if headers.get(name) != value:
                    problems.append(f"{where}: header {name} should be {value!r}, "
                                    f"got {headers.get(name)!r}")
            if not headers.get("user-agent"):
                problems.append(f"{where}: GitHub refuses a request without User-Agent")
        return problems

    def _check_body(self, where: str, route: Route, headers: dict[str, str],
                    raw: bytes) -> tuple[Any, list[str]]:
        if route.body_schema is None:
            return None, [f"{where}: a body where the spec has none"] if raw.strip() else []
        if not headers.get("content-type", "").startswith("application/json"):
            return None, [f"{where}: body without Content-Type: application/json"]
        try:
            body = json.loads(raw)
        except ValueError as err:
            return None, [f"{where}: body is not JSON: {err}"]
        validator = jsonschema.Draft4Validator(route.body_schema)
        return body, [f"{where}: body {route.body_schema['title']}: {e.message}"
                      for e in validator.iter_errors(body)]


def _check_value(where: str, name: str, value: str, spec: dict[str, Any]) -> list[str]:
    kind = spec.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return [f"{where}: {name}={value!r} is not an integer"]
        if "maximum" in spec and int(value) > spec["maximum"]:
            return [f"{where}: {name}={value} is above {spec['maximum']}"]
    if "enum" in spec and value not in spec["enum"]:
        return [f"{where}: {name}={value!r} is not one of {spec['enum']}"]
    if "pattern" in spec and not re.search(spec["pattern"], value):
        return [f"{where}: {name}={value!r} does not match {spec['pattern']}"]
    return []
