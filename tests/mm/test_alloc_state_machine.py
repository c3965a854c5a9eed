"""Random allocations and frees of every order and GFP kind, single and bulk, with the
checker after every step.

The truth is independent of the allocator's bookkeeping: the checker rebuilds page
coverage from the free lists and compares it with the page columns and with what
the owner wrote; on top of that the machine below keeps its own count of the pages
it holds, and every allocation must honour its request (alignment, zone allowed by
the GFP mask, the pages it says).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pagemig.mm.gfp import (
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    GFP_TRANSHUGE_LIGHT,
    GFP_USER,
    Gfp,
    gfp_zone,
)
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, SlowPath
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import MAX_ORDER, PageFlag, PageKind
from pagemig.mm.zone import ZoneSpec

GFPS = [GFP_KERNEL, GFP_USER, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | Gfp.RECLAIMABLE, GFP_ATOMIC,
        GFP_NOWAIT, GFP_DMA, GFP_DMA32, GFP_DMA32 | Gfp.MOVABLE, GFP_KERNEL | Gfp.NORETRY | Gfp.NOWARN,
        GFP_TRANSHUGE_LIGHT]
KINDS = [PageKind.ANON, PageKind.FILE, PageKind.SLAB_UNRECLAIMABLE, PageKind.SLAB_RECLAIMABLE,
         PageKind.PAGETABLE, PageKind.KERNEL, PageKind.DRIVER]

CONFIGS = {
    # zone boundaries that cut pageblocks, a hole, and small pageblocks: lots of stealing
    "three zones": MachineConfig(
        zones=(ZoneSpec("DMA", 0, 1000), ZoneSpec("DMA32", 1000, 4000), ZoneSpec("Normal", 5000, 3192)),
        reserved=((0, 1), (2048, 300)), pageblock_order=7),
    # a 32-bit device: one zone, pageblock order 10
    "arm": MachineConfig(zones=(ZoneSpec("Normal", 0, 6144),), reserved=((0, 1024),), pageblock_order=10),
    # pageblock order 9 and zone edges that are pageblock-aligned, as on a real x86-64 guest
    "x86": MachineConfig(zones=(ZoneSpec("DMA", 0, 512), ZoneSpec("DMA32", 512, 3584), ZoneSpec("Normal", 4096, 4096)),
                         pageblock_order=9, min_free_kbytes=256),
}


class AllocatorMachine(RuleBasedStateMachine):
    """Holds allocations as (pfn, order) with the order-0 ones also in a list for bulk frees."""

    def __init__(self) -> None:
        super().__init__()
        self.m: Machine
        self.owner: SimpleOwner
        self.held: list[tuple[int, int, bool]] = []  # (pfn, order, compound)
        self.held_pages = 0
        self.next_token = 1

    @initialize(config=st.sampled_from(sorted(CONFIGS)))
    def boot(self, config: str) -> None:
        self.m = Machine(CONFIGS[config])
        self.m.slowpath = SlowPath()
        self.owner = SimpleOwner(self.m, "random")

    def _token(self) -> int:
        self.next_token += 1
        return (self.next_token * 0x9E3779B97F4A7C15) & (2**64 - 1)

    def _check_placement(self, gfp: int, pfn: int, order: int) -> None:
        assert pfn % (1 << order) == 0, f"order-{order} block at {pfn:#x} is not aligned"
        zone = self.m.zone_of(pfn)
        allowed = gfp_zone(gfp)
        lowest = self.m.zones[0]
        assert zone.zone_type <= allowed or zone is lowest, f"{zone.name} is above what {gfp:#x} allows"
        assert pfn + (1 << order) <= zone.end_pfn

    @rule(g=st.integers(0, len(GFPS) - 1), order=st.one_of(st.just(0), st.integers(0, MAX_ORDER)),
          comp=st.booleans(), k=st.integers(0, len(KINDS) - 1))
    def alloc(self, g: int, order: int, comp: bool, k: int) -> None:
        gfp = GFPS[g] | (Gfp.COMP if comp and order else 0)
        compound = bool(gfp & Gfp.COMP) and order > 0
        pfn = self.m.alloc_pages(gfp, order, self.owner.owner_id, KINDS[k])
        if pfn < 0:
            return
        self._check_placement(gfp, pfn, order)
        n = 1 << order
        assert (self.m.pages.kind[pfn:pfn + n] == KINDS[k]).all()
        if compound:
            self.owner.pages.add(pfn, self._token())
        else:
            self.owner.pages.add_many(np.arange(pfn, pfn + n, dtype=np.int64),
                                      np.array([self._token() for _ in range(n)], dtype=np.uint64))
        self.held.append((pfn, order, compound))
        self.held_pages += n

    @rule(g=st.integers(0, len(GFPS) - 1), n=st.one_of(st.integers(0, 40), st.integers(0, 10000)),
          k=st.integers(0, len(KINDS) - 1))
    def alloc_bulk(self, g: int, n: int, k: int) -> None:
        gfp = GFPS[g]
        got = self.m.alloc_pages_bulk(gfp, n, self.owner.owner_id, KINDS[k])
        assert len(got) <= n
        assert len(np.unique(got)) == len(got)
        for pfn in got[:: max(1, len(got) // 16)].tolist():
            self._check_placement(gfp, pfn, 0)
        self.owner.pages.add_many(got, np.array([self._token() for _ in range(len(got))], dtype=np.uint64))
        self.held.extend((pfn, 0, False) for pfn in got.tolist())
        self.held_pages += len(got)

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 10**6))
    def free(self, i: int) -> None:
        pfn, order, compound = self.held.pop(i % len(self.held))
        n = 1 << order
        if compound:
            self.owner.pages.remove(pfn)
        else:
            self.owner.pages.remove_many(np.arange(pfn, pfn + n, dtype=np.int64))
        self.m.free_pages(pfn, order)
        self.held_pages -= n

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def free_bulk(self, data: st.DataObject) -> None:
        singles = [i for i, (_, order, _) in enumerate(self.held) if order == 0]
        if not singles:
            return
        chosen = data.draw(st.lists(st.sampled_from(singles), unique=True, max_size=len(singles)))
        pfns = np.array([self.held[i][0] for i in chosen], dtype=np.int64)
        for i in sorted(chosen, reverse=True):
            self.held.pop(i)
        self.owner.pages.remove_many(pfns)
        self.m.free_pages_bulk(pfns)
        self.held_pages -= len(pfns)

    @precondition(lambda self: self.held)
    @rule()
    def free_all_order0_bulk(self) -> None:
        """Long runs of freed pages, across zone edges too (DMA and DMA32 touch at pfn 1000)."""
        keep = [h for h in self.held if h[1] != 0]
        pfns = np.array([p for p, o, _ in self.held if o == 0], dtype=np.int64)
        self.owner.pages.remove_many(pfns)
        self.m.free_pages_bulk(pfns)
        self.held_pages -= len(pfns)
        self.held = keep

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 10**6))
    def write(self, i: int) -> None:
        pfn, _, _ = self.held[i % len(self.held)]
        self.owner.pages.write(pfn, self._token())

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "m"):
            return
        assert_consistent(self.m)
        m = self.m
        managed = sum(z.managed_pages for z in m.zones)
        assert sum(z.free_pages for z in m.zones) == managed - self.held_pages
        assert sum(z.pgalloc for z in m.zones) - sum(z.pgfree for z in m.zones) == self.held_pages
        assert m.read_vmstat()["nr_free_pages"] == managed - self.held_pages
        heads = [p for p, o, c in self.held if c]
        if heads:
            assert (m.pages.flags[heads] & PageFlag.HEAD).all()

    def teardown(self) -> None:
        """Say what the run reached, so that --hypothesis-show-statistics shows the rules were
        exercised where it matters (fallback, pageblock conversion, exhaustion)."""
        if not hasattr(self, "m"):
            return
        buddy = self.m.buddy
        event("fallback" if buddy.extfrag_events else "no fallback")
        event("pageblock converted" if buddy.pageblock_steals else "no conversion")
        event("an allocation failed" if self.m.vmstat["pgalloc_fail"] else "no failure")


AllocatorMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestAllocator = AllocatorMachine.TestCase
