"""Read-only engines over the results database (for `lab serve`): SQLite opened `mode=ro` and `query_only`,
PostgreSQL in read-only sessions, so nothing the web view does can write while `lab run` writes from other processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.pool import QueuePool

from lab.db.session import (URL_EXAMPLES, check_connection, current_revision, head_revision, parse_url,
                            resolve_url)
from lab.errors import ConfigError

# A fixed set of connections (each SQLite one keeps its own page cache): a burst of clients queues for one
# (up to POOL_TIMEOUT s) instead of growing the server's memory with every concurrent request.
POOL_SIZE, POOL_OVERFLOW, POOL_TIMEOUT = 10, 0, 60


def readonly_engine(url: str | None = None) -> Engine:
    """An engine that cannot write to `url` (resolved as `lab.db.session.resolve_url` does), checked for lab's schema.

    A database that is missing, unreachable, or not migrated to this lab's schema is a ConfigError: serving
    never creates or migrates one (that would be a write), `lab db upgrade` does.
    """
    url, where = resolve_url(url)
    parsed, shown = parse_url(url, where)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_readonly(parsed, where)
    elif backend == "postgresql":
        try:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                                   pool_timeout=POOL_TIMEOUT, connect_args={"connect_timeout": 5})
        except (exc.NoSuchModuleError, ImportError, exc.ArgumentError) as error:
            raise ConfigError(f"unsupported database URL '{shown}': {error}", where=where, hint=URL_EXAMPLES) from None
        event.listen(engine, "connect", _postgres_readonly)
    else:
        raise ConfigError(f"unsupported database URL '{shown}'", where=where, hint="use SQLite or PostgreSQL, "
                          + URL_EXAMPLES)
    check_connection(engine, where=where)
    _check_schema(engine, shown)
    return engine


def _sqlite_readonly(url, where: str) -> Engine:  # noqa: ANN001 - sqlalchemy URL
    """SQLite through a `file:...?mode=ro` URI with `PRAGMA query_only`: readers beside `lab run`'s WAL writer."""
    database = url.database or ""
    if not database or database == ":memory:":
        raise ConfigError("an in-memory SQLite database has nothing to serve", where=where,
                          hint="give a file, e.g. --db sqlite:///lab.db")
    path = Path(database).resolve()
    if not path.is_file():
        raise ConfigError(f"no database file {path}", where=where, hint="run `lab run` or `lab db upgrade` first, "
                          "or fix --db / $LAB_DB")
    uri = f"file:{quote(str(path))}?mode=ro"

    def connect() -> sqlite3.Connection:
        """One read-only connection; busy_timeout lets a read wait out a checkpoint instead of failing."""
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA query_only=ON")
        return conn

    # creator= keeps the URI intact (a path may hold '?' or '#'); QueuePool, as for any file database.
    return create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=POOL_SIZE,
                         max_overflow=POOL_OVERFLOW, pool_timeout=POOL_TIMEOUT)


def _postgres_readonly(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
    """Every transaction of this session is READ ONLY: the server refuses any write."""
    dbapi_connection.set_session(readonly=True)


def _check_schema(engine: Engine, shown: str) -> None:
    """The database must be at this lab's newest revision (reading an older schema would fail on a missing column)."""
    try:
        revision = current_revision(engine)
    except exc.SQLAlchemyError:
        revision = None
    head = head_revision()
    if revision != head:
        engine.dispose()
        raise ConfigError(f"database {shown} is at schema revision {revision or 'none'}, lab needs {head}",
                          hint="run `lab db upgrade` on it first (lab serve never writes)")
