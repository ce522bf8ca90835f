"""What `lab serve`'s live page shows while a campaign runs, read from the database only: per run its phase,
benchmark k of n, last fps and temperature and recent fps; and the records written since a cursor, for
server-sent events.

The cursor is the highest record `seq` stored for each run, in run order (`12.0.7`): the collector stores one
node's records in order, so "every record of run r with seq > cursor[r]" misses nothing and repeats nothing,
on SQLite and on PostgreSQL alike (a global id would not do there: concurrent ingests may commit out of order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lab.db.models import Campaign, Phase, Run, Sample, Stack
from lab.db.queries import find_campaign
from lab.errors import ConfigError

CHART_POINTS = 120  # fps points per run in the live chart: the recent trend, whatever the run's length
BATCH = 1000  # records per event; a backlog arrives in several


@dataclass(frozen=True)
class RunKey:
    """A run of the campaign as the live view addresses it."""

    id: int
    index: int
    node: str
    stack: str
    repeat: int


def campaign_runs(session: Session, campaign: Campaign) -> list[RunKey]:
    """The campaign's runs in index order (fixed when `lab run` plans the campaign)."""
    rows = session.execute(select(Run.id, Run.index, Run.node, Stack.name, Run.repeat)
                           .join(Stack, Stack.id == Run.stack_id).where(Run.campaign_id == campaign.id).order_by(Run.index))
    return [RunKey(*row) for row in rows]


def runs_of(engine: Engine, campaign_id: int) -> list[RunKey]:
    """The runs of campaign `campaign_id` in index order (the cursor's order)."""
    with Session(engine) as session:
        return campaign_runs(session, session.get(Campaign, campaign_id))


def encode_cursor(seqs: list[int]) -> str:
    """`12.0.7`: the last seq seen per run, in run order."""
    return ".".join(str(s) for s in seqs)


def decode_cursor(text: str | None, runs: int) -> list[int]:
    """The cursor of `encode_cursor`; empty means from the start. A malformed one is a ConfigError."""
    if not text:
        return [0] * runs
    parts = text.split(".")
    if len(parts) != runs or not all(p.isdigit() and len(p) < 12 for p in parts):
        raise ConfigError("malformed event id", "Last-Event-ID or ?after=",
                          f"expected {runs} dot-separated numbers, one per run, e.g. {encode_cursor([0] * runs)}")
    return [int(p) for p in parts]


def live_state(engine: Engine, ref: str) -> dict[str, Any]:
    """The campaign's status and, per run, phase, step, benchmark k of n, last fps and °C, recent fps; plus the cursor."""
    with Session(engine) as session:
        campaign = find_campaign(session, ref)
        runs = campaign_runs(session, campaign)
        state = run_states(session, campaign)
        ids = [r.id for r in runs]
        latest = select(Sample.run_id, func.max(Sample.seq).label("seq")).where(
            Sample.run_id.in_(ids), Sample.step == "benchmark").group_by(Sample.run_id).subquery()
        last_bench = {row.run_id: row for row in session.execute(
            select(Sample.run_id, Sample.run_index, Sample.fps, Sample.temp, Sample.extra)
            .join(latest, and_(latest.c.run_id == Sample.run_id, latest.c.seq == Sample.seq)))}
        newest = select(Sample.run_id, func.max(Sample.seq).label("seq")).where(
            Sample.run_id.in_(ids)).group_by(Sample.run_id).subquery()
        last_step = dict(session.execute(select(Sample.run_id, Sample.step).join(
            newest, and_(newest.c.run_id == Sample.run_id, newest.c.seq == Sample.seq))).all())
        recent = select(Sample.run_id, Sample.fps, func.row_number().over(
            partition_by=Sample.run_id, order_by=Sample.seq.desc()).label("back")).where(
            Sample.run_id.in_(ids), Sample.step == "benchmark").subquery()
        series: dict[int, list[float | None]] = {}
        for run_id, fps in session.execute(select(recent.c.run_id, recent.c.fps).where(recent.c.back <= CHART_POINTS)
                                           .order_by(recent.c.run_id, recent.c.back.desc())):
            series.setdefault(run_id, []).append(fps)
        out = []
        for r in runs:
            bench = last_bench.get(r.id)
            extra = (bench.extra or {}) if bench is not None else {}
            out.append({"run": r.index, "node": r.node, "stack": r.stack, "repeat": r.repeat, **state[r.id],
                        "step": last_step.get(r.id, ""),
                        "k": bench.run_index if bench is not None else None, "n": _int(extra.get("runs")),
                        "fps": bench.fps if bench is not None else None,
                        "temp": bench.temp if bench is not None else None,
                        "series": series.get(r.id, [])})
        return {"name": campaign.name, "id": campaign.id, "scenario": campaign.scenario_name,
                "status": campaign.status, "started_at": campaign.started_at, "runs": out,
                "cursor": cursor_of(session, runs)}


def cursor_of(session: Session, runs: list[RunKey]) -> str:
    """The cursor that stands after every record stored so far."""
    last = dict(session.execute(select(Sample.run_id, func.max(Sample.seq))
                                .where(Sample.run_id.in_([r.id for r in runs])).group_by(Sample.run_id)).all())
    return encode_cursor([last.get(r.id) or 0 for r in runs])


def run_states(session: Session, campaign: Campaign) -> dict[int, dict[str, Any]]:
    """Per run id: its status and verdict, and its current phase (the running one, else the last one begun)."""
    phases: dict[int, list[tuple[int, str, str]]] = {}
    for run_id, index, name, status in session.execute(
            select(Phase.run_id, Phase.index, Phase.name, Phase.status).join(Run, Run.id == Phase.run_id)
            .where(Run.campaign_id == campaign.id).order_by(Phase.run_id, Phase.index)):
        phases.setdefault(run_id, []).append((index, name, status))
    out = {}
    for run_id, status, verdict in session.execute(select(Run.id, Run.status, Run.verdict)
                                                   .where(Run.campaign_id == campaign.id)):
        mine = phases.get(run_id, [])
        running = [p for p in mine if p[2] == "running"]
        begun = [p for p in mine if p[2] != "pending"]
        current = (running or begun or [(None, "", "")])[-1]
        out[run_id] = {"status": status, "verdict": verdict or "", "phase": current[1], "phase_status": current[2],
                       "phases": len(mine), "phase_no": (current[0] + 1) if current[0] is not None else 0}
    return out


def campaign_state(engine: Engine, campaign_id: int) -> dict[str, Any]:
    """The campaign's status and each run's status and phase, for the `state` event (cheap: no sample is read)."""
    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:  # deleted while watched
            return {"status": "gone", "runs": []}
        runs = campaign_runs(session, campaign)
        state = run_states(session, campaign)
        return {"status": campaign.status, "runs": [{"run": r.index, **state[r.id]} for r in runs]}


def new_records(engine: Engine, runs: list[RunKey], cursor: list[int], limit: int = BATCH) -> tuple[list[dict], list[int]]:
    """Records stored after `cursor` (at most `limit`, in run then seq order) and the cursor after them."""
    if not runs:
        return [], cursor
    ids = {r.id: i for i, r in enumerate(runs)}
    after = or_(*(and_(Sample.run_id == r.id, Sample.seq > cursor[i]) for i, r in enumerate(runs)))
    stmt = (select(Sample.run_id, Sample.seq, Sample.step, Sample.run_index, Sample.fps, Sample.temp, Sample.error,
                   Sample.extra, Phase.name)
            .outerjoin(Phase, Phase.id == Sample.phase_id).where(after)
            .order_by(Sample.run_id, Sample.seq).limit(limit))
    out, moved = [], list(cursor)
    with engine.connect() as conn:
        for run_id, seq, step, k, fps, temp, error, extra, phase in conn.execute(stmt):
            i = ids[run_id]
            moved[i] = max(moved[i], seq)
            extra = extra or {}
            out.append({"run": runs[i].index, "seq": seq, "step": step, "phase": phase or "", "k": k,
                        "n": _int(extra.get("runs")), "fps": fps, "temp": temp,
                        "error": error or extra.get("error") or None})
    return out, moved


def _int(value: Any) -> int | None:
    """An int, or None for anything that is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
