"""The /proc/sys/vm tunables the simulator honours: one table of name, default, range and doc.

Follows the ``vm_table`` entries of kernel/sysctl.c and the tables mm/*.c register
(``page_alloc_sysctl_table``, ``vm_compaction``, v6.1): each tunable has the kernel's
name, default and the range its ``extra1``/``extra2`` clamp it to.  The scenario
schema, the ``set`` command and the machine read this table, so a tunable is added
here once.

Simplified, and why: a write's side effect (the kernel's ``proc_handler``) is not a
column of the table.  The handlers belong to the subsystems that react (watermarks to
the allocator, ``compaction_proactiveness`` to compaction), which register them on
the machine (its ``register_sysctl_handler``); a table
naming them would make this bottom module import the whole kernel.
"""

from __future__ import annotations

import attrs


def _tunable(default: int, minimum: int, maximum: int | None, doc: str) -> int:
    """An attrs field with the tunable's range and doc as metadata (``ctl_table``'s
    ``extra1``/``extra2``)."""
    return attrs.field(default=default, metadata={"range": (minimum, maximum), "doc": doc})


@attrs.define
class Sysctl:
    """The tunables' current values (``/proc/sys/vm``), named and defaulted as the kernel does."""

    min_free_kbytes: int = _tunable(0, 0, None, "the min watermark in KiB (default: the kernel's sqrt formula)")
    watermark_scale_factor: int = _tunable(
        10, 1, 3000, "distance between watermarks, in 1/10000 of memory (default 10)")
    watermark_boost_factor: int = _tunable(
        15000, 0, None, "watermark boost after fragmenting fallbacks (default 15000)")
    extfrag_threshold: int = _tunable(
        500, 0, 1000, "fragmentation index above which compaction is worth trying (default 500)")
    compaction_proactiveness: int = _tunable(20, 0, 100, "proactive compaction, 0 (off) to 100 (default 20)")
    compact_unevictable_allowed: int = _tunable(1, 0, 1, "may compaction move unevictable pages (default 1)")
    swappiness: int = _tunable(60, 0, 200, "anon vs file reclaim balance, 0 to 200 (default 60)")
    percpu_pagelist_high_fraction: int = _tunable(
        0, 0, None, "per-cpu list high mark as 1/N of the zone, 0 (low watermark based) or >= 8 (default 0)")


@attrs.frozen
class Tunable:
    """One row of the table."""

    name: str
    default: int
    minimum: int
    maximum: int | None  # None: no upper bound
    doc: str


_DEFAULTS = Sysctl()
SYSCTL_TABLE: tuple[Tunable, ...] = tuple(
    Tunable(f.name, int(getattr(_DEFAULTS, f.name)), f.metadata["range"][0], f.metadata["range"][1],
            f.metadata["doc"])
    for f in attrs.fields(Sysctl)
)
SYSCTL_NAMES: tuple[str, ...] = tuple(t.name for t in SYSCTL_TABLE)


def tunable(name: str) -> Tunable:
    """The table's row for ``name``; KeyError for a tunable the simulator does not have."""
    for t in SYSCTL_TABLE:
        if t.name == name:
            return t
    raise KeyError(name)


__all__ = ["SYSCTL_NAMES", "SYSCTL_TABLE", "Sysctl", "Tunable", "tunable"]
