"""The scripted model servers on their own, over a real socket, without any CLI.

They must hold even where node is missing and the real-CLI tests skip: the
script advances one turn per model request, side requests leave it alone,
errors and exhaustion are HTTP errors, and a hanging answer ends with the server.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from .modelservers import MessagesServer, ResponsesServer, error, hang, run, say


def post(url: str, body: dict, timeout: float = 5) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_responses_server_plays_its_script_then_runs_out():
    with ResponsesServer([run("echo hi > x"), say("done")]) as srv:
        url = f"{srv.url}/v1/responses"
        status, text = post(url, {"stream": True, "input": []})
        names = [n for n, _ in events(text)]
        assert status == 200 and names[0] == "response.created" and names[-1] == "response.completed"
        call = events(text)[2][1]["item"]
        assert call["name"] == "exec_command" and json.loads(call["arguments"])["cmd"] == "echo hi > x"
        _, text = post(url, {"stream": True})
        deltas = [d["delta"] for n, d in events(text) if n == "response.output_text.delta"]
        assert deltas == ["done"]
        status, text = post(url, {})
        assert status == 500 and "script exhausted" in text
        assert len(srv.model_requests()) == 3


def test_messages_server_skips_side_requests_and_answers_errors():
    with MessagesServer([error(529, "overloaded"), say("fine")]) as srv:
        url = f"{srv.url}/v1/messages?beta=true"
        status, text = post(url, {"model": "m", "messages": []})             # no tools: a side request
        assert status == 200 and events(text)[-1][0] == "message_stop"
        status, text = post(url, {"model": "m", "tools": [{"name": "Bash"}]})
        assert status == 529 and json.loads(text)["error"]["message"] == "overloaded"
        status, text = post(url, {"model": "m", "tools": [{"name": "Bash"}]})
        delta = [d for n, d in events(text) if n == "message_delta"][0]
        assert delta["delta"]["stop_reason"] == "end_turn" and srv.turns_used == 2


def test_a_hanging_answer_ends_when_the_server_closes():
    srv = MessagesServer([hang()])
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    body = json.dumps({"tools": [1]}).encode()
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = []
    reader = threading.Thread(target=lambda: got.append(sock.recv(100)), daemon=True)
    reader.start()
    reader.join(0.5)
    assert reader.is_alive()                  # no answer yet
    started = time.monotonic()
    srv.close()
    reader.join(5)
    assert got == [b""] and time.monotonic() - started < 5
    sock.close()


@pytest.mark.parametrize("server", [ResponsesServer, MessagesServer])
def test_head_is_ok_and_unknown_paths_are_404(server):
    with server([]) as srv:
        req = urllib.request.Request(srv.url + "/", method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        assert post(srv.url + "/v1/other", {})[0] == 404
