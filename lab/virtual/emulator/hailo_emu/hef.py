"""Emulated HEF files: a magic line, then JSON naming the network, its architecture and nominal figures."""

from __future__ import annotations

import json
import os

from . import status

MAGIC = "HAILO-EMU-HEF 1"
FIELDS = ("network", "arch", "fps", "latency_ms", "input_bytes", "output_bytes")


def dumps(model: dict) -> str:
    """The text of an emulated HEF file for `model` (a row of tables.MODELS)."""
    body = {k: model[k] for k in FIELDS}
    body["note"] = "emulated HEF for the lab's virtual Hailo devices; not a compiled network"
    return MAGIC + "\n" + json.dumps(body, indent=1, sort_keys=True) + "\n"


def load(path: str) -> dict:
    """Read an emulated HEF; raises HailoError when the file cannot be opened or is not one."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise status.HailoError(
            "HAILO_OPEN_FILE_FAILURE",
            [
                "[HailoRT] [error] Failed to open file %s with errno %d" % (path, exc.errno or 0),
                "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_OPEN_FILE_FAILURE(13)",
            ],
        ) from None
    head, _, body = text.partition("\n")
    if head.strip() != MAGIC:
        raise status.invalid_hef(path, "not an emulated HEF (the lab's virtual devices run only those)")
    try:
        data = json.loads(body)
        model = {k: data[k] for k in FIELDS}
    except (ValueError, KeyError) as exc:
        raise status.invalid_hef(path, "malformed (%s)" % exc) from None
    model["path"] = os.path.abspath(path)
    return model
