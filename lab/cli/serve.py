"""`lab serve`: the read-only web view (campaigns, live progress, reports, comparisons) on a local port."""

from __future__ import annotations

import ipaddress
import socket

import typer

from lab.cli.root import app
from lab.errors import ConfigError

DB_HELP = "Database URL (default: $LAB_DB, else sqlite:///lab.db); opened read-only."


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or `localhost` (only those may go without a token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere


def check_binding(host: str, port: int, token: str | None) -> None:
    """Refuse a non-loopback address without a token, and ports outside 1..65535."""
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is out of range", "--port", "use 1..65535, e.g. 8765")
    if not is_loopback(host) and not token:
        raise ConfigError(f"refusing to serve on {host} without a token", "--host",
                          "set --token or $LAB_SERVE_TOKEN, or bind 127.0.0.1")


def check_port_free(host: str, port: int) -> None:
    """A one-line error now rather than uvicorn's log when the address is taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port is free
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as error:
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}", "--host/--port",
                              "pick a free port or an address of this machine") from None


@app.command("serve")
def serve_command(
    db: str = typer.Option(None, "--db", help=DB_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; beyond loopback only with a token."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    token: str = typer.Option(None, "--token", envvar="LAB_SERVE_TOKEN", show_envvar=True,
                              help="Every request must carry it (?token=, a cookie, or 'Authorization: Bearer')."),
) -> None:
    """Serve a read-only web view of the results database while `lab run` writes to it.

    Pages: / (campaigns, newest first), /campaigns/NAME (live while it runs: each node's phase, run k of n,
    fps, temperature; the full report once it ends), /campaigns/NAME/events (server-sent events),
    /compare?c=A&c=B, /api/campaigns and /api/campaigns/NAME (JSON). Nothing it serves writes.

    Example:
        lab serve
        lab serve --db postgresql+psycopg2://lab@127.0.0.1:5432/lab --port 8080
        LAB_SERVE_TOKEN=$(openssl rand -hex 16) lab serve --host 0.0.0.0
    """
    check_binding(host, port, token)
    import uvicorn

    from lab.db.session import mask_url, resolve_url
    from lab.serve.app import LOOPBACK_HOSTS, create_app
    from lab.db.readonly import readonly_engine

    engine = readonly_engine(db)
    try:
        check_port_free(host, port)
    except ConfigError:
        engine.dispose()
        raise
    # Without a token the server answers only requests addressed to loopback (no DNS rebinding).
    allowed = None if token else sorted({*LOOPBACK_HOSTS, host})
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"lab serve: http://{shown}:{port}/ (read-only: {mask_url(resolve_url(db)[0])}"
               f"{', token required' if token else ''}); Ctrl-C stops", err=True)
    try:
        uvicorn.run(create_app(engine, token=token, allowed_hosts=allowed), host=host, port=port,
                    log_level="warning", access_log=False, lifespan="off")
    finally:
        engine.dispose()
