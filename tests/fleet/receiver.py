"""A webhook receiver on loopback for the fleet's tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from inboxcheck.fleet.webhooks import HEADER, verify

SECRET = "whsec_test_Zq81"


class Receiver:
    """A webhook endpoint on loopback: records each POST; answers the statuses queued, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        # The path of each POST, in the order of ``posts``.
        self.paths: list[str] = []
        self.statuses: list[int] = []
        # Set: each POST is recorded, then left unanswered until this event is set (a sender
        # caught mid-delivery).
        self.hold: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.paths.append(self.path)
                receiver.posts.append((dict(self.headers), body))
                if receiver.hold is not None:
                    receiver.hold.wait(timeout=120)
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # Many senders at once are queued, not refused (socketserver's backlog is 5).
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/inboxcheck"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self, *, now: float | None = None) -> list[dict[str, Any]]:
        """Every event received, each with its signature checked as a receiver would."""
        out = []
        for headers, body in self.posts:
            assert verify(headers[HEADER], body, secret=SECRET.encode(), now=now or time.time())
            out.append(json.loads(body))
        return out
