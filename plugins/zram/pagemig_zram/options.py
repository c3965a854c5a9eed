"""The zram device's scenario table (``[drivers.zram]``), checked with pagemig.api's option fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pagemig.api import (
    Field,
    TableError,
    UnitError,
    boolean_field,
    integer_field,
    number_field,
    parse_percent,
    parse_size,
    percent_field,
    size_field,
    table_validator,
)

DISKSIZE_EXPECTED = 'a size such as "600MiB", or a share of memory such as "50%"'


def parse_disksize(value: object) -> int | float:
    """Bytes (an int) from a size, or a share of managed memory (a float) from a percentage."""
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            share = parse_percent(value)
            if share <= 0:
                raise TableError("disksize", value, DISKSIZE_EXPECTED, "it must be more than 0%")
            return share
        nbytes = parse_size(value)
    except UnitError as exc:
        raise TableError("disksize", value, DISKSIZE_EXPECTED, exc.hint) from None
    if nbytes < 4096:
        raise TableError("disksize", value, DISKSIZE_EXPECTED, "at least one 4KiB page")
    return nbytes


FIELDS: dict[str, Field] = {
    "movable": boolean_field(True, "false: zsmalloc before Linux v4.8 (unmovable zspages)"),
    "disksize": Field(parse_disksize, None, DISKSIZE_EXPECTED,
                      "the swap device's size (default: half of memory)"),
    "mem_limit": size_field(0, "most memory the pool may use (0: no limit), as /sys/block/zram0/mem_limit"),
    "compression_ratio": number_field(3.0, "page size / median compressed size", minimum=1.0, maximum=100.0),
    "zero_fraction": percent_field(0.05, "share of swapped pages that are zero-filled (stored as a flag)"),
    "priority": integer_field(100, "swap priority (swapon -p); higher is used first", minimum=-1,
                               maximum=32767),
    "seed": integer_field(None, "seed of the compressibility model (default: from the scenario's seed)",
                           minimum=0),
    "swap": boolean_field(True, "register as the machine's swap device (swapon)"),
}

_validate = table_validator(FIELDS)


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``[drivers.zram]``; keys starting with ``_`` are the simulator's and pass through."""
    if not isinstance(options, Mapping):
        raise TableError("", options, "a table ([drivers.zram])")
    private = {k: v for k, v in options.items() if isinstance(k, str) and k.startswith("_")}
    public = {k: v for k, v in options.items() if k not in private}
    return {**_validate(public), **private}


validate_options.fields = FIELDS  # type: ignore[attr-defined]
