"""Campaign lookups over the results database: find one by name or id, its runs at a glance, every campaign listed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lab.db.models import Campaign, Run, Sample
from lab.errors import ConfigError


def find_campaign(session: Session, ref: str) -> Campaign:
    """A campaign by name or numeric id; a clear error when there is none."""
    stmt = select(Campaign).where(Campaign.name == ref)
    campaign = session.scalar(stmt)
    if campaign is None and ref.isdigit():
        campaign = session.get(Campaign, int(ref))
    if campaign is None:
        raise ConfigError(f"no campaign {ref!r} in this database", hint="list them with `lab campaigns`")
    return campaign


def campaign_summary(engine: Engine, ref: str) -> dict:
    """Name, status and per-run verdict, sample count and error of one campaign."""
    with Session(engine) as session:
        campaign = find_campaign(session, ref)
        counts = dict(session.execute(
            select(Sample.run_id, func.count()).join(Run, Run.id == Sample.run_id)
            .where(Run.campaign_id == campaign.id, Sample.step == "benchmark", Sample.fps.is_not(None))
            .group_by(Sample.run_id)).all())
        runs = [{"index": r.index, "node": r.node, "stack": r.stack.name, "repeat": r.repeat, "status": r.status,
                 "verdict": r.verdict, "samples": counts.get(r.id, 0), "error": r.error, "executor": r.executor} for r in campaign.runs]
        return {"name": campaign.name, "id": campaign.id, "scenario": campaign.scenario_name,
                "status": campaign.status, "exit_status": campaign.exit_status,
                "started_at": campaign.started_at, "finished_at": campaign.finished_at, "runs": runs}


def campaign_ref(engine: Engine, ref: str) -> tuple[int, str, str, Any] | None:
    """(id, name, status, finished_at) of the campaign named (else numbered) `ref`; None when there is none."""
    columns = (Campaign.id, Campaign.name, Campaign.status, Campaign.finished_at)
    with Session(engine) as session:
        row = session.execute(select(*columns).where(Campaign.name == ref)).first()
        if row is None and ref.isdigit():
            row = session.execute(select(*columns).where(Campaign.id == int(ref))).first()
    return tuple(row) if row is not None else None


def campaign_rows(engine: Engine) -> list[dict]:
    """Every campaign with its run count and recorded "degraded k of n" (for `lab campaigns`)."""
    verdicts = (select(Run.campaign_id, func.count().label("runs"),
                       func.sum(case((Run.verdict == "degraded", 1), else_=0)).label("k"),
                       func.sum(case((Run.verdict.in_(("degraded", "stable", "device_error")), 1), else_=0))
                       .label("n"),
                       func.sum(case((Run.verdict == "infra_error", 1), else_=0)).label("infra"))
                .group_by(Run.campaign_id).subquery())
    stmt = (select(Campaign.id, Campaign.name, Campaign.scenario_name, Campaign.status, Campaign.started_at,
                   Campaign.finished_at, verdicts.c.runs, verdicts.c.k, verdicts.c.n, verdicts.c.infra)
            .outerjoin(verdicts, verdicts.c.campaign_id == Campaign.id).order_by(Campaign.started_at, Campaign.id))
    with Session(engine) as session:
        return [{"id": cid, "name": name, "scenario": scenario, "status": status, "started_at": started,
                 "finished_at": finished, "runs": runs or 0, "degraded": int(k or 0), "counted": int(n or 0),
                 "infra_error": int(infra or 0)}
                for cid, name, scenario, status, started, finished, runs, k, n, infra in session.execute(stmt)]
