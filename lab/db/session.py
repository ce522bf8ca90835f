"""Opening the results database: URL resolution and masking, engines, sessions, and Alembic upgrades."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

from lab.controller import controller_name
from lab.db.claims import lock_migrations
from lab.db.models import redact
from lab.errors import ConfigError, DatabaseError

DEFAULT_URL = "sqlite:///lab.db"
URL_EXAMPLES = "e.g. sqlite:///lab.db or postgresql+psycopg2://lab@127.0.0.1:5432/lab"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def resolve_url(url: str | None = None) -> tuple[str, str]:
    """The database URL and where it came from: `--db`, else `$LAB_DB`, else the default."""
    if url:
        return url, "--db"
    if os.environ.get("LAB_DB"):
        return os.environ["LAB_DB"], "$LAB_DB"
    return DEFAULT_URL, "default"


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, safe to print or store."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return redact(url) or ""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
    """Enforce foreign keys and let readers (live progress, reports) run beside one writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def parse_url(url: str, where: str) -> tuple[URL, str]:
    """`url` parsed, and as shown to a person (password masked); a malformed one raises ConfigError."""
    shown = mask_url(url)
    try:
        return make_url(url), shown
    except exc.ArgumentError:
        raise ConfigError(f"invalid database URL '{shown}'", where=where, hint=URL_EXAMPLES) from None


def make_engine(url: str | None = None, *, where: str | None = None, connect: bool = True) -> Engine:
    """An engine for `url` (resolved as in `resolve_url`); bad or unreachable URLs raise ConfigError."""
    if where is None:
        url, where = resolve_url(url)
    parsed, shown = parse_url(url, where)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(parsed, pool_pre_ping=True, connect_args=_connect_args(parsed))
    except (exc.NoSuchModuleError, ImportError):
        raise ConfigError(f"unsupported database URL '{shown}'", where=where,
                          hint="use SQLite or PostgreSQL, " + URL_EXAMPLES) from None
    except exc.ArgumentError as error:
        raise ConfigError(f"invalid database URL '{shown}': {error}", where=where, hint=URL_EXAMPLES) from None
    if connect:
        check_connection(engine, where=where)
    return engine


def _connect_args(url) -> dict:  # noqa: ANN001 - sqlalchemy URL
    """PostgreSQL: a short connect timeout, so an unreachable server fails fast, and this controller's name as
    the sessions' application_name (unless the URL sets one), so another controller can say who holds a lock."""
    if url.get_backend_name() != "postgresql":
        return {}
    args: dict = {"connect_timeout": 5}
    if "application_name" not in url.query:
        args["application_name"] = f"lab {controller_name()}"[:63]  # the server keeps 63 bytes
    return args


def check_connection(engine: Engine, where: str | None = None) -> None:
    """Open and close one connection; failure is a ConfigError naming the (masked) URL."""
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect():
            pass
    except exc.DBAPIError as error:
        reason = _first_line(error.orig) if error.orig is not None else _first_line(error)
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        hint = ("check that the directory exists and is writable" if engine.url.get_backend_name() == "sqlite"
                else "start the server or fix --db / $LAB_DB, " + URL_EXAMPLES)
        raise ConfigError(f"cannot open database {shown}: {redact(reason)}", where=where, hint=hint) from None


def _first_line(error: object) -> str:
    """The first non-empty line of an error's text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker bound to `engine` that keeps objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    with session_factory(engine)() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config():  # noqa: ANN201 - alembic.config.Config, imported lazily
    """The packaged Alembic configuration (works from any working directory)."""
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database up to `revision`; returns the revision it is at afterwards."""
    if revision == "head":
        # already current (every command after the first): no migration lock to wait for behind another
        # controller's upgrade, no write transaction beside a running campaign
        at = current_revision(engine)
        if at is not None and at == head_revision():
            return at
    return _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Migrate the database down to `revision` (`base` drops every table); returns the revision after."""
    return _migrate(engine, "downgrade", revision)


def _migrate(engine: Engine, direction: str, revision: str) -> str | None:
    """Run one Alembic command on lab's own connection, in one transaction, one controller at a time."""
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config()
    try:
        with engine.begin() as connection:
            lock_migrations(connection)  # two controllers starting on a fresh database: the second waits, then sees head
            config.attributes["connection"] = connection
            getattr(command, direction)(config, revision)
    except CommandError as error:
        raise DatabaseError(f"cannot migrate the database: {error}",
                            where=engine.url.render_as_string(hide_password=True),
                            hint="this database was written by a newer lab; upgrade lab") from None
    except exc.SQLAlchemyError as error:
        raise DatabaseError(f"migration failed: {redact(_first_line(error))}",
                            where=engine.url.render_as_string(hide_password=True),
                            hint="run 'lab db upgrade --debug' for details") from None
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None for an empty database)."""
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with lab."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_database(url: str | None = None, *, migrate: bool = True) -> Engine:
    """Resolve, connect and (by default) upgrade the results database; the one call commands need."""
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return engine
