"""A local HTTP server on 127.0.0.1 for URL tests: files from a directory, 404 for anything
else, and HTTP 500 for any path under /error500."""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import threading
from typing import Iterator


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/error500"):
            self.send_error(500, "Server Exploded")
        else:
            super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@contextlib.contextmanager
def serve(directory) -> Iterator[str]:
    """Yield the server's base URL; proxies are bypassed while it runs."""
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    saved = {key: os.environ.get(key) for key in ("no_proxy", "NO_PROXY")}
    os.environ.update(no_proxy="*", NO_PROXY="*")
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
