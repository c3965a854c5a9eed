"""The balloon's scenario table (``[drivers.balloon]``): known keys, their types, clear errors.

Checked with the core's table schema (:mod:`pagemig.sim.schema`), so a bad key reads
like every other scenario error: the dotted key, the value, what was expected, and a
suggestion for a near miss (a misspelt ``deflate_on_om = true`` silently ignored
would change a run's result without a word).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pagemig.api import (
    PAGE_SIZE,
    Field,
    TableError,
    UnitError,
    boolean_field,
    integer_field,
    parse_size,
    table_validator,
)
from pagemig_balloon.driver import DEFAULT_INFLATE_RATE, OOM_VBALLOON_DEFAULT_PAGES

RATE_EXPECTED = 'pages per second (65536), "65536/s", or a size per second such as "256MiB/s"'
_PER = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0}


def parse_page_rate(value: object) -> float:
    """Pages per second from a number, ``"65536/s"`` or ``"256MiB/s"``; 0 means no limit."""
    if isinstance(value, bool):
        raise TableError("inflate_rate", value, RATE_EXPECTED)
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        amount, _, per = value.partition("/")
        per = per.strip().lower()
        if per not in _PER:
            raise TableError("inflate_rate", value, RATE_EXPECTED, f"unknown time unit {per!r}")
        amount = amount.strip()
        try:
            pages = float(amount)
        except ValueError:
            try:
                pages = parse_size(amount) / PAGE_SIZE
            except UnitError as exc:
                raise TableError("inflate_rate", value, RATE_EXPECTED, exc.hint) from None
        rate = pages / _PER[per]
    else:
        raise TableError("inflate_rate", value, RATE_EXPECTED)
    if not 0 <= rate < float("inf"):
        raise TableError("inflate_rate", value, RATE_EXPECTED, "a rate must be a finite number >= 0")
    return rate


FIELDS: dict[str, Field] = {
    "movable": boolean_field(True, "false: balloon pages are plain unmovable allocations (before Linux v3.8)"),
    "deflate_on_oom": boolean_field(False, "VIRTIO_BALLOON_F_DEFLATE_ON_OOM: give back oom_pages pages on OOM"),
    "inflate_rate": Field(parse_page_rate, float(DEFAULT_INFLATE_RATE), RATE_EXPECTED,
                          "how fast the balloon moves towards its target (0: as fast as allocation allows)"),
    "oom_pages": integer_field(OOM_VBALLOON_DEFAULT_PAGES, "pages released per OOM notification", minimum=1),
    "target_mib": integer_field(None, "an initial `balloon N` target: MiB of memory left to the guest",
                                 minimum=1),
}

_validate = table_validator(FIELDS)


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``[drivers.balloon]`` table; return it with defaults filled in and values parsed.

    Keys starting with ``_`` belong to the simulator (such as ``_plugin``) and pass through.
    """
    if not isinstance(options, Mapping):
        raise TableError("", options, "a table ([drivers.balloon])")
    private = {k: v for k, v in options.items() if isinstance(k, str) and k.startswith("_")}
    public = {k: v for k, v in options.items() if k not in private}
    return {**_validate(public), **private}


validate_options.fields = FIELDS  # type: ignore[attr-defined]  # for docs and `--keys` listings
