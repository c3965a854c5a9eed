"""Allocator speed: single order-0 alloc+free pairs, mixed orders, and the bulk form.

Every figure is CPU time of this process (``time.process_time``), best of several
repeats: the machine these run on is shared, and CPU time with best-of is what
stays put when other processes compete for the cores (wall time does not).  The
median is given in the note.  The allocator alone is measured: pages go to an
owner that keeps no record of them.

States:

* *fresh*: a just-booted x86-64 guest, all memory in order-10 blocks;
* *fragmented*: every free page taken, then a random half given back in random
  order, so that the free lists hold mostly order-0 and order-1 blocks spread over
  the whole machine (about half the memory free).
"""

from __future__ import annotations

import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE_LIGHT, Gfp
from pagemig.mm.machine import GiB, Machine, MachineConfig
from pagemig.mm.owner import Owner
from pagemig.mm.pages import PageKind

ANON = int(PageKind.ANON)
MOVABLE = GFP_HIGHUSER_MOVABLE
PAIR_TARGET = 300_000
BULK_TARGET = 5_000_000

# Mixed orders, roughly what a kernel hands out: mostly order-0 user pages, order 1-3
# kernel allocations (stacks, slabs), a few THPs.
MIXED = [(0, MOVABLE, 70), (1, GFP_KERNEL, 8), (2, GFP_KERNEL, 8), (3, GFP_KERNEL | Gfp.COMP, 8),
         (4, GFP_KERNEL, 2), (9, GFP_TRANSHUGE_LIGHT, 4)]


class Holder(Owner):
    """Holds pages without a record: the benchmark measures the allocator, not an owner."""

    name = "bench"


def boot(size_gib: int) -> tuple[Machine, int]:
    m = Machine(MachineConfig.x86_64_guest(size_gib * GiB))
    holder = Holder()
    return m, m.register_owner(holder)


def fragment(m: Machine, oid: int, seed: int = 1) -> None:
    taken = m.alloc_pages_bulk(MOVABLE, m.managed_pages, oid, ANON)
    np.random.default_rng(seed).shuffle(taken)
    m.free_pages_bulk(taken[: len(taken) // 2])


def best_of(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(best, median) of the CPU seconds fn() reports."""
    times = [fn() for _ in range(repeats)]
    return min(times), statistics.median(times)


def row(case: str, size: int, per_second: float, median: float, unit: str, target: float | None,
        note: str = "") -> dict[str, Any]:
    r: dict[str, Any] = {"case": case, "machine": f"{size} GiB", "value": per_second, "unit": unit,
                         "note": (note + "; " if note else "") + f"median {median:,.0f} {unit}"}
    if target is not None:
        r["target"] = target
    return r


def order0_churn(size: int, n: int, repeats: int) -> dict[str, Any]:
    """Fragmented memory, a FIFO of 1000 live pages: each step allocates one page and frees
    the oldest: the steady state of a workload that keeps its footprint."""
    m, oid = boot(size)
    fragment(m, oid)
    alloc, free = m.alloc_pages, m.free_pages
    live = deque(alloc(MOVABLE, 0, oid, ANON) for _ in range(1000))

    def once() -> float:
        t = time.process_time()
        for _ in range(n):
            live.append(alloc(MOVABLE, 0, oid, ANON))
            free(live.popleft(), 0)
        return time.process_time() - t

    best, med = best_of(once, repeats)
    return row("order-0 single pairs, fragmented, FIFO of 1000", size, n / best, n / med, "pairs/s", PAIR_TARGET)


def order0_batch(size: int, n: int, repeats: int) -> dict[str, Any]:
    """Fragmented memory: n single allocations, then n single frees in random order."""
    m, oid = boot(size)
    fragment(m, oid)
    alloc, free = m.alloc_pages, m.free_pages
    rng = random.Random(2)

    def once() -> float:
        t = time.process_time()
        pfns = [alloc(MOVABLE, 0, oid, ANON) for _ in range(n)]
        took = time.process_time() - t
        rng.shuffle(pfns)
        t = time.process_time()
        for pfn in pfns:
            free(pfn, 0)
        return took + time.process_time() - t

    best, med = best_of(once, repeats)
    return row(f"order-0 single pairs, fragmented, {n} then free shuffled", size, n / best, n / med,
               "pairs/s", PAIR_TARGET)


def order0_fresh_lifo(size: int, n: int, repeats: int) -> dict[str, Any]:
    """A fresh machine, free each page at once: every allocation splits an order-10 block
    down to order 0 and every free merges it back up (the worst case: the kernel's per-cpu
    lists absorb exactly this, and the simulator does not model them)."""
    m, oid = boot(size)
    alloc, free = m.alloc_pages, m.free_pages

    def once() -> float:
        t = time.process_time()
        for _ in range(n):
            free(alloc(MOVABLE, 0, oid, ANON), 0)
        return time.process_time() - t

    best, med = best_of(once, repeats)
    return row("order-0 single pairs, fresh, free at once (split/merge 10 levels)", size, n / best, n / med,
               "pairs/s", PAIR_TARGET)


def mixed_churn(size: int, n: int, repeats: int) -> dict[str, Any]:
    """Fresh machine, a FIFO of 2000 live allocations of mixed orders and types (MIXED):
    each step allocates one and frees the oldest.  Failed allocations count as steps."""
    m, oid = boot(size)
    alloc, free = m.alloc_pages, m.free_pages
    rng = random.Random(3)
    choices = [(o, g) for o, g, w in MIXED for _ in range(w)]
    plan = [rng.choice(choices) for _ in range(n)]
    live: deque[tuple[int, int]] = deque()
    for order, gfp in plan[:2000]:
        pfn = alloc(gfp, order, oid, ANON)
        if pfn >= 0:
            live.append((pfn, order))
    pages = [0]

    def once() -> float:
        moved = 0
        t = time.process_time()
        for order, gfp in plan:
            pfn = alloc(gfp, order, oid, ANON)
            if pfn >= 0:
                live.append((pfn, order))
                moved += 1 << order
            old, old_order = live.popleft()
            free(old, old_order)
        took = time.process_time() - t
        pages[0] = moved
        return took

    best, med = best_of(once, repeats)
    return row("mixed orders single pairs, FIFO of 2000", size, n / best, n / med, "pairs/s", None,
               note=f"{pages[0] / n:.1f} pages per allocation, {pages[0] / best:,.0f} pages/s allocated and freed")


def bulk(size: int, n: int, repeats: int, fragmented: bool) -> dict[str, Any]:
    """alloc_pages_bulk(n) then free_pages_bulk of the result shuffled: pages per second
    (a page counts once for its allocation and its free)."""
    m, oid = boot(size)
    if fragmented:
        fragment(m, oid)
    rng = np.random.default_rng(4)

    def once() -> float:
        t = time.process_time()
        got = m.alloc_pages_bulk(MOVABLE, n, oid, ANON)
        took = time.process_time() - t
        assert len(got) == n
        rng.shuffle(got)
        t = time.process_time()
        m.free_pages_bulk(got)
        return took + time.process_time() - t

    best, med = best_of(once, repeats)
    state = "fragmented" if fragmented else "fresh"
    return row(f"bulk alloc+free of {n} pages, {state}", size, n / best, n / med, "pages/s", BULK_TARGET)


def run(quick: bool) -> list[dict[str, Any]]:
    sizes = (1, 2) if quick else (1, 16)
    n, repeats = (5_000, 3) if quick else (50_000, 7)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        rows.append(order0_churn(size, n, repeats))
        rows.append(order0_batch(size, n // 2, repeats))
        rows.append(order0_fresh_lifo(size, n, repeats))
        rows.append(mixed_churn(size, n, repeats))
        rows.append(bulk(size, 65_536, repeats, fragmented=False))
        rows.append(bulk(size, 4_096, repeats * 3, fragmented=False))
        rows.append(bulk(size, 65_536, repeats, fragmented=True))
        rows.append(bulk(size, 4_096, repeats * 3, fragmented=True))
    # The cost of one operation at the large size relative to the small one.
    small, large = (f"{s} GiB" for s in sizes)
    by_key = {(r["case"], r["machine"]): r["value"] for r in rows}
    for case in dict.fromkeys(r["case"] for r in rows):
        if (case, small) in by_key and (case, large) in by_key:
            rows.append({"case": f"cost per op {large} / {small}: {case}", "machine": f"{large} vs {small}",
                         "value": by_key[(case, small)] / by_key[(case, large)], "unit": "x",
                         "target": 1.1, "lower_is_better": True})
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
