"""The HTML report in a real headless browser (Debian's chromium): it renders, charts and matrix show, no request."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from lab.db.planted import plant_campaign
from lab.db.session import open_database
from lab.report.build import write_atomic, write_report

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1280, 2200
# Chromium's own background calls (time, updates, accounts); they fail at the resolver, as would any other.
BROWSER_OWN = ("http://clients2.google.com/time/", "https://clients2.google.com/time/",
               "http://update.googleapis.com/service/update2", "https://update.googleapis.com/service/update2",
               "https://accounts.google.com/ListAccounts")
CSP_VIOLATION = re.compile(r"violates the following Content Security Policy directive|Refused to (load|connect|apply)")


def chromium() -> str:
    """The chromium binary; skip without it, except under CI, where that is a failure."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests, but chromium is not installed (apt-get install chromium)")
        pytest.skip("needs chromium (apt-get install chromium)")
    return path


def browse(page: Path, work: Path, *args: str) -> tuple[str, str, list[str]]:
    """Open a file in headless chromium with no network; returns (stdout, stderr, URLs of every net request)."""
    profile, netlog = work / "profile", work / "netlog.json"
    shutil.rmtree(profile, ignore_errors=True)
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr",
            "--v=0", f"--log-net-log={netlog}", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
            *args, page.as_uri()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    urls = sorted(set(re.findall(r'"url":"([^"]+)"', netlog.read_text()))) if netlog.exists() else []
    return proc.stdout, proc.stderr, urls


def page_requests(urls: list[str]) -> list[str]:
    """Network requests other than chromium's own background calls (data: and file: are not requests)."""
    remote = ("http:", "https:", "ws:", "wss:", "ftp:")
    return [u for u in urls if u.startswith(remote) and not u.startswith(BROWSER_OWN)]


class Dom(HTMLParser):
    """The elements the test looks at: svg sizes, matrix rows, every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[tuple[float, float]] = []
        self.matrix_rows = 0
        self.links: list[str] = []
        self.scripts = 0
        self._in_matrix = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append((float(a.get("width", 0)), float(a.get("height", 0))))
        elif tag == "table":
            self._in_matrix = a.get("class") == "matrix"
        elif tag == "tr" and self._in_matrix:
            self.matrix_rows += 1
        elif tag == "script":
            self.scripts += 1
        self.links += [a[k] for k in ("src", "href") if a.get(k)]

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_matrix = False


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """The planted campaign's HTML report, written as `lab report -f html -o` does."""
    base = tmp_path_factory.mktemp("report-browser")
    engine = open_database(f"sqlite:///{base / 'lab.db'}")
    with Session(engine) as session, session.begin():
        plant_campaign(session)
    page = base / "report.html"
    write_atomic(page, lambda fh: write_report(engine, "planted", "html", fh))
    engine.dispose()
    return page


def test_renders_with_charts_and_matrix(report_html, tmp_path):
    dom_text, stderr, urls = browse(report_html, tmp_path, "--dump-dom")
    dom = Dom()
    dom.feed(dom_text)
    assert len(dom.svgs) == 8 and all(w >= 400 and h >= 200 for w, h in dom.svgs)  # fps and telemetry per cell
    assert dom.matrix_rows == 5  # header + 4 units
    assert dom.scripts == 0
    assert [link for link in dom.links if not link.startswith("data:")] == []
    assert "onset run 13" in dom_text and "degraded" in dom_text
    assert CSP_VIOLATION.findall(stderr) == []
    assert page_requests(urls) == []


def test_screenshot_shows_matrix_colours_and_chart_lines(report_html, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    _, stderr, urls = browse(report_html, tmp_path, f"--screenshot={shot}")
    assert page_requests(urls) == [] and CSP_VIOLATION.findall(stderr) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = {colour for _, colour in image.getcolors(WIDTH * HEIGHT)}
    assert shows(colours, (0xF3, 0xB8, 0xB2)), "no 'all degraded' matrix cell"
    assert shows(colours, (0xCD, 0xEB, 0xD0)), "no 'none degraded' matrix cell"
    assert shows(colours, (0x1F, 0x5F, 0xBF)), "no fps line"
    assert shows(colours, (0xD9, 0x73, 0x1A)), "no temperature line"
    if os.environ.get("LAB_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LAB_KEEP_SCREENSHOT"])


def shows(colours: set[tuple[int, int, int]], rgb: tuple[int, int, int]) -> bool:
    """Whether a colour close to `rgb` (anti-aliasing aside) is on the screen."""
    return any(sum(abs(a - b) for a, b in zip(rgb, c)) <= 24 for c in colours)


def test_the_harness_sees_an_external_request(tmp_path):
    """A page that loads a remote image is caught, by the CSP log and by the net log: the checks above can fail."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
                    "content=\"default-src 'none'\"></head><body><img src=\"http://example.invalid/x.png\">"
                    "</body></html>")
    _, stderr, _ = browse(page, tmp_path, "--dump-dom")
    assert CSP_VIOLATION.search(stderr)
    page.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png"></body></html>')
    _, _, urls = browse(page, tmp_path, "--dump-dom")
    assert page_requests(urls) == ["http://example.invalid/x.png"]
