"""A campaign's runs at a glance (used by `lab run` at its end and by `lab campaigns`)."""

from __future__ import annotations

from sqlalchemy import func, select
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
                 "verdict": r.verdict, "samples": counts.get(r.id, 0), "error": r.error} for r in campaign.runs]
        return {"name": campaign.name, "id": campaign.id, "scenario": campaign.scenario_name,
                "status": campaign.status, "exit_status": campaign.exit_status,
                "started_at": campaign.started_at, "finished_at": campaign.finished_at, "runs": runs}
