"""`vcgencmd get_throttled` decoded into the names raspberrypi/documentation gives its bits."""

from __future__ import annotations

import pytest

from lab.pi import decode_throttled

CASES = [
    ("0x0", []),
    ("0", []),
    ("throttled=0x0", []),
    ("0x50005", ["under-voltage now", "throttled now", "under-voltage has occurred", "throttling has occurred"]),
    ("throttled=0x50000", ["under-voltage has occurred", "throttling has occurred"]),
    ("0xa0002", ["arm frequency capped now", "arm frequency capping has occurred", "soft temp limit has occurred"]),
    ("0x80008", ["soft temp limit now", "soft temp limit has occurred"]),
    ("0xF000F", ["under-voltage now", "arm frequency capped now", "throttled now", "soft temp limit now",
                 "under-voltage has occurred", "arm frequency capping has occurred", "throttling has occurred",
                 "soft temp limit has occurred"]),
    ("0x100000", ["bit 20"]),
    (" 0x4\n", ["throttled now"]),
]


@pytest.mark.parametrize(("text", "names"), CASES, ids=[c[0].strip() for c in CASES])
def test_decode_throttled(text, names):
    assert decode_throttled(text) == names


@pytest.mark.parametrize("text", ["", "0xZZ", "throttled=", "-0x1", "yes"])
def test_unreadable_value_is_a_value_error(text):
    with pytest.raises(ValueError, match="not a get_throttled value"):
        decode_throttled(text)
