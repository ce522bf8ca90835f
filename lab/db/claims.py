"""Locks between controllers that share one PostgreSQL database: one migration at a time, one controller per campaign.

Both are PostgreSQL advisory locks keyed by the schema in use, so two lab databases in one server (or two
schemas, as the tests use) never wait on each other. A campaign's claim is a session lock on a connection
the controller keeps for the campaign's life: it goes away with that connection, so a controller that died
never leaves its campaign claimed. SQLite has no such locks; there the campaign name's unique constraint
is the only guard (several controllers need PostgreSQL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

from sqlalchemy import Connection, Engine, exc, text

from lab.errors import ConfigError


def _key(connection: Connection, kind: str, name: str = "") -> int:
    """A signed 64-bit advisory lock key for (`kind`, this schema, `name`)."""
    schema = connection.scalar(text("SELECT current_schema()")) or ""
    digest = hashlib.sha256("\0".join(("lab", kind, schema, name)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_migrations(connection: Connection) -> None:
    """Wait until no other controller migrates this database, then hold that until `connection`'s transaction
    ends (PostgreSQL; a no-op elsewhere). Alembic then reads the version the other one left, and does nothing
    if it reached head."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _key(connection, "migrate")})
    elif connection.dialect.name == "sqlite":
        # pysqlite starts a transaction only before INSERT/UPDATE/DELETE, so Alembic's CREATE TABLEs would each
        # commit on their own and two controllers would interleave them; one writer's transaction from the start
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def claim_campaign(engine: Engine, name: str) -> Iterator[None]:
    """Hold campaign `name` for this controller while the block runs; ConfigError naming the other controller
    if one holds it already (PostgreSQL; elsewhere nothing is held)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        key = _key(connection, "campaign", name)
        taken = connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        connection.commit()  # the session lock outlives the transaction; the connection is not left idle in one
        if not taken:
            raise ConfigError(f"campaign {name} is being run by another controller ({holder(connection, key)})",
                              engine.url.render_as_string(hide_password=True),
                              "wait for it to finish, or give this campaign another --name")
        try:
            yield
        finally:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
            except exc.DBAPIError:
                pass  # the connection is gone, and the session lock went with it


def holder(connection: Connection, key: int) -> str:
    """Who holds the advisory lock `key`: the lab controller its session names, else its server session."""
    row = connection.execute(text(
        "SELECT a.pid, a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = :high AND l.objid::bigint = :low"),
        {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).first()
    connection.commit()
    if row is None:
        return "it just let go; try again"
    pid, application, address, started = row
    if application and application.startswith("lab "):
        who = f"controller {application.removeprefix('lab ')}"
    else:
        who = f"PostgreSQL session pid {pid}" + (f" from {address}" if address else "")
    return who + (f", connected {started.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if started else "")
