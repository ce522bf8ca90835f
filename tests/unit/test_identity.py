"""A unit is the HAT, keyed by what its chip reports; each run records the Pi the HAT sat in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from lab.agent import parsers
from lab.agent.records import read_records
from lab.bundle import build_bundle
from lab.contract import Record
from lab.db.ingest import unit_key, upsert_unit
from lab.db.store import SqlStore
from lab.db.models import Campaign, Run, Unit
from lab.inventory import Host
from tests.conftest import FIXTURES
from tests.unit.fake_node import fake_boot_tools, fake_kernel

CASES = FIXTURES / "parsers" / "identify" / "inputs"
PI = FIXTURES / "pi"


def _identify(name: str) -> dict:
    return parsers.parse_identify((CASES / name).read_text()).to_dict()


# --- what identify says, per version -----------------------------------------------------------

def test_421_and_older_print_not_available_which_is_no_serial():
    hat = _identify("identify_h8_4.20_hat.txt")
    assert "Serial Number: <N/A>" in (CASES / "identify_h8_4.20_hat.txt").read_text()
    assert (hat["serial_number"], hat["part_number"], hat["product_name"]) == (None, None, None)


def test_422_and_5x_print_no_serial_line():
    for name in ("identify_extended_h8_4.23_lcs_no_newline.txt", "identify_extended_h10_5.1.1.txt"):
        assert "Serial Number" not in (CASES / name).read_text()
        assert _identify(name)["serial_number"] is None


def test_extended_fields_per_version():
    h10 = _identify("identify_extended_h10_5.2.0.txt")
    assert (h10["extended"], h10["lcs"], len(h10["soc_id"]), len(h10["ult_id"]), h10["board_sku"]) == (True, 5, 64, 24, "6")
    h8 = _identify("identify_extended_h8_4.23_lcs_no_newline.txt")  # `LCS: 3SoC ID: ...` on one line
    assert (h8["lcs"], len(h8["soc_id"]), h8["nn_clock_mhz"], h8["supported_features"]) == (3, 64, 400, ["PCIE"])
    assert _identify("identify_extended_h8_4.21_lcs_unset.txt")["lcs"] is None  # `LCS: <N/A>`
    assert _identify("identify_h8_4.20_hat.txt")["extended"] is False


# --- unit keys ----------------------------------------------------------------------------------

def test_not_available_and_empty_are_absent():
    from lab.db.ingest import chip_id

    assert [chip_id(v) for v in ("<N/A>", "", "  ", "\x00", None, "HLDDLBB234500054")] == [
        None, None, None, None, None, "HLDDLBB234500054"]


def test_soc_id_is_preferred_then_serial():
    assert unit_key("node1", serial="HLDDLBB234500054", soc_id="ab" * 32) == "soc:" + "AB" * 32
    assert unit_key("node1", serial="HLDDLBB234500054", soc_id="") == "serial:HLDDLBB234500054"
    assert unit_key("node1", serial="<N/A>", soc_id="CD" * 32) == "soc:" + "CD" * 32


def test_two_not_available_units_never_merge(db_session):
    a = upsert_unit(db_session, "pi-01", serial="<N/A>", chip="hailo8", scope="camp-1")
    b = upsert_unit(db_session, "pi-02", serial="<N/A>", chip="hailo8", scope="camp-1")
    later = upsert_unit(db_session, "pi-01", serial="", chip="hailo8", scope="camp-2")  # maybe another HAT now
    assert len({a.id, b.id, later.id}) == 3
    assert a.key == "unidentified:camp-1:pi-01" and "unidentified" in a.identity["note"]
    assert upsert_unit(db_session, "pi-01", serial="<N/A>", scope="camp-1").id == a.id  # same campaign, same node
    with pytest.raises(ValueError):
        unit_key("pi-01", serial="<N/A>")  # without a scope it could only merge


def test_a_moved_hat_keeps_its_unit_and_a_serial_unit_is_rekeyed_by_its_soc_id(db_session):
    first = upsert_unit(db_session, "pi-01", soc_id="ab" * 32, chip="hailo10h", identity={"lcs": 5})
    moved = upsert_unit(db_session, "pi-02", soc_id="AB" * 32)
    assert moved.id == first.id and moved.node == "pi-02" and moved.identity == {"lcs": 5}
    old = upsert_unit(db_session, "pi-03", serial="HLDDLBB234500054")  # stored before --extended was read
    again = upsert_unit(db_session, "pi-03", serial="HLDDLBB234500054", soc_id="CD" * 32)
    assert again.id == old.id and again.key == "soc:" + "CD" * 32 and again.serial == "HLDDLBB234500054"


# --- the Pi's own identity ------------------------------------------------------------------------

def test_cpuinfo_of_a_pi_and_of_another_machine():
    from lab.agent.pi import parse_cpuinfo

    pi = parse_cpuinfo((PI / "cpuinfo_pi5.txt").read_text())
    assert pi == {"Revision": "d04170", "Serial": "8f3c2a1b9d4e6f70", "Model": "Raspberry Pi 5 Model B Rev 1.0"}
    assert parse_cpuinfo((PI / "cpuinfo_x86.txt").read_text()) == {}  # `model : 85` is not a Pi's Model


def test_devicetree_first_then_cpuinfo(tmp_path):
    from lab.agent.pi import pi_identity, read_pi_identity

    ident = pi_identity((PI / "cpuinfo_pi5.txt").read_text(), b"8f3c2a1b9d4e6f70\x00", b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert (ident.serial, ident.model, ident.devicetree_serial) == (
        "8f3c2a1b9d4e6f70", "Raspberry Pi 5 Model B Rev 1.0", "8f3c2a1b9d4e6f70")
    only_cpuinfo = read_pi_identity(str(tmp_path / "absent"), str(PI / "cpuinfo_pi5.txt"))
    assert (only_cpuinfo.serial, only_cpuinfo.devicetree_serial) == ("8f3c2a1b9d4e6f70", None)
    nothing = read_pi_identity(str(tmp_path / "absent"), str(PI / "cpuinfo_x86.txt"))
    assert (nothing.serial, nothing.model) == (None, None)


# --- the agent's identify step ----------------------------------------------------------------------

FAKE = """#!/bin/sh
# stand-in for hailortcli: identify prints a recorded case; --extended fails when asked to
case "$*" in
  --version) echo "HailoRT-CLI version 4.23.0" ;;
  *--extended*) if [ -e "$LAB_FAKE_DIR/no-extended" ]; then
      echo '[HailoRT CLI] [error] CHECK_SUCCESS failed with status=HAILO_INTERNAL_FAILURE(8)'; exit 8
    fi; cat "$LAB_FAKE_DIR/extended.txt" ;;
  *) cat "$LAB_FAKE_DIR/plain.txt" ;;
esac
"""


@pytest.fixture
def node(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "hailortcli").write_text(FAKE)
    (bindir / "hailortcli").chmod(0o755)
    fake_boot_tools(bindir)
    (tmp_path / "extended.txt").write_text((CASES / "identify_extended_h8_4.23_lcs_no_newline.txt").read_text())
    (tmp_path / "plain.txt").write_text((CASES / "identify_h8_4.20_hat.txt").read_text())
    dt = tmp_path / "devicetree"
    dt.mkdir()
    (dt / "serial-number").write_bytes(b"0123456789abcdef\x00")
    (dt / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("LAB_FAKE_DIR", str(tmp_path))
    work = tmp_path / "campaign"
    work.mkdir()
    return work


def _run_identify(work: Path) -> dict:
    spec = {"campaign": "c1", "run_key": "7", "phase": "soak", "phase_index": 1, "time_scale": 0.001,
            "chip": "hailo8", "devicetree_dir": str(work.parent / "devicetree"),
            "commands": {"driver_version": ["echo", "4.23.0"]}, "steps": [{"kind": "identify"}],
            **fake_kernel(work.parent / "kernel", device="0x2864")}  # a Hailo-8 on the bus, ready
    path = work / "phase-1.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(build_bundle(work.parent / "cache")), "run", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return next(r for r in read_records(str(work / "records.jsonl")) if r["kind"] == "identity")


def test_agent_reads_extended_identity_and_the_pi(node):
    rec = _run_identify(node)
    assert rec["identity"]["extended"] is True and len(rec["identity"]["soc_id"]) == 64
    assert (rec["host_serial"], rec["host_model"]) == ("0123456789abcdef", "Raspberry Pi 5 Model B Rev 1.0")
    assert rec["host_identity"]["devicetree_serial"] == "0123456789abcdef" and "identity_note" not in rec


def test_agent_falls_back_to_plain_identify(node):
    (node.parent / "no-extended").write_text("1")
    rec = _run_identify(node)
    assert rec["identity"]["extended"] is False and rec["identity"]["serial_number"] is None
    assert "HAILO_INTERNAL_FAILURE(8)" in rec["identity_note"] and "error" not in rec


# --- ingest: the unit and the Pi per run ---------------------------------------------------------------

def _identity_record(run_id: int, seq: int, ident: dict, pi_serial: str) -> Record:
    return Record.from_json({"seq": seq, "ts": 1777522082.0 + seq, "kind": "identity", "step": "identify", "run_key": str(run_id),
            "phase": "soak", "identity": ident, "host_serial": pi_serial, "host_model": "Raspberry Pi 5 Model B Rev 1.0"})


def test_ingest_records_the_pi_of_each_run_and_the_unit_of_the_chip(db_engine):
    from sqlalchemy.orm import Session

    from lab.db.ingest import get_or_create_stack

    with Session(db_engine) as session, session.begin():
        stack = get_or_create_stack(session, "h8-4.23.0", "4.23.0", "4.23.0", "4.23.0", chip="hailo8")
        campaign = Campaign(name="c1", scenario_name="s", scenario_text="name: s\n")
        runs = [Run(campaign=campaign, index=i, node=f"pi-0{i + 1}", stack=stack) for i in range(3)]
        session.add_all([campaign, *runs])
        session.flush()
        ids = [r.id for r in runs]
    moved = _identify("identify_extended_h8_4.23_lcs_no_newline.txt")
    hat = _identify("identify_h8_4.20_hat.txt")  # <N/A>: no SoC ID read, no serial
    store = SqlStore(db_engine)
    for i, (ident, serial) in enumerate(((moved, "1111111111111111"), (hat, "2222222222222222"),
                                         (hat, "3333333333333333"))):
        store.ingest("c1", 1, Host(f"pi-0{i + 1}", "127.0.0.1", {}), [_identity_record(ids[i], 1, ident, serial)])
    with Session(db_engine) as session:
        got = {r.node: (r.host_serial, r.host_model, r.unit.key) for r in session.scalars(select(Run))}
        assert got["pi-02"][2] != got["pi-03"][2]  # two HATs printing `Serial Number: <N/A>` are two units
        assert got["pi-01"] == ("1111111111111111", "Raspberry Pi 5 Model B Rev 1.0", "soc:" + moved["soc_id"])
        assert got["pi-02"][2] == "unidentified:c1:pi-02" and got["pi-03"][2] == "unidentified:c1:pi-03"
        unit = session.scalar(select(Unit).where(Unit.key == "soc:" + moved["soc_id"]))
        assert unit.identity["lcs"] == 3 and unit.identity["ult_id"] == moved["ult_id"]


# --- the emulator: a HAT that moves to another Pi ----------------------------------------------------

def test_swap_hats_moves_the_hat_and_leaves_the_pi(tmp_path):
    """Nodes powered off: only their hardware files and the inventory change (a running fleet: test_identity.py)."""
    import yaml

    from lab.virtual.emulator.hailo_emu.hw import unit_with_defaults
    from lab.virtual.fleet import Fleet
    from lab.virtual.node import write_hw

    fleet = Fleet(root=tmp_path / "fleet", net="127.77.151")
    inventory = tmp_path / "virtual.yml"
    meta = {"id": "t", "nodes": ["node1", "node2"], "time_scale": 0.1, "inventory": str(inventory)}
    fleet.root.mkdir()
    fleet.meta_file.write_text(json.dumps(meta))
    profile = {"node1": {"chip": "hailo10h"}, "node2": {"chip": "hailo8", "cma_leak": 0.0, "pi_model": "Raspberry Pi 5 Model B Rev 1.1"}}
    for name, unit in profile.items():
        write_hw(fleet.node(name), unit, {"time_scale": 0.1})
    before = {n: unit_with_defaults(json.loads((fleet.node(n).hw / "unit.json").read_text())) for n in profile}
    fleet.swap_hats("node1", "node2")
    after = {n: unit_with_defaults(json.loads((fleet.node(n).hw / "unit.json").read_text())) for n in profile}
    for a, b in (("node1", "node2"), ("node2", "node1")):
        assert [after[a][k] for k in ("hat", "chip", "soc_id", "ult_id", "cma_leak")] == [
            before[b][k] for k in ("hat", "chip", "soc_id", "ult_id", "cma_leak")]
        assert [after[a][k] for k in ("node", "pi_serial", "pi_model")] == [before[a][k] for k in ("node", "pi_serial", "pi_model")]
    assert (fleet.node("node1").hw / "devicetree" / "serial-number").read_bytes() == before["node1"]["pi_serial"].encode() + b"\0"
    hosts = yaml.safe_load(inventory.read_text())["virtual"]["hosts"]
    assert (hosts["node1"]["lab_chip"], hosts["node2"]["lab_chip"]) == ("hailo8", "hailo10h")
    assert hosts["node1"]["lab_devicetree_dir"] == "/lab/hw/devicetree"
    fleet.swap_hats("node1", "node2")  # and back: the same identities as before
    back = {n: unit_with_defaults(json.loads((fleet.node(n).hw / "unit.json").read_text())) for n in profile}
    assert back == before
    from lab.errors import ConfigError

    for pair in (("node1", "node9"), ("node2", "node2")):
        with pytest.raises(ConfigError):
            fleet.swap_hats(*pair)


# --- property: the parser reads back what the emulated identify printed, on every version --------------

def _hex(n: int):
    from hypothesis import strategies as st

    return st.one_of(st.just(""), st.text("0123456789ABCDEF", min_size=n, max_size=n))


def test_identify_round_trip_on_every_version():
    """Whatever the HAT has programmed and whichever version prints it, the parser gets it back (`LCS: 3SoC ID`)."""
    import io

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lab.virtual.emulator.hailo_emu import cli

    class Runtime:
        def __init__(self, ident):
            self.ident = ident

        def identity(self):
            return self.ident

    @settings(database=None, max_examples=150)
    @given(version=st.sampled_from(["4.19.0", "4.20.0", "4.21.0", "4.22.0", "4.23.0", "5.0.0", "5.1.0", "5.1.1",
                                    "5.2.0", "5.3.0"]),
           serial=st.one_of(st.just(""), st.text("ABCDEFGHJKLMNPRSTUVWXYZ0123456789", min_size=1, max_size=16)),
           soc=_hex(64), ult=_hex(24), lcs=st.integers(0, 255), sku=st.integers(0, 63), extended=st.booleans())
    def check(version, serial, soc, ult, lcs, sku, extended):
        h10 = version.startswith("5.")
        ident = {"device_id": "0001:01:00.0", "protocol_version": 2, "firmware_version": version,
                 "logger_version": 0, "is_release": True, "extended_context_switch_buffer": not h10,
                 "board_name": "" if h10 else "Hailo-8", "arch": "HAILO10H" if h10 else "HAILO8",
                 "serial": serial, "part_number": "", "product_name": "", "lcs": lcs, "soc_id": soc, "ult_id": ult,
                 "board_sku": sku, "boot_source": "PCIE", "nn_clock_mhz": 1000 if h10 else 400}
        tool = cli.Cli(version, out=io.StringIO())
        tool._runtime = Runtime(ident)
        assert tool.identify(extended) == 0
        got = parsers.parse_identify(tool.out.getvalue())
        assert (got.serial_number, got.extended) == (serial or None, extended)
        if extended:
            unset_lcs = 0 if version < "4.21" else None  # 4.19/4.20 print `LCS: 0`
            assert (got.soc_id, got.ult_id, got.lcs) == (soc or None, ult or None, lcs or unset_lcs)
            assert got.board_sku == (str(sku) if h10 and version >= "5.1" else None)

    check()


# --- lab nodes: exact output ----------------------------------------------------------------------------

def test_lab_nodes_text_and_json_show_pi_and_hat(tmp_path, monkeypatch, capsys):
    import lab.cli
    from lab.cli import nodes as nodes_module
    from lab.ssh import ExecResult

    inventory = tmp_path / "pis.yml"
    inventory.write_text("all:\n  hosts:\n    pi-01: {ansible_host: 192.0.2.11, lab_devicetree_dir: /dt}\n")
    identify = (CASES / "identify_extended_h8_4.23_lcs_no_newline.txt").read_text()
    probe = ("boot_id=b\nuptime=12.5\nhostname=pi-01\nhailort=4.23.0\n"
             + "".join(f"identify|{line}\n" for line in identify.splitlines())
             + "cpuinfo|Serial\t\t: 8f3c2a1b9d4e6f70\ncpuinfo|Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
             + "dt_serial=\ndt_model=\ndevice=present\n")
    seen = []

    def fake(hosts, command, timeout):
        seen.extend(command(h) for h in hosts)
        return [ExecResult(h.name, 0, probe) for h in hosts]

    monkeypatch.setattr(lab.cli, "_register", lambda: None)
    monkeypatch.setattr(nodes_module, "run_on_hosts", fake)
    assert lab.cli.main(["nodes", "--inventory", str(inventory)]) == 0
    soc = "37F2270C0C0C363FA0360903C7B5A59243525FDEC531215A1B76FE2901893FDE"
    assert capsys.readouterr().out == (
        "pi-01      192.0.2.11      HAILO8    hailort 4.23.0  fw 4.23.0                 device present up 12s\n"
        f"           pi 8f3c2a1b9d4e6f70 (Raspberry Pi 5 Model B Rev 1.0)  hat soc:{soc} serial - soc_id {soc[:16]}...\n")
    assert seen[0].startswith("DT=/dt\n")
    assert lab.cli.main(["nodes", "--inventory", str(inventory), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["nodes"][0]
    assert row["pi"] == {"serial": "8f3c2a1b9d4e6f70", "model": "Raspberry Pi 5 Model B Rev 1.0"}
    assert (row["hat"]["unit"], row["hat"]["soc_id"], row["hat"]["lcs"]) == (f"soc:{soc}", soc, 3)
