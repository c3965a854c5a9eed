"""Looking at a machine without touching it: free blocks, pagetypeinfo counts, the
fragmentation indexes, and a per-pageblock map for the pictures.

Everything here is read-only and cheap enough to run at every sample (per zone it
costs a few hundred ``len()`` calls on the free lists and, for the map, a handful of
NumPy reductions over the page columns).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from pagemig.mm.gfp import MIGRATE_PCPTYPES, MIGRATETYPE_NAMES, NR_MIGRATETYPES
from pagemig.mm.machine import Machine
from pagemig.mm.pages import NR_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PageFlag, PageKind
from pagemig.mm.vmstat import fragmentation_index, free_pages_at_or_above, pageblock_counts, unusable_free_index
from pagemig.mm.zone import Zone

FREE = int(PageKind.FREE)
RESERVED = int(PageKind.RESERVED)
DRIVER = int(PageKind.DRIVER)


def node_free_blocks(machine: Machine) -> list[int]:
    """Free blocks per order summed over the zones."""
    total = [0] * NR_ORDERS
    for zone in machine.zones:
        for o, n in enumerate(zone.nr_free_by_order()):
            total[o] += n
    return total


def indexes(blocks: list[int]) -> dict[str, list[int]]:
    """Both of mm/vmstat.c's indexes (x1000) at every order, from free-block counts."""
    return {
        "fragmentation_index": [fragmentation_index(blocks, o) for o in range(NR_ORDERS)],
        "unusable_index": [unusable_free_index(blocks, o) for o in range(NR_ORDERS)],
    }


def zone_free_by_type(zone: Zone) -> dict[str, list[int]]:
    """``/proc/pagetypeinfo``'s free counts: per migratetype, free blocks per order."""
    return {MIGRATETYPE_NAMES[mt]: zone.nr_free_by_type(mt) for mt in range(NR_MIGRATETYPES)
            if mt < MIGRATE_PCPTYPES or any(zone.nr_free_by_type(mt))}


def zone_pageblocks(machine: Machine, zone: Zone) -> dict[str, int]:
    """``/proc/pagetypeinfo``'s second table: pageblocks of each migratetype in a zone."""
    counts = pageblock_counts(machine, zone)
    return {MIGRATETYPE_NAMES[mt]: n for mt, n in enumerate(counts) if mt < MIGRATE_PCPTYPES or n}


def free_state(machine: Machine, *, pagetypes: bool = False) -> dict[str, Any]:
    """Free memory as samples and compaction records hold it: node-wide free blocks per
    order, both indexes per order, the free pages in blocks of order >= 3 and >=
    pageblock order, and the same per zone; with ``pagetypes``, each zone's
    /proc/pagetypeinfo counts too (free blocks per migratetype, pageblocks per type)."""
    blocks = node_free_blocks(machine)
    zones = {}
    for zone in machine.zones:
        zb = zone.nr_free_by_order()
        zones[zone.name] = {"free_blocks": zb, "free_pages": zone.free_pages, **indexes(zb)}
        if pagetypes:
            zones[zone.name]["free_by_type"] = zone_free_by_type(zone)
            zones[zone.name]["pageblocks"] = zone_pageblocks(machine, zone)
    return {
        "free_pages": machine.nr_free_pages,
        "free_blocks": blocks,
        **indexes(blocks),
        "free_pages_order_ge_3": free_pages_at_or_above(blocks, PAGE_ALLOC_COSTLY_ORDER),
        "free_pages_order_ge_pageblock": free_pages_at_or_above(blocks, machine.pageblock_order),
        "zones": zones,
    }


@attrs.frozen
class PageblockMap:
    """One row per pageblock: its migratetype and how its pages are used, for the memory map."""

    pageblock_order: int
    migratetype: np.ndarray  # uint8 per pageblock
    used: np.ndarray  # in-use pages (neither free nor reserved), per pageblock
    driver: np.ndarray  # driver pages
    movable_driver: np.ndarray  # driver pages marked movable
    reserved: np.ndarray  # memblock-reserved pages or holes
    zone_starts: tuple[int, ...]  # first pageblock index of each zone
    zone_names: tuple[str, ...]

    @property
    def nr_blocks(self) -> int:
        return len(self.migratetype)


def pageblock_map(machine: Machine) -> PageblockMap:
    pbo = machine.pageblock_order
    size = 1 << pbo
    n = machine.nr_pages
    nblocks = (n + size - 1) >> pbo
    pad = nblocks * size - n
    kind = machine.pages.kind
    flags = machine.pages.flags
    if pad:
        kind = np.concatenate((kind, np.full(pad, RESERVED, dtype=np.uint8)))
        flags = np.concatenate((flags, np.zeros(pad, dtype=np.uint8)))
    k = kind.reshape(nblocks, size)
    f = flags.reshape(nblocks, size)
    is_driver = k == DRIVER
    reserved = np.count_nonzero(k == RESERVED, axis=1)
    free = np.count_nonzero(k == FREE, axis=1)
    return PageblockMap(
        pageblock_order=pbo,
        migratetype=machine.buddy.pageblock_mt[:nblocks].copy(),
        used=(size - reserved - free).astype(np.int32),
        driver=np.count_nonzero(is_driver, axis=1).astype(np.int32),
        movable_driver=np.count_nonzero(is_driver & ((f & PageFlag.MOVABLE) != 0), axis=1).astype(np.int32),
        reserved=reserved.astype(np.int32),
        zone_starts=tuple(z.start_pfn >> pbo for z in machine.zones),
        zone_names=tuple(z.name for z in machine.zones),
    )


def stall_seconds(machine: Machine) -> float:
    """Simulated time the slow path has stalled allocations so far (0 with the bare
    allocator, whose slow path only retries at the min watermark)."""
    return float(getattr(getattr(machine.slowpath, "stats", None), "stall_seconds", 0.0))


USAGE_METRICS = {
    "anon": PageKind.ANON,
    "file": PageKind.FILE,
    "kernel": PageKind.KERNEL,
    "driver": PageKind.DRIVER,
    "pagetables": PageKind.PAGETABLE,
}


def usage_pages(machine: Machine, metric: str) -> int:
    """Pages in use by one measure, for timeline conditions (``when = "used > 512MiB"``)."""
    if metric == "used":
        return machine.managed_pages - machine.nr_free_pages
    if metric == "free":
        return machine.nr_free_pages
    kind = machine.pages.kind
    if metric == "slab":
        return int(np.count_nonzero((kind == PageKind.SLAB_RECLAIMABLE) | (kind == PageKind.SLAB_UNRECLAIMABLE)))
    return int(np.count_nonzero(kind == USAGE_METRICS[metric]))
