"""The /proc and debugfs files of a run's recorded states, as the kernel prints them.

A kernel engineer compares machines with the files the kernel writes, and has tools that
read them; so a run's states are printed in those files' own bytes (mm/vmstat.py's
formatters), not in a table of ours.  Everything comes from the result document, so
``pagemig run --proc`` and ``pagemig show RESULT --proc`` print the same text for the
same run.

The states a result records in full (per-zone free blocks by migratetype, pageblocks by
migratetype, all vmstat counters) are the run's samples and the moments before and
after every compaction the timeline asks for; these are the states printed.  Each file is headed the way
``head`` heads several files (``==> NAME <==``), with the moment after the file's path,
so the output splits back into files with one ``awk``.

Simplified, and why: a result does not record the kernel configuration's MIGRATE_TYPES,
so pagetypeinfo always prints the six types of a distribution kernel (CONFIG_CMA and
CONFIG_MEMORY_ISOLATION on); a User-Mode Linux kernel prints the first four.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pagemig.mm.gfp import MIGRATETYPE_NAMES, NR_MIGRATETYPES
from pagemig.mm.pages import NR_ORDERS
from pagemig.mm.vmstat import (
    ZonePagetypes,
    format_buddyinfo,
    format_extfrag_index,
    format_pagetypeinfo,
    format_unusable_index,
    format_vmstat,
)
from pagemig.sim.units import format_duration

PROC_FILES: dict[str, str] = {
    "buddyinfo": "/proc/buddyinfo",
    "pagetypeinfo": "/proc/pagetypeinfo",
    "vmstat": "/proc/vmstat",
    "extfrag_index": "/sys/kernel/debug/extfrag/extfrag_index",
    "unusable_index": "/sys/kernel/debug/extfrag/unusable_index",
}


class ProcUnavailable(ValueError):
    """The result does not hold what the file needs (e.g. a result written before
    compaction records carried pagetypeinfo counts)."""


def _populated(doc: Mapping[str, Any], zones: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The recorded zones that ``populated_zone()`` would walk: those with present pages."""
    present = {z["name"]: z.get("managed_pages", 1) for z in doc["machine"]["zones"]}
    return [(name, z) for name, z in zones.items() if present.get(name, 1) > 0]


def render_state(doc: Mapping[str, Any], state: Mapping[str, Any], name: str) -> str:
    """One file's text for one recorded state (a sample, or a compaction's before/after)."""
    zones = _populated(doc, state["zones"])
    if name == "buddyinfo":
        return format_buddyinfo((n, z["free_blocks"]) for n, z in zones)
    if name == "extfrag_index":
        return format_extfrag_index((n, z["free_blocks"]) for n, z in zones)
    if name == "unusable_index":
        return format_unusable_index((n, z["free_blocks"]) for n, z in zones)
    if name == "vmstat":
        if "vmstat" not in state:
            raise ProcUnavailable("this state has no vmstat counters recorded")
        return format_vmstat(state["vmstat"].items())
    if name == "pagetypeinfo":
        rows = []
        for n, z in zones:
            if "free_by_type" not in z:
                raise ProcUnavailable("this state has no pagetypeinfo counts recorded")
            free = [z["free_by_type"].get(MIGRATETYPE_NAMES[mt], [0] * NR_ORDERS) for mt in range(NR_MIGRATETYPES)]
            blocks = [z["pageblocks"].get(MIGRATETYPE_NAMES[mt], 0) for mt in range(NR_MIGRATETYPES)]
            rows.append(ZonePagetypes(n, free, blocks))
        return format_pagetypeinfo(doc["machine"]["pageblock_order"], rows)
    raise ValueError(f"unknown /proc file {name!r}: expected one of {', '.join(PROC_FILES)}")


def states(doc: Mapping[str, Any], which: str = "compactions") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The recorded states to print, each with a label saying when it was.

    ``compactions``: before and after each compaction the timeline asked for (a
    ``compact`` command: compact_memory; kcompactd's and proactive runs keep only the
    buddyinfo-level figures), or the run's final sample when there was none;
    ``samples``: every sample; ``end``: the last sample."""
    samples: Sequence[Mapping[str, Any]] = doc.get("samples", [])
    records = [c for c in doc.get("compactions", []) if "vmstat" in c["before"]]
    if which == "compactions" and records:
        for c in records:
            when = f"compaction #{c['index']} ({c['trigger']} at {format_duration(c['time_s'])})"
            yield f"before {when}", c["before"]
            yield f"after {when}", c["after"]
        return
    if which == "samples":
        for s in samples:
            yield f"at {format_duration(s['time_s'])} ({s['reason']} sample)", s
        return
    if samples:
        last = samples[-1]
        yield f"at {format_duration(last['time_s'])} (end of run)", last


def proc_text(doc: Mapping[str, Any], names: Sequence[str], which: str = "compactions") -> str:
    """The files ``names`` for every state ``which`` selects, each headed ``==> PATH: WHEN <==``."""
    for n in names:
        if n not in PROC_FILES:
            raise ValueError(f"unknown /proc file {n!r}: expected one of {', '.join(PROC_FILES)}")
    out: list[str] = []
    for label, state in states(doc, which):
        for n in names:
            out.append(f"==> {PROC_FILES[n]}: {label} <==\n{render_state(doc, state, n)}\n")
    return "".join(out)
