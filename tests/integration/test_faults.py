"""Faults and bad input on a real 3-node virtual fleet: nothing lost, nobody stuck (issue 6).

Every campaign here runs through the real `lab` CLI (a subprocess where the test must act while it
runs), real ansible-runner and SSH, and a real SQLite database; the node-side record files are the
source of truth the database is checked against.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Campaign, Phase, Run, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.emulator.nodevars import EMU_MEMINFO, EMU_SYSFS_ROOT
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet, ssh_argv, ssh_cmd

pytestmark = pytest.mark.fleet
NET = "127.77.230"
NODES = ("node1", "node2", "node3")
STACK = "h10-5.3.0"
HEF = "yolo26s_hailo10h.hef"


class FaultFleet:
    """The module's fleet: 3 susceptible Hailo-10H nodes at time scale 0.02, with STACK installed."""

    def __init__(self, fleet: Fleet, base: Path, inventory: Path):
        self.fleet, self.base, self.inventory = fleet, base, inventory
        self.db = f"sqlite:///{base / 'lab.db'}"
        self.engine = create_engine(self.db)

    def addr(self, node: str) -> str:
        return f"{NET}.{NODES.index(node) + 1}"

    def scenario(self, name: str, text: str) -> Path:
        path = self.base / "scenarios" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    def lab(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        """`lab ARGS` as its own process (so it can be killed), writing under the module's directory."""
        return subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=self.base, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})}, start_new_session=True)

    def run(self, scenario: Path, name: str, inventory: Path | None = None, env: dict | None = None):
        return self.lab("run", str(scenario), "--inventory", str(inventory or self.inventory), "--db", self.db,
                        "--name", name, env=env)

    def samples(self, campaign: str, node: str, step: str = "benchmark") -> list[Sample]:
        with Session(self.engine) as s:
            return s.scalars(select(Sample).join(Run, Sample.run_id == Run.id).join(Campaign)
                             .where(Campaign.name == campaign, Run.node == node, Sample.step == step)
                             .order_by(Sample.seq)).all()

    def wait_samples(self, campaign: str, node: str, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
        """Wait until the database holds `count` benchmark samples of `node` (the controller is still running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                if len(self.samples(campaign, node)) >= count:
                    return
            except OperationalError:  # the campaign's tables may not exist yet
                pass
            time.sleep(0.3)
        raise AssertionError(f"{node} never reached {count} samples in {campaign}")

    def node_records(self, campaign: str, node: str) -> list[dict]:
        """The agent's own records on the node, read from the node's disk on the host (works while it is down)."""
        path = self.fleet.node(node).upper / "var/lib/lab-agent" / campaign / "records.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def run_of(self, campaign: str, node: str) -> Run:
        with Session(self.engine) as s:
            run = s.scalar(select(Run).join(Campaign).where(Campaign.name == campaign, Run.node == node))
            s.expunge(run)
            return run

    def phases(self, campaign: str, node: str) -> dict[str, Phase]:
        with Session(self.engine) as s:
            rows = s.scalars(select(Phase).join(Run).join(Campaign)
                             .where(Campaign.name == campaign, Run.node == node)).all()
            for p in rows:
                s.expunge(p)
            return {p.name: p for p in rows}


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def soak(name: str, runs: int, *, reboot_timeout: int = 600, extra_phase: str = "", description: str = "",
         reboot: bool = False) -> str:
    """A scenario without provisioning (the module installed the stack): identify, then `runs` benchmarks.

    `recover: none`: these are the faults of a node lab may not power-cycle (the fleet's nodes have a power
    driver; recovery by a power cycle is tests/integration/test_power.py's)."""
    return f"""name: {name}
description: {json.dumps(description)}
matrix: {{stacks: [{STACK}]}}
reboot_timeout: {reboot_timeout}
recover: none
phases:
  - name: warm
    steps: [identify]
  - name: soak
    reboot: {str(reboot).lower()}
    steps:
      - benchmark: {{hef: {HEF}, runs: {runs}, time_to_run: 15}}
      - collect: [runtime_log]
{extra_phase}"""


@pytest.fixture(scope="module")
def ff(tmp_path_factory):
    require_fleet()
    base = tmp_path_factory.mktemp("faults")
    shutil.copytree(PROJECT / "stacks", base / "stacks")
    build_hailo_files(base / "hailo-files")  # beside the inventory: STACK (5.3.0) comes as Hailo's files
    build_models(base / "models")  # the scenarios' model, on the controller
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(nodes=3, inventory=inventory, time_scale=0.02)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        assert main(["provision", STACK, "--inventory", str(inventory)]) == 0
        yield FaultFleet(fleet, base, inventory)
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


def assert_prefix_of_node(ff: FaultFleet, campaign: str, node: str, *, exact: bool) -> list[Sample]:
    """The database holds the node's own records (each once, same values); `exact`: all of them."""
    on_node = [r for r in ff.node_records(campaign, node) if r.get("step") == "benchmark" and r["kind"] == "sample"]
    stored = ff.samples(campaign, node)
    assert len({s.seq for s in stored}) == len(stored)  # no duplicates
    assert [(s.seq, s.fps) for s in stored] == [(r["seq"], r.get("fps")) for r in on_node[:len(stored)]]
    if exact:
        assert len(stored) == len(on_node), (len(stored), len(on_node))
    return stored


# ---- 1. a node frozen, another powered off, mid-phase ---------------------------------------------------
def test_frozen_and_powered_off_nodes_mid_phase(ff):
    after = "  - name: after\n    reboot: true\n    steps: [identify]\n"
    path = ff.scenario("vanish", soak("vanish", 60, extra_phase=after))
    proc = ff.run(path, "vanish")
    ff.wait_samples("vanish", "node1", 6, proc)
    ff.wait_samples("vanish", "node2", 6, proc)
    ff.fleet.fault("node1", "freeze")
    ff.fleet.fault("node2", "down")
    frozen_at = len([r for r in ff.node_records("vanish", "node1") if r.get("step") == "benchmark"])
    powered_off_at = len([r for r in ff.node_records("vanish", "node2") if r.get("step") == "benchmark"])
    code, out, err = finish(proc)
    try:
        assert code == 1, (out, err)
        assert "Traceback" not in out + err
        assert out.splitlines()[0] == "campaign vanish: infra_errors"
        # the survivor finished every phase
        survivor = ff.run_of("vanish", "node3")
        assert survivor.status == "done" and survivor.verdict == "degraded", survivor.error
        assert [s.run_index for s in ff.samples("vanish", "node3")] == list(range(1, 61))
        assert {p.name: p.status for p in ff.phases("vanish", "node3").values()} == {
            "warm": "ok", "soak": "ok", "after": "ok"}
        for node in ("node1", "node2"):
            run = ff.run_of("vanish", node)
            assert run.status == run.verdict == "infra_error", node
            assert "soak: unreachable" in run.error, run.error
            phases = ff.phases("vanish", node)
            assert (phases["soak"].status, phases["after"].status) == ("infra_error", "skipped")
            stored = assert_prefix_of_node(ff, "vanish", node, exact=False)
            assert len(stored) >= 6
            assert [s.run_index for s in stored] == list(range(1, len(stored) + 1))
        assert ff.run_of("vanish", "node1").error.count("unreachable") >= 1
    finally:
        ff.fleet.fault("node1", "thaw")
        ff.fleet.fault("node2", "up")
    # Back on line: `lab resume` on the ended campaign stores everything the nodes recorded before they
    # vanished, exactly once, and releases them; the runs stay infra errors.
    assert len(ff.node_records("vanish", "node2")) >= powered_off_at
    wait_agent_done(ff, "vanish", "node1")
    code, out, err = finish(ff.lab("resume", "vanish", "--db", ff.db))
    assert code == 1, (out, err)
    stored2 = assert_prefix_of_node(ff, "vanish", "node2", exact=True)
    assert len(stored2) == powered_off_at
    stored1 = assert_prefix_of_node(ff, "vanish", "node1", exact=True)
    assert len(stored1) >= frozen_at  # the thawed agent went on measuring; nothing before the freeze is missing
    assert ff.run_of("vanish", "node1").verdict == ff.run_of("vanish", "node2").verdict == "infra_error"
    for node in NODES:
        assert ssh_cmd(ff.fleet, ff.addr(node), "test -e /var/lib/lab-agent/lock").returncode == 1, node


def wait_agent_done(ff: FaultFleet, campaign: str, node: str, timeout: float = 120) -> None:
    """Wait until no agent holds the campaign's agent lock on the node (a thawed agent finishing its phase)."""
    lock = f"/var/lib/lab-agent/{campaign}/agent.lock"
    deadline = time.monotonic() + timeout
    while ssh_cmd(ff.fleet, ff.addr(node), f"flock --nonblock {lock} true").returncode != 0:
        assert time.monotonic() < deadline, f"the agent on {node} never finished"
        time.sleep(1)


# ---- 2. a reboot that never comes back ---------------------------------------------------------------
def test_reboot_that_never_returns_times_out(ff):
    after = "  - name: after\n    reboot: true\n    steps:\n      - benchmark: {hef: " + HEF + ", runs: 3}\n"
    path = ff.scenario("hang", soak("hang", 3, reboot_timeout=40, extra_phase=after))
    ff.fleet.fault("node2", "hang-reboot")
    started = time.monotonic()
    code, out, err = finish(ff.run(path, "hang"))
    elapsed = time.monotonic() - started
    try:
        assert code == 1, (out, err)
        assert "Traceback" not in out + err
        run = ff.run_of("hang", "node2")
        assert run.verdict == "infra_error"
        assert "after: failed" in run.error and "reboot" in run.error.lower(), run.error
        assert "timed out" in run.error.lower(), run.error
        assert ff.phases("hang", "node2")["after"].status == "infra_error"
        assert len(ff.samples("hang", "node2")) == 3  # the phase before the reboot is kept
        for node in ("node1", "node3"):
            assert ff.run_of("hang", node).status == "done", node
            assert len(ff.samples("hang", node)) == 6, node
        assert elapsed < 40 + 240, elapsed  # the scenario's timeout, not Ansible's default 600 s
    finally:
        ff.fleet.fault("node2", "up")
    code, out, err = finish(ff.lab("resume", "hang", "--db", ff.db))
    assert code == 1, (out, err)
    assert ssh_cmd(ff.fleet, ff.addr("node2"), "test -e /var/lib/lab-agent/lock").returncode == 1


# ---- 3. the controller killed mid-phase ----------------------------------------------------------------
def test_controller_sigkill_then_resume(ff):
    after = "  - name: after\n    reboot: true\n    steps: [identify]\n"
    path = ff.scenario("killed", soak("killed", 25, extra_phase=after, reboot=True))
    node1 = ff.addr("node1")
    timer = "systemctl is-enabled apt-daily.timer || true"
    # an apt timer a Pi has (the base image masks it): the campaign masks it, and only `lab resume` gives it back
    ssh_cmd(ff.fleet, node1, "rm -f /etc/systemd/system/apt-daily.timer && systemctl daemon-reload", timeout=30)
    before = ssh_cmd(ff.fleet, node1, timer).stdout.strip()
    # the killed controller's temporary files (ansible-runner's directory, ssh sockets) in a directory of the
    # test's own, short enough for a socket path (108 bytes)
    tmp = Path(tempfile.mkdtemp(prefix="lab-killed-"))
    proc = ff.run(path, "killed", env={"TMPDIR": str(tmp)})
    ff.wait_samples("killed", "node1", 8, proc)
    orphans = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the controller only; its ansible-playbook child loses its pty
    proc.communicate(timeout=60)
    try:
        resume_after_sigkill(ff, node1, timer, before)
    finally:  # the killed controller's children outlive it: stop them, by PID
        alive = processes()
        for pid, started in orphans.items():
            if alive.get(pid, (None, None))[1] == started:  # the same process, not a reused PID
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def processes() -> dict[int, tuple[int, str]]:
    """Every process's parent PID and start time, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return found


def descendants(pid: int) -> dict[int, str]:
    """Every living descendant of `pid`, with its start time."""
    table = processes()
    found, frontier = {}, {pid}
    while frontier:
        children = {child for child, (ppid, _) in table.items() if ppid in frontier}
        found.update({child: table[child][1] for child in children})
        frontier = children
    return found


def resume_after_sigkill(ff, node1: str, timer: str, before: str) -> None:
    assert ssh_cmd(ff.fleet, node1, timer).stdout.strip() == "masked"  # held still across the crash
    with Session(ff.engine) as s:
        assert s.scalar(select(Campaign.status).where(Campaign.name == "killed")) == "running"
    warm_boot = {n: ff.phases("killed", n)["warm"].boot_id for n in NODES}
    soak_boot = {n: ff.samples("killed", n)[0].boot_id if ff.samples("killed", n) else None for n in NODES}
    code, out, err = finish(ff.lab("resume", "killed", "--db", ff.db))
    assert code == 0, (out, err)
    assert out.splitlines()[0] == "campaign killed: finished"
    for node in NODES:
        stored = assert_prefix_of_node(ff, "killed", node, exact=True)
        assert [s.run_index for s in stored] == list(range(1, 26)), node  # every run once, none twice
        records = ff.node_records("killed", node)
        starts = [(r.get("phase"), r["kind"]) for r in records if r["kind"] in ("phase_start", "phase_resume")]
        assert starts.count(("warm", "phase_start")) == 1, starts  # the finished phase is not run again
        assert ("soak", "phase_start") in starts and ("after", "phase_start") in starts
        # the interrupted phase rebooted once, before its first run, and not again on resume
        assert {s.boot_id for s in stored} == {soak_boot[node]} and soak_boot[node] != warm_boot[node]
        phases = ff.phases("killed", node)
        assert [phases[p].status for p in ("warm", "soak", "after")] == ["ok", "ok", "ok"]
        assert phases["after"].boot_id != phases["soak"].boot_id
        assert ff.run_of("killed", node).verdict == "degraded"
        assert ssh_cmd(ff.fleet, ff.addr(node), "test -e /var/lib/lab-agent/hold.json").returncode == 1
    assert ssh_cmd(ff.fleet, node1, timer).stdout.strip() == before != "masked"  # given back by the resume


# ---- 7. two campaigns at once on the same nodes --------------------------------------------------------
def test_second_campaign_on_busy_nodes_is_refused(ff, capsys):
    path = ff.scenario("busy", soak("busy", 25))
    first = ff.run(path, "first")
    ff.wait_samples("first", "node1", 2, first)
    code = main(["run", str(path), "--inventory", str(ff.inventory), "--db", ff.db, "--name", "second"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lab: error: node1 is in use by campaign first"), err
    assert "Traceback" not in err
    with Session(ff.engine) as s:
        assert s.scalar(select(func.count()).select_from(Campaign).where(Campaign.name == "second")) == 0
    code, out, err = finish(first)
    assert code == 0, (out, err)
    for node in NODES:  # the first campaign's measurements are whole and undisturbed
        assert [s.run_index for s in assert_prefix_of_node(ff, "first", node, exact=True)] == list(range(1, 26))
        assert ssh_cmd(ff.fleet, ff.addr(node), "test -e /var/lib/lab-agent/lock").returncode == 1


# ---- 8. security: host keys, shell metacharacters, secrets -----------------------------------------------
def inventory_copy(ff: FaultFleet, name: str, edit) -> Path:
    """A copy of the fleet's inventory, changed by `edit(data)`."""
    data = yaml.safe_load(ff.inventory.read_text())
    edit(data)
    path = ff.base / "inventory" / f"{name}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_changed_host_key_stops_that_node_only(ff):
    """node3 comes back with a new SSH host key (reinstalled, or an impostor on its address): lab stops
    that node with a clear error and touches nothing on it; the other nodes run."""
    keydir = ff.fleet.node("node3").upper / "etc/ssh"
    original = {name: (keydir / name).read_bytes() for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")}
    new_key = ssh_cmd(ff.fleet, ff.addr("node3"), "rm -f /etc/ssh/ssh_host_ed25519_key* && "
                      "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
                      "cat /etc/ssh/ssh_host_ed25519_key.pub", timeout=30)
    assert new_key.returncode == 0, new_key.stderr
    ff.fleet.fault("node3", "down")  # the power cut also ends every SSH connection to the old key
    ff.fleet.fault("node3", "up")
    try:
        code, out, err = finish(ff.run(ff.scenario("hostkey", soak("hostkey", 2)), "hostkey"))
        assert code == 1, (out, err)
        assert "Traceback" not in out + err
        run = ff.run_of("hostkey", "node3")
        assert run.verdict == "infra_error"
        assert "host key changed or unknown" in run.error and "update known_hosts" in run.error, run.error
        assert ff.samples("hostkey", "node3") == []
        for node in ("node1", "node2"):
            assert ff.run_of("hostkey", node).status == "done" and len(ff.samples("hostkey", node)) == 2
        # the node itself was never touched: no campaign directory, no lock
        assert not (ff.fleet.node("node3").upper / "var/lib/lab-agent/hostkey").exists()
        assert not (ff.fleet.node("node3").upper / "var/lib/lab-agent/lock").exists()
    finally:  # put the recorded key back, through a connection that trusts the new one
        trust = ff.base / "known_hosts.new"
        trust.write_text(f"{ff.addr('node3')} {' '.join(new_key.stdout.split()[:2])}\n")
        for name, data in original.items():
            subprocess.run(ssh_argv(ff.fleet, ff.addr("node3"), f"cat > /etc/ssh/{name}", known_hosts=trust),
                           input=data, check=True, timeout=30)
        ff.fleet.fault("node3", "down")
        ff.fleet.fault("node3", "up")
    assert ssh_cmd(ff.fleet, ff.addr("node3"), "true").returncode == 0


PAYLOADS = ["; touch /tmp/pwned-1", "$(touch /tmp/pwned-2)", "`touch /tmp/pwned-3`", "&& touch /tmp/pwned-4",
            "| touch /tmp/pwned-5", "'; touch /tmp/pwned-6; '", '"; touch /tmp/pwned-7; "', "\n touch /tmp/pwned-8"]


def pwned(ff: FaultFleet) -> list[str]:
    """Marker files a payload would have created, on any node."""
    return [f"{n}:{p.name}" for n in NODES for p in (ff.fleet.node(n).upper / "tmp").glob("pwned-*")]


@pytest.mark.parametrize("where", ["scenario name", "phase name", "hef", "stack", "campaign name"])
def test_payloads_in_fields_that_reach_nodes_are_refused(ff, capsys, where):
    """Every scenario value that reaches a node has a strict alphabet: a payload is a one-line error, exit 2."""
    for payload in PAYLOADS:
        text = soak("inj", 2)
        name = "inj"
        if where == "scenario name":
            text = text.replace("name: inj", f"name: {json.dumps('inj' + payload)}", 1)
        elif where == "phase name":
            text = text.replace("name: soak", f"name: {json.dumps('soak' + payload)}")
        elif where == "hef":
            text = text.replace(f"hef: {HEF}", f"hef: {json.dumps(HEF + payload)}")
        elif where == "stack":
            text = text.replace(f"stacks: [{STACK}]", f"stacks: [{json.dumps(STACK + payload)}]")
        else:
            name = "inj" + payload
        path = ff.scenario("inj", text)
        code = main(["run", str(path), "--inventory", str(ff.inventory), "--db", ff.db, "--name", name])
        err = capsys.readouterr().err
        assert code == 2, (where, payload, err)
        assert err.startswith("lab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        with Session(ff.engine) as s:
            assert s.scalar(select(func.count()).select_from(Campaign).where(Campaign.name.like("inj%"))) == 0
    assert pwned(ff) == []


def test_payloads_reach_the_agent_as_data(ff):
    """Past the controller's checks, the node agent itself runs tools with argument lists: a hostile
    HEF name is an argument that names no file, recorded verbatim, never a command."""
    from lab.bundle import build_bundle
    from lab.steps import BenchmarkStep

    node = ff.addr("node1")
    agent = "/root/inj-agent.pyz"
    subprocess.run(ssh_argv(ff.fleet, node, f"cat > {agent}"), input=Path(build_bundle()).read_bytes(), check=True, timeout=30)
    for i, payload in enumerate(PAYLOADS):
        step = BenchmarkStep(hef=HEF, runs=1).model_dump(mode="json")
        step["hef"] = hef = f"x{payload}.hef"
        campaign = f"inj-agent-{i}"
        spec = {"campaign": campaign, "run_key": "1", "phase": "p", "phase_index": 0, "time_scale": 0.02,
                "chip": "hailo10h", "driver_module": "hailo1x_pci", "hef_dirs": ["/usr/share/hailo-models"],
                "commands": {}, "steps": [step],
                # the node's kernel view, as its inventory gives it (the pre-flight finds the device there)
                "sysfs_root": EMU_SYSFS_ROOT, "meminfo": EMU_MEMINFO}
        work = f"/var/lib/lab-agent/{campaign}"
        put = subprocess.run(ssh_argv(ff.fleet, node, f"mkdir -p {work} && cat > {work}/phase.json"),
                             input=json.dumps(spec), capture_output=True, text=True, timeout=30)
        assert put.returncode == 0, put.stderr
        ran = ssh_cmd(ff.fleet, node, f"python3 {agent} run {work}/phase.json", timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert pwned(ff) == [], payload
        records = ff.node_records(campaign, "node1")
        failed = [r for r in records if r.get("step") == "benchmark" and r.get("error")]
        assert failed, records
        raw = (ff.fleet.node("node1").upper / "var/lib/lab-agent" / campaign / "artifacts"
               / failed[0]["artifact"]["artifact"]).read_text()
        assert hef in raw, (payload, raw)  # the tool was given that file name verbatim, as one argument
        assert ssh_cmd(ff.fleet, node, f"rm -rf {work}").returncode == 0


def test_free_text_payloads_are_stored_verbatim_never_run(ff):
    description = "soak " + " ".join(PAYLOADS)
    path = ff.scenario("freetext", soak("freetext", 2, description=description))
    code, out, err = finish(ff.lab("run", str(path), "--inventory", str(ff.inventory), "--db", ff.db,
                                   "--name", "freetext", "--limit", "node1"))
    assert code == 0, (out, err)
    with Session(ff.engine) as s:
        stored = s.scalar(select(Campaign.scenario_text).where(Campaign.name == "freetext"))
    assert stored == path.read_text()
    assert pwned(ff) == []


def vault_string(ff: FaultFleet, secret: str, password_file: Path) -> str:
    """`secret` encrypted with ansible-vault, as the YAML value `!vault | ...`."""
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string",
                           "--vault-password-file", str(password_file), secret],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=ff.base)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    body = out[out.index("$ANSIBLE_VAULT"):].split()
    return "!vault |\n" + "".join(f"          {line}\n" for line in body)


def test_become_and_vault_secrets_never_stored(ff):
    """node3 is reached as `pi` with a sudo password from Ansible Vault (as on a real Pi): the campaign
    works, and neither the password nor another vaulted value appears in the database, reports,
    output, or on any node."""
    become, token = "PLANTED-become-6f1d93", "PLANTED-vault-token-a27c55"
    node3 = ff.addr("node3")
    setup = ssh_cmd(ff.fleet, node3, "id pi >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo pi; "
                    "install -d -m 700 -o pi -g pi ~pi/.ssh && "
                    "install -m 600 -o pi -g pi /root/.ssh/authorized_keys ~pi/.ssh/authorized_keys", timeout=30)
    assert setup.returncode == 0, setup.stderr
    # the password goes in on stdin, so it is on no command line
    subprocess.run(ssh_argv(ff.fleet, node3, "chpasswd"), input=f"pi:{become}\n", text=True, check=True, timeout=30)
    password_file = ff.base / "vault-password"
    password_file.write_text("vault-pass-for-tests\n")

    def edit(data):
        data["virtual"]["hosts"]["node3"].update({"ansible_user": "pi", "ansible_become": True,
                                                  "ansible_become_password": "@BECOME@"})
        data["virtual"]["vars"]["lab_vault_token"] = "@TOKEN@"

    inventory = inventory_copy(ff, "pi", edit)
    text = inventory.read_text()
    text = text.replace("'@BECOME@'", vault_string(ff, become, password_file).rstrip())
    text = text.replace("'@TOKEN@'", vault_string(ff, token, password_file).rstrip())
    inventory.write_text(text)
    assert become not in text and token not in text
    path = ff.scenario("guarded", soak("guarded", 3))
    env = {"ANSIBLE_VAULT_PASSWORD_FILE": str(password_file)}
    code, out, err = finish(ff.run(path, "guarded", inventory, env=env))
    assert code == 0, (out, err)
    listing = ssh_cmd(ff.fleet, node3, "ls -la /var/lib/lab-agent /var/lib/lab-agent/guarded").stdout
    # read over plain SSH as pi: the agent's files are pi's
    assert len(ff.samples("guarded", "node3")) == 3, (out, err, listing)
    owner = ssh_cmd(ff.fleet, node3, "stat -c %U /var/lib/lab-agent/guarded/records.jsonl").stdout.strip()
    assert owner == "pi"
    outputs = [out, err]
    for fmt in ("text", "md", "html", "csv", "json"):
        target = ff.base / f"guarded.{fmt}"
        assert main(["report", "guarded", "--db", ff.db, "--format", fmt, "-o", str(target)]) == 0
    nodes_out = subprocess.run([sys.executable, "-m", "lab", "nodes", "--inventory", str(inventory), "--json"],
                               cwd=ff.base, capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
                               stdin=subprocess.DEVNULL)
    outputs += [nodes_out.stdout, nodes_out.stderr]
    canary = ff.base / "canary"
    canary.write_text(f"the grep below finds {become}\n")
    assert leaks(ff, become, outputs) == [str(canary)]  # the search itself works
    canary.unlink()
    for secret in (become, token):
        assert leaks(ff, secret, outputs) == [], secret


def leaks(ff: FaultFleet, secret: str, outputs: list[str]) -> list[str]:
    """Where a secret shows up: the module's files (database, reports, inventories' plaintext), every
    node's disk (records, artifacts, journal, /tmp), and the commands' output."""
    roots = [ff.base / name for name in os.listdir(ff.base) if name != "fleet"]
    roots += [ff.fleet.node(n).upper for n in NODES]
    found = subprocess.run(["grep", "-r", "-a", "-l", "-F", "--", secret, *map(str, roots)],
                           capture_output=True, text=True).stdout.split()
    return found + [f"output {i}" for i, text in enumerate(outputs) if secret in text]


# ---- 5. install failures ----------------------------------------------------------------------------------
def write_stack(ff: FaultFleet, name: str, hailort: str, driver: str) -> None:
    pin = yaml.safe_load((ff.base / "stacks" / f"{STACK}.yaml").read_text())
    pin.update(name=name, hailort=hailort, driver=driver, firmware=hailort)
    (ff.base / "stacks" / f"{name}.yaml").write_text(yaml.safe_dump(pin, sort_keys=False))


INSTALL = """name: {name}
matrix: {{stacks: [{stack}]}}
phases:
  - name: install
    steps: [provision]
  - name: soak
    steps:
      - benchmark: {{hef: {hef}, runs: 2}}
"""


@pytest.mark.parametrize(("stack", "hailort", "driver", "words"), [
    ("h10-9.9.9", "9.9.9", "9.9.9", ("hailort", "9.9.9", "not available")),
    ("h10-mismatch", "5.3.0", "5.2.0", ("5.2.0", "5.3.0")),
])
def test_install_failure_names_package_and_leaves_nothing_held(ff, stack, hailort, driver, words):
    write_stack(ff, stack, hailort, driver)
    path = ff.scenario(stack, INSTALL.format(name="install", stack=stack, hef=HEF))
    code, out, err = finish(ff.run(path, f"install-{stack}"))
    try:
        assert code == 1, (out, err)
        assert "Traceback" not in out + err
        for node in NODES:
            run = ff.run_of(f"install-{stack}", node)
            assert run.verdict == "infra_error", node
            assert run.error.startswith("install: failed:"), run.error
            assert all(w in run.error for w in words), run.error
            assert ff.phases(f"install-{stack}", node)["soak"].status == "skipped"
            held = ssh_cmd(ff.fleet, ff.addr(node), "apt-mark showhold").stdout.split()
            assert [p for p in held if "hailo" in p] == [], (node, held)
            assert ssh_cmd(ff.fleet, ff.addr(node), "test -e /var/lib/lab-agent/lock").returncode == 1
    finally:
        assert main(["provision", STACK, "--inventory", str(ff.inventory)]) == 0
