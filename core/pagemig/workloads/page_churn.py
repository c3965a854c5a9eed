"""``page_churn``: the LLFree fragmentation benchmark, on the simulated allocator.

Fill memory with order-0 pages, free a random half, then at every iteration free a
random ``churn`` share (10%) of what is held and allocate the same number again.
Occupancy stays where the first free left it, while the pages that remain hold free
space apart: how badly depends on the allocator's placement, which is the point of
the benchmark (Wrenger et al., "LLFree", USENIX ATC 2023).

The GFP mask decides the migratetype: ``GFP_HIGHUSER_MOVABLE`` (the default) gives
anonymous LRU pages that compaction can move, ``GFP_KERNEL`` unmovable kernel pages.

A page reclaim swapped out is still the workload's: it counts towards what is held,
and when the churn frees it its swap slot is released, as munmap frees a swap entry
(``free_swap_and_cache``).  Counting only resident pages would refill every swapped
page with a new one and leave the old one in swap for ever, until the device is full.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pagemig.api import (
    Gfp,
    LruOwner,
    Machine,
    PageKind,
    Workload,
    duration_field,
    gfp_field,
    pages_field,
    percent_field,
    table_validator,
)
from pagemig.workloads.base import TrackedOwner, pick_random
from pagemig.workloads.frag import fillable_pages

FIELDS = {
    "size": pages_field(None, "memory to fill (default: the fill share of what is free)", minimum=1),
    "fill": percent_field("100%", "share of the memory free above the high watermarks to fill, unless size is given"),
    "free": percent_field("50%", "share freed at random right after the fill"),
    "churn": percent_field("10%", "share of the held pages freed and reallocated at each iteration"),
    "interval": duration_field("1s", "simulated time between iterations", positive=True),
    "gfp": gfp_field("GFP_HIGHUSER_MOVABLE", "the pages' GFP mask"),
}
validate = table_validator(FIELDS)


class PageChurn(Workload):
    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        super().__init__(machine, options, rng)
        _, self.gfp = self.options["gfp"]
        self.lru = LruOwner(machine, f"{self.name}:anon") if self.gfp & Gfp.MOVABLE else None
        self.kernel = None if self.lru else TrackedOwner(machine, f"{self.name}:kernel", PageKind.KERNEL, self.gfp)
        self.filled = False
        self.next_iteration = 0.0
        self.iterations = 0
        self.target = 0  # pages held after the first free: the occupancy the churn keeps
        self.churned = 0
        self.shortfall = 0  # pages a reallocation could not get back

    def held(self) -> np.ndarray:
        return (self.lru or self.kernel).pages.pfns()  # type: ignore[union-attr]

    def nr_held(self) -> int:
        """Resident and swapped-out pages alike: a process still holds a page that is in swap."""
        swapped = self.lru.nr_swapped if self.lru is not None else 0
        return len((self.lru or self.kernel).pages) + swapped  # type: ignore[union-attr]

    def free_random(self, n: int) -> None:
        """Free ``n`` held pages chosen uniformly among the resident and the swapped-out ones;
        a swapped-out page's slot goes back to the swap device."""
        swapped = self.lru.nr_swapped if self.lru is not None else 0
        if not swapped:  # the same draws as ever when nothing is in swap
            self.free(pick_random(self.held(), n, self.rng))
            return
        assert self.lru is not None
        resident = np.sort(self.held())
        idx = pick_random(np.arange(len(resident) + swapped), n, self.rng)
        self.free(resident[idx[idx < len(resident)]])
        self.lru.free_swapped(idx[idx >= len(resident)] - len(resident))

    def alloc(self, n: int) -> int:
        if n <= 0:
            return 0
        if self.lru is not None:
            return len(self.lru.alloc(n, PageKind.ANON, self.gfp))
        assert self.kernel is not None
        return len(self.kernel.alloc(n))

    def free(self, pfns: np.ndarray) -> None:
        (self.lru or self.kernel).free(pfns)  # type: ignore[union-attr]

    def start(self, now: float) -> None:
        self.next_iteration = now

    def step(self, now: float, dt: float) -> None:
        o = self.options
        if not self.filled:
            self.filled = True
            want = o["size"] if o["size"] is not None else int(fillable_pages(self.machine, self.gfp) * o["fill"])
            self.alloc(want)
            self.free_random(round(self.nr_held() * o["free"]))
            self.target = self.nr_held()
            self.next_iteration = now + o["interval"]
        end = now + dt
        while self.next_iteration < end:
            self.iterate()
            self.next_iteration += o["interval"]

    def iterate(self) -> None:
        n = round(self.nr_held() * self.options["churn"])
        self.free_random(n)
        want = self.target - self.nr_held()
        got = self.alloc(want)
        self.shortfall += want - got
        self.churned += n
        self.iterations += 1

    def stats(self) -> dict[str, int | float]:
        return {"pages_held": self.nr_held(), "target_pages": self.target, "iterations": self.iterations,
                "pages_churned": self.churned, "shortfall_pages": self.shortfall}
