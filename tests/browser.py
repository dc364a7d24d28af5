"""Open a page in headless Chromium with no network, and report what it drew.

Chromium runs in a network namespace of its own (``unshare -n``: only a loopback that is down)
and is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``), so nothing
listens on a port. ``render(page)`` returns the vega charts found, how many drew marks, every
console error and uncaught exception, and a screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, NamedTuple

# Every vega-embed container on the page, whether it drew: a canvas with marks on it (some
# pixels that are not the background) or an SVG with mark elements; and every image (the PNG
# figures): its source and the size it decoded to (null if it did not load).
CHARTS_JS = """
(() => {
  const found = [...document.querySelectorAll('.vega-embed')].map(el => {
    const svg = el.querySelector('svg.marks');
    if (svg) return svg.querySelectorAll('.mark-line path, .mark-rect path, path, rect').length > 0;
    const canvas = el.querySelector('canvas');
    if (!canvas || !canvas.width || !canvas.height) return false;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200)) inked++;
    }
    return inked > 200;
  });
  const images = Object.fromEntries([...document.querySelectorAll('img')].map(img =>
    [decodeURIComponent(img.getAttribute('src')),
     img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null]));
  return JSON.stringify({embedded: found.length, drawn: found.filter(Boolean).length, images});
})()
"""


def chromium() -> str | None:
    """The Chromium binary, if this machine has one (Debian: the `chromium` package)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def can_isolate() -> bool:
    """Whether ``unshare -n`` works here (root, or user namespaces allowed)."""
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


class Rendered(NamedTuple):
    charts: int         # vegaEmbed(...) calls in the page source: the charts DVC put there
    embedded: int       # vega-embed containers on the rendered page
    drawn: int          # of those, how many show marks
    errors: list[str]   # console errors, uncaught exceptions, failed loads
    screenshot: Path
    images: dict[str, Any]  # each <img>'s src -> [width, height] as decoded, or None


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, argv: list[str]):
        cmd_read, self._cmd = os.pipe()
        self._out, out_write = os.pipe()

        def fds() -> None:  # in the child: the pipe ends become fds 3 and 4
            ends = os.dup(cmd_read), os.dup(out_write)  # above 4, so neither is clobbered
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)

        # fds 3 and 4 are open in this process too (pipes), so subprocess keeps them for fds()
        self.proc = subprocess.Popen(argv, pass_fds=(3, 4), preexec_fn=fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_read)
        os.close(out_write)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, session: str | None = None, timeout: float = 30,
             **params: Any) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self._cmd)
        os.close(self._out)


def _errors(events: list[dict]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(" ".join(str(a.get("value", a.get("description", "")))
                                  for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            found.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            found.append(f"load failed: {params.get('errorText')}")
    return found


def render(page: Path, screenshot: Path, profile: Path, timeout: float = 60) -> Rendered:
    """Load ``page`` (a file) with networking disabled; wait until every chart drew or
    ``timeout`` passed; save a full-page screenshot."""
    binary = chromium()
    assert binary, "no Chromium on this machine"
    charts = page.read_text(encoding="utf-8").count("vegaEmbed('#")
    pipe = _Pipe(["unshare", "-n", binary, "--headless", "--no-sandbox", "--disable-gpu",
                  "--hide-scrollbars", "--no-first-run", "--remote-debugging-pipe",
                  f"--user-data-dir={profile}", "about:blank"])
    try:
        target = pipe.send("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.send(f"{domain}.enable", session)
        pipe.send("Emulation.setDeviceMetricsOverride", session, width=1400, height=1000,
                  deviceScaleFactor=1, mobile=False)
        pipe.send("Page.navigate", session, url=page.resolve().as_uri())
        pipe.wait_for("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout
        while True:
            state = json.loads(pipe.send("Runtime.evaluate", session, expression=CHARTS_JS,
                                         returnByValue=True)["result"]["value"])
            if state["drawn"] >= max(charts, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        metrics = pipe.send("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = pipe.send("Page.captureScreenshot", session, format="png",
                         captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": metrics["width"],
                               "height": min(metrics["height"], 12000), "scale": 1})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return Rendered(charts, state["embedded"], state["drawn"], _errors(pipe.events),
                        screenshot, state["images"])
    finally:
        pipe.close()
