"""Helpers for the `lab serve` tests: a real server process, an SSE reader, and chromium driven over its DevTools pipe."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import PROJECT
from tests.integration.test_report_browser import chromium

LAB = str(PROJECT / ".venv" / "bin" / "lab")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`lab serve` as a real process on 127.0.0.1 and a free port; stopped by its PID."""

    def __init__(self, db: str, work: Path, *args: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = work / f"serve-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([LAB, "serve", "--db", db, "--port", str(self.port), *args],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.base + "/static/lab.css", timeout=2)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"lab serve did not answer: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)  # polling for the port to open, with a deadline

    def rss_kib(self) -> int:
        """The server's resident memory."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down), SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def sse_events(lines) -> "iter":  # noqa: ANN001 - an iterator of text lines
    """Server-sent events as dicts (event, id, data) from a stream's lines (the WHATWG parsing, minus `retry`)."""
    event: dict = {}
    for line in lines:
        if line == "":
            if "data" in event:
                yield {"event": event.get("event", "message"), "id": event.get("id"), "data": event["data"]}
            event = {}
            continue
        if line.startswith(":"):
            continue  # a comment: sse-starlette's pings
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            event["data"] = event["data"] + "\n" + value if "data" in event else value
        elif field in ("event", "id"):
            event[field] = value


class Browser:
    """Headless Debian chromium with no network beyond loopback, driven through `--remote-debugging-pipe`.

    The DevTools protocol is JSON messages separated by NUL bytes on the child's fds 3 (in) and 4 (out).
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.stderr_path = work / "chromium.log"
        self.netlog = work / "netlog.json"
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # fds >= 10 in the child first, so placing them at 3 and 4 cannot overwrite one with the other
        high_in, high_out = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)

        def place() -> None:
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={work / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--enable-logging=stderr", "--v=0", f"--log-net-log={self.netlog}", "--remote-debugging-pipe",
                "about:blank"]
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         pass_fds=(3, 4, high_in, high_out), preexec_fn=place, cwd=work)
        for fd in (to_child, from_child, high_in, high_out):
            os.close(fd)
        self._id = 0
        self._replies: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._read, 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box is not None:
                        box.put(message)
                else:
                    self.events.append(message)

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        """One DevTools command; its result (an error is an AssertionError)."""
        with self._lock:
            self._id += 1
            ident = self._id
            box = self._replies[ident] = queue.Queue()
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        reply = box.get(timeout=timeout)
        assert "error" not in reply, reply
        return reply["result"]

    def open(self, url: str) -> str:
        """A new tab on `url`; returns its session id (Runtime and Log events enabled)."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Runtime.enable", session=session)
        self.call("Log.enable", session=session)
        return session

    def evaluate(self, session: str, expression: str):  # noqa: ANN201 - any JSON value
        """The value of a JavaScript expression in the tab."""
        result = self.call("Runtime.evaluate", session=session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60, every: float = 0.2):  # noqa: ANN201
        """Poll an expression until it is truthy (deadline `timeout`); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(session, expression)
            except AssertionError:  # the page is between two documents (a reload)
                value = None
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(every)  # polling the page, with a deadline

    def problems(self, expected: tuple[str, ...] = ()) -> list[str]:
        """JavaScript exceptions, console errors and CSP reports the pages produced (but failed loads of
        `expected` URL paths, such as a 404 the test asked for)."""
        out = []
        for e in list(self.events):
            params = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif e.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                text = params["entry"].get("text", "")
                if params["entry"].get("url", "").endswith(expected + ("/favicon.ico",)):
                    continue
                if "EventSource" not in text and "ERR_INCOMPLETE_CHUNKED_ENCODING" not in text:
                    out.append(text)  # a stream the server ended is not a problem; anything else is
            elif e.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(json.dumps(params.get("args"))[:300])
        return out

    def close(self) -> str:
        """Close the browser (by its PID if it does not go); returns its stderr."""
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - a browser that does not answer is killed below
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._write)
        self._reader.join(timeout=5)
        os.close(self._read)
        return self.stderr_path.read_text(errors="replace")

    def requests(self) -> list[str]:
        """Every URL in the network log (written when the browser exits)."""
        import re

        return sorted(set(re.findall(r'"url":"([^"]+)"', self.netlog.read_text()))) if self.netlog.exists() else []
