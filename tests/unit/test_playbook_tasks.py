"""lab's own prepare.yml, phase.yml and release.yml on `ansible_connection: local` hosts (a stand-in agent and
stand-in apt-mark/systemctl; no SSH, no fleet): the results, facts and failure messages the engine reads, and
how few tasks each node queues (every task is a worker fork per node on the controller, in one burst)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
from pathlib import Path

import pytest

from lab.ansible import run_playbook

AGENT = """import json, sys, time
spec_path = sys.argv[2]
if "--spec-stdin" in sys.argv:
    data = json.load(sys.stdin)
    with open(spec_path, "w") as fh:
        json.dump(data, fh)
else:
    data = json.load(open(spec_path))
time.sleep(data.get("sleep", 0))
if data.get("rc"):
    print("the agent broke", file=sys.stderr)
    sys.exit(data["rc"])
print(json.dumps({"phase": "soak", "status": "ok", "last_seq": 7, "boot_id": "boot-%s" % data["run_key"]}))
"""
FAKES = {
    "dpkg-query": "#!/bin/sh\nprintf 'linux-image-rpi-2712 installed\\ndkms installed\\n'\n",
    "apt-mark": '#!/bin/sh\necho "apt-mark $*" >> "$LAB_FAKE_LOG"\n',
    "systemctl": '#!/bin/sh\necho "systemctl $*" >> "$LAB_FAKE_LOG"\n[ "$1" = is-enabled ] && echo enabled\nexit 0\n',
}


def inventory(tmp_path: Path, hosts: list[str]) -> Path:
    path = tmp_path / "inventory.yml"
    lines = ["all:", "  vars:", "    ansible_connection: local", f"    ansible_python_interpreter: {sys.executable}",
             "  hosts:"] + [f"    {h}: {{}}" for h in hosts]
    path.write_text("\n".join(lines) + "\n")
    return path


# actions that run on the controller only (no connection to the node, no module run there)
LOCAL = {f"{prefix}{name}" for prefix in ("", "ansible.builtin.")
         for name in ("set_fact", "assert", "fail", "include_tasks", "include_role")}


def run(playbook: str, inv: Path, extravars: dict, remote: dict | None = None) -> tuple[dict, dict[str, int]]:
    """The per-host results, and how many tasks each host queued (ansible-runner's runner_on_start events);
    `remote` counts per host the tasks that ran a module on the node (not skipped, not controller-only)."""
    started: dict[str, int] = {}

    def count(event: dict) -> None:
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_start":
            started[data["host"]] = started.get(data["host"], 0) + 1
        elif event.get("event") in ("runner_on_ok", "runner_on_failed") and remote is not None \
                and data.get("task_action") not in LOCAL:
            remote[data["host"]] = remote.get(data["host"], 0) + 1

    result = run_playbook(playbook, inv, extravars={"ansible_become": False, **extravars}, event_handler=count)
    return result.hosts, started


def spec(key: str, steps: int = 1, **agent) -> dict:
    return {"reboot": False, "purge": False, "stack": None, "reboot_timeout": 60, "timeout": 6, "poll": 1,
            "models": {}, "agent": {"run_key": key, "phase_index": 0, "steps": [{}] * steps, **agent}}


def test_phase_results_facts_and_failure_messages(tmp_path):
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "lab-agent.pyz").write_text(AGENT)
    (tmp_path / "wd" / "c1").mkdir(parents=True)
    (tmp_path / "m1.hef").write_bytes(b"one")
    (tmp_path / "m 2.hef").write_bytes(b"two")  # a path the node's shell must get quoted
    one, two = hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest()
    good = {str(tmp_path / "m1.hef"): one, str(tmp_path / "m 2.hef"): two}
    bad = {str(tmp_path / "m1.hef"): one, str(tmp_path / "m 2.hef"): "0" * 64, str(tmp_path / "gone.hef"): "1" * 64}
    specs = {"ok1": spec("r1"), "rc3": spec("r2", rc=3), "slow": spec("r3", sleep=30), "nosteps": spec("r4", steps=0),
             "okm": dict(spec("r5"), models=good), "badm": dict(spec("r6"), models=bad)}
    hosts, started = run("phase.yml", inventory(tmp_path, list(specs)), {
        "lab_campaign": "c1", "lab_phase_specs": specs, "lab_agent_dir": str(tmp_path / "agent"),
        "lab_agent_workdir": str(tmp_path / "wd"), "lab_wait_seconds": 2})
    assert not hosts["ok1"].failed and hosts["ok1"].facts == {"lab_phase_boot_id": "boot-r1", "lab_agent_last_seq": 7}
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert not hosts["nosteps"].failed and hosts["nosteps"].facts == {"lab_phase_boot_id": boot}
    # async_status's words, under its task's name, as the engine has always reported them
    assert hosts["rc3"].messages == ["Wait for the phase's steps to finish: non-zero return code"]
    assert hosts["slow"].messages == ["Wait for the phase's steps to finish: Timeout exceeded"]
    assert not hosts["okm"].failed and hosts["okm"].facts["lab_agent_last_seq"] == 7
    said = (f"model m 2.hef on badm does not match the controller's (sha256 {two} at {tmp_path}/m 2.hef, the "
            f"controller's is {'0' * 64}); model gone.hef on badm does not match the controller's (sha256 none: the "
            f"file is missing at {tmp_path}/gone.hef, the controller's is {'1' * 64})")
    assert hosts["badm"].messages == [f"Check the models this phase uses: {said[:400]}"]  # lab.ansible keeps 400
    assert not (tmp_path / "wd" / "c1" / "phase-r6-0.json").exists()  # a node with a wrong model never starts
    assert (tmp_path / "wd" / "c1" / "phase-r1-0.json").exists()  # the agent wrote the spec it read on stdin
    # include (skipped), 2 model checks (no models), start, wait, failure check, boot read (skipped), facts
    assert started["ok1"] <= 8 and started["nosteps"] <= 8


@pytest.mark.skipif(os.geteuid() != 0, reason="the lock gives the node's directories to root, as on a node")
def test_prepare_and_release_lock_refuse_and_give_back(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in FAKES.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("LAB_FAKE_LOG", str(tmp_path / "log"))
    model = tmp_path / "m.hef"
    model.write_bytes(b"weights")
    wd = tmp_path / "wd"
    common = {"lab_agent_dir": str(tmp_path / "opt"), "lab_agent_workdir": str(wd),
              "lab_hold_state_file": str(wd / "hold.json"), "lab_controller_user": str(os.getuid()),
              "lab_controller": "ci@ctl pid 7",
              "lab_agent_bundle": str(tmp_path / "agent.pyz"),
              "lab_agent_bundle_sha256": hashlib.sha256(AGENT.encode()).hexdigest(),
              "lab_models": {"m.hef": {"src": str(model), "dest": str(tmp_path / "models" / "abc" / "m.hef"),
                                       "sha256": hashlib.sha256(b"weights").hexdigest()}}}
    (tmp_path / "agent.pyz").write_text(AGENT)
    inv = inventory(tmp_path, ["n1"])

    hosts, started = run("prepare.yml", inv, {"lab_campaign": "c1", **common})
    assert not hosts["n1"].failed and hosts["n1"].facts["lab_lock_holder"] == "c1"
    since = hosts["n1"].facts["lab_lock_controller"]
    assert since.startswith("ci@ctl pid 7 since ")
    assert (tmp_path / "opt" / "lab-agent.pyz").exists() and (tmp_path / "models" / "abc" / "m.hef").exists()
    assert oct((wd / "c1").stat().st_mode & 0o777) == "0o700" and (wd / "hold.json").exists()
    assert started["n1"] <= 8  # lock+hold, holder, refuse, bundle check, agent, model copy, its checksum, check

    remote: dict[str, int] = {}  # `lab resume`, or the next campaign: the agent and the model are in place
    (tmp_path / "opt" / "lab-agent.pyz").chmod(0o600)
    hosts, _ = run("prepare.yml", inv, {"lab_campaign": "c1", **common}, remote)
    assert not hosts["n1"].failed and remote == {"n1": 1}  # the lock alone
    assert oct((tmp_path / "opt" / "lab-agent.pyz").stat().st_mode & 0o777) == "0o755"  # as a copy would leave it

    hosts, started = run("prepare.yml", inv, {"lab_campaign": "c2", **common, "lab_controller": "other@ctl pid 8"})
    assert hosts["n1"].facts == {"lab_lock_holder": "c1", "lab_lock_controller": since}  # the holder's controller
    assert hosts["n1"].messages == [f"Refuse a node another campaign is using: node is in use by campaign c1 "
                                    f"(controller {since}) (lock {wd}/lock); wait for it, or remove the lock if "
                                    f"that campaign is gone"]
    assert not (wd / "c2").exists() and started["n1"] == 3

    with open(wd / "c1" / "agent.lock", "w") as agent:  # an agent of c1 still runs a phase: the node stays locked
        fcntl.flock(agent, fcntl.LOCK_EX)
        hosts, started = run("release.yml", inv, {"lab_campaign": "c1", **common})
    assert not hosts["n1"].failed and (wd / "lock").exists() and started["n1"] == 1
    run("release.yml", inv, {"lab_campaign": "c2", **common})  # not c2's to release
    assert (wd / "lock").exists()
    hosts, _ = run("release.yml", inv, {"lab_campaign": "c1", **common})
    assert not hosts["n1"].failed and not (wd / "lock").exists() and not (wd / "hold.json").exists()
    assert "apt-mark unhold dkms linux-image-rpi-2712" in (tmp_path / "log").read_text()
