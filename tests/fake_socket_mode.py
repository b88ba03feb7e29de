"""A fake of Slack's Socket Mode WebSocket on 127.0.0.1, for the real `slack_sdk` Socket Mode client.

Slack's `apps.connections.open` hands the app a WebSocket URL (the stand-in answers with `url` here); Slack then
sends each event or click as an envelope (`{"envelope_id", "type", "payload", ...}`) and waits for the app to echo
the `envelope_id` back: the acknowledgement. This server speaks just enough RFC 6455 for that: the opening
handshake, unmasked text frames out, masked frames in, pings answered, close.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
from typing import Any

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
_envelopes = itertools.count(1)


class FakeSocketMode:
    """Accepts the app's connection, sends envelopes, records acknowledgements (envelope id -> seconds taken)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self._server.getsockname()[1]}/link"
        self._conn: socket.socket | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._sent_at: dict[str, float] = {}
        self.acks: dict[str, float] = {}
        self.answers: dict[str, Any] = {}  # an acknowledgement's payload (a command's answer), when it has one
        self._closed = False

    def __enter__(self) -> FakeSocketMode:
        threading.Thread(target=self._accept, daemon=True, name="fake-socket-mode").start()
        return self

    def __exit__(self, *_: object) -> None:
        self._closed = True
        self._server.close()
        if self._conn is not None:
            self._conn.close()

    def send(self, kind: str, payload: dict, *, retry_attempt: int = 0) -> str:
        """Send an envelope (`events_api`, `interactive`, `slash_commands`) once the app is connected."""
        if not self._connected.wait(10):
            raise AssertionError("the app never opened the Socket Mode connection")
        envelope_id = f"env-{next(_envelopes)}"
        message = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                   "accepts_response_payload": kind != "events_api", "retry_attempt": retry_attempt,
                   "retry_reason": "timeout" if retry_attempt else ""}
        with self._lock:
            self._sent_at[envelope_id] = time.monotonic()
            self._frame(TEXT, json.dumps(message).encode())
        return envelope_id

    def event(self, event: dict, *, event_id: str | None = None) -> str:
        return self.send("events_api", {"type": "event_callback", "team_id": "T0REHEARSE", "api_app_id": "A0REHEARSE",
                                        "event_id": event_id or f"Ev{time.time_ns()}", "event": event,
                                        "event_time": int(time.time())})

    def wait_for_ack(self, envelope_id: str, timeout: float = 5) -> float:
        """Seconds from sending the envelope to its acknowledgement."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if envelope_id in self.acks:
                    return self.acks[envelope_id]
            time.sleep(0.005)
        raise AssertionError(f"{envelope_id} was not acknowledged within {timeout} s")

    # --- the WebSocket -------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(line.split(":", 1)[1].strip() for line in request.decode().split("\r\n")
                       if line.lower().startswith("sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            with self._lock:
                self._conn = conn
                self._frame(TEXT, json.dumps({"type": "hello", "num_connections": 1}).encode())
            self._connected.set()
            threading.Thread(target=self._read, args=(conn,), daemon=True, name="fake-socket-mode-read").start()

    def _frame(self, opcode: int, data: bytes) -> None:
        size = len(data)
        header = bytes([0x80 | opcode]) + (bytes([size]) if size < 126 else
                                           bytes([126]) + struct.pack("!H", size) if size < 65536 else
                                           bytes([127]) + struct.pack("!Q", size))
        self._conn.sendall(header + data)

    def _read(self, conn: socket.socket) -> None:
        buffer = b""

        def take(n: int) -> bytes:
            nonlocal buffer
            while len(buffer) < n:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buffer += chunk
            out, buffer = buffer[:n], buffer[n:]
            return out

        try:
            while True:
                first, second = take(2)
                opcode, size = first & 0x0F, second & 0x7F
                if size == 126:
                    size = struct.unpack("!H", take(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", take(8))[0]
                mask = take(4) if second & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(take(size)))
                if opcode == PING:
                    with self._lock:
                        self._frame(PONG, data)
                elif opcode == CLOSE:
                    return
                elif opcode == TEXT:
                    message = json.loads(data)
                    with self._lock:
                        envelope_id = message.get("envelope_id")
                        if envelope_id in self._sent_at:
                            self.acks[envelope_id] = time.monotonic() - self._sent_at[envelope_id]
                            if "payload" in message:
                                self.answers[envelope_id] = message["payload"]
        except (ConnectionError, OSError, ValueError):
            return
