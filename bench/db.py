"""Benchmark of the results database: ingest rate and `lab report` cost on a synthetic million-sample campaign.

    .venv/bin/python bench/db.py --db sqlite                          # 1,000 units x 1,000 runs, SQLite
    scripts/with-postgres .venv/bin/python bench/db.py                # SQLite, then PostgreSQL
    .venv/bin/python bench/db.py --units 4 --runs 30 --db sqlite      # a tiny run (what the unit test does)
    .venv/bin/python bench/db.py --db sqlite --baseline 9fad8b7       # each step with that commit's lab/ too

With --baseline, every step runs first with REV's `lab` package (git archive, on PYTHONPATH), then with the
working tree's, one after the other, so before/after figures come from the same minutes of the same machine.

Every step runs in its own child process, measured the same way (os.wait4: CPU seconds user+sys and peak
RSS of that process alone), one step at a time. Ingest writes `lab.db.planted`'s planted campaign
(units x 1 repeat x runs benchmarks) through `lab.db.ingest.ingest_samples`, the collector's own path,
and its rate counts only the time inside that call and the final commit (not the generator). Reports are
the real CLI, `lab report CAMPAIGN --format F -o FILE`, so the figure is what a user waits for. With
PostgreSQL on this machine, the server's CPU over each step has a column of its own (read from /proc).
Work files go in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PG_ENV = "LAB_TEST_PG_URL"
CAMPAIGN = "bench"
MiB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    """Parse options, run each database's steps, print the table; 2 on bad options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=1000, help="units in the campaign (default 1000)")
    parser.add_argument("--runs", type=int, default=1000, help="benchmark runs per unit (default 1000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both",
                        help=f"database(s); PostgreSQL from ${PG_ENV} (default both; PostgreSQL skipped if unset)")
    parser.add_argument("--formats", default="html,json", help="report formats to time (default html,json)")
    parser.add_argument("--baseline", metavar="REV", help="also run every step with this commit's lab package")
    parser.add_argument("--ingest-child", nargs=2, metavar=("URL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ingest_child:
        return ingest_child(*args.ingest_child, args.units, args.runs)
    if args.units < 1 or args.runs < 1:
        parser.error("--units and --runs must be at least 1")
    formats = [f for f in args.formats.split(",") if f]
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in databases and not os.environ.get(PG_ENV):
        if args.db == "postgresql":
            parser.error(f"${PG_ENV} is not set: run under scripts/with-postgres")
        databases.remove("postgresql")
        print(f"PostgreSQL skipped: ${PG_ENV} is not set (run under scripts/with-postgres)", file=sys.stderr)
    print(f"# {args.units} units x {args.runs} runs; {os.cpu_count()} CPUs; load average before: {loadavg()}")
    rows: list[list[str]] = []
    work = Path(tempfile.mkdtemp(prefix="lab-bench-db-"))
    try:
        codes: list[tuple[str, Path | None]] = [("working tree", None)]
        if args.baseline:
            codes.insert(0, (args.baseline, checkout(args.baseline, work / "baseline")))
        for database in databases:
            for code, path in codes[:-1]:  # the baseline's ingest, into a database of its own
                url, drop = database_url(database, work, "_base")
                try:
                    rows.append([code] + server_side(url, lambda: ingest_step(database, url, args.units,
                                                                              args.runs, path)))
                finally:
                    drop()
            url, drop = database_url(database, work)
            try:
                rows.append([codes[-1][0]] + server_side(url, lambda: ingest_step(database, url, args.units,
                                                                                  args.runs)))
                for fmt in formats:
                    for code, path in codes:  # every code's report reads the working tree's database
                        rows.append([code] + server_side(url, lambda: report_step(database, url, fmt, work, path)))
            finally:
                drop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = ["code", "database", "step", "samples", "records", "wall s", "CPU s", "server CPU s", "peak MiB",
              "figure"]
    if not args.baseline:
        header, rows = header[1:], [row[1:] for row in rows]
    for line in table(rows, header):
        print(line)
    print(f"# load average after: {loadavg()}")
    return 0


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: they say how busy it was)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def checkout(rev: str, where: Path) -> Path:
    """REV's `lab` package extracted under `where` (for PYTHONPATH); the directory."""
    where.mkdir()
    archive = subprocess.run(["git", "archive", rev, "lab"], cwd=Path(__file__).resolve().parent.parent,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"bench: git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


def remove_sqlite(path: Path) -> None:
    """A SQLite database file and its -wal and -shm files."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)


def child_env(code: Path | None) -> dict[str, str] | None:
    """The environment of a child that runs the `lab` package at `code` (None: the working tree's)."""
    return None if code is None else {**os.environ, "PYTHONPATH": str(code)}


def database_url(database: str, work: Path, suffix: str = "") -> tuple[str, Callable[[], None]]:
    """A fresh, empty database's URL and the call that removes it."""
    if database == "sqlite":
        path = work / f"bench{suffix}.db"
        return f"sqlite:///{path}", lambda: remove_sqlite(path)
    from sqlalchemy import create_engine, make_url, text

    server = make_url(os.environ[PG_ENV])
    name = f"lab_bench_{os.getpid()}{suffix}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.set(database=name).render_as_string(hide_password=False), drop


def server_side(url: str, step: Callable[[], list[str]]) -> list[str]:
    """The step's row with the database server's CPU seconds over it inserted (PostgreSQL on this machine only)."""
    read = postgres_cpu_reader(url) if url.startswith("postgresql") else None
    before = read() if read else None
    row = step()
    after = read() if read else None
    row.insert(6, f"{after - before:.1f}" if before is not None and after is not None else "")
    return row


def postgres_cpu_reader(url: str) -> Callable[[], float | None] | None:
    """A reader of the local PostgreSQL server's CPU seconds so far: its postmaster, live and exited children."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            data = conn.execute(text("SELECT setting FROM pg_settings WHERE name = 'data_directory'")).scalar()
        postmaster = int(Path(data, "postmaster.pid").read_text().split()[0])
    except Exception:  # noqa: BLE001 - a remote or unreadable server: no server figure
        return None
    finally:
        engine.dispose()
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int | str) -> list[str]:
        """/proc/PID/stat's fields after the command name (state, ppid, ..., utime at 11, stime, cutime, cstime)."""
        raw = Path(f"/proc/{pid}/stat").read_text()
        return raw[raw.rindex(")") + 2:].split()

    def read() -> float | None:
        try:
            total = sum(int(x) for x in stat(postmaster)[11:15])  # exited backends are in its cutime/cstime
        except OSError:
            return None
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = stat(entry.name)
                except OSError:
                    continue
                if int(fields[1]) == postmaster:
                    total += int(fields[11]) + int(fields[12])
        return total / tick

    return read


def measured(argv: list[str], code: Path | None = None) -> tuple[int, float, float, float, bytes]:
    """Run a child (with the `lab` package at `code`) to its end: (status, wall s, CPU s user+sys, peak MiB, stdout)."""
    with tempfile.TemporaryFile() as err:  # a file, so a chatty child never blocks on a full pipe
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=child_env(code))
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's so far
        wall = time.perf_counter() - start
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace"))
            raise SystemExit(f"bench: {' '.join(argv[:4])} ... exited {proc.returncode}")
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def ingest_step(database: str, url: str, units: int, runs: int, code: Path | None = None) -> list[str]:
    """Plant the campaign in a child process; the row with its ingest rate and the counts read back."""
    _, wall, cpu, peak, out = measured([sys.executable, __file__, "--ingest-child", url, CAMPAIGN,
                                        "--units", str(units), "--runs", str(runs)], code)
    r = json.loads(out)
    rate = r["records"] / r["ingest_wall"] if r["ingest_wall"] else float("inf")
    return [database, "ingest", str(r["samples"]), str(r["records"]), f"{r['ingest_wall']:.1f}",
            f"{r['ingest_cpu']:.1f}", f"{peak:.0f}",
            f"{rate:,.0f} records/s (child: {wall:.1f} s wall, {cpu:.1f} s CPU with the generator)"]


def ingest_child(url: str, name: str, units: int, runs: int) -> int:
    """In the child: migrate, plant the campaign through a timed ingest_samples, commit; print counts as JSON."""
    import importlib.util
    import inspect

    from sqlalchemy import func, select

    from lab.db.ingest import ingest_samples
    from lab.db.models import Run, Sample
    from lab.db.session import make_engine, session_factory, upgrade

    # a baseline from before the planted campaign's storing moved to lab.db has it in lab.report.synthetic
    synthetic = importlib.import_module("lab.db.planted" if importlib.util.find_spec("lab.db.planted")
                                        else "lab.report.synthetic")
    engine = make_engine(url, where="bench")
    upgrade(engine)
    spent = {"wall": 0.0, "cpu": 0.0, "added": 0}

    def timed(session, run_id, records, phase_id=None):  # noqa: ANN001, ANN202 - ingest_samples' signature
        wall, cpu = time.perf_counter(), time.process_time()
        added = ingest_samples(session, run_id, records, phase_id=phase_id)
        spent["wall"] += time.perf_counter() - wall
        spent["cpu"] += time.process_time() - cpu
        spent["added"] += added
        return added

    hook = {"ingest": timed}
    if "ingest" not in inspect.signature(synthetic.plant_campaign).parameters:  # a baseline from before it had one
        synthetic.ingest_samples, hook = timed, {}
    with session_factory(engine)() as session:
        campaign = synthetic.plant_campaign(session, name, units=units, repeats=1, benches=runs, infra_errors=(),
                                            **hook)
        wall, cpu = time.perf_counter(), time.process_time()
        session.commit()  # the rows are only stored once committed: part of the ingest's cost
        spent["wall"] += time.perf_counter() - wall
        spent["cpu"] += time.process_time() - cpu
        in_campaign = Sample.run_id.in_(select(Run.id).where(Run.campaign_id == campaign.id))
        records = session.scalar(select(func.count()).select_from(Sample).where(in_campaign))
        samples = session.scalar(select(func.count()).select_from(Sample).where(
            in_campaign, Sample.step == "benchmark", Sample.fps.is_not(None)))
    engine.dispose()
    if records != spent["added"]:
        raise SystemExit(f"bench: ingest_samples said {spent['added']} rows added, the database has {records}")
    print(json.dumps({"records": records, "samples": samples, "ingest_wall": spent["wall"],
                      "ingest_cpu": spent["cpu"]}))
    return 0


def report_step(database: str, url: str, fmt: str, work: Path, code: Path | None = None) -> list[str]:
    """`lab report CAMPAIGN --format FMT -o FILE` as a user runs it; the row with its cost and output digest."""
    lab = Path(sys.executable).with_name("lab")
    command = [str(lab)] if lab.exists() else [sys.executable, "-m", "lab"]
    output = work / f"report.{fmt}"
    _, wall, cpu, peak, _ = measured(command + ["report", CAMPAIGN, "--format", fmt, "-o", str(output),
                                                "--db", url], code)
    size = output.stat().st_size
    digest = sha256_file(output)[:12]  # same digest before and after a change: the same report
    output.unlink()
    return [database, f"report {fmt}", "", "", f"{wall:.1f}", f"{cpu:.1f}", f"{peak:.0f}",
            f"{size / MiB:,.1f} MiB, sha256 {digest}"]


def sha256_file(path: Path) -> str:
    """The file's sha256, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    """A Markdown table (pastes into bench/RESULTS-db.md as it is)."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(r, widths)) + " |" for r in [header] + rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


if __name__ == "__main__":
    sys.exit(main())
