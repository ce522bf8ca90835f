"""The Raspberry Pi's own reports, decoded (pure: text in, names out)."""

from __future__ import annotations

# `vcgencmd get_throttled` bits, as raspberrypi/documentation (computers/os/graphics-utilities.adoc) lists them:
# bits 0-3 hold now, bits 16-19 are sticky since boot.
THROTTLED_BITS = {
    0: "under-voltage now",
    1: "arm frequency capped now",
    2: "throttled now",
    3: "soft temp limit now",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temp limit has occurred",
}


def decode_throttled(hex_text: str) -> list[str]:
    """`0x50005` (or `throttled=0x50005`) -> the names of its set bits, lowest first; ValueError if unreadable.

    A set bit the documentation does not name comes back as `bit N`.
    """
    text = hex_text.strip()
    if text.startswith("throttled="):
        text = text[len("throttled="):]
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise ValueError(f"not a get_throttled value: {hex_text!r}") from None
    if value < 0:
        raise ValueError(f"not a get_throttled value: {hex_text!r}")
    return [THROTTLED_BITS.get(bit, f"bit {bit}") for bit in range(value.bit_length()) if value >> bit & 1]
