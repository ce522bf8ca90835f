#!/usr/bin/python3
"""Hold a node still for a campaign, and give it back afterwards (stdlib only, Python >= 3.9).

    lab_hold.py hold CAMPAIGN STATE_FILE   hold the kernel, firmware and DKMS packages; mask apt's timers and
                                           unattended-upgrades; note in STATE_FILE what this changed
    lab_hold.py release STATE_FILE         undo exactly what STATE_FILE says was changed, then remove it
    lab_hold.py lock CAMPAIGN WORKDIR OWNER STATE_FILE NEEDS_JSON CONTROLLER
                                           take the node's lab lock WORKDIR/lock for CAMPAIGN (mkdir is atomic),
                                           naming CONTROLLER (user@host pid N) and the time it was taken;
                                           if CAMPAIGN holds it: create WORKDIR/CAMPAIGN (OWNER's, 0700) and the
                                           directories NEEDS_JSON["dirs"] (root's, 0755), hold, and give the
                                           sha256 of each file NEEDS_JSON["files"] names (null: missing); a
                                           file in NEEDS_JSON["root_files"] is made root's, 0755 first;
                                           prints the holder and its controller too
    lab_hold.py unlock CAMPAIGN WORKDIR STATE_FILE
                                           if CAMPAIGN holds the lock and no agent of it still runs a phase:
                                           release, then remove the lock; prints whether it did

A kernel upgrade mid-campaign (unattended-upgrades, the apt timers) changes the system under test and,
without DKMS, removes the Hailo module at the next boot; the campaign's reboots would bring the timers
back, so they are masked (not only stopped) until the campaign ends. Only what was not already held or
masked is changed and later restored: a person's own holds and masks are left alone. The state file is
written before anything changes, so a crash at any point leaves a record `release` can undo (`lab resume`
runs it). Prints one JSON line: {"changed": bool, "held": [...], "masked": [...]}.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

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


def lock_lines(workdir: str) -> list:
    """The lines of the node's lock file: the campaign, then who took the lock and when ([] when unlocked)."""
    try:
        with open(os.path.join(workdir, "lock", "campaign")) as f:
            return f.read().splitlines()
    except OSError:
        return []


def lock_holder(workdir: str) -> str:
    """The campaign named in the node's lock ("" when there is no lock); a lock of an older lab has only it."""
    lines = lock_lines(workdir)
    return lines[0].strip() if lines else ""


def make_dir(path: str, uid: int, gid: int, mode: int) -> None:
    """A directory (and its parents) with this owner and mode, also when it exists already."""
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def user_id(user: str) -> int:
    """A login name's (or a numeric) uid."""
    return int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid


def sha256(path: str):
    """A file's sha256 (None if there is no such file)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def lock(campaign: str, workdir: str, owner: str, state_file: str, needs: dict, controller: str) -> dict:
    """Take the node for a campaign (prepare.yml): the lock, the campaign's directory, the hold.

    One process instead of one Ansible task each (every task is a module run on every node at once): the
    lock is taken only if nobody holds it (a resumed campaign finds its own), and nothing else is touched
    on a node another campaign holds. The checksums let prepare.yml copy only what is missing or different.
    """
    make_dir(workdir, 0, 0, 0o755)
    path = os.path.join(workdir, "lock")
    try:
        os.mkdir(path)
    except FileExistsError:
        pass  # held already: by this campaign (resume) or another, as its campaign file says
    else:
        # a campaign refused here, from any controller, can name who holds the node and since when
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(os.path.join(path, "campaign"), "w") as f:
            f.write(f"{campaign}\n{controller} since {since}\n")
    lines = lock_lines(workdir)
    holder = lines[0].strip() if lines else ""
    taken_by = " ".join(line.strip() for line in lines[1:]).strip()
    if holder != campaign:
        return {"changed": False, "holder": holder, "controller": taken_by, "held": [], "masked": [], "sha256": {}}
    # The controller reads records and artifacts as the login user: the campaign's directory is that user's.
    make_dir(os.path.join(workdir, campaign), user_id(owner), -1, 0o700)
    for directory in needs.get("dirs", ()):
        make_dir(directory, 0, 0, 0o755)
    for path in needs.get("root_files", ()):
        if os.path.isfile(path):  # what a copy with owner root, mode 0755 would leave if the content matches
            os.chown(path, 0, 0)
            os.chmod(path, 0o755)
    sums = {path: sha256(path) for path in needs.get("files", ())}
    return dict(hold(campaign, state_file), holder=holder, controller=taken_by, sha256=sums)


def agent_idle(path: str) -> bool:
    """No agent holds its phase lock at `path` (none ever ran there if it is missing), as `flock --nonblock`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the lock taken here


def unlock(campaign: str, workdir: str, state_file: str) -> dict:
    """Give the node back after a campaign (release.yml), unless another campaign holds it or an agent of
    this one still runs a phase (a node back from a freeze): then it stays locked."""
    if lock_holder(workdir) != campaign or not agent_idle(os.path.join(workdir, campaign, "agent.lock")):
        return {"changed": False, "released": False, "held": [], "masked": []}
    result = release(state_file)
    shutil.rmtree(os.path.join(workdir, "lock"))
    return dict(result, changed=True, released=True)


def main(argv: list) -> int:
    """Command line: hold CAMPAIGN STATE_FILE | release STATE_FILE | lock ... | unlock ..."""
    if len(argv) == 3 and argv[0] == "hold":
        result = hold(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "release":
        result = release(argv[1])
    elif len(argv) == 7 and argv[0] == "lock":
        result = lock(argv[1], argv[2], argv[3], argv[4], json.loads(argv[5]), argv[6])
    elif len(argv) == 4 and argv[0] == "unlock":
        result = unlock(argv[1], argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
