"""Load one campaign from the results database into the report's campaign model, streaming its samples by column."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path

from sqlalchemy import String, Text, and_, case, cast, func, null, select, type_coerce
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lab.db.models import Artifact, Campaign, Phase, PowerEvent, Run, Sample, Stack, Unit
from lab.db.queries import find_campaign
from lab.report.findings import compute_findings
from lab.report.model import (SAMPLE_COLUMNS, ArtifactInfo, CampaignInfo, CampaignModel, PhaseInfo, PowerInfo, RunInfo,
                              StackInfo, UnitInfo, natural_key)
from lab.report.series import MEASURE_STEPS, SeriesBuilder
from lab.report.telemetry import TELEMETRY

STREAM_ROWS = 10_000  # rows fetched per round trip; memory stays flat however many samples there are
FEED_COLUMNS = ("phase_id", "step", "step_index", "fps", "temp", "boot_id", "nominal_s", "chip_throttling", "error",
                *TELEMETRY, "extra")
_FIXED = FEED_COLUMNS.index(TELEMETRY[0])  # the feed's telemetry columns start here (after phase id .. error)


def load_report(engine: Engine, ref: str) -> CampaignModel:
    """The campaign named (or numbered) `ref` with every finding computed; unknown names raise ConfigError."""
    model = open_campaign(engine, ref)
    load_series(engine, model)
    compute_findings(model)
    return model


def open_campaign(engine: Engine, ref: str) -> CampaignModel:
    """Campaign, stacks, units, runs, phases and artifact list; the runs' series come with `load_series`."""
    with Session(engine) as session:
        campaign = find_campaign(session, ref)
        info = _campaign_info(campaign)
        run_ids = select(Run.id).where(Run.campaign_id == campaign.id)
        stacks = {s.id: StackInfo(s.id, s.name, s.chip, s.hailort, s.driver, s.firmware) for s in session.scalars(
            select(Stack).where(Stack.id.in_(select(Run.stack_id).where(Run.campaign_id == campaign.id)))
            .order_by(Stack.name, Stack.id))}
        units: dict[str, UnitInfo] = {}
        runs: list[RunInfo] = []
        rows = session.execute(
            select(Run.id, Run.index, Run.node, Run.stack_id, Run.repeat, Run.status, Run.verdict, Run.error,
                   Run.started_at, Run.finished_at, Run.host_serial, Run.host_model, Run.executor, Unit.key, Unit.serial,
                   Unit.soc_id, Unit.chip, Unit.board, Unit.identity)
            .outerjoin(Unit, Unit.id == Run.unit_id).where(Run.campaign_id == campaign.id).order_by(Run.index))
        for (rid, index, node, stack_id, repeat, status, verdict, error, started, finished, host_serial, host_model,
             executor, key, serial, soc_id, chip, board, identity) in rows:
            key = key or f"node:{node}"
            if key not in units:
                units[key] = UnitInfo(key, node, serial, soc_id, chip or stacks[stack_id].chip, board,
                                      identity=identity if isinstance(identity, dict) else {})
            runs.append(RunInfo(rid, index, node, key, stack_id, repeat, status, verdict, error, started, finished,
                                host_serial=host_serial, host_model=host_model, executor=executor))
        by_id = {r.id: r for r in runs}
        for pid, run_id, index, name, status, boot_id, error, preflight, ready_s in session.execute(
                select(Phase.id, Phase.run_id, Phase.index, Phase.name, Phase.status, Phase.boot_id, Phase.error,
                       Phase.preflight, Phase.ready_s)
                .where(Phase.run_id.in_(run_ids)).order_by(Phase.run_id, Phase.index)):
            by_id[run_id].phases.append(PhaseInfo(index, name, status, boot_id, error, pid,
                                                  preflight if isinstance(preflight, dict) else None, ready_s))
        phase_names = {p.id: p.name for r in runs for p in r.phases}
        for run_id, phase_id, recovery, reason, ok, detail, waited in session.execute(
                select(PowerEvent.run_id, PowerEvent.phase_id, PowerEvent.recovery, PowerEvent.reason, PowerEvent.ok,
                       PowerEvent.detail, PowerEvent.waited_s)
                .where(PowerEvent.campaign_id == campaign.id).order_by(PowerEvent.id)):
            if run_id in by_id:
                by_id[run_id].power.append(PowerInfo(phase_names.get(phase_id, ""), bool(recovery), reason, bool(ok),
                                                     detail or "", waited))
        artifacts = artifact_list(session, campaign.id, {r.id: r.index for r in runs})
    ordered = dict(sorted(units.items(), key=lambda kv: natural_key(kv[1].node)))
    return CampaignModel(info, ordered, stacks, runs, artifacts, 0)


def load_series(engine: Engine, model: CampaignModel) -> None:
    """Stream every record once, in (run, seq) order, into each run's series (only the columns the series needs)."""
    for _ in stream_runs(engine, model, full=False):
        pass


def stream_runs(engine: Engine, model: CampaignModel, full: bool = True) -> Iterator[tuple[RunInfo, list]]:
    """(run, its raw rows) for each run with records, its series loaded before it is yielded; run it to the end.

    Full rows are `[run id, phase id, *SAMPLE_COLUMNS, extra as JSON text]`, one run's at a time, so a caller
    can export them in the same pass while memory holds one run's rows only. The model's sample count and
    units' reported identities are set once the last run has been yielded.
    """
    by_id = {run.id: run for run in model.runs}
    phase_index = {p.id: p.index for run in model.runs for p in run.phases}
    # positions of (phase id, step, step index, fps, temp, boot id, nominal_s, chip throttling, error, extra) in a row
    at = ([1] + [2 + SAMPLE_COLUMNS.index(c) for c in FEED_COLUMNS[1:-1]] + [-1] if full
          else list(range(1, len(FEED_COLUMNS) + 1)))
    pick = itemgetter(*at)
    count = 0
    for run_id, rows in scan(engine, model.campaign.id, full):
        builder = SeriesBuilder()
        add = builder.add
        for row in rows:
            values = pick(row)
            phase_id, step, step_index, fps, temp, boot, nominal, throttling, error = values[:_FIXED]
            extra = values[-1]
            telemetry = values[_FIXED:-1]
            reading = ({name: value for name, value in zip(TELEMETRY, telemetry) if value is not None}
                       if telemetry.count(None) != len(TELEMETRY) else None)
            # a measurement's `extra` matters only when it lacks fps or temperature (a skipped step, a flagged
            # value): else leave it undecoded
            decoded = (json.loads(extra) if extra is not None
                       and (fps is None or temp is None or step not in MEASURE_STEPS) else None)
            add(step, phase_index.get(phase_id, -1), fps, temp, boot, nominal, error, decoded, step_index, throttling,
                reading)
        run = by_id[run_id]
        run.series, run.identity, run.system = builder.series, builder.identity, builder.system
        count += len(rows)
        yield run, rows
    model.sample_count = count
    for run in model.runs:
        unit = model.units[run.unit_key]
        if run.identity and run.identity not in unit.observed:
            unit.observed.append(run.identity)
        if not unit.chip and run.identity.get("architecture"):
            unit.chip = str(run.identity["architecture"]).lower()


def scan(engine: Engine, campaign_id: int, full: bool = True) -> Iterator[tuple[int, list]]:
    """(run id, rows) for each run of the campaign that has records, streamed from one ordered query.

    Full rows are `run_id, phase_id, *SAMPLE_COLUMNS, extra`; lean ones `run_id, *FEED_COLUMNS`, with
    `extra` read only where the series needs it.
    """
    if full:
        columns = [iso_ts_column(engine.dialect.name) if name == "ts" else getattr(Sample, name)
                   for name in SAMPLE_COLUMNS]
        columns = [Sample.phase_id, *columns, cast(Sample.extra, Text)]
    else:
        measured = and_(Sample.step.in_(MEASURE_STEPS), Sample.fps.is_not(None), Sample.temp.is_not(None))
        columns = [getattr(Sample, name) for name in FEED_COLUMNS[:-1]]
        columns.append(case((measured, null()), else_=cast(Sample.extra, Text)))
    stmt = (select(Sample.run_id, *columns)
            .where(Sample.run_id.in_(select(Run.id).where(Run.campaign_id == campaign_id)))
            .order_by(Sample.run_id, Sample.seq))
    current, rows = None, []
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(stmt):
            if row[0] != current:
                if rows:
                    yield current, rows
                current, rows = row[0], []
            rows.append(row)
    if rows:
        yield current, rows


def iso_ts_column(dialect: str):  # noqa: ANN201 - a SQL expression
    """`ts` as ISO 8601 UTC text with microseconds, formatted by the database (no datetime per row)."""
    if dialect == "sqlite":  # stored as naive UTC text, `2026-04-30 05:08:01.000000`
        return func.replace(type_coerce(Sample.ts, String), " ", "T").concat("+00:00")
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", Sample.ts), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return Sample.ts


def artifact_list(session: Session, campaign_id: int, run_index: dict[int, int]) -> list[ArtifactInfo]:
    """Every artifact of the campaign, without its bytes."""
    rows = session.execute(
        select(Artifact.id, Artifact.run_id, Artifact.node, Artifact.name, Artifact.kind, Artifact.sha256,
               Artifact.size, Artifact.path)
        .where(Artifact.campaign_id == campaign_id).order_by(Artifact.run_id, Artifact.name, Artifact.id))
    return [ArtifactInfo(aid, run_index.get(run_id) if run_id is not None else None, node, name, kind, sha, size,
                         path) for aid, run_id, node, name, kind, sha, size, path in rows]


def artifact_bytes(engine: Engine, ids: list[int]) -> Iterator[tuple[int, bytes | None]]:
    """(id, bytes) of these artifacts: the stored blob, else the file at `path` (None when it is gone)."""
    with engine.connect() as conn:
        for start in range(0, len(ids), 200):
            chunk = ids[start:start + 200]
            for aid, blob, path in conn.execute(select(Artifact.id, Artifact.blob, Artifact.path)
                                                .where(Artifact.id.in_(chunk))):
                if blob is None and path:
                    try:
                        blob = Path(path).read_bytes()
                    except OSError:
                        blob = None
                yield aid, blob


def _campaign_info(c: Campaign) -> CampaignInfo:
    """The campaign row as CampaignInfo, with its reproduction command."""
    return CampaignInfo(c.id, c.name, c.scenario_name, c.scenario_text, c.inventory, c.status, c.started_at,
                        c.finished_at, c.command_line, c.exit_status, reproduce_command(c),
                        dict((c.settings or {}).get("models") or {}))


def reproduce_command(c: Campaign) -> str:
    """`lab run SCENARIO --inventory INV [--limit PAT]` from the recorded command line (no --db, no --name)."""
    scenario, inventory, limit = f"scenarios/{c.scenario_name}.yaml", c.inventory or "INVENTORY", None
    try:
        argv = shlex.split(c.command_line or "")
    except ValueError:
        argv = []
    if len(argv) > 2 and argv[1] == "run":
        positional, i = [], 2
        while i < len(argv):
            arg, value = argv[i], argv[i + 1] if i + 1 < len(argv) else None
            name, eq, inline = arg.partition("=")
            if eq:
                value, i = inline, i + 1
            elif arg.startswith("-") and arg != "--json":
                i += 2
            else:
                i += 1
            if name in ("--inventory", "-i"):
                inventory = value or inventory
            elif name == "--limit":
                limit = value
            elif not arg.startswith("-"):
                positional.append(arg)
        scenario = positional[0] if positional else scenario
    parts = ["lab", "run", scenario, "--inventory", inventory] + (["--limit", limit] if limit else [])
    return shlex.join(parts)
