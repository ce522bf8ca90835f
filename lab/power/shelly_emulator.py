"""An emulated Shelly Gen2+ plug: the RPC calls lab's `shelly` driver makes, over real HTTP, with real digest auth.

A fake in the labgrid sense (product code, documented): the `shelly` driver's tests, and a demo of `lab power`
without a plug, talk to it exactly as to a device. What it implements, from Shelly's Gen2 API documentation:

- `GET /rpc/Switch.Set?id=N&on=true|false[&toggle_after=S]` -> `{"was_on": bool}`; `toggle_after` is the
  flip-back timer (after S seconds the output flips to the opposite of `on`, `source` "timer")
  (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch);
- `GET /rpc/Switch.GetStatus?id=N` -> `{"id", "source", "output", "apower", "voltage", "temperature"}`, with
  `timer_started_at` and `timer_duration` while a flip-back timer runs;
- `GET /shelly` -> device information, never protected (`auth_en`, `auth_domain`);
- RPC over HTTP GET answers only the call's `result`, or its `error` (`{"code", "message"}`), here with HTTP 500,
  404 for an unknown method (https://shelly-api-docs.shelly.cloud/gen2/General/RPCChannels);
- with a password, digest authentication as RFC 7616 with SHA-256 (https://shelly-api-docs.shelly.cloud/gen2/
  General/Authentication): a request without valid credentials gets `401` with an empty body and
  `WWW-Authenticate: Digest qop="auth", realm="<device id>", nonce="<number>", algorithm=SHA-256`; the device
  keeps only ha1 = SHA256("admin:<realm>:<password>"), as Shelly.SetAuth stores it; the user is always admin.

`ShellyServer` runs one under uvicorn on 127.0.0.1 (an ephemeral port) in a thread, for tests and demos.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

USER = "admin"  # Gen2's only user
_PARAM_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RpcError(Exception):
    """An RPC error frame: Shelly's code and message."""

    def __init__(self, code: int, message: str, status: int = 500):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class ShellyDevice:
    """The emulated device's state: its outputs, flip-back timers, credentials (ha1 only) and the calls it took."""

    device_id: str = "shellyplusplugs-e86beae2c2a0"
    channels: int = 1
    password: str | None = None
    outputs: list[bool] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    timers: dict[int, tuple[float, float, asyncio.TimerHandle]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # "Switch.Set id=0 on=false toggle_after=2", in order
    nonces: set[str] = field(default_factory=set)
    _ha1: str | None = None

    def __post_init__(self) -> None:
        self.outputs = self.outputs or [True] * self.channels  # a plug powers its load from the start
        self.sources = self.sources or ["init"] * self.channels
        # the device keeps ha1 (Shelly.SetAuth's parameter), never the password
        self._ha1 = _sha256(f"{USER}:{self.device_id}:{self.password}") if self.password else None
        self.password = None

    @property
    def auth_enabled(self) -> bool:
        return self._ha1 is not None

    # --- RPC methods --------------------------------------------------------------------------------------------
    def switch_set(self, params: dict[str, str]) -> dict[str, Any]:
        """Switch.Set: set output `id` to `on`; with `toggle_after`, flip it back after that many seconds."""
        channel = self._channel(params)
        if "on" not in params:
            raise RpcError(-103, "Missing required argument 'on'!")
        if params["on"] not in ("true", "false"):
            raise RpcError(-103, "Argument 'on', type mismatch!")
        was_on = self.outputs[channel]
        self._cancel_timer(channel)
        self.outputs[channel] = params["on"] == "true"
        self.sources[channel] = "HTTP_in"
        if "toggle_after" in params:
            try:
                seconds = float(params["toggle_after"])
            except ValueError:
                raise RpcError(-103, "Argument 'toggle_after', type mismatch!") from None
            if seconds <= 0:
                raise RpcError(-103, "Argument 'toggle_after', value out of range!")
            handle = asyncio.get_running_loop().call_later(seconds, self._flip_back, channel)
            self.timers[channel] = (time.time(), seconds, handle)
        return {"was_on": was_on}

    def switch_get_status(self, params: dict[str, str]) -> dict[str, Any]:
        """Switch.GetStatus: the output, its last source, a running timer, and the metering a plug reports."""
        channel = self._channel(params)
        status: dict[str, Any] = {"id": channel, "source": self.sources[channel], "output": self.outputs[channel]}
        if channel in self.timers:
            started, duration, _ = self.timers[channel]
            status.update(timer_started_at=round(started, 2), timer_duration=duration)
        status.update(apower=4.2 if self.outputs[channel] else 0.0, voltage=230.1, current=0.03 if self.outputs[channel] else 0.0,
                      temperature={"tC": 38.5, "tF": 101.3})
        return status

    def _channel(self, params: dict[str, str]) -> int:
        if "id" not in params:
            raise RpcError(-103, "Missing required argument 'id'!")
        try:
            channel = int(params["id"])
        except ValueError:
            raise RpcError(-103, "Argument 'id', type mismatch!") from None
        if not 0 <= channel < self.channels:
            raise RpcError(-105, f"Argument 'id', value {channel} not found!")
        return channel

    def _flip_back(self, channel: int) -> None:
        self.outputs[channel] = not self.outputs[channel]
        self.sources[channel] = "timer"
        self.timers.pop(channel, None)

    def _cancel_timer(self, channel: int) -> None:
        timer = self.timers.pop(channel, None)
        if timer:
            timer[2].cancel()

    # --- digest authentication (RFC 7616, SHA-256) ----------------------------------------------------------------
    def challenge(self) -> str:
        """A 401's WWW-Authenticate header with a fresh nonce, as a Gen2 device words it."""
        nonce = str(int(time.time()) * 1000 + secrets.randbelow(1000))
        self.nonces.add(nonce)
        return f'Digest qop="auth", realm="{self.device_id}", nonce="{nonce}", algorithm=SHA-256'

    def authorized(self, request: Request) -> bool:
        """Whether the request carries a valid SHA-256 digest response for this device's ha1."""
        if self._ha1 is None:
            return True
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("digest "):
            return False
        fields = {m[1].lower(): m[3] if m[2] is None else m[2] for m in _PARAM_RE.finditer(header[7:])}
        # the uri the client digested must be the one it asked for (no replaying a digest onto another call)
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if (fields.get("username") != USER or fields.get("realm") != self.device_id
                or fields.get("algorithm", "").upper() != "SHA-256" or fields.get("qop") != "auth"
                or fields.get("nonce") not in self.nonces or fields.get("uri") != asked):
            return False
        ha2 = _sha256(f"{request.method}:{fields['uri']}")
        expected = _sha256(f"{self._ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}")
        return hmac.compare_digest(expected, fields.get("response", ""))


def create_app(device: ShellyDevice) -> Starlette:
    """The device's HTTP face: /shelly, and the RPC methods over GET /rpc/<method>?<params>."""
    methods = {"Switch.Set": device.switch_set, "Switch.GetStatus": device.switch_get_status}

    async def shelly(request: Request) -> Response:
        return JSONResponse({"name": None, "id": device.device_id, "mac": device.device_id.rsplit("-", 1)[-1].upper(),
                             "model": "SNPL-00112EU", "gen": 2, "fw_id": "20240625-122245/1.3.3-gbdfd9b3",
                             "ver": "1.3.3", "app": "PlugS", "auth_en": device.auth_enabled,
                             "auth_domain": device.device_id if device.auth_enabled else None})

    async def rpc(request: Request) -> Response:
        method = request.path_params["method"]
        if not device.authorized(request):
            return Response(status_code=401, headers={"WWW-Authenticate": device.challenge()})
        params = dict(request.query_params)
        device.calls.append(" ".join([method, *(f"{k}={v}" for k, v in params.items())]))
        if method not in methods:
            return JSONResponse({"code": 404, "message": f"No handler for {method}"}, status_code=404)
        try:
            return JSONResponse(methods[method](params))
        except RpcError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    return Starlette(routes=[Route("/shelly", shelly), Route("/rpc/{method}", rpc)])


class ShellyServer:
    """An emulated Shelly plug served by uvicorn on 127.0.0.1 (an ephemeral port) in a thread; a context manager."""

    def __init__(self, device: ShellyDevice, host: str = "127.0.0.1", port: int = 0):
        self.device = device
        config = uvicorn.Config(create_app(device), host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="shelly-emulator", daemon=True)

    @property
    def address(self) -> str:
        """`HOST:PORT` the server listens on (what lab_power's `host` takes)."""
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> ShellyServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Shelly emulator did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
