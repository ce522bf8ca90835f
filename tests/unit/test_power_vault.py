"""lab_power's credentials from Ansible Vault: the inventory opens them with the password file that
ANSIBLE_VAULT_PASSWORD_FILE names (as ansible-playbook does), and no error, result or dump ever shows one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.ansible import _envvars
from lab.cli import main
from lab.errors import InventoryError
from lab.inventory import Secret, load
from lab.power.base import driver_for, power_nodes

ANSIBLE_VAULT = str(Path(sys.executable).parent / "ansible-vault")
PLUG_SECRET = "plug-Secret-4f2a91"
VAULT_PASSWORD = "vault-pass-7c0d"


def vault(*args: str, cwd: Path) -> str:
    """Run ansible-vault (the program a person runs, as the README says) and return its output."""
    proc = subprocess.run([ANSIBLE_VAULT, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def vaulted(tmp_path_factory) -> dict[str, str]:
    """The vault password file and a `!vault` YAML value of the plug's password, made once by ansible-vault."""
    base = tmp_path_factory.mktemp("vault")
    password_file = base / "vault-password"
    password_file.write_text(VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    out = vault("encrypt_string", "--vault-password-file", str(password_file), PLUG_SECRET,
                "--name", "vault_shelly_password", cwd=base)
    return {"password_file": str(password_file), "yaml": out.strip()}


def vaulted_inventory(tmp_path: Path, vaulted: dict[str, str], n1_power: str | None = None) -> Path:
    """n1: a shelly plug whose password is the vaulted variable; n2: a command with the vaulted value inside an argument."""
    path = tmp_path / "inv.yml"
    body = "\n".join("    " + line for line in vaulted["yaml"].splitlines())
    n1_power = n1_power or '{driver: shelly, host: 192.0.2.50, password: "{{ vault_shelly_password }}"}'
    path.write_text(
        "all:\n  vars:\n" + body + "\n  hosts:\n"
        "    n1:\n      ansible_host: 127.77.9.1\n      ansible_become_password: become-pass-1\n"
        f"      lab_power: {n1_power}\n"
        "    n2:\n      ansible_host: 127.77.9.2\n"
        "      lab_power: {driver: command, 'on': [sh, -c, 'echo $0 >&2; exit 3', 'admin:{{ vault_shelly_password }}'],"
        " 'off': ['true']}\n")
    return path


def test_a_vaulted_password_opens_with_the_password_file(tmp_path, monkeypatch, vaulted):
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", vaulted["password_file"])
    inv = load(str(vaulted_inventory(tmp_path, vaulted)))
    shelly = driver_for(inv.hosts["n1"])
    assert shelly.config.password == Secret(PLUG_SECRET) and shelly.config.password.reveal() == PLUG_SECRET
    # an argument built around a vaulted value is a secret too, revealed only to the command
    argument = driver_for(inv.hosts["n2"]).config.on[3]
    assert isinstance(argument, Secret) and argument.reveal() == f"admin:{PLUG_SECRET}"
    for host in inv.hosts.values():  # the vaulted variable and the become password are not kept
        assert "vault_shelly_password" not in host.vars and "ansible_become_password" not in host.vars
        assert PLUG_SECRET not in repr(host) and "become-pass-1" not in repr(host)


def test_a_secret_echoed_by_a_failing_command_is_masked(tmp_path, monkeypatch, vaulted):
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", vaulted["password_file"])
    inv = load(str(vaulted_inventory(tmp_path, vaulted)))
    [result] = power_nodes([inv.hosts["n2"]], "on")
    assert result.detail == "command sh: the on command exited 3: ********"
    assert not result.ok and PLUG_SECRET not in repr(result)


def test_a_vault_encrypted_vars_file_opens_too(tmp_path, monkeypatch, vaulted):
    """group_vars/all/vault.yml encrypted whole (`ansible-vault encrypt`), as many racks keep their secrets."""
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    secrets = tmp_path / "group_vars" / "all" / "vault.yml"
    secrets.write_text(f"vault_plug_password: {PLUG_SECRET}\n")
    vault("encrypt", "--vault-password-file", vaulted["password_file"], str(secrets), cwd=tmp_path)
    assert PLUG_SECRET not in secrets.read_text()
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", vaulted["password_file"])
    (tmp_path / "inv.yml").write_text(
        "all:\n  hosts:\n    n1:\n      ansible_host: 127.77.9.1\n"
        "      lab_power: {driver: shelly, host: 192.0.2.50, password: '{{ vault_plug_password }}'}\n")
    assert driver_for(load(str(tmp_path / "inv.yml")).hosts["n1"]).config.password.reveal() == PLUG_SECRET


def test_no_vault_password_is_one_line(tmp_path, monkeypatch, capsys, vaulted):
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    path = vaulted_inventory(tmp_path, vaulted)
    assert main(["check", "--inventory", str(path)]) == 2
    assert capsys.readouterr() == ("", f"lab: error: host n1: lab_power uses a vaulted value and no vault password is "
                                       f"given, {path}, set ANSIBLE_VAULT_PASSWORD_FILE to the vault password file\n")


def test_a_wrong_vault_password_is_one_line_without_any_secret(tmp_path, monkeypatch, capsys, vaulted):
    wrong = tmp_path / "wrong-password"
    wrong.write_text("wrong-vault-pass-19\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(wrong))
    path = vaulted_inventory(tmp_path, vaulted)
    for command in (["check", "--inventory", str(path)], ["power", "n1", "status", "--inventory", str(path), "--json"]):
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert (out, err) == ("", f"lab: error: host n1: lab_power uses a vaulted value that the vault password does "
                                  f"not open, {path}, check the password file ANSIBLE_VAULT_PASSWORD_FILE names\n")
        for secret in ("wrong-vault-pass-19", VAULT_PASSWORD, PLUG_SECRET):
            assert secret not in err


def test_a_missing_password_file_is_one_line(tmp_path, monkeypatch, vaulted):
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "nowhere"))
    with pytest.raises(InventoryError) as err:
        load(str(vaulted_inventory(tmp_path, vaulted)))
    assert str(err.value) == (f"cannot read the vault password file: The vault password file {tmp_path}/nowhere was "
                              f"not found, ANSIBLE_VAULT_PASSWORD_FILE={tmp_path}/nowhere, name a readable file holding "
                              "the vault password (see README, Wiring a rack's power)")


def test_an_undefined_variable_in_lab_power_is_one_line(tmp_path, monkeypatch, vaulted):
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", vaulted["password_file"])
    path = vaulted_inventory(tmp_path, vaulted, "{driver: shelly, host: 192.0.2.50, password: '{{ vault_nothing }}'}")
    with pytest.raises(InventoryError) as err:
        load(str(path))
    assert str(err.value).startswith("host n1: lab_power cannot be templated: ")
    assert "vault_nothing" in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_playbooks_get_the_vault_password_file(tmp_path, monkeypatch):
    """ansible-runner's ansible-playbook reads the same vaulted inventory: the file is passed on, made absolute."""
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", "vault-password")
    assert _envvars()["ANSIBLE_VAULT_PASSWORD_FILE"] == str(tmp_path / "vault-password")
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE")
    assert "ANSIBLE_VAULT_PASSWORD_FILE" not in _envvars()
