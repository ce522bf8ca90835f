"""Opening the database: URL resolution, password masking, and one-line errors for bad or unreachable URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from lab.db.models import Campaign, redact
from lab.db.session import make_engine, mask_url, resolve_url, session_scope
from lab.errors import ConfigError

HINT = "e.g. sqlite:///lab.db or postgresql+psycopg2://lab@127.0.0.1:5432/lab"


def test_resolve_url(monkeypatch):
    assert resolve_url("sqlite:///x.db") == ("sqlite:///x.db", "--db")
    monkeypatch.setenv("LAB_DB", "sqlite:///env.db")
    assert resolve_url(None) == ("sqlite:///env.db", "$LAB_DB")
    assert resolve_url("sqlite:///x.db") == ("sqlite:///x.db", "--db")
    monkeypatch.delenv("LAB_DB")
    assert resolve_url(None) == ("sqlite:///lab.db", "default")


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg2://lab:hunter2@db.example:5432/lab", "postgresql+psycopg2://lab:***@db.example:5432/lab"),
    ("postgresql://lab@127.0.0.1/lab", "postgresql://lab@127.0.0.1/lab"),
    ("sqlite:///lab.db", "sqlite:///lab.db"),
    ("not a url with pw://u:hunter2@h", "not a url with pw://u:***@h"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


@pytest.mark.parametrize("text, masked", [
    ("lab run x --db postgresql://lab:hunter2@h/db --name n", "lab run x --db postgresql://lab:***@h/db --name n"),
    ("ansible_become_password=hunter2 other=1", "ansible_become_password=*** other=1"),
    ("PGPASSWORD=hunter2 psql", "PGPASSWORD=*** psql"),
    ("api_token: abc123", "api_token: ***"),
    ("runs passed: 3, fps=124.8", "runs passed: 3, fps=124.8"),
    (None, None),
])
def test_redact(text, masked):
    assert redact(text) == masked


def test_default_sqlite_is_created_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine(None)
    engine.dispose()
    assert (tmp_path / "lab.db").exists()


@pytest.mark.parametrize("url, what, hint", [
    ("not a url", "invalid database URL 'not a url'", HINT),
    ("mysql+nosuchdriver://u:hunter2@h/db", "unsupported database URL 'mysql+nosuchdriver://u:***@h/db'",
     "use SQLite or PostgreSQL, " + HINT),
    ("nosuchdb://x", "unsupported database URL 'nosuchdb://x'", "use SQLite or PostgreSQL, " + HINT),
])
def test_bad_urls(url, what, hint):
    with pytest.raises(ConfigError) as info:
        make_engine(url)
    assert (info.value.what, info.value.where, info.value.hint) == (what, "--db", hint)
    assert info.value.exit_code == 2


def test_sqlite_in_a_missing_directory(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/dir/lab.db"
    with pytest.raises(ConfigError) as info:
        make_engine(url, where="$LAB_DB")
    assert str(info.value) == (f"cannot open database {url}: unable to open database file, $LAB_DB, "
                               "check that the directory exists and is writable")


def test_unreachable_postgresql_names_the_masked_url():
    with pytest.raises(ConfigError) as info:
        make_engine("postgresql+psycopg2://lab:hunter2@127.0.0.1:1/lab")
    message = str(info.value)
    assert message.startswith("cannot open database postgresql+psycopg2://lab:***@127.0.0.1:1/lab: ")
    assert message.endswith(", --db, start the server or fix --db / $LAB_DB, " + HINT)
    assert "hunter2" not in message and "\n" not in message


def test_timestamps_come_back_aware_utc(db_engine):
    local = datetime(2026, 4, 30, 5, 8, 1, 123456, tzinfo=timezone(timedelta(hours=1)))
    with session_scope(db_engine) as session:
        session.add(Campaign(name="c", scenario_name="s", scenario_text="x", started_at=local,
                             finished_at=datetime(2026, 4, 30, 4, 14, 42)))  # naive: taken as UTC
    with session_scope(db_engine) as session:
        campaign = session.scalar(select(Campaign))
        assert campaign.started_at == local and campaign.started_at.tzinfo == UTC
        assert campaign.finished_at == datetime(2026, 4, 30, 4, 14, 42, tzinfo=UTC)


def test_session_scope_rolls_back_on_error(db_engine):
    with pytest.raises(RuntimeError):
        with session_scope(db_engine) as session:
            session.add(Campaign(name="c", scenario_name="s", scenario_text="x"))
            session.flush()
            raise RuntimeError("boom")
    with session_scope(db_engine) as session:
        assert session.scalar(select(Campaign)) is None
