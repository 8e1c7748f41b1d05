"""A real HTTP health endpoint on 127.0.0.1 whose status code a test flips."""

from __future__ import annotations

import http.server
import threading

import pytest


class Endpoint:
    """A real HTTP server on 127.0.0.1 (a free port) whose GET ``url`` is answered by
    :meth:`answer` (what a subclass does with the request handler), one thread a request."""

    def __init__(self):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.answer(self)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/health"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def reply(h: http.server.BaseHTTPRequestHandler, status: int) -> None:
        h.send_response(status)
        h.end_headers()
        h.wfile.write(b"ok" if status == 200 else b"down")

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Health(Endpoint):
    def __init__(self):
        self.status = 200
        self.hits = 0
        # called (with the hit number) before each answer: a test acts at a known point of a
        # run, e.g. writes as the app or cuts a connection during the post-check
        self.on_request = None
        super().__init__()

    def answer(self, h) -> None:
        self.hits += 1
        if self.on_request is not None:
            self.on_request(self.hits)
        self.reply(h, self.status)


@pytest.fixture
def health():
    h = Health()
    yield h
    h.close()
