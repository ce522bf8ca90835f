"""Bad input never gets far (issue 6): one line, exit 2, no traceback, nothing written, no node contacted.

The inventory here is valid but names 127.77.9.x hosts that are never contacted: every refusal below
happens before a node or the database is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import node_files
from lab.cli import main
from lab.node_files import SshAgentFiles
from lab.inventory import Host

PROJECT = Path(__file__).resolve().parents[2]
BAD = Path("tests/fixtures/bad")
VALID = {"stacks/h10-5.3.0.yaml"}  # the one good stack the bad scenarios refer to
BAD_FILES = sorted(name for name in (str(p.relative_to(PROJECT / BAD)) for p in (PROJECT / BAD).rglob("*.yaml"))
                   if name not in VALID)
SCENARIO = "scenarios/cma_soak.yaml"
INVENTORY = """all:
  hosts:
    pi1: {ansible_host: 127.77.9.1, lab_chip: hailo10h}
    pi2: {ansible_host: 127.77.9.2, lab_chip: hailo8}
"""


@pytest.fixture
def inv(tmp_path, monkeypatch):
    """Run from the project root (messages name short relative paths); a valid inventory in tmp."""
    monkeypatch.chdir(PROJECT)
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    # the scenarios' controller model, kept in tmp (the project root has no models/ folder)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo26s_hailo10h.hef").write_bytes(b"hef")
    monkeypatch.setattr("lab.models.model_dirs", lambda scenario_path: [tmp_path / "models"])
    return path


def one_line_error(err: str) -> str:
    """The single line a refusal prints on stderr (and nothing else)."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), err
    return lines[0]


def no_campaign(db_file: Path) -> bool:
    """The database file was not created (or, if it was, holds no campaign)."""
    if not db_file.exists():
        return True
    import sqlite3

    with sqlite3.connect(db_file) as con:
        return con.execute("select count(*) from campaign").fetchone()[0] == 0


def test_there_are_enough_bad_files():
    assert len(BAD_FILES) >= 44
    kinds = {f.split("/")[0] for f in BAD_FILES}
    assert {"scenarios", "stacks", "unknown_kind.yaml"} <= kinds


@pytest.mark.parametrize("name", BAD_FILES)
def test_lab_run_refuses_a_bad_file_as_lab_check_does(name, inv, tmp_path, capsys):
    path = str(BAD / name)
    assert main(["check", path]) == 2
    checked = capsys.readouterr()
    assert checked.out == ""
    expected = one_line_error(checked.err)
    db_file = tmp_path / "x.db"
    assert main(["run", path, "--inventory", str(inv), "--db", f"sqlite:///{db_file}"]) == 2
    ran = capsys.readouterr()
    assert ran.out == ""
    assert one_line_error(ran.err) == expected
    assert f"{BAD}/" in expected  # names the file (and its line)
    assert not db_file.exists()


def test_lab_run_refuses_a_stack_given_as_scenario(inv, tmp_path, capsys):
    db_file = tmp_path / "x.db"
    assert main(["run", "stacks/h10-5.3.0.yaml", "--inventory", str(inv), "--db", f"sqlite:///{db_file}"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line == ("lab: error: this is a stack file, not a scenario, stacks/h10-5.3.0.yaml:4, "
                    "give a scenario file, e.g. scenarios/cma_soak.yaml")
    assert not db_file.exists()


def test_a_real_lab_run_process_prints_one_line(inv, tmp_path):
    """The same through a real process: exit 2, one line on stderr, nothing on stdout."""
    db_file = tmp_path / "x.db"
    proc = subprocess.run([sys.executable, "-m", "lab", "run", str(BAD / "scenarios/yaml_tab_indent.yaml"),
                           "--inventory", str(inv), "--db", f"sqlite:///{db_file}"],
                          capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_line_error(proc.stderr) == ("lab: error: YAML syntax error: found character '\\t' that cannot start "
                                           "any token (while scanning for the next token), "
                                           "tests/fixtures/bad/scenarios/yaml_tab_indent.yaml:3, "
                                           "indent with spaces, not tabs")
    assert not db_file.exists()


INVENTORIES = {
    "missing": (None, "no inventory '{path}', {path}, give a path"),
    "malformed": ("all: [\n", "cannot read inventory: "),
    "no hosts": ("all:\n  hosts: {}\n", "the inventory has no hosts, {path}, add hosts"),
    "unknown chip": ("all:\n  hosts:\n    pi1: {ansible_host: 127.77.9.1, lab_chip: hailo9}\n",
                     "host pi1 has lab_chip 'hailo9', {path}, use one of hailo10h, hailo8, hailo8l"),
}


@pytest.mark.parametrize("case", INVENTORIES, ids=list(INVENTORIES))
def test_bad_inventory(case, inv, tmp_path, capsys):
    text, expected = INVENTORIES[case]
    path = tmp_path / "bad_inventory.yml"
    if text is not None:
        path.write_text(text)
    db_file = tmp_path / "x.db"
    assert main(["run", SCENARIO, "--inventory", str(path), "--db", f"sqlite:///{db_file}"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert expected.format(path=path) in line
    assert str(path) in line  # names the inventory
    assert not db_file.exists()


def _commands() -> set[str]:
    from lab.cli import _register, app

    _register()
    return {c.name for c in app.registered_commands}


UNKNOWN = [["resume", "nosuch"]] + ([["report", "nosuch"]] if "report" in _commands() else [])


@pytest.mark.parametrize("argv", UNKNOWN, ids=[a[0] for a in UNKNOWN])
def test_unknown_campaign(argv, inv, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    capsys.readouterr()
    assert main([*argv, "--db", db]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line_error(captured.err) == "lab: error: no campaign 'nosuch' in this database, list them with `lab campaigns`"
    assert no_campaign(tmp_path / "x.db")


UNREACHABLE_DB = "postgresql+psycopg2://u@127.0.0.1:1/x"
DB_COMMANDS = [["run", SCENARIO, "--inventory", "{inv}"], ["resume", "nosuch"]] + (
    [["report", "nosuch"]] if "report" in _commands() else [])


@pytest.mark.parametrize("argv", DB_COMMANDS, ids=[a[0] for a in DB_COMMANDS])
def test_unreachable_database(argv, inv, capsys):
    pytest.importorskip("psycopg2")
    code = main([a.format(inv=inv) for a in argv] + ["--db", UNREACHABLE_DB])
    assert code == 2
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"lab: error: cannot open database {UNREACHABLE_DB}: ")
    assert "--db" in line


def test_invalid_campaign_name(inv, tmp_path, capsys):
    marker = tmp_path / "pwned"
    db_file = tmp_path / "x.db"
    name = f"x; touch {marker}"
    assert main(["run", SCENARIO, "--inventory", str(inv), "--db", f"sqlite:///{db_file}", "--name", name]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert line == (f"lab: error: invalid campaign name {name!r}, --name, use letters, digits, '.', '_' and '-' "
                    "(it names a directory on every node)")
    assert not db_file.exists()
    assert not marker.exists()


FAKE_SSH = """#!/bin/sh
# ssh as seen from the node: drop the options and the destination, run the remote command line with sh -c
while [ $# -gt 0 ]; do
  case "$1" in
    -O) exit 0 ;;
    -o|-i|-p|-l|-F) shift 2 ;;
    -*) shift ;;
    *) shift; break ;;
  esac
done
exec sh -c "$*"
"""


def test_collector_keeps_a_path_with_shell_syntax_literal(tmp_path, monkeypatch):
    """The agent files' remote commands quote every argument: `$(...)`, backticks and `;` stay part of a path.

    `ssh` here is a stand-in that hands the remote command line to `sh -c`, exactly what sshd does on the node.
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ssh").write_text(FAKE_SSH)
    (bindir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # where a payload that ran would leave its file
    workdir = tmp_path / "agent $(touch pwned-subst) `touch pwned-tick`; touch pwned-semi"
    monkeypatch.setattr(node_files, "AGENT_WORKDIR", str(workdir))
    records = [{"seq": 1, "kind": "phase_start", "run_key": "1"}, {"seq": 2, "kind": "sample", "run_key": "1"}]
    (workdir / "c1" / "artifacts").mkdir(parents=True)
    (workdir / "c1" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (workdir / "c1" / "artifacts" / "a;b $(touch pwned-art).txt").write_text("raw output\n")
    host = Host("n1", "127.77.9.1")
    files = SshAgentFiles("c1", [host])
    try:
        assert [json.loads(line) for line in files.read_records(host, 0, 30).splitlines()] == records
        assert files.fetch(host, ["a;b $(touch pwned-art).txt"], 30) == {"a;b $(touch pwned-art).txt": b"raw output\n"}
    finally:
        files.close()
    assert list(work.iterdir()) == []  # no pwned-* file: nothing was run
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bin", "work", workdir.name])
