"""The engine's store over SQLAlchemy: campaigns, runs and phases, records, units, artifacts, transitions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from sqlalchemy import exc, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lab.agent.parsers import ToolOutputError, parse_dmesg, parse_runtime_log
from lab.analysis import RunSample
from lab.db.claims import claim_campaign
from lab.db.ingest import get_or_create_stack, ingest_samples, store_artifact, store_preflight, upsert_unit
from lab.contract import IDENTITY, PREFLIGHT, Record
from lab.db.models import Artifact, Campaign, LogEvent, Phase, PowerEvent, Run, Sample
from lab.engine.collect import runs_of
from lab.engine.plan import Plan, StoredRun
from lab.engine.ports import StoredCampaign
from lab.engine.state import CampaignFinished, Effect, PhaseClosed, PhaseStarted, PowerCycled, RunFailed, RunStarted
from lab.errors import ConfigError
from lab.inventory import Host


def now() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """Writes a campaign through one SQLAlchemy engine (SQLite or PostgreSQL); each call is one transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def claim(self, name: str) -> AbstractContextManager[None]:
        return claim_campaign(self.engine, name)

    def campaign_exists(self, name: str) -> bool:
        with Session(self.engine) as session:
            return session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None

    def create(self, plan: Plan, name: str, command_line: str) -> tuple[int, dict[int, int]]:
        try:
            return self._create(plan, name, command_line)
        except exc.IntegrityError:
            # another controller wrote this name since campaign_exists (SQLite, where no claim guards it)
            if self.campaign_exists(name):
                raise ConfigError(f"a campaign named {name!r} already exists", "--name",
                                  "another controller created it meanwhile; pick another name or omit --name") from None
            raise

    def _create(self, plan: Plan, name: str, command_line: str) -> tuple[int, dict[int, int]]:
        loaded = plan.loaded
        run_ids = {}
        executors = {h.name: h.executor for h in plan.hosts}
        with Session(self.engine) as session, session.begin():
            campaign = Campaign(name=name, scenario_name=loaded.scenario.name, scenario_text=loaded.text,
                                inventory=str(plan.inventory.source), command_line=command_line,
                                settings=plan.settings())
            session.add(campaign)
            session.flush()
            for spec in plan.runs:
                pin = loaded.stacks[spec.stack]
                stack = get_or_create_stack(session, pin.name, pin.hailort, pin.driver, pin.firmware, pin.chip)
                run = Run(campaign_id=campaign.id, index=spec.index, node=spec.node, stack_id=stack.id,
                          repeat=spec.repeat, executor=executors.get(spec.node))
                session.add(run)
                session.flush()
                for i, phase in enumerate(loaded.scenario.phases):
                    session.add(Phase(run_id=run.id, index=i, name=phase.name))
                run_ids[spec.index] = run.id
            return campaign.id, run_ids

    # ---- transitions ------------------------------------------------------------------------
    def apply(self, effects: Sequence[Effect]) -> None:
        if not effects:
            return
        with Session(self.engine) as session, session.begin():
            for effect in effects:
                if isinstance(effect, RunStarted):
                    run = session.get(Run, effect.run_id)
                    run.status = "running"
                    run.started_at = run.started_at or now()
                elif isinstance(effect, PhaseStarted):
                    phase = _phase(session, effect.run_id, effect.index)
                    phase.status, phase.started_at = "running", now()
                elif isinstance(effect, PhaseClosed):
                    phase = _phase(session, effect.run_id, effect.index)
                    phase.status, phase.error, phase.boot_id = effect.status, effect.error, effect.boot_id
                    phase.finished_at = now()
                    if effect.run_error is not None:
                        session.get(Run, effect.run_id).error = effect.run_error
                elif isinstance(effect, RunFailed):
                    run = session.get(Run, effect.run_id)
                    run.status, run.verdict, run.error = "infra_error", "infra_error", effect.error
                    run.finished_at = now()
                    for phase in run.phases:
                        if phase.status in ("pending", "running"):
                            phase.status = "skipped" if phase.status == "pending" else "infra_error"
                elif isinstance(effect, PowerCycled):
                    run = session.get(Run, effect.run_id)
                    session.add(PowerEvent(campaign_id=run.campaign_id, run_id=run.id,
                                           phase_id=_phase(session, effect.run_id, effect.index).id, node=effect.node,
                                           action="cycle", recovery=effect.recovery, reason=effect.reason,
                                           ok=effect.ok, detail=effect.detail, waited_s=effect.waited_s))
                elif isinstance(effect, CampaignFinished):
                    self._finish(session, effect)

    @staticmethod
    def _finish(session: Session, done: CampaignFinished) -> None:
        for run_id, verdict in done.verdicts.items():
            run = session.get(Run, run_id)
            run.verdict, run.status, run.finished_at = verdict, "done", now()
        campaign = session.scalar(select(Campaign).where(Campaign.name == done.campaign))
        campaign.status, campaign.exit_status, campaign.finished_at = done.status, done.exit_status, now()

    # ---- records and artifacts --------------------------------------------------------------
    def ingest(self, campaign: str, campaign_id: int, host: Host, records: list[Record]) -> int:
        added = 0
        with Session(self.engine) as session, session.begin():
            for run_id, recs in runs_of(records).items():
                rows = [rec.to_json() for rec in recs]
                for row in rows:
                    row.setdefault("step", row["kind"])  # a record without a step is stored under its kind
                added += ingest_samples(session, run_id, rows)
                for rec, row in zip(recs, rows):
                    if rec.kind == IDENTITY and isinstance(rec.body.get("identity"), dict):
                        _identity(session, run_id, campaign, host, rec)
                    elif rec.kind == PREFLIGHT:
                        store_preflight(session, run_id, row)
        return added

    def stored_artifacts(self, campaign_id: int, node: str) -> set[str]:
        with Session(self.engine) as session:
            return set(session.scalars(select(Artifact.name).where(Artifact.campaign_id == campaign_id,
                                                                   Artifact.node == node)))

    def store_artifact(self, campaign_id: int, node: str, name: str, run_id: int, data: bytes, intact: bool) -> None:
        with Session(self.engine) as session, session.begin():
            store_artifact(session, campaign_id, name, "raw" if intact else "raw-mismatch", data=data, run_id=run_id,
                           node=node)
            session.add_all(log_events(campaign_id, name, data, run_id, node))

    # ---- reading back -----------------------------------------------------------------------
    def benchmark_series(self, run_ids: Iterable[int]) -> dict[int, list[list[RunSample]]]:
        ids = list(run_ids)
        out: dict[int, dict[int | None, list[RunSample]]] = {rid: {} for rid in ids}
        with Session(self.engine) as session:
            rows = session.execute(select(Sample.run_id, Sample.phase_id, Sample.fps, Sample.temp, Sample.configure_count)
                                   .where(Sample.run_id.in_(ids), Sample.step == "benchmark", Sample.fps.is_not(None))
                                   .order_by(Sample.run_id, Sample.seq)).all() if ids else []
        for run_id, phase_id, fps, temp, configures in rows:
            series = out[run_id].setdefault(phase_id, [])
            series.append(RunSample(len(series) + 1, fps, temp, configures))
        return {rid: list(by_phase.values()) for rid, by_phase in out.items()}

    def load(self, ref: str) -> StoredCampaign:
        from lab.db.queries import find_campaign

        with Session(self.engine) as session:
            campaign = find_campaign(session, ref)
            runs = [StoredRun(r.index, r.node, r.stack.name, r.repeat) for r in campaign.runs]
            stored = StoredCampaign(campaign.id, campaign.name, campaign.status, campaign.exit_status,
                                    campaign.scenario_name, campaign.scenario_text, campaign.inventory or "",
                                    campaign.command_line or "", dict(campaign.settings or {}), runs,
                                    {r.index: r.id for r in campaign.runs})
            for run in campaign.runs:
                marks = session.execute(select(Sample.phase_id, Sample.step, Sample.boot_id, Sample.error, Sample.extra,
                                               Sample.seq).where(Sample.run_id == run.id)
                                        .order_by(Sample.seq)).all()
                last = max((m.seq for m in marks), default=0)
                phases = []
                for phase in sorted(run.phases, key=lambda p: p.index):
                    mine = [m for m in marks if m.phase_id == phase.id]
                    starts = [m for m in mine if m.step == "phase_start"]
                    ends = [m for m in mine if m.step == "phase_end"]
                    begun = any(m.step in ("phase_start", "phase_resume") for m in mine)
                    agent_end = ((ends[-1].extra or {}).get("status", "ok"), ends[-1].error) if ends else None
                    phases.append((phase.status, phase.error, begun, starts[-1].boot_id if starts else phase.boot_id,
                                   agent_end))
                stored.progress[run.id] = (run.status, run.error, phases, last)
                stored.recoveries[run.id] = len(session.scalars(select(PowerEvent.id).where(
                    PowerEvent.run_id == run.id, PowerEvent.recovery.is_(True))).all())
        return stored


def _phase(session: Session, run_id: int, index: int) -> Phase:
    return session.scalar(select(Phase).where(Phase.run_id == run_id, Phase.index == index))


def _identity(session: Session, run_id: int, campaign: str, host: Host, rec: Record) -> None:
    """The unit (HAT) the chip names, and the Pi it sat in for this run (the record's own host fields)."""
    ident = rec.body["identity"]
    arch = (ident.get("architecture") or "").lower() or host.chip
    reported = {k: v for k, v in ident.items() if k not in ("messages", "statuses") and v not in (None, [], "")}
    unit = upsert_unit(session, host.name, serial=ident.get("serial_number"), soc_id=ident.get("soc_id"),
                       chip=arch, board=ident.get("board_name") or ident.get("product_name"),
                       identity=reported, scope=campaign)
    run = session.get(Run, run_id)
    if run is None:
        return
    if run.unit_id is None:
        run.unit_id = unit.id
    if rec.body.get("host_serial"):
        run.host_serial = str(rec.body["host_serial"])[:64]
    if rec.body.get("host_model"):
        run.host_model = str(rec.body["host_model"])[:128]


def log_events(campaign_id: int, artifact: str, data: bytes, run_id: int, node: str) -> list[LogEvent]:
    """The notable lines of a collected log: chip-side runtime log entries and Hailo driver kernel lines."""
    text = data.decode(errors="replace")
    events: list[LogEvent] = []
    try:
        if "runtime_log" in artifact:
            for e in parse_runtime_log(text).entries:
                events.append(LogEvent(campaign_id=campaign_id, run_id=run_id, node=node, source="runtime_log",
                                       level=e.level, message=f"{e.source}: {e.message}"))
        elif "dmesg" in artifact:
            for e in parse_dmesg(text).events:
                events.append(LogEvent(campaign_id=campaign_id, run_id=run_id, node=node, source="dmesg",
                                       level="err" if e.error_code else "info", message=e.message))
    except ToolOutputError:
        pass  # a log without any Hailo line: the artifact itself is kept
    return events
