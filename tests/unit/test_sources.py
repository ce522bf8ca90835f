"""Where packages come from: pins that match Debian revisions, inventory sources, Hailo's files folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lab.errors import ConfigError, InventoryError
from lab.inventory import Host
from lab.resources import shipped
from lab.sources import (archive_pins, hailo_files, installs_for, parse_sources, pick_version, resolve_install,
                         version_matches)
from lab.stack import Stack, load_stack

PROJECT = Path(__file__).resolve().parents[2]
MADISON = PROJECT / "tests/fixtures/madison"
H10_530 = Stack(name="h10-5.3.0", chip="hailo10h", hailort="5.3.0", driver="5.3.0", firmware="5.3.0")
H10_511 = Stack(name="h10-5.1.1", chip="hailo10h", hailort="5.1.1", driver="5.1.1", firmware="5.1.1")


def _filter():
    path = PROJECT / "lab/data/roles/hailo_stack/filter_plugins/hailo_versions.py"
    spec = importlib.util.spec_from_file_location("hailo_versions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()["hailo_madison_pick"]


@pytest.mark.parametrize(("pin", "version", "ok"), [
    ("5.1.1", "5.1.1", True),
    ("5.1.1", "5.1.1-1", True),
    ("5.1.1", "5.1.1-1+rpt1", True),
    ("5.1.1", "1:5.1.1-2", True),
    ("5.1.1", "5.1.1+rpt1", True),
    ("5.1.1", "5.1.10", False),
    ("5.1.1", "5.1.1.1", False),
    ("5.1.1", "5.1.0-1", False),
    ("4.23.0-1", "4.23.0-1", True),
    ("4.23.0-1", "4.23.0-2", False),
])
def test_a_pin_matches_debian_revisions(pin, version, ok):
    assert version_matches(pin, version) is ok


def test_pick_takes_the_newest_matching_version():
    assert pick_version("4.23.0", ["4.23.0-2", "4.23.0-1", "4.20.0-1"]) == "4.23.0-2"
    assert pick_version("5.3.0", ["5.1.1-1"]) is None


@pytest.mark.parametrize(("fixture", "pin", "want"), [
    ("python3-h10-hailort.txt", "5.1.1", "5.1.1-1"),   # the old role's exact match found nothing here
    ("h10-hailort.txt", "5.1.1", "5.1.1"),
    ("hailort.txt", "4.19.0", "4.19.0-3"),  # Raspberry Pi's own pin is hailort=4.19.0-3
    ("hailort.txt", "4.18.0", "4.18.0"),
    ("hailort.txt", "5.3.0", ""),
])
def test_the_roles_filter_reads_madison_output(fixture, pin, want):
    lines = (MADISON / fixture).read_text().splitlines()
    assert _filter()(lines, pin) == want


def test_stacks_name_versions_and_the_archive_names_come_from_the_chip():
    stack = load_stack(shipped("stack") / "h10-5.1.1.yaml")
    assert archive_pins(stack) == {"hailo-h10-all": "5.1.1", "h10-hailort": "5.1.1",
                                   "h10-hailort-pcie-driver": "5.1.1", "python3-h10-hailort": "5.1.1"}
    h8 = load_stack(shipped("stack") / "h8-4.23.0.yaml")
    assert archive_pins(h8) == {"hailo-all": "4.23.0", "hailort": "4.23.0", "hailort-pcie-driver": "4.23.0",
                                "python3-hailort": "4.23.0"}


def _hailo_folder(tmp_path: Path, version: str = "5.3.0") -> Path:
    folder = tmp_path / "hailo-files"
    folder.mkdir(exist_ok=True)
    for name in (f"hailort_{version}_arm64.deb", f"hailort-pcie-driver_{version}_all.deb",
                 f"hailort-{version}-cp313-cp313-linux_aarch64.whl", f"hailort-{version}-cp311-cp311-linux_aarch64.whl",
                 "hailort_5.2.0_arm64.deb", "notes.txt"):
        (folder / name).write_bytes(b"x")
    return folder


def test_hailo_files_are_found_by_hailos_names(tmp_path):
    folder = _hailo_folder(tmp_path)
    found = hailo_files(folder, H10_530)
    assert [p.name for p in found.runtime] == ["hailort_5.3.0_arm64.deb"]
    assert [p.name for p in found.driver] == ["hailort-pcie-driver_5.3.0_all.deb"]
    assert sorted(p.name for p in found.wheels) == ["hailort-5.3.0-cp311-cp311-linux_aarch64.whl",
                                                   "hailort-5.3.0-cp313-cp313-linux_aarch64.whl"]
    assert hailo_files(folder, H10_511) is None
    assert hailo_files(tmp_path / "nowhere", H10_530) is None


def test_the_first_source_that_has_the_stack_wins(tmp_path):
    folder = _hailo_folder(tmp_path)
    sources = [{"files": str(folder)}, "archive"]
    files = resolve_install(H10_530, sources, "inventory/pis.yml")
    assert files["kind"] == "files"
    assert [Path(d).name for d in files["debs"]] == ["hailort_5.3.0_arm64.deb", "hailort-pcie-driver_5.3.0_all.deb"]
    assert files["wheel_version"] == "5.3.0"
    assert files["hold"] == ["hailort", "hailort-pcie-driver"]
    # Hailo's files replace the archive's line for this chip, the packaged binding included
    assert files["remove"] == ["h10-hailort", "h10-hailort-pcie-driver", "hailo-h10-all", "python3-h10-hailort"]
    apt = resolve_install(H10_511, sources, "inventory/pis.yml")
    assert apt == {"kind": "apt", "repository": "", "packages": archive_pins(H10_511)}
    local = resolve_install(H10_511, [{"apt": "deb [trusted=yes] http://mirror.lan/hailo ./"}], "inv")
    assert local["repository"] == "deb [trusted=yes] http://mirror.lan/hailo ./"


def test_a_relative_folder_is_taken_from_the_inventorys_directory(tmp_path, monkeypatch):
    _hailo_folder(tmp_path)
    (tmp_path / "inventory").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    host = Host("pi-01", "192.0.2.11", {"lab_hailo_sources": [{"files": "../hailo-files"}]})
    got = installs_for(H10_530, [host], str(tmp_path / "inventory" / "pis.yml"))["pi-01"]
    assert got["folder"] == str(tmp_path / "hailo-files")


def test_no_source_has_the_stack_is_one_line_before_any_node(tmp_path):
    folder = _hailo_folder(tmp_path, "5.2.0")
    with pytest.raises(ConfigError) as info:
        resolve_install(H10_530, [{"files": str(folder)}], "inventory/pis.yml")
    assert str(info.value) == (
        "no source of inventory/pis.yml provides stack h10-5.3.0 (HailoRT 5.3.0, driver 5.3.0), inventory/pis.yml, "
        f"put Hailo's hailort_5.3.0_arm64.deb, hailort-pcie-driver_5.3.0_all.deb and hailort-5.3.0-*.whl in {folder}")


def test_default_source_is_the_archive():
    assert parse_sources(None, "inv") == [{"archive": True}]
    assert installs_for(H10_511, [Host("pi-01", "192.0.2.11", {})], "inv")["pi-01"]["kind"] == "apt"


@pytest.mark.parametrize("value", [[], "archive", [{"files": ""}], [{"apt": "deb http://x trixie main; rm -rf /"}],
                                   [{"url": "http://x"}], [{"files": "a", "apt": "deb http://x ./"}]])
def test_bad_sources_are_an_inventory_error(value):
    with pytest.raises(InventoryError) as info:
        parse_sources(value, "inventory/pis.yml")
    assert "lab_hailo_sources" in str(info.value)


def test_shipped_inventories_name_the_same_sources():
    import yaml

    pis = yaml.safe_load((PROJECT / "inventory/pis.example.yml").read_text())
    assert pis["all"]["children"]["pis"]["vars"]["lab_hailo_sources"] == [{"files": "../hailo-files"}, "archive"]


def _inventory(tmp_path: Path, sources: str) -> Path:
    inv = tmp_path / "rack.yml"
    inv.write_text(f"""all:
  hosts:
    pi-01: {{ansible_host: 192.0.2.11, lab_chip: hailo10h}}
    pi-02: {{ansible_host: 192.0.2.12, lab_chip: hailo8}}
  vars:
    lab_hailo_sources: {sources}
""")
    return inv


def test_a_campaign_resolves_each_nodes_source_before_touching_it(tmp_path, monkeypatch):
    from lab.engine.plan import host_phase_spec, plan_campaign

    folder = _hailo_folder(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo26s_hailo10h.hef").write_bytes(b"hef")
    monkeypatch.chdir(tmp_path)
    plan = plan_campaign(shipped("scenario") / "cma_soak.yaml", str(_inventory(tmp_path, "[{files: hailo-files}, archive]")))
    assert plan.installs[("h10-5.3.0", "pi-01")]["kind"] == "files"
    assert plan.installs[("h8-4.23.0", "pi-02")] == {"kind": "apt", "repository": "",
                                                      "packages": archive_pins(plan.loaded.stacks["h8-4.23.0"])}
    run = next(r for r in plan.runs if r.node == "pi-01")
    spec = host_phase_spec("c", plan, 0, 1, plan.inventory.hosts["pi-01"], plan.loaded.stacks[run.stack])
    assert spec["stack"]["install"]["debs"] == [str(folder / "hailort_5.3.0_arm64.deb"),
                                                str(folder / "hailort-pcie-driver_5.3.0_all.deb")]


def test_a_campaign_whose_stack_no_source_has_stops_before_any_node(tmp_path, monkeypatch):
    from lab.engine.plan import plan_campaign

    (tmp_path / "empty").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo26s_hailo10h.hef").write_bytes(b"hef")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        plan_campaign(shipped("scenario") / "cma_soak.yaml", str(_inventory(tmp_path, "[{files: empty}]")))
    assert "provides stack h10-5.3.0" in str(info.value) and "\n" not in str(info.value)
