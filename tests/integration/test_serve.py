"""`lab serve` as a real uvicorn server: live page in headless chromium during a virtual-fleet campaign, event
streams that resume with Last-Event-ID, 50 clients for 30 s, hostile names, the 404, the token."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from lab.db.ingest import ingest_samples
from lab.db.models import Campaign, Phase, Run, Sample
from lab.db.planted import plant_campaign
from lab.db.session import open_database
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet
from tests.integration.serve_helpers import LAB, Browser, Server, sse_events
from tests.integration.test_report_browser import CSP_VIOLATION, page_requests

NET = "127.77.240"
PROFILE = """
nodes:
  node1: {chip: hailo10h}
  node2: {chip: hailo10h, cma_leak: 0.0}
"""
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
CLIENTS, SECONDS = 50, 30


pytestmark = pytest.mark.browser


@pytest.fixture()
def planted_db(tmp_path) -> str:
    """A SQLite database with a finished campaign, a running one (node runs pending) and a hostile name."""
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    engine = open_database(url)
    with Session(engine) as session, session.begin():
        plant_campaign(session, "planted")
        hostile = plant_campaign(session, HOSTILE, repeats=1, artifacts=False)
        hostile.status = "running"
        growing = plant_campaign(session, "growing", repeats=1, infra_errors=(), artifacts=False, benches=1)
        growing.status = "running"
    engine.dispose()
    return url


def grow(url: str, stop: threading.Event, every: float = 0.05) -> int:
    """Append benchmark records to campaign `growing` as `lab run` would, from another connection; returns how many."""
    engine = create_engine(url)
    added = 0
    with Session(engine) as session:
        run_ids = session.scalars(select(Run.id).join(Campaign).where(Campaign.name == "growing")).all()
        next_seq = {rid: (session.scalar(select(func.max(Sample.seq)).where(Sample.run_id == rid)) or 0) + 1
                    for rid in run_ids}
        phase = {rid: session.scalar(select(Phase.id).where(Phase.run_id == rid, Phase.index == 1)) for rid in run_ids}
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    while not stop.wait(every):
        with Session(engine) as session, session.begin():
            for rid in run_ids:
                seq = next_seq[rid]
                ingest_samples(session, rid, [{"seq": seq, "ts": t0 + timedelta(seconds=seq), "kind": "sample",
                                               "step": "benchmark", "run": seq, "runs": 10_000, "fps": 120.0,
                                               "temp_mean": 60.0, "boot_id": "b"}], phase_id=phase[rid])
                next_seq[rid] = seq + 1
                added += 1
    engine.dispose()
    return added


def test_fifty_clients_for_thirty_seconds(planted_db, tmp_path):
    """Pages, JSON and live event streams for 50 clients while another process writes: no error, flat memory."""
    server = Server(planted_db, tmp_path)
    stop = threading.Event()
    writer = threading.Thread(target=grow, args=(planted_db, stop))
    writer.start()
    errors: list[str] = []
    counts = {"requests": 0, "events": 0}
    memory: list[int] = []

    async def client(n: int, until: float) -> None:
        """Half browse pages and JSON in a loop; half open the live page and read its stream."""
        async with httpx.AsyncClient(base_url=server.base, timeout=20) as http:
            while time.monotonic() < until:
                try:
                    if n % 2:
                        for path in ("/", "/campaigns/planted", "/api/campaigns", "/api/campaigns/growing",
                                     "/campaigns/growing", "/compare?c=planted&c=growing", "/campaigns/nope"):
                            r = await http.get(path)
                            if r.status_code != (404 if path.endswith("nope") else 200):
                                errors.append(f"{path}: {r.status_code}")
                            counts["requests"] += 1
                    else:  # as the live page's script does: the page, then the stream from where the page stands
                        page = await http.get("/campaigns/growing")
                        events = re.search(r'data-events="([^"]+)"', page.text).group(1)
                        async with http.stream("GET", events) as r:
                            if r.status_code != 200:
                                errors.append(f"events: {r.status_code}")
                            lines = r.aiter_lines()
                            seen = 0
                            async for line in lines:
                                if line.startswith("event: records"):
                                    seen += 1
                                    counts["events"] += 1
                                if seen >= 5 or time.monotonic() > until:
                                    break
                            counts["requests"] += 1
                except httpx.HTTPError as exc:
                    errors.append(f"client {n}: {exc!r}")

    async def watch(until: float) -> None:
        """The server's memory every 5 s."""
        while time.monotonic() < until:
            memory.append(server.rss_kib())
            await asyncio.sleep(5)
        memory.append(server.rss_kib())

    async def main() -> None:
        until = time.monotonic() + SECONDS
        await asyncio.gather(watch(until), *(client(n, until) for n in range(CLIENTS)))

    try:
        asyncio.run(main())
    finally:
        stop.set()
        writer.join(timeout=30)
        server.stop()
    print(f"\n50 clients x {SECONDS} s: {counts['requests']} requests/streams, {counts['events']} record events, "
          f"{len(errors)} errors; server RSS (KiB) every 5 s: {memory}")
    assert errors == []
    assert counts["requests"] > CLIENTS and counts["events"] > CLIENTS
    # memory: after the first 10 s (imports, worker threads, pooled connections, the report cache) it may grow
    # only by what the campaign's growth brings into the 10 pooled SQLite connections' page caches (2 MiB each);
    # with a database that does not grow, pages, reports and streams level off within seconds
    settled = memory[2]
    assert memory[-1] - settled < 24 * 1024, memory
    assert server.proc.returncode in (0, -15), server.log.read_text()[-2000:]


def test_hostile_names_render_inert_the_404_and_no_request_elsewhere(planted_db, tmp_path):
    server = Server(planted_db, tmp_path)
    browser = Browser(tmp_path)
    try:
        index = browser.open(server.base + "/")
        assert browser.wait_for(index, "document.querySelectorAll('#campaigns tbody tr').length") == 3
        names = browser.evaluate(index, "[...document.querySelectorAll('#campaigns tbody tr a')].map(a => a.textContent)")
        assert HOSTILE in names  # shown as text
        link = browser.evaluate(index, f"document.querySelector('#campaigns a[href^=\"/campaigns/%3Cscript\"]').href")
        live = browser.open(link)
        assert browser.wait_for(live, "document.getElementById('connection').textContent === 'live'")
        assert browser.evaluate(live, "document.querySelector('h1').textContent") == f"cma_soak: {HOSTILE}"
        assert browser.evaluate(live, "String(window.pwned)") == "undefined"
        assert browser.evaluate(live, "document.querySelectorAll('h1 script, h1 img, td script').length") == 0
        missing = browser.open(server.base + "/campaigns/nope")
        assert browser.wait_for(missing, "document.querySelector('p.error') && document.querySelector('p.error').textContent") == (
            "lab: error: no campaign 'nope' in this database, see the campaigns at /")
        report = browser.open(server.base + "/campaigns/planted")
        # the planted campaign's 4 fps charts, each with its telemetry chart beside it (as test_report_browser)
        assert browser.wait_for(report, "document.querySelectorAll('svg.chart').length") == 8
        problems = browser.problems(expected=("/campaigns/nope",))
    finally:
        stderr = browser.close()
        server.stop()
    assert problems == []
    assert CSP_VIOLATION.findall(stderr) == []
    assert [u for u in page_requests(browser.requests()) if not u.startswith(server.base)] == []


def test_statuses_token_and_binding(planted_db, tmp_path):
    server = Server(planted_db, tmp_path)
    try:
        assert httpx.get(server.base + "/campaigns/nope").status_code == 404
        assert httpx.get(server.base + "/api/campaigns/nope").json() == {
            "error": "no campaign 'nope' in this database", "hint": "see the campaigns at /"}
        assert httpx.post(server.base + "/").status_code == 405  # no endpoint writes
        evil = httpx.get(server.base + "/", headers={"host": "evil.example"})
        assert evil.status_code == 400  # no token, so only loopback names (no DNS rebinding)
    finally:
        server.stop()
    secured = Server(planted_db, tmp_path, env={"LAB_SERVE_TOKEN": "s3cret-token"})
    try:
        assert httpx.get(secured.base + "/api/campaigns").status_code == 401
        assert httpx.get(secured.base + "/api/campaigns", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(secured.base + "/api/campaigns", headers={"authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and [c["name"] for c in ok.json()][0] == "planted"
        with httpx.Client(base_url=secured.base) as browser_like:
            first = browser_like.get("/?token=s3cret-token")
            assert (first.status_code, first.headers["location"]) == (303, "/")
            assert "httponly" in first.headers["set-cookie"].lower()
            assert browser_like.get("/").status_code == 200  # the cookie from now on
    finally:
        secured.stop()
    refused = subprocess.run([LAB, "serve", "--db", planted_db, "--host", "0.0.0.0"], capture_output=True, text=True,
                             timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        2, "", "lab: error: refusing to serve on 0.0.0.0 without a token, --host, "
               "set --token or $LAB_SERVE_TOKEN, or bind 127.0.0.1\n")


@pytest.fixture(scope="module")
def live_fleet(tmp_path_factory):
    """A 2-node virtual fleet (one susceptible Hailo-10H, one immune) at time scale 0.02."""
    require_fleet()
    base = tmp_path_factory.mktemp("servefleet")
    (base / "profile.yaml").write_text(PROFILE)
    build_hailo_files(base / "hailo-files")  # beside the inventory: cma_soak's 5.3.0 comes as Hailo's files
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.02)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield inventory, base
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


@pytest.mark.fleet
@pytest.mark.browser
def test_live_page_follows_a_real_campaign(live_fleet, tmp_path):
    """Chromium on the live page sees the run counter advance while `lab run` writes; a resumed stream misses
    nothing; once the campaign ends the page becomes its report."""
    inventory, base = live_fleet
    db = f"sqlite:///{tmp_path / 'live.db'}"
    open_database(db).dispose()  # lab run would create it too; the server needs the schema to start
    build_models(tmp_path / "models")  # the field report's model, on the controller (lab run's directory)
    server = Server(db, tmp_path)
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen([LAB, "run", str(PROJECT / "scenarios" / "cma_soak.yaml"), "--inventory", str(inventory),
                            "--db", db, "--name", "live1"], stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    browser = None
    streamed: list[dict] = []
    try:
        deadline = time.monotonic() + 60
        while httpx.get(server.base + "/api/campaigns").json() == []:
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)  # polling for the campaign to appear, with a deadline
        browser = Browser(tmp_path)
        page = browser.open(server.base + "/campaigns/live1")
        browser.wait_for(page, "document.getElementById('connection').textContent === 'live'", timeout=30)
        browser.evaluate(page, "window.sameDocument = true")  # gone if the page were reloaded
        counter = "document.querySelector('tr[data-node=\"node1\"] .run').textContent"
        first = browser.wait_for(page, f"/^\\d+\\/25$/.test({counter}) && {counter}", timeout=180)

        # a stream that drops after its first records and comes back with Last-Event-ID, while lab run writes
        with httpx.stream("GET", server.base + "/campaigns/live1/events", timeout=30) as r:
            for event in sse_events(r.iter_lines()):
                if event["event"] == "records":
                    streamed += json.loads(event["data"])
                    last_id = event["id"]
                    break
        later = browser.wait_for(page, f"{counter} !== {json.dumps(first)} && window.sameDocument && {counter}",
                                 timeout=60)
        assert int(later.split("/")[0]) > int(first.split("/")[0])
        with httpx.stream("GET", server.base + "/campaigns/live1/events", headers={"last-event-id": last_id},
                          timeout=300) as r:
            for event in sse_events(r.iter_lines()):
                if event["event"] == "records":
                    streamed += json.loads(event["data"])
                elif event["event"] == "end":
                    break
        assert run.wait(timeout=240) == 0, (tmp_path / "run.log").read_text()[-3000:]
        browser.wait_for(page, "document.getElementById('findings') !== null", timeout=30)  # now the report
        assert "node1" in browser.evaluate(page, "document.querySelector('table.matrix').textContent")
        problems = browser.problems()
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=60)
        log.close()
        stderr = browser.close() if browser else ""
        server.stop()
    assert problems == []
    assert CSP_VIOLATION.findall(stderr) == []
    engine = create_engine(db)
    with Session(engine) as s:
        stored = s.execute(select(Run.index, Sample.seq).join(Sample, Sample.run_id == Run.id)
                           .join(Campaign).where(Campaign.name == "live1")).all()
    engine.dispose()
    got = [(r["run"], r["seq"]) for r in streamed]
    assert len(got) == len(set(got))  # nothing twice
    assert sorted(got) == sorted(stored)  # nothing missed
