"""A local HTTP server on 127.0.0.1 for URL tests: files from a directory, 404 for anything
else, HTTP 500 for any path under /error500, and one byte a second under /drip (/drip/head:
the status line and headers too; /drip/body: the body only). ``silent()``: a port that
accepts connections and never answers."""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import threading
import time
from typing import Iterator


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/error500"):
            self.send_error(500, "Server Exploded")
        elif self.path.startswith("/drip/"):
            self.drip(self.path == "/drip/head")
        else:
            super().do_GET()

    def drip(self, head_too: bool, seconds: int = 60) -> None:
        """A CSV with a header promising more than comes, one byte a second for ``seconds``."""
        head = b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n"
        if not head_too:
            self.wfile.write(head)
        for byte in ((head if head_too else b"") + b"X1,X2,color\n" + b"1" * seconds)[:seconds]:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client left
                return
            time.sleep(1)

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


@contextlib.contextmanager
def silent() -> Iterator[str]:
    """Yield the base URL of a port that accepts connections (the kernel's backlog) and never
    answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def good_csv_text(rows_per_class: int = 8) -> str:
    """A small valid spiral-like CSV: X1, X2 and color with classes c1, c2, c3."""
    lines = ["X1,X2,color"]
    for k, label in enumerate(("c1", "c2", "c3")):
        lines += [f"{k + i / 10},{-i / 10},{label}" for i in range(rows_per_class)]
    return "\n".join(lines) + "\n"


def serve_good_csv(tmp_path_factory) -> Iterator[str]:
    """Body of a module fixture: the base URL of a server with good.csv (500 under /error500)."""
    root = tmp_path_factory.mktemp("www")
    (root / "good.csv").write_text(good_csv_text())
    with serve(root) as url:
        yield url
