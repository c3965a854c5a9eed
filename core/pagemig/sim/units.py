"""Units as people write them in scenario files: "1GiB", "90s", "10min", "35%", "20/s".

Each parser takes what TOML gave (a string, an int or a float) and returns a plain
number in base units (bytes, seconds, a fraction, events per second), or raises
:class:`UnitError` whose message says what was expected, so the scenario loader can
name the file, the key and the value around it.  Decimal size suffixes (MB, GB)
are refused rather than guessed: the kernel, QEMU and /proc all count in binary
units, and a silent factor of 1.048576 is the kind of error nobody finds.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pagemig.mm.pages import PAGE_SIZE


class UnitError(ValueError):
    """A value that does not parse; ``expected`` describes what would have."""

    def __init__(self, expected: str, hint: str = "") -> None:
        super().__init__(expected + (f"; {hint}" if hint else ""))
        self.expected = expected
        self.hint = hint


SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kib": 1 << 10, "k": 1 << 10,
    "mib": 1 << 20, "m": 1 << 20,
    "gib": 1 << 30, "g": 1 << 30,
    "tib": 1 << 40, "t": 1 << 40,
    "page": PAGE_SIZE, "pages": PAGE_SIZE,
}
DECIMAL_SIZE = {"kb": "KiB", "mb": "MiB", "gb": "GiB", "tb": "TiB"}

TIME_UNITS: dict[str, float] = {
    "ms": 1e-3,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}

SIZE_EXPECTED = 'a size such as "1GiB", "512MiB", "4KiB" or "256 pages"'
DURATION_EXPECTED = 'a duration such as "500ms", "90s", "10min", "2h" or "3d"'
PERCENT_EXPECTED = 'a percentage such as "35%" (or a fraction between 0 and 1)'
RATE_EXPECTED = 'a rate such as "20/s", "100/min" or a number of events per second'

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_QUANTITY = re.compile(r"^\s*" + _NUM + r"\s*([A-Za-z]*)\s*$")


def _split(text: str, expected: str) -> tuple[float, str]:
    m = _QUANTITY.match(text.replace("_", ""))
    if not m:
        raise UnitError(expected)
    return float(m.group(1)), m.group(2)


def _quantity(value: object, expected: str, table: dict[str, Any], default_unit: str, noun: str,
              allow_zero: bool) -> tuple[float, str]:
    """(number, unit) from a string with a unit or a bare number, checked: a known unit,
    finite, not negative, and not zero unless allowed."""
    if isinstance(value, bool):
        raise UnitError(expected)
    if isinstance(value, int | float):
        number, unit = float(value), default_unit
    elif isinstance(value, str):
        number, unit = _split(value, expected)
        unit = unit.lower() or default_unit
    else:
        raise UnitError(expected)
    if table is SIZE_UNITS and unit in DECIMAL_SIZE:
        raise UnitError(expected, f'sizes are binary here: write "{DECIMAL_SIZE[unit]}", not "{unit.upper()}"')
    if unit not in table:
        raise UnitError(expected, f"unknown unit {unit!r}")
    if not math.isfinite(number):
        raise UnitError(expected)
    if number < 0:
        raise UnitError(expected, f"a {noun} cannot be negative")
    if number == 0 and not allow_zero:
        raise UnitError(expected, "it must be more than zero")
    return number, unit


def parse_size(value: object, *, allow_zero: bool = True) -> int:
    """Bytes from "1GiB", "512MiB", "4KiB", "1G", "256 pages" or a plain number of bytes."""
    number, unit = _quantity(value, SIZE_EXPECTED, SIZE_UNITS, "b", "size", allow_zero)
    nbytes = number * SIZE_UNITS[unit]
    if nbytes != int(nbytes):
        raise UnitError(SIZE_EXPECTED, "not a whole number of bytes")
    return int(nbytes)


def parse_pages(value: object, *, allow_zero: bool = True) -> int:
    """A size rounded to whole 4 KiB pages; refuses sizes that are not a whole number of pages."""
    nbytes = parse_size(value, allow_zero=allow_zero)
    if nbytes % PAGE_SIZE:
        raise UnitError(SIZE_EXPECTED, f"not a whole number of {PAGE_SIZE // 1024} KiB pages")
    return nbytes // PAGE_SIZE


def parse_duration(value: object, *, allow_zero: bool = True) -> float:
    """Seconds from "500ms", "90s", "10min", "2h", "3d" or a plain number of seconds."""
    number, unit = _quantity(value, DURATION_EXPECTED, TIME_UNITS, "s", "duration", allow_zero)
    return number * TIME_UNITS[unit]


def parse_percent(value: object) -> float:
    """A fraction in [0, 1] from "35%" or from a number already in [0, 1]."""
    if isinstance(value, bool):
        raise UnitError(PERCENT_EXPECTED)
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("%"):
            raise UnitError(PERCENT_EXPECTED)
        try:
            number = float(text[:-1])
        except ValueError:
            raise UnitError(PERCENT_EXPECTED) from None
        frac = number / 100.0
    elif isinstance(value, int | float):
        frac = float(value)
    else:
        raise UnitError(PERCENT_EXPECTED)
    if not math.isfinite(frac) or not 0.0 <= frac <= 1.0:
        raise UnitError(PERCENT_EXPECTED, "it must lie between 0% and 100%")
    return frac


def parse_rate(value: object) -> float:
    """Events per second from "20/s", "100/min", "3/h" or a plain number per second."""
    if isinstance(value, bool):
        raise UnitError(RATE_EXPECTED)
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        count, _, per = value.partition("/")
        try:
            number = float(count.strip())
        except ValueError:
            raise UnitError(RATE_EXPECTED) from None
        per = per.strip() or "s"
        try:
            seconds = parse_duration(per if per[0].isdigit() else "1" + per, allow_zero=False)
        except UnitError:
            raise UnitError(RATE_EXPECTED, f"unknown time unit {per!r}") from None
        rate = number / seconds
    else:
        raise UnitError(RATE_EXPECTED)
    if not math.isfinite(rate) or rate < 0:
        raise UnitError(RATE_EXPECTED, "a rate cannot be negative")
    return rate


def format_size(nbytes: float) -> str:
    """The shortest exact binary form: 1073741824 -> "1GiB", 6144 -> "6KiB"."""
    n = int(nbytes)
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


def format_duration(seconds: float) -> str:
    """A duration as a person would say it: 600.0 -> "10min", 1.5 -> "1.5s"."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= factor and (seconds / factor) == int(seconds / factor):
            return f"{int(seconds / factor)}{unit}"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"
