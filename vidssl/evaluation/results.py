"""The one results writer of ``vidssl eval``: ``OUT/results.json``, atomically.

Every evaluation returns a plain dict and writes it here, so all ``results.json`` files share
one format: indented JSON (one space) with a trailing newline, written through
:func:`vidssl.files.atomic_write_text` (a reader, or a run killed mid-write, never sees half a
file; DAVIS rewrites it after every sequence so a long run can be followed), and NaN or infinite
values (an object never scored, a neuron that never fired) written as ``null``: JSON has no NaN,
and strict readers (``jq``, JavaScript) refuse Python's ``NaN`` token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidssl.files import atomic_write_text

RESULTS = "results.json"


def plain_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON ``null``), containers copied."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def save_results(out: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``results`` to ``out/results.json`` atomically (module docstring); returns its path.

    Raises:
        TypeError: a value JSON cannot hold (the message names its type).
    """
    text = json.dumps(plain_json(results), indent=1, allow_nan=False)  # fails before anything is written
    return atomic_write_text(Path(out) / RESULTS, text + "\n")
