"""A rack as a real Pi gets it (issue: real racks, part 1), on a 3-node virtual fleet logged in as `pi`:
the field report's 5.3.0 from Hailo-style files and a 5.1.1 control from the emulated archive (pins
matching its Debian revisions), DKMS, holds that are given back, the model delivered and checked, and a
purge that leaves no DKMS tree, stray module or pip-installed binding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from lab.ansible import run_playbook
from lab.cli import main
from lab.db.models import Campaign, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet, ssh_cmd

pytestmark = pytest.mark.fleet
NET = "127.77.236"
PROFILE = """
nodes:
  node1: {chip: hailo10h}
  node2: {chip: hailo10h, cma_leak: 0.0}
  node3: {chip: hailo8}
"""
PURGE_PLAYBOOK = Path(__file__).resolve().parent / "purge_hailo.yml"
SHORT = """name: short
matrix: {stacks: [h10-5.3.0]}
phases:
  - name: soak
    steps:
      - benchmark: {hef: yolo26s_hailo10h.hef, runs: 2}
"""


@pytest.fixture(scope="module")
def rack(tmp_path_factory):
    """The fleet, Hailo's files beside its inventory (as a person downloads them) and the model in models/."""
    require_fleet()
    base = tmp_path_factory.mktemp("rack")
    (base / "profile.yaml").write_text(PROFILE)
    build_hailo_files(base / "hailo-files")
    build_models(base / "models")
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.01)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield fleet, base, inventory, f"sqlite:///{base / 'lab.db'}"
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


def sh(fleet: Fleet, node: str, command: str) -> str:
    result = ssh_cmd(fleet, f"{NET}.{node.removeprefix('node')}", command, timeout=30)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def systems(db: str, name: str) -> dict:
    """(node, stack) -> the last `system` record of that run."""
    with Session(create_engine(db)) as s:
        c = s.scalar(select(Campaign).where(Campaign.name == name))
        out = {}
        for run in c.runs:
            rows = s.scalars(select(Sample.extra).where(Sample.run_id == run.id, Sample.step == "system")
                             .order_by(Sample.seq)).all()
            out[(run.node, run.stack.name)] = rows[-1] if rows else None
        return out


def test_cma_soak_from_hailo_files_and_the_archive(rack, capsys, monkeypatch):
    fleet, base, inventory, db = rack
    monkeypatch.chdir(base)
    # a timer a Pi has enabled: the campaign masks it and gives it back
    sh(fleet, "node2", "rm -f /etc/systemd/system/apt-daily.timer && systemctl daemon-reload")
    before = sh(fleet, "node2", "systemctl is-enabled apt-daily.timer || true").strip()
    # a kernel package, as a Pi has one (nspawn nodes run the host's kernel): held for the campaign only
    sh(fleet, "node1", "mkdir -p /tmp/k/DEBIAN && printf 'Package: linux-image-rpi-2712\\nVersion: 1:6.12.47-1+rpt1\\n"
                       "Architecture: all\\nMaintainer: lab test <lab@localhost>\\nDescription: stand-in kernel\\n'"
                       " > /tmp/k/DEBIAN/control && dpkg-deb -b /tmp/k /tmp/k.deb >/dev/null && dpkg -i /tmp/k.deb >/dev/null")
    code = main(["run", str(PROJECT / "scenarios" / "cma_soak.yaml"), "--inventory", str(inventory), "--db", db,
                 "--name", "rack1"])
    out = capsys.readouterr().out
    assert code == 0, out
    with Session(create_engine(db)) as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "rack1"))
        verdicts = {(r.node, r.stack.name): r.verdict for r in c.runs}
        model = c.settings["models"]["yolo26s_hailo10h.hef"]
    assert verdicts == {("node1", "h10-5.3.0"): "degraded", ("node1", "h10-5.1.1"): "stable",
                        ("node2", "h10-5.3.0"): "stable", ("node2", "h10-5.1.1"): "stable",
                        ("node3", "h8-4.23.0"): "stable"}
    assert model["sha256"] == hashlib.sha256((base / "models/yolo26s_hailo10h.hef").read_bytes()).hexdigest()
    got = systems(db, "rack1")
    files = got[("node1", "h10-5.3.0")]
    assert {k: v for k, v in files["packages"].items() if "hailo" in k} == {"hailort": "5.3.0",
                                                                            "hailort-pcie-driver": "5.3.0"}
    assert list(files["wheels"].values()) == ["5.3.0"]
    assert any(line.startswith("hailo1x_pci/5.3.0, ") and line.endswith(": installed") for line in files["dkms"])
    archive = got[("node1", "h10-5.1.1")]
    assert {k: v for k, v in archive["packages"].items() if "hailo" in k} == {
        "h10-hailort": "5.1.1", "h10-hailort-pcie-driver": "5.1.1", "python3-h10-hailort": "5.1.1-1",
        "hailo-h10-all": "5.1.1-1", "hailo-models": "1.0.0-2"}
    assert archive["wheels"] == {}  # Hailo's wheel went with its stack: it would shadow the packaged binding
    assert "linux-image-rpi-2712" in archive["holds"]  # held for the campaign...
    assert "linux-image-rpi-2712" not in sh(fleet, "node1", "apt-mark showhold").split()  # ...and given back
    assert sh(fleet, "node2", "systemctl is-enabled apt-daily.timer || true").strip() == before != "masked"
    assert sh(fleet, "node1", "test -e /var/lib/lab-agent/hold.json && echo left || echo gone").strip() == "gone"
    owner = sh(fleet, "node1", "stat -c %U /var/lib/lab-agent/rack1/records.jsonl").strip()
    assert owner == "pi"  # logged in as pi with become, as on a Pi
    report = main(["report", "rack1", "--db", db, "--format", "md", "-o", str(base / "rack1.md")])
    assert report == 0 and "python3-h10-hailort 5.1.1-1" in (base / "rack1.md").read_text()


def test_a_model_that_does_not_match_on_a_node_ends_that_nodes_run(rack, capsys, monkeypatch):
    fleet, base, inventory, db = rack
    monkeypatch.chdir(base)
    sha = hashlib.sha256((base / "models/yolo26s_hailo10h.hef").read_bytes()).hexdigest()
    sh(fleet, "node1", f"mkdir -p /var/lib/lab-agent/models/{sha} && "
                       f"echo corrupt > /var/lib/lab-agent/models/{sha}/yolo26s_hailo10h.hef")
    (base / "short.yaml").write_text(SHORT)
    code = main(["run", str(base / "short.yaml"), "--inventory", str(inventory), "--db", db, "--name", "short1",
                 "--limit", "node1,node2"])
    out = capsys.readouterr().out
    assert code == 1, out
    with Session(create_engine(db)) as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "short1"))
        runs = {r.node: r for r in c.runs}
    assert runs["node1"].verdict == "infra_error"
    assert "model yolo26s_hailo10h.hef on node1 does not match the controller's" in runs["node1"].error
    assert runs["node2"].verdict == "stable"
    sh(fleet, "node1", f"rm -rf /var/lib/lab-agent/models/{sha}")


def test_purge_leaves_no_dkms_tree_stray_module_or_binding(rack):
    fleet, base, inventory, db = rack
    kernel = sh(fleet, "node2", "uname -r").strip()
    # what a hand install leaves behind: a make-install module, an orphan DKMS source tree, a pip wheel
    sh(fleet, "node2", f"mkdir -p /lib/modules/{kernel}/kernel/drivers/misc /usr/src/hailo1x_pci-4.99.0 "
                       "/usr/local/lib/python3.13/dist-packages/hailort-4.99.0.dist-info "
                       "/usr/local/lib/python3.13/dist-packages/hailo_platform && "
                       f"echo ko > /lib/modules/{kernel}/kernel/drivers/misc/hailo1x_pci.ko && "
                       "echo 'PACKAGE_NAME=hailo1x_pci' > /usr/src/hailo1x_pci-4.99.0/dkms.conf && "
                       "echo '__version__ = \"4.99.0\"' > /usr/local/lib/python3.13/dist-packages/hailo_platform/__init__.py")
    assert sh(fleet, "node2", "dkms status")  # the installed stack's module is registered
    result = run_playbook(PURGE_PLAYBOOK, inventory, limit="node2", timeout=600)
    assert result.status == "successful" and result.failed_hosts == [], result.hosts
    left = sh(fleet, "node2", "ls -d /var/lib/dkms/hailo* /usr/src/hailo* /lib/modules/*/*/*/*/hailo* "
                              "/lib/modules/*/updates/dkms/hailo* /usr/local/lib/python3*/dist-packages/hailo* "
                              "2>/dev/null; true")
    assert left == ""
    assert sh(fleet, "node2", "dkms status").strip() == ""
    assert sh(fleet, "node2", "python3 -c 'import hailo_platform' 2>/dev/null && echo yes || echo no").strip() == "no"
    listed = sh(fleet, "node2", "dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' '*hailo*' 2>/dev/null; true")
    assert [line for line in listed.splitlines() if not line.rstrip().endswith(("un", "pn"))] == []
