"""Alembic environment: runs migrations on lab's connection, or on a URL from -x url / $LAB_DB."""

from __future__ import annotations

from alembic import context

from lab.db.models import Base
from lab.db.session import make_engine, resolve_url

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs) -> None:  # noqa: ANN003 - passed through to alembic
    """Common options: compare types, and batch mode on SQLite (ALTER TABLE is limited there)."""
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_offline() -> None:
    """Emit SQL for a URL without connecting (`alembic upgrade head --sql`)."""
    url = context.get_x_argument(as_dictionary=True).get("url") or resolve_url()[0]
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the connection lab passed in, else one opened from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = make_engine(url, where="-x url" if url else None)
    with engine.begin() as conn:
        _run(conn)


def _run(connection) -> None:  # noqa: ANN001 - sqlalchemy Connection
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
