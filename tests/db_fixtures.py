"""Database fixtures: every DB test runs on SQLite and on PostgreSQL, each test in a fresh, empty database.

PostgreSQL comes from $LAB_TEST_PG_URL (a role that may CREATE DATABASE, e.g.
postgresql+psycopg2://lab@127.0.0.1:5432/lab_test). Unset, the PostgreSQL cases are skipped,
except under CI (env CI set), where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

PG_ENV = "LAB_TEST_PG_URL"
BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


def pg_server_url() -> str:
    """The PostgreSQL URL for tests, or skip (fail under CI) when there is none."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but ${PG_ENV} is not set")
        pytest.skip(f"${PG_ENV} is not set")
    return url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database for this test session, dropped at the end."""
    server = make_url(pg_server_url())
    name = f"lab_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - report any connection problem as a test failure
        admin.dispose()
        pytest.fail(f"cannot create a test database with ${PG_ENV}: {str(exc).splitlines()[0]}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _fresh_pg_schema(database_url: str) -> tuple[str, str]:
    """Create an empty schema in the session's database; returns (url using it, schema name)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """URL of a fresh, empty database: a SQLite file under tmp_path, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lab-test.db'}"
        return
    database = request.getfixturevalue("pg_database")
    url, schema = _fresh_pg_schema(database)
    try:
        yield url
    finally:
        engine = create_engine(database, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def db_engine(db_url) -> Iterator[Engine]:
    """An engine on a fresh database migrated to the newest schema."""
    from lab.db.session import make_engine, upgrade

    engine = make_engine(db_url, where="test")
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def db_session(db_engine) -> Iterator[Session]:
    """A session on a fresh, migrated database (the test commits what it wants to keep)."""
    from lab.db.session import session_factory

    with session_factory(db_engine)() as session:
        yield session


def store_one_run(session: Session):
    """Campaign c1 with one run (index 0, node1, stack h10-5.3.0) for the orchestrator's unit tests; returns the run."""
    from lab.db.ingest import get_or_create_stack
    from lab.db.models import Campaign, Run

    campaign = Campaign(name="c1", scenario_name="soak", scenario_text="")
    session.add(campaign)
    session.flush()
    stack = get_or_create_stack(session, "h10-5.3.0", "5.3.0", "5.3.0", "5.3.0", "hailo10h")
    run = Run(campaign_id=campaign.id, index=0, node="node1", stack_id=stack.id, repeat=1)
    session.add(run)
    session.flush()
    return run
