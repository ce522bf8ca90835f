"""The unit profile schema (controller side): the fields of /lab/hw/unit.json, validated by `lab check`."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from lab.virtual.emulator.hailo_emu.hw import unit_with_defaults


class UnitProfile(BaseModel):
    """One unit's emulated hardware; a field left out takes its chip's documented default."""

    model_config = ConfigDict(extra="forbid")

    node: Optional[str] = None
    hat: Optional[str] = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the HAT's name, seed of its derived SoC ID and ULT ID (default: the node's name)",
    )
    pi_serial: Optional[str] = Field(
        None, pattern=r"^[0-9a-f]{16}$", description="the Pi's own serial (default derived from the node name)"
    )
    pi_model: Optional[str] = Field(None, max_length=128, description="the Pi's model string")
    chip: Literal["hailo10h", "hailo8", "hailo8l"] = "hailo10h"
    serial: Optional[str] = Field(None, pattern=r"^[0-9A-Za-z]{0,16}$", description="empty: none programmed")
    soc_id: Optional[str] = Field(None, pattern=r"^([0-9A-Fa-f]{64})?$", description="empty: the chip reports none")
    ult_id: Optional[str] = Field(None, pattern=r"^([0-9A-Fa-f]{24})?$", description="empty: the chip reports none")
    board_sku: Optional[int] = Field(None, ge=0, le=255)
    lcs: Optional[int] = Field(None, ge=0, le=255)
    pci_address: Optional[str] = Field(None, pattern=r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
    part_number: Optional[str] = None
    product_name: Optional[str] = None
    cma_leak: Optional[float] = Field(
        None, ge=0, le=10, description="multiplier on the firmware's leak; 0 = not susceptible"
    )
    cma_pool_chunks: Optional[int] = Field(
        None, ge=1, le=1000, description="1 MiB chunks free in the chip's CMA pool at boot"
    )
    perf_factor: Optional[float] = Field(None, gt=0, le=2, description="multiplier on every model's nominal fps")
    idle_temp_c: Optional[float] = Field(None, ge=0, le=120)
    load_temp_rise_c: Optional[float] = Field(
        None, ge=0, le=120, description="rise at full load; poor cooling = larger"
    )
    thermal_tau_s: Optional[float] = Field(None, gt=0, le=3600)
    throttle_temp_c: Optional[float] = Field(None, ge=0, le=150)
    throttle_per_c: Optional[float] = Field(None, ge=0, le=1)
    throttle_floor: Optional[float] = Field(None, gt=0, le=1)
    benchmark_latency_timeout: Optional[bool] = Field(
        None, description="4.x benchmark: the HW-latency measurement times out after both FPS bars (exit 4)"
    )
    wall_clock_step_s: Optional[float] = Field(
        None, ge=0, le=10 * 365 * 86400, description="the node's wall clock is this far behind at boot; 0 = no step"
    )
    wall_clock_step_after_s: Optional[float] = Field(
        None, ge=0, le=3600, description="real seconds after boot at which timesyncd steps the wall clock"
    )

    pcie_speed_gts: Optional[Literal[2.5, 5.0, 8.0]] = Field(
        None, description="negotiated link speed in GT/s (a Pi 5's slot: 5.0 by default, 8.0 with pciex1_gen=3)"
    )
    pcie_width: Optional[Literal[1, 2, 4]] = Field(None, description="negotiated lanes (a Pi 5's slot has one)")
    pcie_max_speed_gts: Optional[Literal[2.5, 5.0, 8.0]] = Field(None, description="the module's own maximum speed")
    pcie_max_width: Optional[Literal[1, 2, 4]] = Field(None, description="the module's own lanes (4)")
    device_holder: Optional[str] = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,80}\.service$",
        description="a service that opens /dev/hailo0 at boot and keeps it (e.g. hailort.service)",
    )
    warm_reboot_keeps_power: Optional[StrictBool] = Field(
        None, description="a warm reboot keeps the HAT powered: the chip's state (a bricked chip included) survives"
        " it and only a cold power cycle clears it (default false: every boot starts the chip fresh)",
    )

    def resolved(self) -> dict:
        """Every field, defaults of the chip filled in (what the node's emulator will use)."""
        return unit_with_defaults(self.model_dump(exclude_none=True))


def validate_unit(unit: dict) -> UnitProfile:
    """Validate one unit mapping; raises ValueError with one line per problem (`field: what is wrong`)."""
    try:
        return UnitProfile.model_validate(unit)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "unit"
            if err["type"] == "extra_forbidden":
                problems.append("%s: unknown field (known: %s)" % (field, ", ".join(UnitProfile.model_fields)))
            else:
                problems.append("%s: %s" % (field, err["msg"]))
        raise ValueError("\n".join(problems)) from None
