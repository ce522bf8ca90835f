"""Execution nodes, controller side: the inventory's executors, what travels to one (inventory subset, extravars,
cached files), ssh through one (quoting of both hops), a lost executor's runs, the store's run.executor.

No SSH and no fleet: the worker of a "remote" group is a real local `ansible-runner worker` (hosts use
ansible_connection=local), the nested ssh is run by a stand-in `ssh` that does what ssh does with its remote
words (hands them to `sh -c`, joined by spaces), and the cache scripts run in a real `sh`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from lab.ansible import local_worker
from lab.cli import main
from lab.engine.campaign import Ports, resume_campaign, run_campaign
from lab.engine.memory import MemoryFleet, MemoryStore, measuring_node
from lab.engine.plan import plan_campaign
from lab.engine.state import NodeResult, PhaseClosed
from lab.errors import InventoryError
from lab.inventory import Host, Secret, load
from lab import remote_executor
from lab.remote_executor import (StreamingExecutor, cache_path, controller_files, executor_extravars, file_digest,
                                 job_timeout, rewrite_files, subset_inventory, travelling_vars)
from lab.ssh import Masters, run_on_hosts, ssh_argv, stale_workers_cleanup, via_argv, worker_argv

RACK = """\
all:
  children:
    lab_executors:
      hosts:
        exec1:
          ansible_host: 127.77.182.201
          ansible_user: root
          ansible_ssh_private_key_file: /ctl/keys/exec
          ansible_ssh_common_args: "-o UserKnownHostsFile=/ctl/known_hosts -o StrictHostKeyChecking=yes"
        exec2:
          ansible_host: 127.77.182.202
          lab_runner: /opt/lab runner/bin/ansible-runner
    hailo:
      vars:
        lab_chip: hailo10h
        lab_hailo_sources: [archive]
      children:
        rack1:
          vars:
            lab_executor: exec1
          hosts:
            node1:
              ansible_host: 127.77.182.1
              ansible_user: pi
              ansible_ssh_private_key_file: /root/.ssh/lab nodes
              ansible_ssh_common_args: "-o UserKnownHostsFile=/root/.ssh/lab_known_hosts -o StrictHostKeyChecking=yes"
              lab_power: {driver: shelly, host: 192.0.2.50, password: hunter2}
            node2: {ansible_host: 127.77.182.2}
        rack2:
          vars:
            lab_executor: exec2
          hosts:
            node3: {ansible_host: 127.77.182.3}
        local:
          hosts:
            node4: {ansible_host: 127.77.182.4}
"""


@pytest.fixture
def rack(tmp_path):
    path = tmp_path / "rack.yml"
    path.write_text(RACK)
    return load(str(path))


# ---- the inventory ------------------------------------------------------------------------------

def test_executors_are_apart_from_the_nodes_and_never_selected(rack):
    assert list(rack.hosts) == ["node1", "node2", "node3", "node4"]
    assert list(rack.executors) == ["exec1", "exec2"]
    assert [h.name for h in rack.select()] == ["node1", "node2", "node3", "node4"]
    assert "lab_executors" not in rack.groups and rack.groups["rack1"] == ["node1", "node2"]
    assert [rack.hosts[n].executor for n in rack.hosts] == ["exec1", "exec1", "exec2", None]
    assert rack.hosts["node1"].via is rack.executors["exec1"]
    with pytest.raises(InventoryError, match="neither a host nor a group"):
        rack.select("exec1")


def test_a_node_naming_no_executor_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yml"
    path.write_text(RACK.replace("lab_executor: exec2", "lab_executor: exec9"))
    assert main(["nodes", "--inventory", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"lab: error: host node3 has lab_executor 'exec9', which is not a host of lab_executors, {path}, "
                   "name one of its execution nodes (exec1, exec2)\n")


def test_a_plan_never_runs_on_an_executor(rack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SCENARIO)
    plan = plan_campaign(tmp_path / "s.yaml", str(rack.source))
    assert plan.nodes == ["node1", "node2", "node3", "node4"]


# ---- what travels ---------------------------------------------------------------------------------

def test_the_subset_inventory_holds_only_the_executors_nodes_without_controller_only_vars(rack):
    doc = subset_inventory(rack, ["node1", "node2"])
    text = yaml.safe_dump(doc)
    assert set(doc["all"]["hosts"]) == {"node1", "node2"} and "node3" not in text and "exec1" not in text
    node1 = doc["all"]["hosts"]["node1"]
    assert node1["ansible_ssh_private_key_file"] == "/root/.ssh/lab nodes" and node1["lab_chip"] == "hailo10h"
    assert "lab_power" not in node1 and "lab_executor" not in node1 and "hunter2" not in text
    assert not {"groups", "group_names", "inventory_file", "inventory_dir", "playbook_dir"} & set(node1)
    assert doc["all"]["children"] == {"hailo": {"hosts": {"node1": None, "node2": None}},
                                      "rack1": {"hosts": {"node1": None, "node2": None}}}
    # what is written is an inventory Ansible reads back with the same variables
    path = Path(tempfile.mkdtemp()) / "hosts.yml"
    path.write_text(text)
    again = load(str(path))
    assert again.hosts["node1"].vars["ansible_user"] == "pi" and again.executors == {}


def test_no_value_holding_a_secret_travels():
    host = Host("n", "a", {"lab_x": {"token": Secret("s3cret")}, "lab_y": [1, Secret("p")], "lab_z": "plain"})
    assert travelling_vars(host) == {"lab_z": "plain"}


def test_controller_files_are_found_cached_by_content_and_rewritten(tmp_path):
    bundle = tmp_path / "lab-agent.pyz"
    bundle.write_bytes(b"agent")
    model = tmp_path / "m.hef"
    model.write_bytes(b"model")
    deb = tmp_path / "hailort_4.20.0_arm64.deb"
    deb.write_bytes(b"deb")
    extravars = {"lab_campaign": "c", "lab_agent_bundle": str(bundle), "lab_controller_user": "me",
                 "lab_models": {"m": {"src": str(model), "dest": "/var/lib/lab/models/x.hef", "sha256": "x"}},
                 "lab_phase_specs": {"node1": {"stack": {"install": {"kind": "files", "debs": [str(deb)], "wheels": []}},
                                               "agent": {"src": "/proc/uptime"}},
                                     "node3": {"stack": {}}}}
    assert controller_files(extravars) == [str(bundle), str(model), str(deb)]  # /proc/uptime: not a file key's file
    where = {str(p): f"/root/{cache_path(file_digest(str(p)), p.name)}" for p in (bundle, model, deb)}
    out = rewrite_files(executor_extravars(extravars, Host("exec1", "x", {"ansible_user": "root"}), ["node1"]), where)
    assert out["lab_agent_bundle"] == where[str(bundle)]
    assert out["lab_models"]["m"] == {"src": where[str(model)], "dest": "/var/lib/lab/models/x.hef", "sha256": "x"}
    assert list(out["lab_phase_specs"]) == ["node1"]  # only its own nodes' specs
    assert out["lab_phase_specs"]["node1"]["stack"]["install"]["debs"] == [where[str(deb)]]
    assert out["lab_controller_user"] == "root"  # the reads log in from the executor, as its user
    assert cache_path(file_digest(str(deb)), deb.name) == f".cache/lab/files/{hashlib.sha256(b'deb').hexdigest()}/{deb.name}"


def test_a_workers_job_timeout_covers_the_longest_phase_two_reboots_and_provisioning():
    specs = {"a": {"timeout": 900, "reboot_timeout": 300}, "b": {"timeout": 60, "reboot_timeout": 300}}
    assert job_timeout({"lab_phase_specs": specs}) == 900 + 600 + 3600
    assert job_timeout({"lab_campaign": "c"}) is None  # prepare, release: no phase, no job timeout


def test_the_cache_scripts_copy_only_missing_files_through_a_tmp_name(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    wanted = [cache_path("aa", "one.deb"), cache_path("bb", "two words.whl")]
    (home / wanted[0]).parent.mkdir(parents=True)
    (home / wanted[0]).write_bytes(b"there")

    def sh(script, *args, stdin=None):
        return subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, env=env, input=stdin,
                              cwd=tmp_path, check=True).stdout.decode()

    assert sh(remote_executor._MISSING, *wanted).splitlines() == [str(home), wanted[1]]
    sh(remote_executor._PUT, wanted[1], stdin=b"wheel")
    assert (home / wanted[1]).read_bytes() == b"wheel" and not (home / f"{wanted[1]}.tmp").exists()
    assert sh(remote_executor._MISSING, *wanted).splitlines() == [str(home)]


# ---- ssh through an executor ------------------------------------------------------------------------

# A stand-in for OpenSSH that does what ssh does with a command: skip the options and the destination, join the
# remaining words with spaces and give them to the remote user's shell (here: sh -c, on this machine).
FAKE_SSH = r'''#!/usr/bin/env python3
import os, sys
args, i = sys.argv[1:], 0
while i < len(args) and args[i].startswith("-"):
    i += 2 if args[i] in ("-o", "-p", "-i", "-l", "-F", "-J") else 1
os.execvp("sh", ["sh", "-c", " ".join(args[i + 1:])])
'''

AWKWARD = ["plain", "two words", "it's", '"double"', "$HOME", "`id`", "a;b", "a|b", "*", "~", "back\\slash",
           "new\nline", "", "-n", "--", "tab\there", "{a,b}", "!x", "%C", "ünï"]


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").write_text(FAKE_SSH)
    (bindir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")  # no ansible-runner here: this venv's is not on PATH


def test_via_argv_runs_awkward_arguments_unchanged_on_the_node(rack, fake_ssh):
    printf = ["printf", "[%s]\\n", *AWKWARD]
    argv = via_argv(rack.executors["exec1"], rack.hosts["node1"], [shlex.join(printf)])
    out = subprocess.run(argv, capture_output=True, check=True).stdout.decode()
    assert out == "".join(f"[{a}]\n" for a in AWKWARD)
    # the same through Masters (what the collector uses): both hops, the node's options on the inner one
    masters = Masters([rack.hosts["node1"], rack.hosts["node2"]])
    try:
        assert subprocess.run(masters.argv(rack.hosts["node1"], printf), capture_output=True,
                              check=True).stdout.decode() == out
    finally:
        masters.directory and Path(masters.directory).rmdir()


def test_the_inner_ssh_uses_the_nodes_own_options_and_the_outer_the_executors(rack):
    argv = ssh_argv(rack.hosts["node1"], "tail -c +1 f", node_master=True)
    inner = shlex.split(argv[-1])
    assert argv[:argv.index("root@127.77.182.201")] == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=2", "-i", "/ctl/keys/exec", "-o", "UserKnownHostsFile=/ctl/known_hosts",
        "-o", "StrictHostKeyChecking=yes"]
    assert inner == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                     "-o", "ServerAliveCountMax=2", "-o", "ControlMaster=auto", "-o",
                     "ControlPath=~/.cache/lab/cp/%C", "-o", "ControlPersist=60", "-i", "/root/.ssh/lab nodes",
                     "-o", "UserKnownHostsFile=/root/.ssh/lab_known_hosts", "-o", "StrictHostKeyChecking=yes",
                     "pi@127.77.182.1", "tail -c +1 f"]
    assert ssh_argv(rack.hosts["node4"], "true")[-2:] == ["127.77.182.4", "true"]  # no executor: direct


def test_the_worker_command_and_a_venv_runner(rack):
    argv = worker_argv(rack.executors["exec2"], "/var/tmp/lab-runner/phase-1", 15)
    assert argv[:2] == ["ssh", "-T"] and argv[-2] == "127.77.182.202"
    assert argv[-1] == ("mkdir -p /var/tmp/lab-runner && { PATH='/opt/lab runner/bin':\"$PATH\" flock -o "
                        "/var/tmp/lab-runner/phase-1.lock '/opt/lab runner/bin/ansible-runner' worker "
                        "--private-data-dir /var/tmp/lab-runner/phase-1 --delete --keepalive-seconds 15; rc=$?; "
                        "rm -f -- /var/tmp/lab-runner/phase-1.lock; exit $rc; }")
    assert worker_argv(rack.executors["exec1"], "/x/d", 15)[-1] == (
        "mkdir -p /x && { flock -o /x/d.lock ansible-runner worker --private-data-dir /x/d --delete "
        "--keepalive-seconds 15; rc=$?; rm -f -- /x/d.lock; exit $rc; }")


def test_a_dead_workers_directory_is_removed_and_a_running_ones_is_kept(tmp_path):
    """The cleanup line run in a real shell with util-linux's flock: a lock someone holds keeps its directory."""
    runner = tmp_path / "lab-runner"
    for job in ("dead", "running"):
        (runner / job / "artifacts").mkdir(parents=True)
        (runner / f"{job}.lock").touch()
    (runner / "no-lock").mkdir()  # not a worker's (no lock): left alone
    holder = subprocess.Popen(["flock", str(runner / "running.lock"), "sleep", "30"])
    try:
        for _ in range(100):  # until flock holds it
            if subprocess.run(["flock", "-n", str(runner / "running.lock"), "true"]).returncode != 0:
                break
            time.sleep(0.05)
        done = subprocess.run(["sh", "-c", stale_workers_cleanup(str(runner))], capture_output=True, text=True)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in runner.iterdir()) == ["no-lock", "running", "running.lock"]
    assert subprocess.run(["sh", "-c", stale_workers_cleanup(str(tmp_path / "none"))]).returncode == 0


def test_lab_exec_and_nodes_reach_a_node_through_its_executor(rack, fake_ssh):
    res = run_on_hosts([rack.hosts["node1"]], "printf '%s' \"$0\"; echo ' ok'", timeout=10)[0]
    assert (res.rc, res.stdout, res.error) == (0, "sh ok\n", None)
    failing = run_on_hosts([rack.hosts["node2"]], "echo 'ssh: connect to host x port 22: refused' >&2; exit 255", 10)[0]
    assert failing.rc is None and failing.error == (
        "unreachable through executor exec1: ssh: connect to host x port 22: refused")


# ---- the adapter: one thread per executor, a lost one --------------------------------------------

PLAYS = """\
- name: What each group sees
  hosts: all
  gather_facts: false
  tasks:
    - name: Report
      ansible.builtin.set_fact:
        lab_specs_seen: "{{ lab_phase_specs.keys() | list | sort }}"
        lab_power_seen: "{{ lab_power is defined }}"
"""


def local_inventory(tmp_path: Path) -> Path:
    local = f"ansible_connection: local, ansible_python_interpreter: {sys.executable}"
    path = tmp_path / "hosts.yml"
    path.write_text(textwrap.dedent(f"""\
        all:
          children:
            lab_executors:
              hosts:
                exec1: {{ansible_host: 127.0.0.1}}
                exec2: {{ansible_host: 127.0.0.1}}
            far:
              vars: {{lab_executor: exec1}}
              hosts:
                alpha: {{{local}, lab_power: {{driver: command, on: [/bin/true], off: [/bin/true]}}}}
                beta: {{{local}}}
            gone:
              vars: {{lab_executor: exec2}}
              hosts:
                gamma: {{{local}}}
            near:
              hosts:
                delta: {{{local}, lab_power: {{driver: command, on: [/bin/true], off: [/bin/true]}}}}
        """))
    return path


def test_each_executor_runs_its_own_nodes_and_a_lost_one_loses_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    inv = load(str(local_inventory(tmp_path)))
    playbook = tmp_path / "plays.yml"
    playbook.write_text(PLAYS)
    started = []

    def worker(executor, job, keepalive):  # exec1: a real worker here; exec2: a "worker" whose ssh dies
        started.append((executor.name, job.rsplit("-", 1)[0], keepalive))
        if executor.name == "exec2":
            return ["sh", "-c", "echo 'ssh: connect to host exec2: Connection refused' >&2; exit 255"]
        argv, env = local_worker(keepalive_seconds=1, private_data_dir=tmp_path / f"w-{len(started)}")
        return ["env", f"PATH={env['PATH']}", *argv]

    monkeypatch.setattr(remote_executor, "worker_argv", worker)
    specs = {n: {"n": n} for n in ("alpha", "beta", "gamma", "delta")}
    result = StreamingExecutor(keepalive_seconds=1, idle_timeout=30).play(
        str(playbook), inv, ["alpha", "beta", "gamma", "delta"], {"lab_phase_specs": specs})
    assert sorted(started) == [("exec1", "/var/tmp/lab-runner/plays", 1), ("exec2", "/var/tmp/lab-runner/plays", 1)]
    facts = {h: (r.facts.get("lab_specs_seen"), r.facts.get("lab_power_seen")) for h, r in result.hosts.items()}
    # exec1's nodes saw only their own specs and no power driver; the controller's node saw everything
    assert facts == {"alpha": (["alpha", "beta"], False), "beta": (["alpha", "beta"], False),
                     "delta": (["alpha", "beta", "delta", "gamma"], True)}
    assert set(result.lost) == {"gamma"} and result.lost["gamma"].startswith(
        "executor exec2 lost: its stream ended without a final status (exit 255; ssh: connect to host exec2")
    from lab.executor import node_results
    out = node_results(result, ["alpha", "gamma", "delta"])
    assert [out[n].outcome for n in ("alpha", "gamma", "delta")] == ["ok", "lost", "ok"]
    assert out["gamma"].why == result.lost["gamma"]


def test_an_executor_without_ansible_runner_stops_the_campaign_before_anything_is_stored(rack, tmp_path, monkeypatch,
                                                                                     fake_ssh, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SCENARIO)
    db = f"sqlite:///{tmp_path}/lab.db"
    code = main(["run", str(tmp_path / "s.yaml"), "--inventory", str(rack.source), "--db", db])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("lab: error: executor exec1: no ansible-runner worker answered (exit 127; ")
    assert "install ansible-runner" in err and "on executor exec1" in err
    assert not (tmp_path / "lab.db").exists()


def test_a_credential_of_a_node_behind_an_executor_is_one_line_before_anything(tmp_path, monkeypatch, fake_ssh,
                                                                              capsys):
    """A become password stays on the controller: a node that needs one cannot run through an executor."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rack.yml"
    path.write_text(RACK.replace("node3: {ansible_host: 127.77.182.3}",
                                 "node3: {ansible_host: 127.77.182.3, ansible_become_password: s3cret}"))
    inv = load(str(path))
    assert inv.hosts["node3"].withheld == ("ansible_become_password",) and inv.hosts["node2"].withheld == ()
    (tmp_path / "s.yaml").write_text(SCENARIO)
    code = main(["run", str(tmp_path / "s.yaml"), "--inventory", str(path), "--db", f"sqlite:///{tmp_path}/lab.db"])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "lab: error: host node3 is reached through execution node exec2, but its ansible_become_password would stay "
        f"on the controller (credentials never travel to an executor), {path}, give node3's login user passwordless "
        "sudo (a Pi's default) and drop the variable, or run node3 from the controller (no lab_executor)\n")
    assert "s3cret" not in err and not (tmp_path / "lab.db").exists()
    assert main(["check", "--inventory", str(path)]) == 2
    assert "host node3 is reached through execution node exec2" in capsys.readouterr().err
    # the same variable on a node the controller reaches itself is Ansible's to use: no error
    path.write_text(RACK.replace("node4: {ansible_host: 127.77.182.4}",
                                 "node4: {ansible_host: 127.77.182.4, ansible_become_password: s3cret}"))
    remote_executor.check_credentials(load(str(path)).select(), str(path))


def test_lab_check_asks_every_executor(rack, fake_ssh, capsys):
    assert main(["check", "--inventory", str(rack.source)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"OK {rack.source} (inventory: 4 hosts")
    assert [line.split(":")[2].strip() for line in err.splitlines()] == ["executor exec1", "executor exec2"]


# ---- a lost executor in the campaign loop --------------------------------------------------------

SCENARIO = """name: soak
matrix:
  stacks: [h10-5.1.1]
  repeats: 1
phases:
  - name: soak
    reboot: true
    steps:
      - benchmark: {hef: /usr/share/hailo-models/yolov8s_h10.hef, runs: 3, time_to_run: 15}
"""

TWO_RACKS = """all:
  children:
    lab_executors:
      hosts:
        exec1: {ansible_host: 192.0.2.201}
        exec2: {ansible_host: 192.0.2.202}
    rack1:
      vars: {lab_executor: exec1}
      hosts:
        pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h}
    rack2:
      vars: {lab_executor: exec2}
      hosts:
        pi-02: {ansible_host: 192.0.2.12, lab_chip: hailo10h}
  vars:
    lab_hailo_sources: [archive]
    lab_power: {driver: command, on: [/bin/true], off: [/bin/true]}
"""


@pytest.fixture
def racks_plan(tmp_path, monkeypatch):
    (tmp_path / "rack.yml").write_text(TWO_RACKS)
    (tmp_path / "soak.yaml").write_text(SCENARIO + "recover: 2\n")
    monkeypatch.chdir(tmp_path)
    return plan_campaign(tmp_path / "soak.yaml", str(tmp_path / "rack.yml"))


def test_release_tidies_each_executor_of_the_released_nodes_once_even_when_the_playbook_fails(racks_plan, monkeypatch):
    from lab.executor import AnsibleExecutor

    tidied, released = [], []

    def release(self, plan, campaign, nodes):
        released.append(list(nodes))
        raise RuntimeError("release.yml failed")

    monkeypatch.setattr(AnsibleExecutor, "release", release)
    monkeypatch.setattr(remote_executor, "tidy_executor", lambda executor: tidied.append(executor.name) or True)
    with pytest.raises(RuntimeError):
        StreamingExecutor().release(racks_plan, "c1", racks_plan.nodes)
    assert released == [racks_plan.nodes]
    assert sorted(tidied) == sorted({racks_plan.inventory.hosts[n].executor for n in racks_plan.nodes} - {None})
    assert tidied and len(tidied) == len(set(tidied))


def ports(fleet: MemoryFleet, store: MemoryStore) -> Ports:
    return Ports(fleet, fleet.open_files, store, fleet.power_for)


LOST = "executor exec2 lost: its stream broke off in the middle of an event (exit -9)"


def test_a_lost_executor_fails_its_nodes_runs_with_the_samples_read_no_power_cycle(racks_plan):
    def lost(node, spec):  # exec2 dies after its node's first two samples
        return [{"kind": "phase_start", "boot_id": "b"}, {"kind": "sample", "step": "benchmark", "run": 1, "fps": 125.0},
                {"kind": "sample", "step": "benchmark", "run": 2, "fps": 125.0}], NodeResult(node, "lost", LOST)

    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": lost}, drivers={"pi-01", "pi-02"}), MemoryStore()
    _, _, code = run_campaign(ports(fleet, store), racks_plan, "c1")
    assert code == 1 and fleet.cycles == []  # lost is not unreachable: its node is not power cycled
    runs = {r["node"]: (rid, r) for rid, r in store.campaigns["c1"].runs.items()}
    assert runs["pi-01"][1]["verdict"] == "stable" and runs["pi-01"][1]["executor"] == "exec1"
    rid, run = runs["pi-02"]
    assert run["executor"] == "exec2" and run["status"] == "infra_error"
    assert run["error"] == f"soak: {LOST}" and run["phases"][0] == {"status": "infra_error", "error": f"soak: {LOST}",
                                                                    "boot_id": "b"}
    assert [r.get("run") for r in store.campaigns["c1"].records[rid].values()] == [None, 1, 2]  # kept
    assert ["pi-01", "pi-02"] in fleet.released  # not gone: released like the others


def test_resume_collects_what_the_nodes_of_a_lost_executor_recorded_once_it_is_back(racks_plan):
    def lost(node, spec):
        fleet.answering = {"pi-01"}  # its executor is gone: its reads fail too
        return [{"kind": "phase_start", "boot_id": "b"}], NodeResult(node, "lost", LOST)

    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": lost}), MemoryStore()
    run_campaign(ports(fleet, store), racks_plan, "c1")
    rid = next(k for k, r in store.campaigns["c1"].runs.items() if r["node"] == "pi-02")
    assert store.campaigns["c1"].records[rid] == {}
    run_key = {"run_key": str(rid), "phase": "soak", "phase_index": 0}
    for i in (1, 2, 3):  # the node measured on while its executor was down
        fleet.write("pi-02", {"kind": "sample", "step": "benchmark", "run": i, "fps": 125.0, **run_key})
    fleet.write("pi-02", {"kind": "phase_end", "status": "ok", **run_key})
    fleet.answering = None  # exec2 is back
    fleet.phases_run.clear()
    _, _, code = resume_campaign(ports(fleet, store), "c1")
    assert code == 1 and fleet.phases_run == []
    assert [r["kind"] for r in store.campaigns["c1"].records[rid].values()] == ["phase_start"] + ["sample"] * 3 + [
        "phase_end"]
    assert store.campaigns["c1"].runs[rid]["verdict"] == "infra_error"
    assert any(isinstance(e, PhaseClosed) and e.error == f"soak: {LOST}" for e in store.effects)


def test_a_lost_executor_at_prepare_fails_its_nodes_runs_only(racks_plan):
    class LosesExec2(MemoryFleet):
        def prepare(self, plan, campaign, nodes):
            out = super().prepare(plan, campaign, nodes)
            return {**out, "pi-02": NodeResult("pi-02", "lost", LOST)}

    fleet, store = LosesExec2({"pi-01": measuring_node(), "pi-02": measuring_node()}), MemoryStore()
    assert run_campaign(ports(fleet, store), racks_plan, "c1")[2] == 1
    runs = {r["node"]: r for r in store.campaigns["c1"].runs.values()}
    assert runs["pi-02"]["error"] == f"prepare failed: {LOST}" and runs["pi-01"]["verdict"] == "stable"



# ---- the executor of each run: stored, shown ----------------------------------------------------

def test_each_runs_executor_is_stored_and_shown_in_every_report(racks_plan, db_engine):
    import io
    import json

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from lab.db.models import Run
    from lab.db.queries import campaign_summary
    from lab.db.store import SqlStore
    from lab.report.build import write_report

    def lost(node, spec):
        return [{"kind": "phase_start", "boot_id": "b"},
                {"kind": "sample", "step": "benchmark", "run": 1, "fps": 125.0}], NodeResult(node, "lost", LOST)

    fleet = MemoryFleet({"pi-01": measuring_node(), "pi-02": lost})
    run_campaign(Ports(fleet, fleet.open_files, SqlStore(db_engine), fleet.power_for), racks_plan, "c1")
    with Session(db_engine) as s:
        assert {r.node: (r.executor, r.status, r.error) for r in s.scalars(select(Run))} == {
            "pi-01": ("exec1", "done", None), "pi-02": ("exec2", "infra_error", f"soak: {LOST}")}
    assert [(r["node"], r["executor"], r["samples"]) for r in campaign_summary(db_engine, "c1")["runs"]] == [
        ("pi-01", "exec1", 3), ("pi-02", "exec2", 1)]
    shown = {}
    for fmt in ("text", "md", "html", "json"):
        out = io.StringIO()
        write_report(db_engine, "c1", fmt, out)
        shown[fmt] = out.getvalue()
    for fmt in ("text", "md", "html"):
        assert "pi-01 via exec1" in shown[fmt] and "pi-02 via exec2" in shown[fmt], fmt
    assert [(r["node"], r["executor"]) for r in json.loads(shown["json"])["runs"]] == [("pi-01", "exec1"),
                                                                                        ("pi-02", "exec2")]


def test_check_executor_wants_the_controllers_runner_and_a_recent_ansible_core(rack, fake_ssh, tmp_path, monkeypatch):
    from lab.ansible import controller_runner_version
    from lab.errors import ConfigError
    from lab.remote_executor import check_executor

    bindir = tmp_path / "bin"
    (bindir / "ansible-runner").write_text(
        f"#!/bin/sh\nprintf 'runner_version: {controller_runner_version()}\\nuuid: x\\n'\n")
    (bindir / "ansible-playbook").write_text("#!/bin/sh\necho 'ansible-playbook [core 2.16.3]'\n")
    for tool in ("ansible-runner", "ansible-playbook"):
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(ConfigError) as err:
        check_executor(rack.executors["exec1"])
    assert str(err.value) == ("executor exec1: ansible-core 2.16.3 is too old for lab's playbooks, "
                              "install ansible-core >= 2.17 on executor exec1")
    (bindir / "ansible-playbook").write_text("#!/bin/sh\necho 'ansible-playbook [core 2.19.14]'\n")
    assert check_executor(rack.executors["exec1"]) == f"ansible-runner {controller_runner_version()}, ansible-core 2.19.14"
    assert (tmp_path / "home" / ".cache/lab/cp").is_dir()  # the executor's folder for lab's masters to the nodes
