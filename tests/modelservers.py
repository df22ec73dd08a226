"""Scripted model servers: the OpenAI Responses API and the Anthropic Messages API, on 127.0.0.1.

Used by tests/test_real_agents.py to run the real Codex CLI and Claude Code CLI
offline. Each server plays a script of turns, one per model request (a tool call
that runs a shell command, a final message, an HTTP error, or no answer at all),
records every request it got, and speaks just enough of its API for the CLI to
believe it: streaming Server-Sent Events in the shapes the CLIs parse (see
shared/reference/README.md). Requests that are not the agent's turns (Claude
Code's side requests without tools, such as a session title) get a short
answer and leave the script alone.

Everything is bounded: request bodies are capped, a hanging answer waits at
most HANG_LIMIT seconds (or until the server closes), and a script that runs
out answers HTTP 500 instead of looping. Use a server as a context manager, or
call close(), so its thread and sockets end with the test.
"""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Sequence

MAX_BODY = 16 * 1024 * 1024   # a CLI's request with its whole context is well below this
HANG_LIMIT = 120.0            # a hanging answer never outlives a test by much more


@dataclass(frozen=True)
class Turn:
    """One answer of the model: kind is "tool", "text", "error" or "hang"."""
    kind: str
    text: str = ""            # the command of a tool call, the message, or the error body
    status: int = 200
    tool: str = ""            # another tool than the shell (Claude Code only), with its input
    tool_input: tuple[tuple[str, Any], ...] = ()


def run(command: str) -> Turn:
    """A tool call that runs `command` in the CLI's shell."""
    return Turn("tool", command)


def use(tool: str, **tool_input: Any) -> Turn:
    """A call of another Claude Code tool, e.g. use("WebFetch", url=..., prompt=...)."""
    return Turn("tool", tool=tool, tool_input=tuple(tool_input.items()))


def say(text: str) -> Turn:
    """A final assistant message that ends the CLI's turn."""
    return Turn("text", text)


def error(status: int, message: str = "scripted failure") -> Turn:
    """An HTTP error status with a JSON error body, as the real APIs send one."""
    return Turn("error", message, status)


def hang() -> Turn:
    """Accept the request and never answer it (until the server closes)."""
    return Turn("hang")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for 'endpoint down' tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]    # names in lower case
    body: Any                 # parsed JSON, or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ScriptedServer"

    def log_message(self, *args) -> None:   # keep pytest's output clean
        pass

    def do_HEAD(self) -> None:               # Claude Code's reachability probe
        self.server.record(self, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.record(self, None)
        self.send_json(404, {"error": {"type": "not_found", "message": "not scripted"}})

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.server.record(self, body)
        self.server.answer(self, body)

    # ---- writing answers -----------------------------------------------------
    def send_json(self, status: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events: Sequence[tuple[str, dict]]) -> None:
        """One SSE stream, whole, then the connection closes."""
        data = b"".join(f"event: {name}\ndata: {json.dumps(doc)}\n\n".encode()
                        for name, doc in events)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


class ScriptedServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 playing `script`, one turn per model request."""
    daemon_threads = True
    model_path = "/"          # the path of a model turn; other POSTs are not turns

    def __init__(self, script: Sequence[Turn]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.requests: list[Request] = []
        self.turns_used = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ScriptedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()          # hanging answers return now
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def record(self, handler: _Handler, body: Any) -> None:
        with self._lock:
            self.requests.append(Request(handler.command, handler.path,
                                         {k.lower(): v for k, v in handler.headers.items()}, body))

    def model_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if r.method == "POST" and r.path.split("?")[0] == self.model_path]

    def next_turn(self) -> Turn:
        with self._lock:
            if self.turns_used >= len(self.script):
                return error(500, f"script exhausted after {len(self.script)} turns")
            turn = self.script[self.turns_used]
            self.turns_used += 1
            return turn

    def answer(self, handler: _Handler, body: Any) -> None:
        if handler.path.split("?")[0] != self.model_path:
            handler.send_json(404, {"error": {"type": "not_found", "message": handler.path}})
            return
        turn = self.next_turn() if self.is_turn(body) else say("ok")
        if turn.kind == "hang":
            self._closing.wait(HANG_LIMIT)
            handler.close_connection = True
        elif turn.kind == "error":
            handler.send_json(turn.status, self.error_body(turn))
        else:
            handler.send_events(list(self.events(turn, self.turns_used, body)))

    # ---- per API ---------------------------------------------------------------
    def is_turn(self, body: Any) -> bool:
        """A request of the agent's conversation, as opposed to a side request."""
        return True

    def error_body(self, turn: Turn) -> dict:
        raise NotImplementedError

    def events(self, turn: Turn, n: int, body: Any) -> Iterator[tuple[str, dict]]:
        raise NotImplementedError


class ResponsesServer(ScriptedServer):
    """The OpenAI Responses API as Codex 0.169 streams it: POST /v1/responses."""
    model_path = "/v1/responses"
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2},
             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 15}

    def error_body(self, turn: Turn) -> dict:
        return {"error": {"message": turn.text, "type": "server_error", "code": None}}

    def events(self, turn: Turn, n: int, body: Any) -> Iterator[tuple[str, dict]]:
        rid = f"resp_{n}"
        yield "response.created", {"type": "response.created",
                                   "response": {"id": rid, "status": "in_progress"}}
        if turn.kind == "tool":
            args = json.dumps({"cmd": turn.text, "login": False})
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                    "name": "exec_command", "arguments": args, "status": "completed"}
        else:
            item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": []}]}
        added = dict(item, content=[]) if turn.kind == "text" else item
        yield "response.output_item.added", {"type": "response.output_item.added",
                                             "output_index": 0, "item": added}
        if turn.kind == "text":
            yield "response.output_text.delta", {"type": "response.output_text.delta",
                                                 "item_id": item["id"], "output_index": 0,
                                                 "content_index": 0, "delta": turn.text}
        yield "response.output_item.done", {"type": "response.output_item.done",
                                            "output_index": 0, "item": item}
        yield "response.completed", {"type": "response.completed",
                                     "response": {"id": rid, "status": "completed",
                                                  "usage": self.usage}}


class MessagesServer(ScriptedServer):
    """The Anthropic Messages API as Claude Code streams it: POST /v1/messages?beta=true."""
    model_path = "/v1/messages"
    usage_in = {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 3}

    def is_turn(self, body: Any) -> bool:
        # Without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, Claude Code also sends
        # side requests without tools (a title for the session): not the agent's turns.
        return bool(isinstance(body, dict) and body.get("tools"))

    def error_body(self, turn: Turn) -> dict:
        return {"type": "error", "error": {"type": "api_error", "message": turn.text}}

    def events(self, turn: Turn, n: int, body: Any) -> Iterator[tuple[str, dict]]:
        model = (body or {}).get("model") or "claude-sonnet-4-5"
        message = {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": self.usage_in}
        yield "message_start", {"type": "message_start", "message": message}
        if turn.kind == "tool":
            name = turn.tool or "Bash"
            args = dict(turn.tool_input) if turn.tool else {"command": turn.text,
                                                            "description": "scripted command"}
            block = {"type": "tool_use", "id": f"toolu_{n:04d}", "name": name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(args)}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": turn.text}
            stop = "end_turn"
        yield "content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": block}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        yield "message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": 5}}
        yield "message_stop", {"type": "message_stop"}
