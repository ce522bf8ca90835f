"""`lab serve` in-process: the JSON and pages match the CLI's output exactly, on SQLite and PostgreSQL, read-only;
the event stream's cursor, the token, the host check and the one-line errors of the command."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import httpx
import pytest
from sqlalchemy import exc, text
from sqlalchemy.orm import Session

import lab.cli
from lab.db.live import campaign_runs, decode_cursor, encode_cursor, new_records
from lab.db.planted import plant_campaign
from lab.db.queries import campaign_rows, campaign_summary
from lab.db.readonly import readonly_engine
from lab.db.report_load import load_report
from lab.db.session import make_engine, open_database
from lab.errors import ConfigError
from lab.report.build import write_report
from lab.report.compare import compare_view, render_campaigns_json, render_compare_html
from lab.serve.app import CSP, REPORT_CSP, create_app
from lab.serve.pages import polyline, render_error

HOSTILE = '<script>alert(1)</script>'


def get(app, path: str, **headers: str) -> httpx.Response:
    """One request to the app in-process (the ASGI transport reads the whole body)."""
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


@pytest.fixture()
def served(db_url):
    """(read-only engine, app) over a database with `planted` (finished) and a running campaign with a hostile name."""
    writer = make_engine(db_url, where="test")
    from lab.db.session import upgrade

    upgrade(writer)
    with Session(writer) as session, session.begin():
        plant_campaign(session, "planted")
        plant_campaign(session, HOSTILE, repeats=1, artifacts=False).status = "running"
    writer.dispose()
    engine = readonly_engine(db_url)
    yield engine, create_app(engine, poll_seconds=0.01)
    engine.dispose()


def test_json_and_pages_are_the_commands_output(served):
    engine, app = served
    r = get(app, "/api/campaigns")
    assert (r.status_code, r.headers["content-type"], r.text) == (200, "application/json",
                                                                  render_campaigns_json(campaign_rows(engine)))
    r = get(app, "/api/campaigns/planted")
    assert r.text == json.dumps(campaign_summary(engine, "planted"), indent=2, default=str) + "\n"
    report = io.StringIO()
    write_report(engine, "planted", "html", report)
    r = get(app, "/campaigns/planted")
    assert (r.status_code, r.text, r.headers["content-security-policy"]) == (200, report.getvalue(), REPORT_CSP)
    r = get(app, "/compare?c=planted&c=1")
    expected = render_compare_html(compare_view([load_report(engine, "planted"), load_report(engine, "planted")]))
    assert (r.status_code, r.text) == (200, expected)


def test_the_engine_cannot_write(served):
    engine, _ = served
    with pytest.raises(exc.DBAPIError, match="(?i)read-?only"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE campaign SET status = 'finished'"))


def test_unknown_campaign_is_a_404_page(served):
    _, app = served
    r = get(app, "/campaigns/nope")
    assert (r.status_code, r.text) == (404, render_error(404, "no campaign 'nope' in this database",
                                                         "see the campaigns at /"))
    assert r.headers["content-security-policy"] == CSP
    assert get(app, "/api/campaigns/nope").json() == {"error": "no campaign 'nope' in this database",
                                                      "hint": "see the campaigns at /"}
    assert get(app, "/compare?c=planted&c=nope").status_code == 404
    assert get(app, "/compare").status_code == 400


def test_hostile_names_are_escaped(served):
    _, app = served
    for path in ("/", "/campaigns/%3Cscript%3Ealert(1)%3C%2Fscript%3E"):
        page = get(app, path).text
        assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert page.count("<script") == (1 if "campaigns" in path else 0)  # only the live page's own file
        assert '<script src="/static/live.js"></script>' in page or "campaigns" not in path


def test_event_stream_resumes_where_it_stopped(served):
    """A finished campaign's stream: state, every record once in batches, end; Last-Event-ID continues."""
    engine, app = served

    def events(**headers: str) -> list[dict]:
        body = get(app, "/campaigns/planted/events", **headers).text
        out = []
        for block in body.replace("\r\n", "\n").split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if fields:
                out.append(fields)
        return out

    whole = events()
    assert [e["event"] for e in whole] == ["state", "records", "end"]
    records = json.loads(whole[1]["data"])
    assert len(records) == 7 * 28  # 7 runs with records, 28 each (phase start, identity, 25 benchmarks, end)
    with Session(engine) as session:
        from lab.db.queries import find_campaign

        runs = campaign_runs(session, find_campaign(session, "planted"))
    assert whole[1]["id"] == encode_cursor([28 if r.index != 6 else 0 for r in runs])
    middle = encode_cursor([28] * 3 + [10] + [0] * 4)
    rest = events(**{"last-event-id": middle})
    got = json.loads(rest[1]["data"])
    assert [(r["run"], r["seq"]) for r in got] == [(3, s) for s in range(11, 29)] + [
        (r.index, s) for r in runs[4:] if r.index != 6 for s in range(1, 29)]
    assert get(app, "/campaigns/planted/events", **{"last-event-id": "1.2"}).status_code == 400


def test_new_records_in_batches_miss_nothing(served):
    engine, _ = served
    with Session(engine) as session:
        from lab.db.queries import find_campaign

        runs = campaign_runs(session, find_campaign(session, "planted"))
    cursor, seen = [0] * len(runs), []
    while True:
        batch, cursor = new_records(engine, runs, cursor, limit=11)
        if not batch:
            break
        assert len(batch) <= 11
        seen += [(r["run"], r["seq"]) for r in batch]
    assert len(seen) == len(set(seen)) == 7 * 28
    first = next(r for r in new_records(engine, runs, [0] * len(runs), limit=30)[0] if r["step"] == "benchmark")
    assert first == {"run": 0, "seq": 3, "step": "benchmark", "phase": "soak", "k": 1, "n": 25, "fps": 124.78,
                     "temp": 60.7, "error": None}


def test_cursor():
    assert encode_cursor([12, 0, 7]) == "12.0.7"
    assert decode_cursor("12.0.7", 3) == [12, 0, 7]
    assert decode_cursor(None, 2) == [0, 0]
    for bad in ("1.2", "a.b.c", "1..2", "-1.0.0"):
        with pytest.raises(ConfigError) as error:
            decode_cursor(bad, 3)
        assert str(error.value) == ("malformed event id, Last-Event-ID or ?after=, expected 3 dot-separated numbers, "
                                    "one per run, e.g. 0.0.0")


def test_sparkline_points():
    assert polyline([]) == polyline([None]) == ""
    assert polyline([100.0, None, 50.0]) == "0.0,1.0 180.0,39.0"
    assert polyline([100.0, 100.0]) == "0.0,1.0 180.0,1.0"


def test_token_and_host():
    app = create_app(engine=None, token="s3cret", allowed_hosts=["127.0.0.1", "localhost"])  # type: ignore[arg-type]
    r = get(app, "/static/lab.css")
    assert r.status_code == 401 and "lab: error: this server needs its token" in r.text
    assert get(app, "/static/lab.css", authorization="Bearer s3cret").status_code == 200
    assert get(app, "/static/lab.css", authorization="Bearer s3cre").status_code == 401
    r = get(app, "/static/lab.css?token=s3cret&x=1")
    assert (r.status_code, r.headers["location"]) == (303, "/static/lab.css?x=1")
    assert get(app, "/static/lab.css", cookie="lab_token=s3cret").status_code == 200
    assert get(app, "/static/lab.css", host="evil.example", authorization="Bearer s3cret").status_code == 400


@pytest.fixture()
def lab_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `lab ARGS` through main()'s error boundary; returns (exit code, stdout, stderr)."""
    from lab.cli import serve as serve_module  # noqa: F401 - registers the command

    monkeypatch.setattr(lab.cli, "_register", lambda: None)

    def run(*args: str):
        code = lab.cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_serve_refuses_bad_input_in_one_line(lab_cli, tmp_path, monkeypatch):
    assert lab_cli("serve", "--host", "0.0.0.0") == (
        2, "", "lab: error: refusing to serve on 0.0.0.0 without a token, --host, set --token or $LAB_SERVE_TOKEN, "
               "or bind 127.0.0.1\n")
    assert lab_cli("serve", "--host", "lab.example.org") == (
        2, "", "lab: error: refusing to serve on lab.example.org without a token, --host, set --token or "
               "$LAB_SERVE_TOKEN, or bind 127.0.0.1\n")
    assert lab_cli("serve", "--port", "70000")[::2] == (
        2, "lab: error: port 70000 is out of range, --port, use 1..65535, e.g. 8765\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        good = f"sqlite:///{tmp_path / 'good.db'}"
        open_database(good).dispose()
        assert lab_cli("serve", "--db", good, "--port", str(port)) == (
            2, "", f"lab: error: cannot listen on 127.0.0.1:{port}: Address already in use, --host/--port, "
                   "pick a free port or an address of this machine\n")
    missing = tmp_path / "none.db"
    assert lab_cli("serve", "--db", f"sqlite:///{missing}") == (
        2, "", f"lab: error: no database file {missing}, --db, run `lab run` or `lab db upgrade` first, "
               "or fix --db / $LAB_DB\n")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    code, out, err = lab_cli("serve", "--db", f"sqlite:///{empty}")
    assert (code, out) == (2, "")
    assert err.startswith(f"lab: error: database sqlite:///{empty} is at schema revision none, lab needs ")
    assert err.endswith(", run `lab db upgrade` on it first (lab serve never writes)\n")
    assert empty.read_bytes() == b""  # not migrated, not touched
