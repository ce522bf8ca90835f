"""Issue 13 in the reports: units keyed by chip identity (the matrix follows the HAT), telemetry per run, the
run where CMA alloc failures begin beside the run where fps falls, in text, Markdown, HTML and JSON."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

import pytest
from sqlalchemy.orm import Session

from lab.db.planted import plant_campaign
from lab.db.report_load import load_report
from lab.db.session import open_database
from lab.report.build import write_report
from lab.report.compare import compare_view, render_compare_text
from lab.report.model import unit_label
from lab.report.series import SeriesBuilder
from lab.report.synthetic import host_serial, soc_id
from lab.report.telemetry import (RunTelemetry, cma_versus_fall, host_text, link_text, preflight_text, summarize,
                                  telemetry_row)

# --- pure: CMA failures against the fall of fps -------------------------------------------------------------------


def test_no_cma_errors():
    got = cma_versus_fall({k: 0 for k in range(1, 26)}, 13)
    assert (got.first_error_run, got.fall_run, got.errors, got.measured) == (None, 13, 0, True)
    assert got.sentence == "no CMA alloc failures; fps falls from run 13"


def test_errors_but_no_fall():
    got = cma_versus_fall({1: 0, 2: 0, 3: 2, 4: 1}, None)
    assert (got.first_error_run, got.fall_run, got.errors) == (3, None, 3)
    assert got.sentence == "CMA alloc failures from benchmark run 3 (3 in all); fps does not fall"


def test_fall_without_errors():
    got = cma_versus_fall({1: 0, 2: 0}, 2)
    assert got.first_error_run is None and got.sentence == "no CMA alloc failures; fps falls from run 2"


@pytest.mark.parametrize(("first", "fall", "tail"), [
    (9, 11, "fps falls from run 11 (2 runs after the first failure)"),
    (9, 10, "fps falls from run 10 (1 run after the first failure)"),
    (9, 9, "fps falls from run 9 (the run of the first failure)"),
    (9, 7, "fps falls from run 7 (2 runs before the first failure)"),
])
def test_errors_and_fall(first, fall, tail):
    errors = {k: (1 if k >= first else 0) for k in range(1, 13)}
    got = cma_versus_fall(errors, fall)
    assert got.sentence == f"CMA alloc failures from benchmark run {first} ({13 - first} in all); {tail}"


def test_no_runtime_log_read_per_run():
    got = cma_versus_fall({}, 11)
    assert (got.measured, got.sentence) == (False, "no runtime log read per benchmark run; fps falls from run 11")


# --- pure: telemetry summary and its words --------------------------------------------------------------------------

def _readings(**columns) -> dict[int, dict]:
    """Per benchmark position, the given columns' values (lists of equal length)."""
    n = len(next(iter(columns.values())))
    return {i: {k: v[i] for k, v in columns.items() if v[i] is not None} for i in range(n)}


def test_link_below_its_maximum_is_flagged():
    t = summarize(_readings(pcie_width=[1, 1], pcie_max_width=[4, 4], pcie_speed=[8.0, 8.0],
                            pcie_max_speed=[16.0, 16.0]))
    assert (link_text(t), t.link_below_max) == ("x1 of x4, 8.0 of 16.0 GT/s", True)
    assert telemetry_row(t)["link_flag"] == "below max"


def test_link_at_its_maximum_is_not_flagged_and_a_changing_link_shows_its_range():
    assert not summarize(_readings(pcie_width=[4], pcie_max_width=[4], pcie_speed=[8.0],
                                   pcie_max_speed=[8.0])).link_below_max
    t = summarize(_readings(pcie_width=[4, 1], pcie_max_width=[4, 4], pcie_speed=[5.0, 2.5],
                            pcie_max_speed=[8.0, 8.0]))
    assert (link_text(t), t.link_below_max) == ("x1–x4 of x4, 2.5–5.0 of 8.0 GT/s", True)


def test_summary_takes_minimum_cma_ranges_and_decodes_throttling():
    t = summarize(_readings(cma_free_kb=[60000, 20480, 40000], cma_total_kb=[65536] * 3, soc_temp=[50.0, 61.25, 55.0],
                            arm_clock_mhz=[2400.0, 1500.0, 2400.0], throttled=["0x0", "0x50005", "0x50000"],
                            power_state=["D0", "D0", "D3hot"], aspm=["L1", "L1", "L1"],
                            cma_errors=[0, None, 3]))
    row = telemetry_row(t)
    assert row == {"link": "", "link_flag": "", "power": "D0/D3hot", "aspm": "L1",
                   "cma": "20.0 of 64.0 MiB free", "soc_temp": "50.0–61.2 °C",
                   "arm_clock": "1500–2400 MHz",
                   "throttled": "under-voltage now, throttled now, under-voltage has occurred, throttling has occurred"}
    assert t.cma_errors == {1: 0, 3: 3}  # benchmark numbers, 1-based; the unread one left out


def test_clear_and_unreadable_throttling():
    assert telemetry_row(summarize(_readings(throttled=["0x0"])))["throttled"] == "none"
    assert telemetry_row(summarize(_readings(throttled=["0x0", "garbage"])))["throttled"] == "none; unreadable 'garbage'"
    assert telemetry_row(RunTelemetry())["throttled"] == ""  # never read: nothing, not "none"


def test_preflight_line():
    pre = {"ready": True, "ready_s": 41.27, "device": {"bdf": "0001:01:00.0", "vendor": "1e60", "device": "45c4"},
           "holder": {"name": "hailort.service", "pid": 812}, "chip": {"expected": "hailo8", "found": "hailo10h"}}
    assert preflight_text(pre) == ("ready after 41.3 s; device 0001:01:00.0 [1e60:45c4]; held by hailort.service "
                                   "(pid 812); chip hailo10h MISMATCH inventory hailo8")
    assert preflight_text({"ready": False, "holder": None}) == "not ready; device free"
    assert preflight_text({"ready": True, "clock_synchronised": False, "stopped": "hailort.service"}) == (
        "ready; clock synchronised no; stopped hailort.service")
    assert preflight_text(None, 12.0) == "ready after 12.0 s"


def test_unit_and_host_labels():
    soc = "3F7A01C2" + "0" * 52 + "D41E"
    assert unit_label(f"soc:{soc}", "node1") == "SoC 3F7A01C2…D41E"
    assert unit_label("serial:HLDDLBB234500054", "node1") == "HLDDLBB234500054"
    assert unit_label("node:node7", "node7") == "node7"
    assert host_text("node1", "10000000a1b2c3d4", "Raspberry Pi 5 Model B Rev 1.0") == (
        "node1 (Pi 5 Model B Rev 1.0, serial …a1b2c3d4)")
    assert host_text("node1", None, None) == "node1"


def test_a_runtime_log_snapshot_after_a_benchmark_belongs_to_that_benchmark():
    b = SeriesBuilder()
    b.add("collect", 1, None, None, "b", None, None, None, telemetry={"cma_free_kb": 100})  # before any: the next
    b.add("benchmark", 1, 120.0, 60.0, "b", 15.0, None, None, telemetry={"pcie_width": 1, "cma_errors": 0})
    b.add("collect", 1, None, None, "b", None, None, None, telemetry={"cma_errors": 2})
    b.add("benchmark", 1, 119.0, 61.0, "b", 30.0, None, None)
    b.add("collect", 1, None, None, "b", None, None, None, telemetry={"cma_errors": 3})
    assert b.series.telemetry == {0: {"cma_free_kb": 100, "pcie_width": 1, "cma_errors": 2}, 1: {"cma_errors": 3}}


# --- every format, on the planted campaign ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted campaign (its units 0 and 1 trade Pis for repeat 2) and one where they trade from repeat 1."""
    engine = open_database(f"sqlite:///{tmp_path_factory.mktemp('telemetry') / 'lab.db'}")
    with Session(engine) as session, session.begin():
        plant_campaign(session)
        plant_campaign(session, "moved", repeats=1, infra_errors=(), artifacts=False, swap_from=1)
    yield engine
    engine.dispose()


def render(engine, fmt: str, ref: str = "planted") -> str:
    out = io.StringIO()
    write_report(engine, ref, fmt, out)
    return out.getvalue()


def test_text_keys_units_by_chip_and_shows_telemetry(planted):
    lines = render(planted, "text").splitlines()
    header = next(line for line in lines if line.startswith("unit  "))
    assert header.endswith("sat in (Pi, runs)")
    rows = lines[lines.index(header) + 1:lines.index(header) + 5]
    assert [row.split("  ")[0] for row in rows] == ["SoC A4EE0CA6…45AC", "SoC FAF1C754…88FA", "SoC FA8A31B4…A9CC",
                                                    "SoC A82B2479…B110"]  # one row per HAT, though two moved
    assert rows[0].endswith("node1 (Pi …ca12f31b) #0; node2 (Pi …15b18a72) #4")
    assert ("0  SoC A4EE0CA6…45AC  node1  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     L1        "
            "50.2 of 64.0 MiB free  48.9–58.0 °C  2400 MHz   none") in lines
    assert any(line.startswith("2  SoC FA8A31B4…A9CC  node3  x1 of x4, 5.0 of 8.0 GT/s  below max") and line.endswith(
        "under-voltage now, throttled now, under-voltage has occurred, throttling has occurred") for line in lines)
    assert ("  #0 SoC A4EE0CA6…45AC · h10-5.3.0 rep 1: CMA alloc failures from benchmark run 9 (57 in all); "
            "fps falls from run 13 (4 runs after the first failure)") in lines
    assert "  #2 SoC FA8A31B4…A9CC · h10-5.3.0 rep 1: no CMA alloc failures; fps does not fall" in lines
    assert "  #3 SoC A82B2479…B110 · h8-4.23.0 rep 1: no runtime log read per benchmark run; fps does not fall" in lines
    assert ("  #3 node4 (Pi 5 Model B Rev 1.0, serial …d2b8f62a) soak: ready after 23.0 s; device 0001:01:00.0 "
            "[1e60:2864]; device free; chip hailo8 matches inventory hailo8") in lines
    assert ("CMA:      alloc failures in 4 of 5 runs read after each benchmark run; of the 4 runs whose fps fell, "
            "failures began before the fall (by 4 runs) in 4") in lines


def test_markdown_keys_units_by_chip_and_shows_telemetry(planted):
    lines = render(planted, "md").splitlines()
    assert "| unit | chip | h10-5.3.0 | h8-4.23.0 | sat in (Pi, runs) |" in lines
    assert ("| SoC FAF1C754…88FA | hailo10h | 2/2 [34–100 %] | – | node2 (Pi …15b18a72) #1; node1 (Pi …ca12f31b) #5 |"
            in lines)
    assert "## Telemetry per run" in lines
    assert "| # | unit | Pi | PCIe link | power | ASPM | host CMA (lowest) | Pi SoC | ARM clock | Pi throttled |" in lines
    assert ("| 0 | SoC A4EE0CA6…45AC | node1 (Pi 5 Model B Rev 1.0, serial …ca12f31b) | x1 of x4, 8.0 of 8.0 GT/s "
            "**below max** | D0 | L1 | 50.2 of 64.0 MiB free | 48.9–58.0 °C | 2400 MHz | none |") in lines
    assert ("| 4 | SoC A4EE0CA6…45AC | h10-5.3.0 | 2 | 9 | 57 | 13 | CMA alloc failures from benchmark run 9 "
            "(57 in all); fps falls from run 13 (4 runs after the first failure) |") in lines
    assert ("| 1 | node2 (Pi 5 Model B Rev 1.0, serial …15b18a72) | soak | ready after 20.0 s; device 0001:01:00.0 "
            "[1e60:45c4]; device free; chip hailo10h matches inventory hailo10h |") in lines
    assert ("- **CMA**: alloc failures in 4 of 5 runs read after each benchmark run; of the 4 runs whose fps fell, "
            "failures began before the fall (by 4 runs) in 4.") in lines


def test_json_carries_identity_hosts_telemetry_preflight_and_cma(planted):
    doc = json.loads(render(planted, "json"))
    unit = doc["units"][0]
    assert (unit["key"], unit["label"], unit["soc_id"], unit["serial"]) == (
        f"soc:{soc_id(0)}", "SoC A4EE0CA6…45AC", soc_id(0), None)
    assert unit["identity"]["lcs"] == 3
    assert [(s["run"], s["node"], s["host_serial"]) for s in unit["sat_in"]] == [
        (0, "node1", host_serial("node1")), (4, "node2", host_serial("node2"))]
    run = doc["runs"][0]
    assert run["host"] == {"node": "node1", "serial": host_serial("node1"), "model": "Raspberry Pi 5 Model B Rev 1.0"}
    assert run["telemetry"]["pcie"] == {"width": [1, 1], "max_width": 4, "speed_gts": [8.0, 8.0],
                                        "max_speed_gts": 8.0, "below_max": True, "text": "x1 of x4, 8.0 of 8.0 GT/s"}
    assert run["telemetry"]["host_cma_kb"] == {"free_min": 51450, "total": 65536}
    assert run["telemetry"]["cma_errors"]["8"] == 0 and run["telemetry"]["cma_errors"]["9"] == 1
    assert {k: run["cma"][k] for k in ("first_error_run", "fall_run", "errors", "measured")} == {
        "first_error_run": 9, "fall_run": 13, "errors": 57, "measured": True}
    assert doc["runs"][2]["telemetry"]["throttled"] == ["under-voltage now", "throttled now",
                                                        "under-voltage has occurred", "throttling has occurred"]
    assert doc["runs"][3]["cma"]["measured"] is False  # HailoRT 4.23 on Hailo-8 has no runtime log
    soak = run["phases"][1]
    assert (soak["ready_s"], soak["preflight"]["device"]["device"], soak["preflight"]["holder"]) == (18.5, "45c4", None)
    assert doc["findings"]["cma"].startswith("alloc failures in 4 of 5 runs")
    for column in ("pcie_speed", "pcie_width", "pcie_max_speed", "pcie_max_width", "power_state", "aspm",
                   "cma_free_kb", "cma_total_kb", "soc_temp", "arm_clock_mhz", "cma_errors"):
        assert column in doc["sample_columns"]
    bench9 = next(dict(zip(doc["sample_columns"], s)) for s in doc["samples"]
                  if s[0] == 0 and s[doc["sample_columns"].index("run_index")] == 9)
    assert (bench9["cma_errors"], bench9["pcie_width"], bench9["power_state"]) == (1, 1, "D0")


class Page(HTMLParser):
    """The report's tables by class (rows of cell texts), svg classes, and the matrix rows' unit keys."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.svgs: list[str] = []
        self.panels: list[str] = []
        self.bars = 0
        self.units: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("class") or ""
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            if a.get("data-unit"):
                self.units.append(a["data-unit"])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self.svgs.append(a.get("class", ""))
        elif tag == "g" and a.get("class") == "panel":
            self.panels.append(a["data-panel"])
        elif tag == "rect" and a.get("class") == "cma_errors":
            self.bars += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_tables_and_charts(planted):
    page = Page()
    page.feed(render(planted, "html"))
    assert page.units == [f"soc:{soc_id(i)}" for i in range(4)]  # one matrix row per HAT
    matrix = page.tables["matrix"]
    assert matrix[1][0] == "SoC A4EE0CA6…45AC" and matrix[1][-1] == "node1 (Pi …ca12f31b) #0; node2 (Pi …15b18a72) #4"
    telemetry = page.tables["telemetry"]
    assert telemetry[0] == ["#", "unit", "Pi", "PCIe link", "power", "ASPM", "host CMA (lowest)", "Pi SoC",
                            "ARM clock", "Pi throttled"]
    assert telemetry[3] == ["2", "SoC FA8A31B4…A9CC", "node3 (Pi …3b5bb1c6)", "x1 of x4, 5.0 of 8.0 GT/sbelow max",
                            "D0", "L1", "50.2 of 64.0 MiB free", "48.9–58.0 °C", "2400 MHz",
                            "under-voltage now, throttled now, under-voltage has occurred, throttling has occurred"]
    assert [row[0] for row in telemetry[1:]] == ["0", "1", "2", "3", "4", "5", "7"]  # run 6 never measured
    cma = page.tables["cma"]
    assert cma[1][4:7] == ["9", "57", "13"]
    assert cma[3][4:7] == ["", "0", ""]
    assert page.tables["preflight"][1][3] == ("ready after 18.5 s; device 0001:01:00.0 [1e60:45c4]; device free; "
                                              "chip hailo10h matches inventory hailo10h")
    # per unit x stack: the fps chart, then its telemetry beside it (link width and speed, host CMA, chip CMA)
    assert page.svgs == ["chart", "chart telemetry"] * 4
    assert page.panels[:4] == ["PCIe link width", "PCIe link speed", "Host CmaFree", "Chip CMA alloc failures"]
    assert page.bars == 4 * 17  # two susceptible units, two repeats each: a bar per benchmark run from run 9
    assert "Chip CMA alloc failures" not in page.panels[12:]  # Hailo-8 on 4.23: no runtime log, no CMA panel


def test_the_matrix_follows_the_hat_across_campaigns(planted):
    models = [load_report(planted, "planted"), load_report(planted, "moved")]
    moved = models[1]
    assert [(r.node, r.unit_key) for r in moved.runs[:2]] == [("node2", f"soc:{soc_id(0)}"),
                                                             ("node1", f"soc:{soc_id(1)}")]
    text = render_compare_text(compare_view(models))
    rows = [line for line in text.splitlines() if line.startswith("SoC ")]
    assert [row.split("  ")[0] for row in rows] == ["SoC A4EE0CA6…45AC", "SoC FAF1C754…88FA", "SoC FA8A31B4…A9CC",
                                                    "SoC A82B2479…B110"]  # four HATs, four rows, in both campaigns
    assert "node1" not in text and "node2" not in text


def test_a_held_device_is_named_in_every_format(tmp_path):
    """A pre-flight that found another client on /dev/hailo0 ends the run as an infra error naming it."""
    engine = open_database(f"sqlite:///{tmp_path / 'held.db'}")
    with Session(engine) as session, session.begin():
        campaign = plant_campaign(session, "held", units=1, repeats=1, infra_errors=((0, 1),), artifacts=False)
        (run,) = campaign.runs
        soak = run.phases[1]
        soak.preflight = {"ready": True, "ready_s": 31.0, "holder": {"name": "hailo-ollama", "pid": 1234},
                          "device": {"bdf": "0001:01:00.0", "vendor": "1e60", "device": "45c4"}}
        soak.ready_s = 31.0
        run.error = soak.error = "soak: /dev/hailo0 is held by hailo-ollama (pid 1234)"
    line = ("ready after 31.0 s; device 0001:01:00.0 [1e60:45c4]; held by hailo-ollama (pid 1234)")
    assert f"  #0 node1 (Pi 5 Model B Rev 1.0, serial …ca12f31b) soak: {line}" in render(engine, "text", "held")
    assert f"| 0 | node1 (Pi 5 Model B Rev 1.0, serial …ca12f31b) | soak | {line} |" in render(engine, "md", "held")
    page = Page()
    page.feed(render(engine, "html", "held"))
    assert page.tables["preflight"][1][3] == line
    doc = json.loads(render(engine, "json", "held"))
    assert doc["runs"][0]["verdict"] == "infra_error"
    assert doc["runs"][0]["phases"][1]["preflight"]["holder"] == {"name": "hailo-ollama", "pid": 1234}
    engine.dispose()
