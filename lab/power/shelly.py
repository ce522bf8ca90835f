"""The `shelly` power driver: a Shelly Gen2+ smart plug or relay, over its HTTP RPC.

Shelly's Gen2 API (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch): `GET
/rpc/Switch.Set?id=N&on=true|false[&toggle_after=S]` answers `{"was_on": bool}`; `GET /rpc/Switch.GetStatus?id=N`
answers the switch's status, `output` telling whether it is on. With a password set, every request but `/shelly`
needs HTTP digest authentication with SHA-256 (RFC 7616; https://shelly-api-docs.shelly.cloud/gen2/General/
Authentication): the 401 challenge is `Digest qop="auth", realm="<device id>", nonce=..., algorithm=SHA-256`,
and the user is always `admin`. httpx's DigestAuth answers it.

A cycle is `Switch.Set on=false toggle_after=delay`: the plug itself switches back on, so a controller that
dies mid-cycle does not leave the node off; lab then waits until the plug reports the output on again.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from lab.errors import PowerError
from lab.power.config import ShellyPower

POLL_SECONDS = 0.5


class ShellyDriver:
    """One switch channel of a Shelly Gen2+ device (Plus Plug S, Plus 1, Pro 4PM, ...)."""

    unknown_status = "the plug did not report its output"

    def __init__(self, config: ShellyPower):
        self.config = config
        self.label = f"shelly {config.host} switch {config.channel}"
        self._auth = (httpx.DigestAuth(config.user, config.password.reveal()) if config.password is not None
                      else None)

    def on(self) -> str:
        """Switch the channel on."""
        was_on = self._rpc("Switch.Set", on="true").get("was_on")
        return f"switched on{_was(was_on)}"

    def off(self) -> str:
        """Switch the channel off."""
        was_on = self._rpc("Switch.Set", on="false").get("was_on")
        return f"switched off{_was(was_on)}"

    def cycle(self) -> str:
        """Off with the plug's own flip-back timer (`toggle_after`), then wait until it reports on again."""
        delay = self.config.delay
        self._rpc("Switch.Set", on="false", toggle_after=f"{delay:g}")
        time.sleep(delay)
        deadline = time.monotonic() + self.config.timeout
        while self.status() != "on":
            if time.monotonic() > deadline:
                raise PowerError(f"{self.label}: still off {delay + self.config.timeout:g} s after a "
                                 f"{delay:g} s cycle (toggle_after)")
            time.sleep(POLL_SECONDS)
        return f"off {delay:g} s (toggle_after), on again"

    def status(self) -> str:
        """`on` or `off` from Switch.GetStatus's `output`."""
        output = self._rpc("Switch.GetStatus").get("output")
        if not isinstance(output, bool):
            return "unknown"
        return "on" if output else "off"

    def _rpc(self, method: str, **params: Any) -> dict:
        """One RPC over HTTP GET; its JSON result, or PowerError with the device's own error message."""
        cfg = self.config
        url = f"http://{cfg.host}/rpc/{method}"
        try:
            response = httpx.get(url, params={"id": cfg.channel, **params}, auth=self._auth, timeout=cfg.timeout)
        except httpx.ConnectError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
            raise PowerError(f"{self.label} does not answer ({reason})") from None
        except httpx.TimeoutException:
            raise PowerError(f"{self.label} did not answer within {cfg.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise PowerError(f"{self.label}: {type(exc).__name__}") from None
        if response.status_code == 401:
            hint = "check user and password in lab_power" if self._auth else "the plug has a password: add one"
            raise PowerError(f"{self.label} refused {method}: authentication failed (HTTP 401), {hint}")
        body = _json(response)
        if response.status_code != 200:
            message = body.get("message") if isinstance(body.get("message"), str) else response.reason_phrase
            code = f" (code {body['code']})" if "code" in body else ""
            raise PowerError(f"{self.label} refused {method}: HTTP {response.status_code} {message}{code}")
        return body


def _json(response: httpx.Response) -> dict:
    """The response's JSON object, or an empty one (a 401 has no body; a proxy may answer HTML)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _was(was_on: Any) -> str:
    if not isinstance(was_on, bool):
        return ""
    return " (was on)" if was_on else " (was off)"
