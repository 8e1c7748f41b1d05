"""A real HTTP health endpoint on 127.0.0.1 whose status code a test flips."""

from __future__ import annotations

import http.server
import threading

import pytest


class Health:
    def __init__(self):
        self.status = 200
        self.hits = 0
        # called (with the hit number) before each answer: a test acts at a known point of a
        # run, e.g. writes as the app or cuts a connection during the post-check
        self.on_request = None
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.on_request is not None:
                    outer.on_request(outer.hits)
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok" if outer.status == 200 else b"down")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/health"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


@pytest.fixture
def health():
    h = Health()
    yield h
    h.close()
