"""Durations as people write them in YAML: `45m`, `2h`, `1h30m`, `90s`, or seconds."""
from __future__ import annotations

import re

_PART = re.compile(r"(\d+)([hms])")
_WHOLE = re.compile(r"^(?:\d+[hms])+$")
_UNIT = {"h": 3600, "m": 60, "s": 1}


def parse_duration(value: object) -> float:
    """Seconds as a float; ValueError with a message a person can act on."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration like 45m, 2h or 90s")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"{value!r} must be a positive number of seconds")
        return float(value)
    text = str(value).strip()
    if text.isdigit() and int(text) > 0:
        return float(text)
    if not _WHOLE.match(text):
        raise ValueError(f"{text!r} is not a duration like 45m, 2h or 90s")
    seconds = sum(int(n) * _UNIT[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return float(seconds)
