"""`lab db ...`: manage the results database (schema migrations)."""

from __future__ import annotations

import typer

from lab.cli.root import app
from lab.db.session import head_revision, make_engine, mask_url, resolve_url, upgrade

db_app = typer.Typer(help="Manage the results database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DB_HELP = "Database URL; default $LAB_DB, else sqlite:///lab.db."


@db_app.command("upgrade")
def db_upgrade(db: str = typer.Option(None, "--db", help=DB_HELP, show_default=False)) -> None:
    """Create or migrate the results database to the newest schema.

    Safe to run any number of times. Passwords in the URL are never printed.

    Example:

        lab db upgrade

        lab db upgrade --db postgresql+psycopg2://lab@127.0.0.1:5432/lab
    """
    url, where = resolve_url(db)
    engine = make_engine(url, where=where)
    try:
        revision = upgrade(engine)
    finally:
        engine.dispose()
    head = head_revision()
    state = "head" if revision == head else f"head is {head}"
    print(f"database {mask_url(url)} is at revision {revision} ({state})")
