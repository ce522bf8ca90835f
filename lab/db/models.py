"""SQLAlchemy 2.x models of the results database: campaigns, units, stacks, runs, phases, samples, logs, artifacts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Text, TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

# Explicit constraint names, so SQLite and PostgreSQL get the same schema and migrations can name them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
_SECRET_ASSIGN = re.compile(r"(?i)(\b[\w-]*(?:password|passwd|secret|token|_pass)\s*[=:]\s*)(\S+)")


def redact(text: str | None) -> str | None:
    """Mask passwords in URLs (`user:***@host`) and `password=...`-style assignments."""
    if text is None:
        return None
    return _SECRET_ASSIGN.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", text))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Store aware UTC (naive values are taken to be UTC already)."""
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Read back aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention of every constraint."""

    metadata = MetaData(naming_convention=NAMING)


class Campaign(Base):
    """One execution of a scenario on a set of nodes, with the scenario's exact text."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    scenario_name: Mapped[str] = mapped_column(String(64))
    scenario_text: Mapped[str] = mapped_column(Text)
    inventory: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    command_line: Mapped[str | None] = mapped_column(Text)
    exit_status: Mapped[int | None] = mapped_column(Integer)
    # What `lab resume` needs to rebuild the plan: scenario path, the pinned stacks as loaded, --limit.
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    runs: Mapped[list[Run]] = relationship(back_populates="campaign", cascade="all, delete-orphan",
                                           order_by="Run.index")

    @validates("command_line")
    def _no_secrets(self, _key: str, value: str | None) -> str | None:
        return redact(value)


class Unit(Base):
    """One Hailo device, the HAT (its identity survives reinstalls and moves); `key` is its SoC ID, else its
    serial, else `unidentified:<campaign>:<node>` (see lab.db.ingest.unit_key)."""

    __tablename__ = "unit"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    serial: Mapped[str | None] = mapped_column(String(64))
    soc_id: Mapped[str | None] = mapped_column(String(128))
    chip: Mapped[str | None] = mapped_column(String(16))
    board: Mapped[str | None] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(255))  # the node it was last seen in (a HAT moves between Pis)
    identity: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # identify --extended, as reported


class Stack(Base):
    """A software stack as installed: name and the HailoRT / driver / firmware triple."""

    __tablename__ = "stack"
    __table_args__ = (UniqueConstraint("name", "hailort", "driver", "firmware"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    chip: Mapped[str | None] = mapped_column(String(16))
    hailort: Mapped[str] = mapped_column(String(64))
    driver: Mapped[str] = mapped_column(String(64))
    firmware: Mapped[str] = mapped_column(String(64))


class Run(Base):
    """One cell of the matrix: a node going through every phase with one stack, for one repeat."""

    __tablename__ = "run"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),
                      UniqueConstraint("campaign_id", "node", "stack_id", "repeat"))

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(255))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), index=True)
    stack_id: Mapped[int] = mapped_column(ForeignKey("stack.id"), index=True)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    verdict: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    host_serial: Mapped[str | None] = mapped_column(String(64))  # the Pi this run's HAT sat in
    host_model: Mapped[str | None] = mapped_column(String(128))
    executor: Mapped[str | None] = mapped_column(String(255))  # the execution node its phases went through

    campaign: Mapped[Campaign] = relationship(back_populates="runs")
    unit: Mapped[Unit | None] = relationship()
    stack: Mapped[Stack] = relationship()
    phases: Mapped[list[Phase]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                               order_by="Phase.index")

    @validates("error")
    def _no_secrets(self, _key: str, value: str | None) -> str | None:
        return redact(value)


class Phase(Base):
    """One phase of one run: its status, the boot it ran in, and when."""

    __tablename__ = "phase"
    __table_args__ = (UniqueConstraint("run_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    boot_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    preflight: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what the pre-flight found
    ready_s: Mapped[float | None] = mapped_column(Float)  # seconds from boot until the node was ready to measure

    run: Mapped[Run] = relationship(back_populates="phases")

    @validates("error")
    def _no_secrets(self, _key: str, value: str | None) -> str | None:
        return redact(value)


class Sample(Base):
    """One record from the node agent; (run, seq) is unique, so ingesting twice adds nothing."""

    __tablename__ = "sample"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(32))
    step_index: Mapped[int | None] = mapped_column(Integer)
    run_index: Mapped[int | None] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    fps: Mapped[float | None] = mapped_column(Float)
    temp: Mapped[float | None] = mapped_column(Float)
    temp_min: Mapped[float | None] = mapped_column(Float)
    temp_max: Mapped[float | None] = mapped_column(Float)
    configure_count: Mapped[int | None] = mapped_column(Integer)
    boot_id: Mapped[str | None] = mapped_column(String(64))
    uptime: Mapped[float | None] = mapped_column(Float)
    nominal_s: Mapped[float | None] = mapped_column(Float)  # seconds into the phase at time scale 1
    throttled: Mapped[str | None] = mapped_column(String(32))  # the Pi's firmware flags (get_throttled)
    chip_throttling: Mapped[bool | None] = mapped_column(Boolean)  # the Hailo chip said it throttled (5.2+ on 10H)
    # telemetry per run, as the field report read it
    pcie_speed: Mapped[float | None] = mapped_column(Float)  # GT/s, current_link_speed
    pcie_width: Mapped[int | None] = mapped_column(Integer)  # lanes, current_link_width
    pcie_max_speed: Mapped[float | None] = mapped_column(Float)
    pcie_max_width: Mapped[int | None] = mapped_column(Integer)
    power_state: Mapped[str | None] = mapped_column(String(16))  # D0, D3hot, ...
    aspm: Mapped[str | None] = mapped_column(String(64))
    cma_free_kb: Mapped[int | None] = mapped_column(BigInteger)  # /proc/meminfo CmaFree
    cma_total_kb: Mapped[int | None] = mapped_column(BigInteger)
    soc_temp: Mapped[float | None] = mapped_column(Float)  # the Pi's SoC, degrees C
    arm_clock_mhz: Mapped[float | None] = mapped_column(Float)
    cma_errors: Mapped[int | None] = mapped_column(Integer)  # CMA alloc failures in this run's runtime log
    error: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class LogEvent(Base):
    """A notable log line (dmesg, chip runtime log, journal, lab itself), tied to where it happened."""

    __tablename__ = "log_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    node: Mapped[str | None] = mapped_column(String(255))
    ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32))
    level: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)

    @validates("message")
    def _no_secrets(self, _key: str, value: str) -> str:
        return redact(value) or ""


class PowerEvent(Base):
    """A power cycle the controller made during a run: why (the phase's power_cycle, or a node lost), the outcome."""

    __tablename__ = "power_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), index=True)
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=lambda: datetime.now(UTC))
    action: Mapped[str] = mapped_column(String(16))  # cycle
    recovery: Mapped[bool] = mapped_column(Boolean, default=False)  # to bring back a lost node (not the scenario's)
    reason: Mapped[str] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str | None] = mapped_column(Text)
    waited_s: Mapped[float | None] = mapped_column(Float)  # from the request to the new boot

    @validates("reason", "detail")
    def _no_secrets(self, _key: str, value: str | None) -> str | None:
        return redact(value)


class Artifact(Base):
    """Raw output or a log file kept whole: on disk (`path`) or in the database (`blob`), with its sha256."""

    __tablename__ = "artifact"
    __table_args__ = (Index(None, "campaign_id", "run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    phase_id: Mapped[int | None] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    node: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str | None] = mapped_column(Text)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
