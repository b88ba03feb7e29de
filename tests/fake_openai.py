"""A fake OpenAI-compatible chat completions server on loopback, for tests that use the real ``openai`` client.

    with FakeOpenAI() as fake:
        fake.script(reply("Sure."), error(500), reply_json({"criteria": {...}}, delay=2))
        client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=1)

Each request takes the next scripted behaviour, or the standing one (``always``) when the script is used up. A
behaviour is an ``Answer`` or a callable that computes one (or a ``str`` / ``dict`` reply) from the request body.
Every request body is kept in ``requests``. Stdlib only.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    """What the fake answers: message ``content`` with HTTP 200, or an error ``status``, after ``delay`` seconds."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    finish_reason: str = "stop"


Behaviour = Answer | Callable[[dict[str, Any]], "Answer | str | dict[str, Any]"]


def reply(content: str | None, *, delay: float = 0.0, finish_reason: str = "stop") -> Answer:
    """Answer with this message content."""
    return Answer(content=content, delay=delay, finish_reason=finish_reason)


def reply_json(obj: Any, *, delay: float = 0.0) -> Answer:
    """Answer with ``obj`` as JSON message content, as structured output arrives."""
    return Answer(content=json.dumps(obj), delay=delay)


def malformed_json(*, delay: float = 0.0) -> Answer:
    """Answer with content that starts like JSON and is cut off."""
    return Answer(content='{"criteria": {"acknowledge": {"quotes": ["That\'s fair', delay=delay)


def error(status: int = 500, *, delay: float = 0.0) -> Answer:
    """Answer with an HTTP error in OpenAI's error shape."""
    return Answer(status=status, delay=delay)


def system_prompt(request: dict[str, Any]) -> str:
    """The system message of a recorded request."""
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "system")


def user_text(request: dict[str, Any]) -> str:
    """All user messages of a recorded request, joined."""
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "user")


def echo_last_user(request: dict[str, Any]) -> str:
    """A behaviour: repeat the last user message."""
    return f"You said: {[m for m in request['messages'] if m['role'] == 'user'][-1]['content']}"


class FakeOpenAI:
    """``POST /v1/chat/completions`` on 127.0.0.1, one daemon thread; a context manager."""

    def __init__(self, default: Behaviour = Answer(content="OK.")) -> None:
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self._default = default
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours, one per coming request."""
        with self._lock:
            self._script.extend(behaviours)

    def always(self, behaviour: Behaviour) -> None:
        """The behaviour for every request once the script is used up."""
        with self._lock:
            self._default = behaviour

    def start(self) -> FakeOpenAI:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping through a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, request: dict[str, Any]) -> tuple[Answer, int]:
        with self._lock:
            self.requests.append(request)
            behaviour = self._script.popleft() if self._script else self._default
            number = next(self._ids)
        answer = behaviour if isinstance(behaviour, Answer) else behaviour(request)
        if isinstance(answer, str):
            answer = reply(answer)
        elif isinstance(answer, dict):
            answer = reply_json(answer)
        return answer, number

    def _body(self, request: dict[str, Any], answer: Answer, number: int) -> dict[str, Any]:
        if answer.status != 200:
            kind = "server_error" if answer.status >= 500 else "invalid_request_error"
            return {"error": {"message": f"fake error {answer.status}", "type": kind, "param": None, "code": None}}
        prompt = sum(len(str(m.get("content") or "").split()) for m in request.get("messages", []))
        completion = len((answer.content or "").split())
        message = {"role": "assistant", "content": answer.content, "refusal": None}
        return {
            "id": f"chatcmpl-fake{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }


def _make_handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet by design
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if urlsplit(self.path).path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                return
            request = json.loads(raw or b"{}")
            answer, number = fake._answer(request)
            if answer.delay and fake._stopping.wait(answer.delay):
                return
            self._send(answer.status, fake._body(request, answer, number))

    return Handler
