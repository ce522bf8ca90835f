"""The lab_hold role's script: a campaign holds kernel, firmware and DKMS and masks the apt timers, and gives
back exactly what it changed, also when the campaign crashed and `lab resume` releases it later."""

from __future__ import annotations

import hashlib
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "lab/data/roles/lab_hold/files/lab_hold.py"

# A Pi's packages (dpkg-query) and units (systemctl is-enabled), as stand-in commands that log their calls.
FAKES = {
    "dpkg-query": """#!/bin/sh
cat <<'EOF'
linux-image-6.12.47+rpt-rpi-2712 installed
linux-image-rpi-2712 installed
linux-headers-rpi-2712 installed
raspi-firmware installed
rpi-eeprom installed
dkms installed
h10-hailort installed
bash installed
linux-image-6.6.51+rpt-rpi-2712 config-files
EOF
""",
    "apt-mark": """#!/bin/sh
echo "apt-mark $*" >> "$LAB_FAKE_LOG"
[ "$1" = showhold ] && cat "$LAB_FAKE_HOLDS"
exit 0
""",
    "systemctl": """#!/bin/sh
echo "systemctl $*" >> "$LAB_FAKE_LOG"
if [ "$1" = is-enabled ]; then
  case "$2" in apt-daily.timer) echo enabled;; apt-daily-upgrade.timer) echo masked;;
  unattended-upgrades.service) echo enabled;; esac
fi
exit 0
""",
}


@pytest.fixture
def node(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in FAKES.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    (tmp_path / "holds").write_text("rpi-eeprom\n")  # a person's own hold, left alone
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("LAB_FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("LAB_FAKE_HOLDS", str(tmp_path / "holds"))
    return tmp_path


def lab_hold(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def calls(node: Path, verb: str) -> list[str]:
    return [line for line in (node / "log").read_text().splitlines() if line.split()[1] in (verb,)]


def test_hold_changes_only_what_was_not_held_or_masked(node):
    state = node / "hold.json"
    got = lab_hold("hold", "c1", str(state))
    assert got == {"changed": True, "masked": ["apt-daily.timer", "unattended-upgrades.service"],
                   "held": ["dkms", "linux-headers-rpi-2712", "linux-image-6.12.47+rpt-rpi-2712",
                            "linux-image-rpi-2712", "raspi-firmware"]}
    assert calls(node, "hold") == ["apt-mark hold dkms linux-headers-rpi-2712 linux-image-6.12.47+rpt-rpi-2712 "
                                   "linux-image-rpi-2712 raspi-firmware"]
    assert calls(node, "mask") == ["systemctl mask --now apt-daily.timer",
                                   "systemctl mask --now unattended-upgrades.service"]
    assert json.loads(state.read_text())["campaign"] == "c1"


def test_a_second_hold_keeps_what_the_first_noted(node):
    state = node / "hold.json"
    first = lab_hold("hold", "c1", str(state))
    (node / "holds").write_text("rpi-eeprom\ndkms\nraspi-firmware\n")  # now held: by the first attempt
    again = lab_hold("hold", "c1", str(state))  # `lab resume` prepares again
    assert again["changed"] is False and again["held"] == first["held"]  # what to give back is unchanged


def test_release_gives_back_exactly_what_was_changed(node):
    state = node / "hold.json"
    lab_hold("hold", "c1", str(state))
    (node / "log").write_text("")
    got = lab_hold("release", str(state))
    assert got["changed"] is True and not state.exists()
    assert calls(node, "unhold") == ["apt-mark unhold dkms linux-headers-rpi-2712 linux-image-6.12.47+rpt-rpi-2712 "
                                     "linux-image-rpi-2712 raspi-firmware"]  # never rpi-eeprom, the person's
    assert calls(node, "unmask") == ["systemctl unmask apt-daily.timer", "systemctl unmask unattended-upgrades.service"]
    assert calls(node, "start") == ["systemctl start apt-daily.timer"]
    assert lab_hold("release", str(state)) == {"changed": False, "held": [], "masked": []}


# ---- lock / unlock: prepare.yml's and release.yml's one module run per node ----

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="lock gives directories to root, as on a node")


def lock(node: Path, campaign: str, *dirs: str, files: tuple = (), controller: str = "ci@ctl pid 7") -> dict:
    return lab_hold("lock", campaign, str(node / "wd"), str(os.getuid()), str(node / "wd" / "hold.json"),
                    json.dumps({"dirs": list(dirs), "files": list(files)}), controller)


@needs_root
def test_lock_takes_a_free_node_then_makes_the_campaigns_directories_and_holds(node):
    (node / "m.hef").write_bytes(b"weights")
    got = lock(node, "c1", str(node / "opt" / "agent"), str(node / "models" / "abc"),
               files=(str(node / "m.hef"), str(node / "missing.hef")))
    assert got["holder"] == "c1" and got["changed"] is True and got["held"]
    # what prepare.yml then copies: only what is missing or different
    assert got["sha256"] == {str(node / "m.hef"): hashlib.sha256(b"weights").hexdigest(), str(node / "missing.hef"): None}
    first, second = (node / "wd" / "lock" / "campaign").read_text().splitlines()
    assert first == "c1" and re.fullmatch(r"ci@ctl pid 7 since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", second)
    assert got["controller"] == second
    assert oct((node / "wd" / "c1").stat().st_mode & 0o777) == "0o700"
    assert oct((node / "wd").stat().st_mode & 0o777) == oct((node / "models" / "abc").stat().st_mode & 0o777) == "0o755"
    assert (node / "opt" / "agent").is_dir() and calls(node, "hold")
    again = lock(node, "c1")  # `lab resume` prepares again: its own lock, what to give back unchanged
    assert again["holder"] == "c1" and again["changed"] is False and again["held"] == got["held"]


@needs_root
def test_lock_held_by_another_campaign_names_it_and_touches_nothing(node):
    lock(node, "c0", controller="a@rack1 pid 12")
    (node / "log").write_text("")
    got = lock(node, "c1", str(node / "models" / "abc"), controller="b@rack2 pid 34")
    assert got.pop("controller").startswith("a@rack1 pid 12 since ")  # the holder's controller, not this one
    assert got == {"changed": False, "holder": "c0", "held": [], "masked": [], "sha256": {}}
    assert not (node / "wd" / "c1").exists() and not (node / "models").exists()
    assert (node / "log").read_text() == ""  # no hold, no mask


@needs_root
def test_a_lock_of_an_older_lab_names_its_campaign_only(node):
    (node / "wd" / "lock").mkdir(parents=True)
    (node / "wd" / "lock" / "campaign").write_text("c0\n")
    got = lock(node, "c1")
    assert got["holder"] == "c0" and got["controller"] == ""
    assert lab_hold("unlock", "c0", str(node / "wd"), str(node / "wd" / "hold.json"))["released"] is True


@needs_root
def test_unlock_releases_only_this_campaigns_idle_node(node):
    import fcntl
    lock(node, "c1")
    assert lab_hold("unlock", "c2", str(node / "wd"), str(node / "wd" / "hold.json"))["released"] is False
    with open(node / "wd" / "c1" / "agent.lock", "w") as agent:  # an agent still runs a phase of c1
        fcntl.flock(agent, fcntl.LOCK_EX)
        assert lab_hold("unlock", "c1", str(node / "wd"), str(node / "wd" / "hold.json"))["released"] is False
    assert (node / "wd" / "lock").exists() and (node / "wd" / "hold.json").exists()
    got = lab_hold("unlock", "c1", str(node / "wd"), str(node / "wd" / "hold.json"))
    assert got["released"] is True and calls(node, "unhold")
    assert not (node / "wd" / "lock").exists() and not (node / "wd" / "hold.json").exists()
    assert lab_hold("unlock", "c1", str(node / "wd"), str(node / "wd" / "hold.json"))["released"] is False
