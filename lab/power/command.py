"""The `command` power driver: LAVA-style power commands, given as argument lists and run without a shell.

LAVA's device dictionaries name `power_on_command`, `power_off_command` and `hard_reset_command`; here they are
`on`, `off` and `cycle` (optional: off, `delay` seconds, on), plus `status` (optional: exits 0 and prints `on`
or `off`). A command that exits non-zero, cannot be started or overruns `timeout` fails with its last line of
output; arguments that hold a credential (a vaulted value) are passed as they are and masked in every message.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from lab.errors import PowerError
from lab.inventory import Secret
from lab.power.config import CommandPower


class CommandDriver:
    """A node's power switched by local commands (a relay tool, uhubctl, ssh to a switch, a vendor CLI)."""

    unknown_status = "no status command in lab_power"

    def __init__(self, config: CommandPower):
        self.config = config
        self.label = f"command {Path(str(config.on[0])).name}"
        self._secrets = [a for argv in (config.on, config.off, config.cycle or [], config.status or [])
                         for a in argv if isinstance(a, Secret)]

    def on(self) -> str:
        """Run the `on` command."""
        self._run("on", self.config.on)
        return "on command done"

    def off(self) -> str:
        """Run the `off` command."""
        self._run("off", self.config.off)
        return "off command done"

    def cycle(self) -> str:
        """Run the `cycle` command, or `off`, wait `delay` seconds, run `on`."""
        if self.config.cycle:
            self._run("cycle", self.config.cycle)
            return "cycle command done"
        self._run("off", self.config.off)
        time.sleep(self.config.delay)
        self._run("on", self.config.on)
        return f"off, {self.config.delay:g} s, on"

    def status(self) -> str:
        """`on` or `off` as the `status` command prints it; "unknown" without one."""
        if not self.config.status:
            return "unknown"
        out = self._run("status", self.config.status)
        words = out.split()
        state = words[0].lower() if len(words) == 1 else None
        if state not in ("on", "off"):
            raise PowerError(f"{self.label}: the status command printed {self._mask(_last_line(out))!r}, "
                             "not on or off")
        return state

    def _run(self, which: str, argv: list[str | Secret]) -> str:
        """Run one command (no shell) and return its standard output; PowerError with its last line if it fails."""
        args = [a.reveal() if isinstance(a, Secret) else a for a in argv]
        name = Path(args[0]).name
        try:
            proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                                  timeout=self.config.timeout, check=False)
        except FileNotFoundError:
            raise PowerError(f"{self.label}: the {which} command {name} was not found") from None
        except PermissionError:
            raise PowerError(f"{self.label}: the {which} command {name} cannot be run (permission denied)") from None
        except subprocess.TimeoutExpired:
            raise PowerError(f"{self.label}: the {which} command {name} did not finish within "
                             f"{self.config.timeout:g} s") from None
        except OSError as exc:
            raise PowerError(f"{self.label}: the {which} command {name} cannot be run ({exc.strerror})") from None
        if proc.returncode != 0:
            last = self._mask(_last_line(proc.stderr) or _last_line(proc.stdout))
            raise PowerError(f"{self.label}: the {which} command exited {proc.returncode}"
                             f"{': ' + last if last else ''}")
        return proc.stdout

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = secret.mask(text)
        return text


def _last_line(text: str) -> str:
    """The last non-empty line of a command's output, short (a tool's error is usually its last word)."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:200]
    return ""
