"""The Raspberry Pi's own figures, decoded: `vcgencmd get_throttled` bits. Pure: no I/O."""

from __future__ import annotations

# Raspberry Pi documentation (computers/os.adoc, "get_throttled"): bit -> meaning
THROTTLED_BITS: dict[int, str] = {
    0: "under-voltage detected",
    1: "arm frequency capped",
    2: "currently throttled",
    3: "soft temperature limit active",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def decode_throttled(value: str | int | None) -> list[str]:
    """The meanings of the bits set in a get_throttled value (`0x50005` or `throttled=0x50005`), lowest bit first.

    An unknown bit is named by its number; None or an unreadable value decodes to [].
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip().split("=")[-1]
        try:
            value = int(text, 16)
        except ValueError:
            return []
    return [THROTTLED_BITS.get(bit, f"bit {bit}") for bit in range(32) if value >> bit & 1]


def throttled_now(value: str | int | None) -> bool:
    """Whether the Pi is limited right now (bits 0-3), as opposed to only since boot (bits 16-19)."""
    bits = decode_throttled(value)
    return any(name in bits for name in (THROTTLED_BITS[b] for b in (0, 1, 2, 3)))
