"""docs/openapi.yaml agrees with the app: the same routes, and real answers fit its schemas.

The apps' route tables (app.routes) and the document's paths and methods must be
the same sets (make_app's for the document's server, `listen`; make_admin_app's
for the paths whose own server is `admin_listen`); then real requests over a
socket produce every documented error status, and each answer's body is
validated (jsonschema) against the schema the document gives for that status.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from controller.events import Forge
from controller.http.admin import make_admin_app
from controller.http.app import make_app
from controller.telemetry import Telemetry
from tests.httpkit import deps, fixture, post_webhook, request, served, webhook_headers

DOC = yaml.safe_load((Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml").read_text())
HOOK = "/api/v1/webhooks/github"


def _validate(body: object, ref: str) -> None:
    schema = {"$ref": ref, "components": DOC["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def _response_schema(path: str, method: str, status: int) -> str:
    response = DOC["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        response = DOC["components"]["responses"][name]
    return response["content"]["application/json"]["schema"]["$ref"]


def test_the_document_is_openapi_3_1_with_valid_schemas():
    assert DOC["openapi"].startswith("3.1")
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def _routes(app) -> set[tuple[str, str]]:
    return {(re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", r.rule), r.method.lower())
            for r in app.routes}


def _documented(server: str) -> set[tuple[str, str]]:
    """The paths and methods whose server (their own `servers` or the document's) is `server`."""
    default = DOC["servers"][0]["url"]
    return {(path, method) for path, item in DOC["paths"].items()
            if item.get("servers", [{"url": default}])[0]["url"] == server
            for method in item if method in ("get", "post", "put", "delete", "patch")}


def test_the_apps_routes_and_the_documents_paths_agree(tmp_path):
    # the main app on `listen` (the document's server), the admin app on `admin_listen`
    assert _routes(make_app(deps(tmp_path))) == _documented("http://127.0.0.1:8080")
    assert _routes(make_admin_app(Telemetry())) == _documented("http://127.0.0.1:8081")
    every = _documented("http://127.0.0.1:8080") | _documented("http://127.0.0.1:8081")
    assert len(every) == sum(1 for item in DOC["paths"].values() for method in item
                             if method in ("get", "post", "put", "delete", "patch"))


def _signed(body: bytes, delivery: str, content_type: str = "application/json") -> dict[str, str]:
    headers = webhook_headers(Forge.GITHUB, "pull_request", delivery, body)
    headers["Content-Type"] = content_type
    return headers


def _webhook_answers(tmp_path: Path) -> list[tuple[int, object]]:
    doc = fixture("github-webhooks/pull_request.opened.json", "task/fix-login")
    good = json.dumps(doc).encode()
    answers = []
    with served(deps(tmp_path / "nosecret", secret=None)) as addr:
        answers.append(post_webhook(addr, Forge.GITHUB, "pull_request", "n1", doc))
    app_deps = deps(tmp_path, webhook_body_limit=len(good) + 10)
    with served(app_deps, max_body=len(good) * 4) as addr:
        answers += [
            post_webhook(addr, Forge.GITHUB, "pull_request", "a1", doc),              # 200
            post_webhook(addr, Forge.GITHUB, "pull_request", "a1", doc),              # duplicate
            post_webhook(addr, Forge.GITHUB, "ping", "a2", fixture("github-webhooks/ping.json")),
            post_webhook(addr, Forge.GITHUB, "pull_request", "a3", doc, secret="bad"),  # 401
            request(addr, "POST", HOOK, b"[]", _signed(b"[]", "a4")),                # 400
            request(addr, "POST", HOOK, b"x", _signed(b"x", "a5", "text/csv")),      # 415
            request(addr, "POST", HOOK, good * 2, _signed(good * 2, "a6")),          # 413 app
            request(addr, "POST", HOOK, good * 5, _signed(good * 5, "a7")),          # 413 waitress
        ]
        app_deps.sink.refuse = RuntimeError("journal full")
        answers.append(post_webhook(addr, Forge.GITHUB, "pull_request", "a8", doc))  # 503
    return [(a.status, a.body) for a in answers]


def test_every_webhook_answer_fits_the_document(tmp_path):
    answers = _webhook_answers(tmp_path)
    assert {s for s, _ in answers} == {200, 400, 401, 403, 413, 415, 503}
    for status, body in answers:
        _validate(body, _response_schema(HOOK, "POST", status))


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/nope", 404), ("DELETE", "/healthz", 405), ("GET", HOOK, 405)])
def test_bottles_own_errors_fit_the_error_schema(tmp_path, method, path, status):
    with served(deps(tmp_path)) as addr:
        reply = request(addr, method, path)
    assert reply.status == status
    _validate(reply.body, "#/components/schemas/Error")


@pytest.mark.parametrize("age", [1.0, None])
def test_healthz_answers_fit_the_document(tmp_path, age):
    from controller.http.deps import HealthReport
    with served(deps(tmp_path, health=lambda: HealthReport(age, 10.0))) as addr:
        reply = request(addr, "GET", "/healthz")
    _validate(reply.body, _response_schema("/healthz", "GET", reply.status))
