"""Inventories: loaded by Ansible's InventoryManager, resolved by name, bad ones reported in one line."""

from __future__ import annotations

import pytest

from lab.cli import main
from lab.errors import InventoryError
from lab.inventory import load
from lab.ssh import ssh_argv
from tests.conftest import PROJECT


def test_real_pi_example_loads_with_chips_and_groups():
    inv = load(str(PROJECT / "inventory" / "pis.example.yml"))
    assert list(inv.hosts) == ["pi-01", "pi-02", "pi-03"]
    assert [h.chip for h in inv.hosts.values()] == ["hailo10h", "hailo10h", "hailo8"]
    assert inv.groups["h10"] == ["pi-01", "pi-02"]
    assert [h.name for h in inv.select("h8,pi-01")] == ["pi-03", "pi-01"]
    argv = ssh_argv(inv.hosts["pi-03"], "true")
    assert argv[-2:] == ["pi@192.0.2.13", "true"] and "StrictHostKeyChecking=no" not in " ".join(argv)


def test_secrets_are_not_kept_in_host_vars(tmp_path):
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    a: {ansible_host: 127.77.9.1, ansible_become_password: hunter2, ansible_password: x}\n")
    host = load(str(path)).hosts["a"]
    assert "hunter2" not in repr(host.vars) and "ansible_password" not in host.vars


def test_limit_naming_nothing(tmp_path):
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    a: {ansible_host: 127.77.9.1}\n")
    with pytest.raises(InventoryError) as err:
        load(str(path)).select("b")
    assert str(err.value) == f"--limit names 'b', which is neither a host nor a group, {path}, hosts: a"


@pytest.mark.parametrize("text, what", [
    ("all:\n  hosts:\n    a: {ansible_host: 127.77.9.1, lab_chip: hailo9}\n", "host a has lab_chip 'hailo9'"),
    ("all:\n  hosts: {}\n", "the inventory has no hosts"),
    ("all: [1, 2\n", "cannot read inventory"),
])
def test_bad_inventory_is_one_line_exit_2(tmp_path, capsys, text, what):
    path = tmp_path / "inv.yml"
    path.write_text(text)
    code = main(["nodes", "--inventory", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"lab: error: {what}") and str(path) in err and err.count("\n") == 1


def test_missing_inventory(capsys):
    code = main(["run", str(PROJECT / "scenarios" / "cma_soak.yaml"), "--inventory", "nowhere"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("lab: error: no inventory 'nowhere', nowhere, give a path, or a name in inventory/ "
                   "(pis -> inventory/pis.yml); `lab fleet up` writes inventory/virtual.yml\n")
