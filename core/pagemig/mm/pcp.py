"""Per-cpu page lists: the pcp part of mm/page_alloc.c (v6.1).

Each zone has one ``struct per_cpu_pages`` per CPU, with a list per migratetype and
order up to ``PAGE_ALLOC_COSTLY_ORDER`` and one list for the THP order
(``order_to_pindex``).  Order-0..3 and THP-order frees go to the freeing CPU's list
(``free_unref_page_commit``); when the lists hold ``high`` pages or more a batch goes
back to the buddy lists, taken from the tails (the oldest pages), round-robin over the
lists starting with the one just freed to (``free_pcppages_bulk``).  Allocations of
those orders take the list head and refill an empty list with ``batch`` pages from the
buddy lists (``rmqueue_pcplist``, ``rmqueue_bulk``).  Pages on a pcp list are free to
the kernel, but they are not in buddyinfo and not in ``NR_FREE_PAGES``: ``rmqueue_bulk``
subtracts them when it takes them and ``__free_one_page`` adds them back on drain.
``zone.free_pages`` here follows the same rule.

A pcp page is marked as the kernel leaves it: kind FREE, no BUDDY flag (it is not
``PageBuddy``), and its migratetype at free time in the owner column (the kernel keeps
it in ``page->index``: ``set_pcppage_migratetype``).  Lists are deques of head pfns,
the head on the left: ``list_add`` is ``appendleft``, ``list_add_tail`` ``append``,
``list_first_entry`` ``[0]`` and ``list_last_entry`` ``[-1]``.

Simplified, and why: CPUs do not run concurrently (a workload names the CPU it runs
on), so no lock, no ``pcp_spin_trylock`` failure path and no IRQ-disabled fallback;
``ZONE_RECLAIM_ACTIVE`` is a flag the caller sets.  The vmstat-refresh drain of remote
NUMA nodes does not apply to one node.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from pagemig.mm.gfp import MIGRATE_ISOLATE, MIGRATE_MOVABLE, MIGRATE_PCPTYPES
from pagemig.mm.pages import PAGE_ALLOC_COSTLY_ORDER, PAGE_SHIFT

if TYPE_CHECKING:
    from pagemig.mm.pages import PageArrays


class ZoneMarks(Protocol):
    """What the per-cpu lists read of their zone (mm/zone.py's ``Zone``): its size and
    low watermark, from which ``zone_batchsize``/``zone_highsize`` size the lists."""

    @property
    def managed_pages(self) -> int: ...

    @property
    def wmark_low(self) -> int: ...


Z = TypeVar("Z", bound=ZoneMarks)
Z_contra = TypeVar("Z_contra", bound=ZoneMarks, contravariant=True)


class BuddyLists(Protocol[Z_contra]):
    """What the per-cpu lists use of the buddy allocator (mm/buddy.py's ``BuddyAllocator``).

    In the kernel both halves live in mm/page_alloc.c and call each other: rmqueue()
    tries the pcp list first and the pcp refill calls __rmqueue(); a drain calls
    __free_one_page().  A zone holds its lists (zone->per_cpu_pageset), so the zone
    and buddy modules import this one, and this one names what it needs of them as
    protocols instead of importing them back.
    """

    pages: PageArrays
    pageblock_order: int
    _pb_mt: memoryview

    def free_one_page(self, zone: Z_contra, pfn: int, order: int, migratetype: int) -> None: ...

    def rmqueue(self, zone: Z_contra, order: int, migratetype: int) -> int: ...

#: include/linux/mmzone.h
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + 1  # plus the THP list
_SZ_1M_PAGES = (1 << 20) >> PAGE_SHIFT


def order_to_pindex(migratetype: int, order: int, thp_order: int) -> int:
    """``order_to_pindex()``: the list of an order and migratetype; THP pages share one list."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        if order != thp_order:
            raise ValueError(f"order {order} has no per-cpu list (only 0..{PAGE_ALLOC_COSTLY_ORDER} "
                             f"and the THP order {thp_order})")
        return NR_LOWORDER_PCP_LISTS
    return MIGRATE_PCPTYPES * order + migratetype


def pindex_to_order(pindex: int, thp_order: int) -> int:
    """``pindex_to_order()``."""
    if pindex == NR_LOWORDER_PCP_LISTS:
        return thp_order
    return pindex // MIGRATE_PCPTYPES


def pcp_allowed_order(order: int, thp_order: int) -> bool:
    """``pcp_allowed_order()``: the orders that go through the per-cpu lists."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == thp_order


def _rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def zone_batchsize(managed_pages: int) -> int:
    """``zone_batchsize()``: about a quarter of 1/1024 of the zone, at most 1 MiB's worth,
    rounded to 2**n - 1 (a batch of 2**n - 1 pages avoids cache-colouring aliasing)."""
    batch = min(managed_pages >> 10, _SZ_1M_PAGES)
    batch //= 4  # "We effectively *= 4 below"
    batch = max(batch, 1)
    return _rounddown_pow_of_two(batch + batch // 2) - 1


def zone_highsize(low_wmark: int, managed_pages: int, batch: int, nr_cpus: int,
                  high_fraction: int) -> int:
    """``zone_highsize()``: the zone's low watermark (or managed / fraction when
    ``percpu_pagelist_high_fraction`` is set) split over the node's CPUs, at least 4 batches.
    Basing it on the low watermark keeps full pcp lists from waking kswapd early."""
    total = managed_pages // high_fraction if high_fraction else low_wmark
    high = total // max(1, nr_cpus)
    return max(high, batch << 2)


class PerCpuPages:
    """``struct per_cpu_pages`` of one zone and CPU."""

    __slots__ = ("batch", "count", "free_factor", "high", "lists")

    def __init__(self, high: int, batch: int) -> None:
        self.count = 0  # pages on the lists (an order-o page counts 2**o)
        self.high = high
        self.batch = batch
        self.free_factor = 0  # 6.1: doubles the drain batch on frees without allocations
        self.lists: list[deque[int]] = [deque() for _ in range(NR_PCP_LISTS)]


def nr_pcp_free(pcp: PerCpuPages, high: int, batch: int, free_high: bool) -> int:
    """``nr_pcp_free()``: how many pages one drain frees.  Each drain without an
    allocation between doubles the batch (``free_factor``), within [batch, high - batch]."""
    if free_high:
        return pcp.count
    if high < batch:
        return 1
    min_nr_free = batch
    max_nr_free = high - batch
    batch <<= pcp.free_factor
    if batch < max_nr_free:
        pcp.free_factor += 1
    return max(min_nr_free, min(batch, max_nr_free))


def nr_pcp_high(pcp: PerCpuPages, free_high: bool, reclaim_active: bool) -> int:
    """``nr_pcp_high()``: the fill level that triggers a drain; 0 drains at once (a
    high-order free while freeing without allocating), 4 batches while reclaim runs."""
    high = pcp.high
    if not high or free_high:
        return 0
    if not reclaim_active:
        return high
    return min(pcp.batch << 2, high)


class ZonePcp(Generic[Z]):
    """The per-cpu lists of one zone: one :class:`PerCpuPages` per CPU."""

    def __init__(self, buddy: BuddyLists[Z], zone: Z, nr_cpus: int, thp_order: int) -> None:
        if nr_cpus < 1:
            raise ValueError(f"per-cpu lists need at least one CPU, got {nr_cpus}")
        self.buddy = buddy
        self.zone = zone
        self.thp_order = thp_order
        self.reclaim_active = False  # ZONE_RECLAIM_ACTIVE
        self.cpus = [PerCpuPages(0, 1) for _ in range(nr_cpus)]

    @property
    def count(self) -> int:
        """Pages on all CPUs' lists (zoneinfo's ``pagesets`` counts, summed)."""
        return sum(p.count for p in self.cpus)

    def update(self, high_fraction: int) -> None:
        """``zone_pcp_update()`` / ``zone_set_pageset_high_and_batch()``: after the watermarks
        or ``percpu_pagelist_high_fraction`` change."""
        zone = self.zone
        batch = max(1, zone_batchsize(zone.managed_pages))
        high = zone_highsize(zone.wmark_low, zone.managed_pages, batch, len(self.cpus), high_fraction)
        for p in self.cpus:
            p.high, p.batch = high, batch

    # ------------------------------------------------------------------ free
    def free_unref_page(self, cpu: int, pfn: int, order: int) -> None:
        """``free_unref_page()`` + ``free_unref_page_commit()`` for a block whose pages are
        already marked FREE: onto the CPU's list head, then drain if the list is full.
        Pages of HIGHATOMIC and CMA blocks go on the MOVABLE list (and drain to their own
        type), those of an isolated block to the buddy lists at once, as in 6.1."""
        buddy = self.buddy
        mt = buddy._pb_mt[pfn >> buddy.pageblock_order]
        pages = buddy.pages
        pages._flags[pfn] = 0
        pages._owner[pfn] = mt  # set_pcppage_migratetype
        if mt >= MIGRATE_PCPTYPES:
            if mt == MIGRATE_ISOLATE:  # an isolated block's pages go straight to the buddy lists
                pages._owner[pfn] = 0
                buddy.free_one_page(self.zone, pfn, order, mt)
                return
            mt = MIGRATE_MOVABLE
        pcp = self.cpus[cpu]
        pindex = order_to_pindex(mt, order, self.thp_order)
        pcp.lists[pindex].appendleft(pfn)
        pcp.count += 1 << order
        free_high = bool(pcp.free_factor and order and order <= PAGE_ALLOC_COSTLY_ORDER)
        high = nr_pcp_high(pcp, free_high, self.reclaim_active)
        if pcp.count >= high:
            self.free_pcppages_bulk(pcp, nr_pcp_free(pcp, high, pcp.batch, free_high), pindex)

    def free_pcppages_bulk(self, pcp: PerCpuPages, count: int, pindex: int) -> None:
        """``free_pcppages_bulk()``: ``count`` pages back to the buddy lists, the requested
        list first, then round-robin; from each list its tail (the oldest) first."""
        count = min(pcp.count, count)
        pindex -= 1
        buddy = self.buddy
        owner = buddy.pages._owner
        zone = self.zone
        lists = pcp.lists
        while count > 0:
            while True:
                pindex += 1
                if pindex > NR_PCP_LISTS - 1:
                    pindex = 0
                if lists[pindex]:
                    break
            lst = lists[pindex]
            order = pindex_to_order(pindex, self.thp_order)
            nr = 1 << order
            while True:
                pfn = lst.pop()  # list_last_entry
                mt = owner[pfn]  # get_pcppage_migratetype
                count -= nr
                pcp.count -= nr
                owner[pfn] = 0
                buddy.free_one_page(zone, pfn, order, mt)
                if count <= 0 or not lst:
                    break

    # ------------------------------------------------------------------ allocation
    def rmqueue_pcplist(self, cpu: int, order: int, migratetype: int) -> int:
        """``rmqueue_pcplist()`` + ``__rmqueue_pcplist()``: the head of the CPU's list,
        refilled with a batch (``max(batch >> order, 2)`` blocks of a higher order) when
        empty; -1 if the buddy lists have nothing either."""
        pcp = self.cpus[cpu]
        pcp.free_factor >>= 1
        lst = pcp.lists[order_to_pindex(migratetype, order, self.thp_order)]
        if not lst:
            batch = pcp.batch
            if order:
                batch = max(batch >> order, 2)
            alloced = self.rmqueue_bulk(order, batch, lst, migratetype)
            pcp.count += alloced << order
            if not alloced:
                return -1
        pfn = lst.popleft()  # list_first_entry
        pcp.count -= 1 << order
        self.buddy.pages._owner[pfn] = 0
        return pfn

    def rmqueue_bulk(self, order: int, count: int, lst: deque[int], migratetype: int) -> int:
        """``rmqueue_bulk()``: up to ``count`` blocks from the buddy lists, each to the list's
        tail, so that the list hands them out in the order ``__rmqueue`` found them."""
        buddy = self.buddy
        owner = buddy.pages._owner
        zone = self.zone
        i = 0
        while i < count:
            pfn = buddy.rmqueue(zone, order, migratetype)
            if pfn < 0:
                break
            owner[pfn] = migratetype
            lst.append(pfn)
            i += 1
        # rmqueue_smallest already took these pages off NR_FREE_PAGES (zone.free_pages)
        return i

    # ------------------------------------------------------------------ drains
    def drain_cpu(self, cpu: int) -> None:
        """``drain_pages_zone()``: every page of one CPU's lists back to the buddy lists."""
        pcp = self.cpus[cpu]
        if pcp.count:
            self.free_pcppages_bulk(pcp, pcp.count, 0)

    def drain_all(self) -> None:
        """``drain_all_pages(zone)``: every CPU's lists of this zone."""
        for cpu in range(len(self.cpus)):
            self.drain_cpu(cpu)

    def pcp_pfns(self) -> list[tuple[int, int]]:
        """(pfn, order) of every block on every CPU's lists, for the invariant checker."""
        out: list[tuple[int, int]] = []
        for pcp in self.cpus:
            for pindex, lst in enumerate(pcp.lists):
                order = pindex_to_order(pindex, self.thp_order)
                out.extend((pfn, order) for pfn in lst)
        return out


__all__ = [
    "NR_LOWORDER_PCP_LISTS",
    "NR_PCP_LISTS",
    "PAGE_ALLOC_COSTLY_ORDER",
    "PerCpuPages",
    "ZonePcp",
    "nr_pcp_free",
    "nr_pcp_high",
    "order_to_pindex",
    "pcp_allowed_order",
    "pindex_to_order",
    "zone_batchsize",
    "zone_highsize",
]
