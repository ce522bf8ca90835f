"""Store `lab.report.synthetic`'s planted campaigns through the database API (tests, demos, scale checks)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from lab.db.ingest import get_or_create_stack, ingest_samples, store_artifact, upsert_unit
from lab.db.models import Campaign, Phase, Run, Sample
from lab.report.synthetic import (HOST_MODEL, SCENARIO, T0, TELEMETRY_COLUMNS, host_serial, preflight_for,
                                  recorded_verdict, recovery_phases, recovery_records, soak_artifacts, soak_records,
                                  soak_telemetry, soc_id)


def plant_campaign(session: Session, name: str = "planted", units: int = 4, repeats: int = 2, benches: int = 25,
                   infra_errors: tuple[tuple[int, int], ...] = ((2, 2),), artifacts: bool = True,
                   ingest: Callable[..., int] = ingest_samples, swap_from: int | None = 2,
                   telemetry: bool = True) -> Campaign:
    """Write the campaign, its runs, phases, records and artifacts; returns the (flushed) campaign.

    Each run's records go through `ingest` (`ingest_samples`' signature), so a benchmark can time that call alone.
    """
    campaign = Campaign(name=name, scenario_name="cma_soak", scenario_text=SCENARIO, inventory="inventory/pis.yml",
                        status="finished", started_at=T0,
                        finished_at=T0 + timedelta(hours=2), exit_status=1 if infra_errors else 0,
                        command_line="lab run scenarios/cma_soak.yaml --inventory pis --db sqlite:///lab.db")
    session.add(campaign)
    session.flush()
    h10 = get_or_create_stack(session, "h10-5.3.0", "5.3.0", "5.3.0", "5.3.0", chip="hailo10h")
    h8 = get_or_create_stack(session, "h8-4.23.0", "4.23.0", "4.23.0", "4.23.0", chip="hailo8")
    index = 0
    for repeat in range(1, repeats + 1):
        for i in range(units):
            hailo8 = i % 4 == 3
            chip = "hailo8" if hailo8 else "hailo10h"
            swapped = swap_from is not None and repeat >= swap_from and i < 2 and units > 1
            node = f"node{(1 - i if swapped else i) + 1}"
            unit = upsert_unit(session, node, soc_id=soc_id(i), chip=chip)
            unit.identity = {"soc_id": soc_id(i), "ult_id": soc_id(i)[:12], "lcs": 3, "boot_source": "PCIE"}
            run = Run(campaign_id=campaign.id, index=index, node=node, unit_id=unit.id,
                      stack_id=(h8 if hailo8 else h10).id, repeat=repeat, status="done",
                      started_at=T0 + timedelta(minutes=index), finished_at=T0 + timedelta(minutes=index + 10),
                      host_serial=host_serial(node), host_model=HOST_MODEL)
            session.add(run)
            session.flush()
            install = Phase(run_id=run.id, index=0, name="install", status="ok", boot_id=f"b{index}-0")
            soak = Phase(run_id=run.id, index=1, name="soak", status="ok", boot_id=f"b{index}-1")
            if telemetry:
                soak.preflight = preflight_for(node, chip, index)
                soak.ready_s = soak.preflight["ready_s"]
            session.add_all([install, soak])
            session.flush()
            if (i, repeat) in infra_errors:
                run.status = run.verdict = soak.status = "infra_error"
                run.error = soak.error = "soak: unreachable: reboot timeout after 600 s"
                soak.boot_id = None
                soak.preflight = soak.ready_s = None
            else:
                _soak(session, campaign.id, run, soak, hailo8, i % 4 in (0, 1), benches, artifacts, ingest,
                      telemetry)
            index += 1
    session.flush()
    return campaign


def _soak(session: Session, campaign_id: int, run: Run, phase: Phase, hailo8: bool, susceptible: bool,
          benches: int, artifacts: bool, ingest: Callable[..., int] = ingest_samples, telemetry: bool = True) -> None:
    """Store the soak phase's records, its telemetry columns, the run's recorded verdict and the soak's files."""
    ingest(session, run.id, soak_records(run.index, str(run.id), phase.boot_id, run.node, hailo8, susceptible, benches),
           phase_id=phase.id)
    if telemetry:  # the telemetry columns, as the node's records fill them
        session.connection().execute(
            update(Sample).where(Sample.run_id == run.id, Sample.seq == bindparam("at"))
            .values({name: bindparam(name) for name in TELEMETRY_COLUMNS}),
            soak_telemetry(run.node, hailo8, susceptible, benches))
    run.verdict = recorded_verdict(hailo8, susceptible, benches)
    if artifacts:
        for name, data in soak_artifacts(hailo8, susceptible, benches).items():
            store_artifact(session, campaign_id, name, "raw", data=data, run_id=run.id, node=run.node)


def plant_recovery_campaign(session: Session, name: str = "recovery", units: int = 2) -> Campaign:
    """The recovery matrix on Hailo-10H units (even ones susceptible), as `lab.report.synthetic.recovery_records`."""
    campaign = Campaign(name=name, scenario_name="recovery_matrix", scenario_text="name: recovery_matrix\n",
                        inventory="inventory/pis.yml", status="finished", started_at=T0, exit_status=0,
                        finished_at=T0 + timedelta(hours=1),
                        command_line="lab run scenarios/recovery_matrix.yaml --inventory pis")
    session.add(campaign)
    session.flush()
    h10 = get_or_create_stack(session, "h10-5.3.0", "5.3.0", "5.3.0", "5.3.0", chip="hailo10h")
    for i in range(units):
        unit = upsert_unit(session, f"node{i + 1}", serial=f"H10-{i + 1:04d}", chip="hailo10h")
        run = Run(campaign_id=campaign.id, index=i, node=f"node{i + 1}", unit_id=unit.id, stack_id=h10.id,
                  status="done", verdict="device_error")
        session.add(run)
        session.flush()
        session.add_all([Phase(run_id=run.id, **phase) for phase in recovery_phases(i)])
        session.flush()
        ingest_samples(session, run.id, recovery_records(i, str(run.id)))
    session.flush()
    return campaign
