"""Alembic: `upgrade head` builds exactly the models' schema, on SQLite and PostgreSQL, from any directory."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from lab.db.models import Base
from lab.db.session import current_revision, downgrade, head_revision, make_engine, upgrade

TABLES = {"campaign", "unit", "stack", "run", "phase", "sample", "log_event", "artifact", "alembic_version", "power_event"}


def test_upgrade_head_matches_the_models(db_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine(db_url, where="test")
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision() == "0006"
        assert set(inspect(engine).get_table_names()) == TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_works(db_url):
    engine = make_engine(db_url, where="test")
    try:
        upgrade(engine)
        assert upgrade(engine) == "0006"
        assert downgrade(engine, "0005") == "0005"
        assert "executor" not in {c["name"] for c in inspect(engine).get_columns("run")}
        assert downgrade(engine, "0004") == "0004"
        assert "power_event" not in inspect(engine).get_table_names()
        assert downgrade(engine, "0003") == "0003"
        assert "pcie_width" not in {c["name"] for c in inspect(engine).get_columns("sample")}
        assert "preflight" not in {c["name"] for c in inspect(engine).get_columns("phase")}
        assert downgrade(engine, "0002") == "0002"
        assert "chip_throttling" not in {c["name"] for c in inspect(engine).get_columns("sample")}
        assert downgrade(engine, "0001") == "0001"
        assert "settings" not in {c["name"] for c in inspect(engine).get_columns("campaign")}
        assert upgrade(engine) == "0006"
        assert "chip_throttling" in {c["name"] for c in inspect(engine).get_columns("sample")}
        assert downgrade(engine, "base") is None
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert upgrade(engine) == "0006"
    finally:
        engine.dispose()


def test_migrations_are_packaged_with_lab():
    from lab.db import session

    assert session.ALEMBIC_INI.is_file()
    assert (session.MIGRATIONS / "env.py").is_file()
    assert (session.MIGRATIONS / "script.py.mako").is_file()
    assert sorted(p.name for p in (session.MIGRATIONS / "versions").glob("0*.py")) == ["0001_initial.py", "0002_campaign_settings.py",
                                                                                      "0003_chip_throttling.py", "0004_measuring.py", "0005_power_events.py",
                                                                                      "0006_run_executor.py"]


def test_a_database_from_a_newer_lab_is_refused(tmp_path):
    from sqlalchemy import text

    from lab.errors import DatabaseError

    engine = make_engine(f"sqlite:///{tmp_path}/lab.db", where="test")
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        upgrade(engine)
    except DatabaseError as error:
        assert error.what == "cannot migrate the database: Can't locate revision identified by '9999'"
        assert error.hint == "this database was written by a newer lab; upgrade lab"
    else:
        raise AssertionError("no DatabaseError")
    finally:
        engine.dispose()
