"""The `pdudaemon` power driver: a PDU outlet switched through a running pdudaemon's HTTP API.

pdudaemon (LAVA's PDU daemon; Debian package `pdudaemon`) serves
`GET /power/control/{on,off,reboot}?hostname=PDU&port=N[&delay=S]` and drives some forty PDUs, SNMP ones and
smart plugs among them. `200 OK - accepted request` means the daemon took the request: Debian's 0.0.8 answers
only after its driver ran (a reboot: off, `delay` seconds, on), yet answers 200 even when the driver still failed
after its retries; so lab reports "request queued" (accepted), not "done". 500 means it refused the request
(an unknown PDU, a bad port). pdudaemon has no status request.
"""

from __future__ import annotations

import httpx

from lab.errors import PowerError
from lab.power.config import PdudaemonPower

# pdudaemon's names for the three requests it serves
REQUESTS = {"on": "on", "off": "off", "cycle": "reboot"}


class PdudaemonDriver:
    """One PDU outlet behind a pdudaemon HTTP listener."""

    unknown_status = "pdudaemon has no status request"

    def __init__(self, config: PdudaemonPower):
        self.config = config
        self.label = f"pdudaemon {config.daemon} {config.pdu} port {config.port}"

    def on(self) -> str:
        """Ask the daemon to switch the outlet on."""
        return self._request("on")

    def off(self) -> str:
        """Ask the daemon to switch the outlet off."""
        return self._request("off")

    def cycle(self) -> str:
        """Ask the daemon for a reboot: off, `delay` seconds, on (the daemon waits, not lab)."""
        return self._request("cycle")

    def status(self) -> str:
        """Always "unknown": pdudaemon cannot tell whether an outlet is on."""
        return "unknown"

    def _request(self, action: str) -> str:
        cfg = self.config
        params: dict[str, str | int] = {"hostname": cfg.pdu, "port": cfg.port}
        # Debian's pdudaemon answers a reboot only after the delay: the client waits that long on top
        timeout = cfg.timeout
        if action == "cycle":
            params["delay"] = cfg.delay
            timeout += cfg.delay
        url = f"http://{cfg.daemon}/power/control/{REQUESTS[action]}"
        try:
            response = httpx.get(url, params=params, timeout=timeout)
        except httpx.ConnectError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else _one_line(exc) or "cannot connect"
            raise PowerError(f"pdudaemon {cfg.daemon} does not answer ({reason})") from None
        except httpx.TimeoutException:
            raise PowerError(f"pdudaemon {cfg.daemon} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise PowerError(f"pdudaemon {cfg.daemon}: {_one_line(exc) or type(exc).__name__}") from None
        if response.status_code != 200:
            body = _one_line(response.text)
            raise PowerError(f"pdudaemon {cfg.daemon} refused {REQUESTS[action]} of {cfg.pdu} port {cfg.port}: "
                             f"HTTP {response.status_code}{' ' + body if body else ''}")
        return "request queued"


def _one_line(text: object) -> str:
    """The first non-empty line of a message or body, short."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:160]
    return ""
