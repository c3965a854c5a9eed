"""``frag``: fill memory with movable pages, then give back all but 1 of every 4.

The kernel's proactive-compaction evaluation (Nitin Gupta, v5.9) and the oracle's
``frag.c`` do this to user memory: map it, back every page in address order, then
in every 2 MiB ``MADV_DONTNEED`` all pages but ``keep`` of every ``every`` (1 of 4
by default).  The kept pages pin free space down everywhere, so the buddy allocator
is left with many small free blocks and almost no pageblock-sized ones, which is
what compaction is for.  The pages are anonymous LRU memory (movable).

Pages are taken in one bulk allocation and "address order" is the order the
allocator handed them out, as the kernel's page faults walk the mapping.  Which
pages of a group survive is drawn at random (``survivor = "random"``, the default):
on a real machine the mapping's pages are close to, but not exactly in, pfn order
(per-cpu lists, other allocations interleaved), while the simulator's bulk
allocator hands them out perfectly in order, and a perfectly periodic survivor
(``survivor = "first"``, frag.c's choice in virtual order) lines up with the free
scanner's sampling stride (which doubles up to 32 after empty pageblocks, as the
kernel's does) so that it finds no free page at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pagemig.api import (
    GFP_HIGHUSER_MOVABLE,
    LruOwner,
    Machine,
    PageKind,
    TableError,
    Workload,
    check_table,
    choice_field,
    integer_field,
    pages_field,
    percent_field,
)

FIELDS = {
    "size": pages_field(None, 'memory to fill, e.g. "768MiB" (default: the fill share of what is free)', minimum=1),
    "fill": percent_field("100%", "share of the memory free above the high watermarks to fill, unless size is given"),
    "keep": integer_field(1, "pages kept of every `every`", minimum=0),
    "every": integer_field(4, "group size, in pages", minimum=1),
    "survivor": choice_field(("random", "first"), "random",
                              "which pages of a group are kept: drawn at random, or the first ones"),
}
GFP = GFP_HIGHUSER_MOVABLE


def validate(table: Mapping[str, Any]) -> dict[str, Any]:
    out = check_table(table, FIELDS)
    if out["keep"] > out["every"]:
        raise TableError("keep", table.get("keep"), f"at most every = {out['every']}")
    return out


def fillable_pages(machine: Machine, gfp: int) -> int:
    """Pages free above each allowed zone's high watermark: what a workload can take without
    waking kswapd, which is how the kernel's evaluation ran (no reclaim in the picture)."""
    ac = machine.buddy.alloc_context(gfp)
    return sum(max(0, z.free_pages - z.wmark_high - z.lowmem_reserve[ac.highest_zoneidx]) for z in ac.zonelist)


class Frag(Workload):
    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        super().__init__(machine, options, rng)
        self.owner = LruOwner(machine, f"{self.name}:anon")
        self.done = False
        self.requested = 0
        self.allocated = 0
        self.freed = 0

    def step(self, now: float, dt: float) -> None:
        if self.done:
            return
        self.done = True
        o = self.options
        want = o["size"] if o["size"] is not None else int(fillable_pages(self.machine, GFP) * o["fill"])
        self.requested = want
        pfns = self.owner.alloc(want, PageKind.ANON, GFP)
        self.allocated = len(pfns)
        drop = pfns[~self.kept(len(pfns))]
        self.owner.free(drop)
        self.freed = len(drop)

    def kept(self, n: int) -> np.ndarray:
        """Which of ``n`` pages (in allocation order) survive: ``keep`` of every ``every``."""
        keep, every = self.options["keep"], self.options["every"]
        if self.options["survivor"] == "first":
            return (np.arange(n) % every) < keep
        groups = -(-n // every)
        rank = self.rng.random((groups, every)).argsort(axis=1).argsort(axis=1)
        return (rank < keep).reshape(-1)[:n]

    def stats(self) -> dict[str, int | float]:
        return {"pages_requested": self.requested, "pages_allocated": self.allocated,
                "pages_freed": self.freed, "pages_held": len(self.owner.pages)}
