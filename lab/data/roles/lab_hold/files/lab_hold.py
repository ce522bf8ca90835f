#!/usr/bin/python3
"""Hold a node still for a campaign, and give it back afterwards (stdlib only, Python >= 3.9).

    lab_hold.py hold CAMPAIGN STATE_FILE   hold the kernel, firmware and DKMS packages; mask apt's timers and
                                           unattended-upgrades; note in STATE_FILE what this changed
    lab_hold.py release STATE_FILE         undo exactly what STATE_FILE says was changed, then remove it

A kernel upgrade mid-campaign (unattended-upgrades, the apt timers) changes the system under test and,
without DKMS, removes the Hailo module at the next boot; the campaign's reboots would bring the timers
back, so they are masked (not only stopped) until the campaign ends. Only what was not already held or
masked is changed and later restored: a person's own holds and masks are left alone. The state file is
written before anything changes, so a crash at any point leaves a record `release` can undo (`lab resume`
runs it). Prints one JSON line: {"changed": bool, "held": [...], "masked": [...]}.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

# Kernel, boot firmware and DKMS (Raspberry Pi OS names; whichever are installed are held). The Hailo
# packages are the hailo_stack role's: it holds each stack it installs, campaign or not.
HOLD_PATTERNS = (
    r"linux-image-.*", r"linux-headers-.*", r"linux-kbuild-.*", r"raspberrypi-kernel.*", r"raspberrypi-bootloader",
    r"raspi-firmware", r"rpi-eeprom", r"linux-firmware-raspi.*", r"dkms",
)
# What upgrades packages behind a campaign's back.
UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "unattended-upgrades.service")


def run(argv: list) -> subprocess.CompletedProcess:
    """A command's output (never a shell)."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def installed_packages() -> list:
    """Names of the installed packages."""
    out = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.endswith(" installed")]


def held_packages() -> set:
    """Packages already on hold."""
    return set(run(["apt-mark", "showhold"]).stdout.split())


def unit_state(unit: str) -> str:
    """`systemctl is-enabled` of a unit: enabled, disabled, static, masked, ... or not-found."""
    out = run(["systemctl", "is-enabled", unit])
    return (out.stdout.strip() or "not-found").splitlines()[0]


def to_hold(packages: list) -> list:
    """The installed packages that must not change during a campaign."""
    return sorted(p for p in packages if any(re.fullmatch(pat, p) for pat in HOLD_PATTERNS))


def write_state(path: str, state: dict) -> None:
    """Write the state file atomically (a crash leaves the old file or the new one, never half)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def hold(campaign: str, state_file: str) -> dict:
    """Hold and mask what is not held or masked yet; a state file left by an earlier attempt is kept."""
    if os.path.exists(state_file):
        with open(state_file) as f:
            state = json.load(f)  # resuming: what to restore was noted by the first attempt
        changed = False
    else:
        already = held_packages()
        state = {"campaign": campaign,
                 "held": [p for p in to_hold(installed_packages()) if p not in already],
                 "masked": [u for u in UNITS if unit_state(u) not in ("masked", "masked-runtime", "not-found")]}
        write_state(state_file, state)
        changed = bool(state["held"] or state["masked"])
    if state["held"]:
        run(["apt-mark", "hold", *state["held"]])
    for unit in state["masked"]:
        run(["systemctl", "mask", "--now", unit])
    return {"changed": changed, "held": state["held"], "masked": state["masked"]}


def release(state_file: str) -> dict:
    """Undo what the state file says this campaign changed, then remove the file."""
    if not os.path.exists(state_file):
        return {"changed": False, "held": [], "masked": []}
    with open(state_file) as f:
        state = json.load(f)
    present = set(installed_packages())
    still = [p for p in state["held"] if p in present]
    if still:
        run(["apt-mark", "unhold", *still])
    for unit in state["masked"]:
        run(["systemctl", "unmask", unit])
        if unit.endswith(".timer"):
            run(["systemctl", "start", unit])
    os.unlink(state_file)
    return {"changed": True, "held": state["held"], "masked": state["masked"]}


def main(argv: list) -> int:
    """Command line: hold CAMPAIGN STATE_FILE | release STATE_FILE."""
    if len(argv) == 3 and argv[0] == "hold":
        result = hold(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "release":
        result = release(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
