"""Looking at a machine without touching it, for the event loop's records: the
per-pageblock map for the pictures and the usage figures timeline conditions test.

Free memory as a sample holds it (free blocks, pagetypeinfo counts, both indexes) is
mm/vmstat.c's, so :func:`pagemig.mm.vmstat.free_state` computes it; the map's type,
:class:`pagemig.sim.result.PageblockMap`, is part of the result.  Everything here is
read-only and cheap enough to run at every sample (a handful of NumPy reductions over
the page columns).
"""

from __future__ import annotations

import numpy as np

from pagemig.mm.machine import Machine
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.sim.result import PageblockMap

FREE = int(PageKind.FREE)
RESERVED = int(PageKind.RESERVED)
DRIVER = int(PageKind.DRIVER)


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
