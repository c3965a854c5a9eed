"""The balloon's scenario table (``[drivers.balloon]``): known keys, their types, clear errors.

Unknown keys are errors with a suggestion for a near miss, because a misspelt
``deflate_on_om = true`` that is silently ignored changes a run's result without a word.
Keys starting with ``_`` are the simulator's own (such as ``_plugin``) and pass through.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from pagemig.mm.pages import PAGE_SIZE

from pagemig_balloon.driver import DEFAULT_INFLATE_RATE, OOM_VBALLOON_DEFAULT_PAGES

_SIZE_UNITS = {"b": 1, "kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20, "gib": 1 << 30, "g": 1 << 30,
               "page": PAGE_SIZE, "pages": PAGE_SIZE}


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"drivers.balloon.{key} = {value!r}: expected true or false")
    return value


def _whole(key: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"drivers.balloon.{key} = {value!r}: expected a whole number")
    if value < minimum:
        raise ValueError(f"drivers.balloon.{key} = {value!r}: expected at least {minimum}")
    return value


def parse_page_rate(key: str, value: Any) -> float:
    """Pages per second from a number (pages/s), ``"65536/s"`` or ``"256MiB/s"``."""
    expected = 'a rate in pages per second (65536), "65536/s" or a size per second such as "256MiB/s"'
    if isinstance(value, bool):
        raise ValueError(f"drivers.balloon.{key} = {value!r}: expected {expected}")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        amount, sep, per = value.replace("_", "").partition("/")
        per = per.strip().lower()
        seconds = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0}.get(per) if sep else 1.0
        if seconds is None:
            raise ValueError(f"drivers.balloon.{key} = {value!r}: unknown time unit {per!r}; expected {expected}")
        amount = amount.strip()
        num = amount.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
        unit = amount[len(num):].strip().lower()
        try:
            number = float(num)
        except ValueError:
            raise ValueError(f"drivers.balloon.{key} = {value!r}: expected {expected}") from None
        if unit and unit not in _SIZE_UNITS:
            raise ValueError(f"drivers.balloon.{key} = {value!r}: unknown unit {unit!r}; expected {expected}")
        pages = number * _SIZE_UNITS[unit] / PAGE_SIZE if unit else number
        rate = pages / seconds
    else:
        raise ValueError(f"drivers.balloon.{key} = {value!r}: expected {expected}")
    if not rate >= 0 or rate == float("inf"):
        raise ValueError(f"drivers.balloon.{key} = {value!r}: a rate must be a finite number >= 0")
    return rate


def _target(key: str, value: Any) -> int:
    return _whole(key, value, minimum=1)


SCHEMA: dict[str, tuple[Callable[[str, Any], Any], Any, str]] = {
    "movable": (_bool, True, "false: balloon pages are plain unmovable allocations (before Linux v3.8)"),
    "deflate_on_oom": (_bool, False, "VIRTIO_BALLOON_F_DEFLATE_ON_OOM: give back oom_pages pages on OOM"),
    "inflate_rate": (parse_page_rate, DEFAULT_INFLATE_RATE, "how fast the balloon moves towards its target"),
    "oom_pages": (lambda k, v: _whole(k, v, minimum=1), OOM_VBALLOON_DEFAULT_PAGES, "pages released per OOM"),
    "target_mib": (_target, None, "an initial `balloon N` target: MiB of memory left to the guest"),
}


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``[drivers.balloon]`` table; return it with defaults filled in and values parsed."""
    if not isinstance(options, Mapping):
        raise ValueError(f"drivers.balloon must be a table, got {options!r}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise ValueError(f"drivers.balloon: key {key!r} is not a string")
        if key.startswith("_"):
            out[key] = value
            continue
        if key not in SCHEMA:
            near = difflib.get_close_matches(key, SCHEMA, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"drivers.balloon: unknown key {key!r}{hint}; known keys: {', '.join(SCHEMA)}")
        parse = SCHEMA[key][0]
        out[key] = parse(key, value)
    for key, (_, default, _) in SCHEMA.items():
        if key not in out and default is not None:
            out[key] = default
    return out
