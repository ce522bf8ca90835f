"""`lab db upgrade`: exact output, idempotence, $LAB_DB, and one-line errors (exit 2) for bad URLs."""

from __future__ import annotations

from sqlalchemy import inspect

from lab.cli import main
from lab.db.session import make_engine, mask_url

HINT = "e.g. sqlite:///lab.db or postgresql+psycopg2://lab@127.0.0.1:5432/lab"


def run_lab(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit status, stdout, stderr)."""
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_upgrade_twice(capsys, db_url):
    for _ in range(2):
        status, out, err = run_lab(capsys, "db", "upgrade", "--db", db_url)
        assert (status, out, err) == (0, f"database {mask_url(db_url)} is at revision 0006 (head)\n", "")
    engine = make_engine(db_url, where="test")
    assert "sample" in inspect(engine).get_table_names()
    engine.dispose()


def test_default_and_env_url(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run_lab(capsys, "db", "upgrade")
    assert (status, out) == (0, "database sqlite:///lab.db is at revision 0006 (head)\n")
    assert (tmp_path / "lab.db").is_file()
    monkeypatch.setenv("LAB_DB", f"sqlite:///{tmp_path}/env.db")
    status, out, _ = run_lab(capsys, "db", "upgrade")
    assert (status, out) == (0, f"database sqlite:///{tmp_path}/env.db is at revision 0006 (head)\n")


def test_invalid_url(capsys):
    status, out, err = run_lab(capsys, "db", "upgrade", "--db", "lab.db")
    assert (status, out) == (2, "")
    assert err == f"lab: error: invalid database URL 'lab.db', --db, {HINT}\n"


def test_bad_env_url_is_named_as_such(capsys, monkeypatch):
    monkeypatch.setenv("LAB_DB", "oracle+nosuch://scott:tiger@h/db")
    status, out, err = run_lab(capsys, "db", "upgrade")
    assert (status, out) == (2, "")
    assert err == (f"lab: error: unsupported database URL 'oracle+nosuch://scott:***@h/db', $LAB_DB, "
                   f"use SQLite or PostgreSQL, {HINT}\n")


def test_unreachable_server_masks_the_password(capsys):
    status, out, err = run_lab(capsys, "db", "upgrade", "--db", "postgresql+psycopg2://lab:hunter2@127.0.0.1:1/lab")
    assert (status, out) == (2, "")
    assert err.startswith("lab: error: cannot open database postgresql+psycopg2://lab:***@127.0.0.1:1/lab: ")
    assert err.endswith(f", --db, start the server or fix --db / $LAB_DB, {HINT}\n")
    assert "hunter2" not in err and err.count("\n") == 1


def test_help_has_examples(capsys):
    status, out, _ = run_lab(capsys, "db", "upgrade", "--help")
    assert status == 0
    assert "Example:" in out and "lab db upgrade --db postgresql+psycopg2://" in out
