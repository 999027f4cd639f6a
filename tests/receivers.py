"""Real peers for notifications: an HTTP webhook receiver and an SMTP server."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from carveout_ops.broker import free_port


@dataclass
class Delivery:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    accepted: bool


@dataclass
class WebhookReceiver:
    """Fails the first ``failures`` attempts of every webhook id, then accepts."""

    failures: int = 2
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    """The ``Host`` header of each request."""
    hold: threading.Event | None = None
    """When set to an event, the first attempt of each webhook id from then on waits for it
    and then fails (503): a delivery in flight when its sender dies."""
    held: list[str] = field(default_factory=list)
    """The webhook ids of the attempts held."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/carveout"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                webhook_id = self.headers.get("webhook-id", "")
                if receiver._held_first(webhook_id):
                    assert receiver.hold is not None
                    receiver.hold.wait(60)
                    with contextlib.suppress(OSError):  # its sender may be gone
                        self.send_response(503)
                        self.send_header("content-length", "0")
                        self.end_headers()
                    return
                with receiver._lock:
                    receiver.hosts.append(self.headers.get("host", ""))
                    seen = sum(1 for d in receiver.deliveries if d.webhook_id == webhook_id)
                    accepted = seen >= receiver.failures
                    receiver.deliveries.append(
                        Delivery(
                            webhook_id,
                            self.headers.get("webhook-timestamp", ""),
                            self.headers.get("webhook-signature", ""),
                            body,
                            accepted,
                        )
                    )
                self.send_response(200 if accepted else 503)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _held_first(self, webhook_id: str) -> bool:
        """Whether this attempt is one to hold (recorded as an attempt, never accepted)."""
        with self._lock:
            if self.hold is None or webhook_id in self.held:
                return False
            self.held.append(webhook_id)
            self.deliveries.append(Delivery(webhook_id, "", "", b"", accepted=False))
            return True

    def accepted(self) -> Counter[str]:
        with self._lock:
            return Counter(d.webhook_id for d in self.deliveries if d.accepted)

    def attempts(self) -> Counter[str]:
        with self._lock:
            return Counter(d.webhook_id for d in self.deliveries)


@dataclass
class SlowReceiver:
    """Answers 200 at once, then sends its body one byte every ``pace`` seconds: a receiver
    that would hold a delivery for as long as the sender keeps reading."""

    body_bytes: int = 120
    pace: float = 1.0
    port: int = field(default_factory=free_port)
    started: list[float] = field(default_factory=list)
    """When each request arrived (monotonic clock)."""
    _server: ThreadingHTTPServer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/slow"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.started.append(time.monotonic())
                self.send_response(200)
                self.send_header("content-length", str(receiver.body_bytes))
                self.end_headers()
                self.wfile.flush()
                for _ in range(receiver.body_bytes):
                    if receiver._stop.wait(receiver.pace):
                        return
                    try:
                        self.wfile.write(b".")
                        self.wfile.flush()
                    except OSError:  # the sender hung up: what a deadline does
                        return

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def signature_verifies(delivery: Delivery, secret: str) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{delivery.webhook_id}.{delivery.timestamp}.".encode() + delivery.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, part.removeprefix("v1,"))
        for part in delivery.signature.split()
    )


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SmtpServer:
    """A real SMTP server; with ``smtp_parameters`` (``tls_context``, ``require_starttls``,
    ``authenticator``, ...) as aiosmtpd takes them, and ``ssl_context`` for TLS from the
    first byte."""

    def __init__(self, ssl_context: Any = None, **smtp_parameters: Any) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(
            self.inbox,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=ssl_context,
            **smtp_parameters,
        )

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
