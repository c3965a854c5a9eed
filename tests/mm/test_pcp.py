"""Per-cpu page lists against mm/page_alloc.c (v6.1), hand-worked."""

from __future__ import annotations

import pytest

from pagemig.mm.gfp import MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, MigrateType
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.pages import FREE, PageKind
from pagemig.mm.pcp import (
    NR_LOWORDER_PCP_LISTS,
    NR_PCP_LISTS,
    PerCpuPages,
    ZonePcp,
    nr_pcp_free,
    nr_pcp_high,
    order_to_pindex,
    pcp_allowed_order,
    pindex_to_order,
    zone_batchsize,
    zone_highsize,
)
from pagemig.mm.zone import ZoneSpec


def test_pindex_layout() -> None:
    # MIGRATE_PCPTYPES lists per order 0..3, then one THP list: 13 lists
    assert NR_LOWORDER_PCP_LISTS == 12 and NR_PCP_LISTS == 13
    assert order_to_pindex(MIGRATE_UNMOVABLE, 0, 9) == 0
    assert order_to_pindex(MIGRATE_RECLAIMABLE, 0, 9) == 2
    assert order_to_pindex(MIGRATE_MOVABLE, 3, 9) == 10
    assert order_to_pindex(MIGRATE_UNMOVABLE, 9, 9) == order_to_pindex(MIGRATE_MOVABLE, 9, 9) == 12
    assert [pindex_to_order(i, 9) for i in range(13)] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [9]
    assert [o for o in range(11) if pcp_allowed_order(o, 9)] == [0, 1, 2, 3, 9]
    with pytest.raises(ValueError, match="no per-cpu list"):
        order_to_pindex(MIGRATE_MOVABLE, 4, 9)


@pytest.mark.parametrize(("managed", "batch"), [
    # min(managed >> 10, 256) / 4, then rounddown_pow_of_two(b + b/2) - 1
    (262144, 63),   # 1 GiB: 256 -> 64 -> 96 -> 64 - 1
    (4_000_000, 63),  # capped at 1 MiB of pages
    (65536, 15),    # 256 MiB: 64 -> 16 -> 24 -> 16 - 1
    (3975, 0),      # DMA: 3 -> 0 -> 1 -> 1 - 1 (zone_set_pageset_high_and_batch then takes max(1, .))
    (8192, 1),      # 8 -> 2 -> 3 -> 2 - 1
])
def test_zone_batchsize(managed: int, batch: int) -> None:
    assert zone_batchsize(managed) == batch


def test_zone_highsize() -> None:
    # default: the low watermark split over the CPUs, at least 4 batches
    assert zone_highsize(low_wmark=1280, managed_pages=262144, batch=63, nr_cpus=2, high_fraction=0) == 640
    assert zone_highsize(low_wmark=300, managed_pages=262144, batch=63, nr_cpus=2, high_fraction=0) == 252
    # percpu_pagelist_high_fraction = 8: managed / 8 split over 4 CPUs
    assert zone_highsize(low_wmark=1280, managed_pages=262144, batch=63, nr_cpus=4, high_fraction=8) == 8192


def test_nr_pcp_free_doubles_on_repeated_frees() -> None:
    pcp = PerCpuPages(high=640, batch=63)
    # batch << free_factor, clamped to [batch, high - batch = 577]; the factor grows
    # while the doubled batch is below the maximum
    got = [nr_pcp_free(pcp, 640, 63, False) for _ in range(6)]
    assert got == [63, 126, 252, 504, 577, 577]
    assert pcp.free_factor == 4
    assert nr_pcp_free(PerCpuPages(high=2, batch=3), 2, 3, False) == 1  # high < batch
    pcp.count = 77
    assert nr_pcp_free(pcp, 0, 63, True) == 77


def test_nr_pcp_high() -> None:
    pcp = PerCpuPages(high=640, batch=63)
    assert nr_pcp_high(pcp, False, False) == 640
    assert nr_pcp_high(pcp, True, False) == 0
    assert nr_pcp_high(pcp, False, True) == 252  # reclaim active: 4 batches
    assert nr_pcp_high(PerCpuPages(high=0, batch=1), False, False) == 0


def _machine(pages: int = 8192) -> tuple[Machine, ZonePcp]:
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, pages),), min_free_kbytes=1024))
    pcp = ZonePcp(m.buddy, m.zones[0], nr_cpus=2, thp_order=9)
    pcp.update(high_fraction=0)
    return m, pcp


def test_update_from_the_zone() -> None:
    m, pcp = _machine()
    # 8192 managed pages: batch 1; low watermark 320 (conftest's arithmetic) / 2 CPUs = 160
    assert m.zones[0].wmark_low == 320
    assert [(p.high, p.batch) for p in pcp.cpus] == [(160, 1), (160, 1)]


def test_alloc_refills_a_batch_and_takes_the_head() -> None:
    m, pcp = _machine()
    zone = m.zones[0]
    for p in pcp.cpus:
        p.batch, p.high = 4, 64
    free0 = zone.free_pages
    # four pages taken as __rmqueue finds them, added to the tail: handed out in that order
    expect = [m.buddy.rmqueue(zone, 0, MIGRATE_MOVABLE) for _ in range(4)]
    for pfn in reversed(expect):  # give them back (head-first) so that __rmqueue finds them again
        m.buddy.free_one_page(zone, pfn, 0, MIGRATE_MOVABLE)
    got = [pcp.rmqueue_pcplist(0, 0, MIGRATE_MOVABLE) for _ in range(4)]
    assert got == expect
    # one refill of 4: NR_FREE_PAGES fell by 4 when rmqueue_bulk took them; nothing left on the list
    assert zone.free_pages == free0 - 4 and pcp.cpus[0].count == 0
    # order 2: batch >> 2 = 1, but at least 2 blocks
    pfn = pcp.rmqueue_pcplist(1, 2, MIGRATE_MOVABLE)
    assert pfn >= 0 and pcp.cpus[1].count == 4 and len(pcp.cpus[1].lists[order_to_pindex(1, 2, 9)]) == 1


def test_free_goes_to_the_head_and_a_full_list_drains_oldest_first() -> None:
    m, pcp = _machine()
    zone = m.zones[0]
    cpu = pcp.cpus[0]
    cpu.batch, cpu.high = 2, 4
    pfns = [m.alloc_pages(0, 0, 0, PageKind.KERNEL) for _ in range(5)]  # GFP 0: unmovable
    free0 = zone.free_pages
    order_freed = [pfns[0], pfns[2], pfns[4]]
    for pfn in order_freed:
        m.pages.kind[pfn] = FREE
        pcp.free_unref_page(0, pfn, 0)
    # the list of their pageblock's type (an unmovable request stole the fresh MOVABLE block)
    mt = m.buddy.get_pageblock_migratetype(pfns[0])
    assert mt == MIGRATE_UNMOVABLE
    lst = cpu.lists[order_to_pindex(mt, 0, 9)]
    assert list(lst) == order_freed[::-1] and cpu.count == 3
    assert zone.free_pages == free0  # pcp pages are not in NR_FREE_PAGES
    m.pages.kind[pfns[1]] = FREE
    pcp.free_unref_page(0, pfns[1], 0)  # count 4 >= high 4: nr_pcp_free = 2, the two oldest go
    assert list(lst) == [pfns[1], pfns[4]]
    assert cpu.count == 2 and cpu.free_factor == 0  # 2 << 0 = 2 is not below high - batch = 2
    assert zone.free_pages == free0 + 2
    assert m.pages.flags[pfns[0]] & 1 and m.pages.flags[pfns[2]] & 1  # back in the buddy lists
    # an allocation halves the factor and takes the head: the page freed last
    assert pcp.rmqueue_pcplist(0, 0, MIGRATE_UNMOVABLE) == pfns[1]


def test_free_factor_grows_without_allocations() -> None:
    m, pcp = _machine()
    cpu = pcp.cpus[1]
    cpu.batch, cpu.high = 2, 16
    pfns = [m.alloc_pages(0, 0, 0, PageKind.KERNEL) for _ in range(40)]
    drained = []
    for pfn in pfns:
        m.pages.kind[pfn] = FREE
        before = cpu.count + 1
        pcp.free_unref_page(1, pfn, 0)
        if cpu.count < before:
            drained.append(before - cpu.count)
    # high 16, batch 2: 2, 4, 8, then clamped to high - batch = 14
    assert drained[:4] == [2, 4, 8, 14]
    pcp.rmqueue_pcplist(1, 0, MIGRATE_MOVABLE)
    assert cpu.free_factor == 1  # 3 >> 1


def test_high_order_free_while_freeing_drains_everything() -> None:
    m, pcp = _machine()
    cpu = pcp.cpus[0]
    cpu.batch, cpu.high = 2, 64
    cpu.free_factor = 1
    pfn = m.alloc_pages(0, 1, 0, PageKind.KERNEL)
    m.pages.kind[pfn:pfn + 2] = FREE
    pcp.free_unref_page(0, pfn, 1)  # free_high: high 0, nr_pcp_free = count
    assert cpu.count == 0


def test_highatomic_pages_go_on_the_movable_list_and_drain_to_their_type() -> None:
    m, pcp = _machine()
    pfn = m.alloc_pages(0, 0, 0, PageKind.KERNEL)
    m.buddy.set_pageblock_migratetype(pfn, MigrateType.HIGHATOMIC)
    m.pages.kind[pfn] = FREE
    pcp.free_unref_page(0, pfn, 0)
    assert list(pcp.cpus[0].lists[order_to_pindex(MIGRATE_MOVABLE, 0, 9)]) == [pfn]
    pcp.drain_all()
    # the pcp migratetype is the block's at free time: the page (merged or not) is on HIGHATOMIC's list
    assert any(p <= pfn < p + (1 << o) for o in range(11) for p in m.zones[0].free_area[o][MigrateType.HIGHATOMIC])


def test_isolated_block_pages_bypass_the_lists() -> None:
    m, pcp = _machine()
    pfn = m.alloc_pages(0, 0, 0, PageKind.KERNEL)
    m.buddy.set_pageblock_migratetype(pfn, MigrateType.ISOLATE)
    m.pages.kind[pfn] = FREE
    free0 = m.zones[0].free_pages
    pcp.free_unref_page(0, pfn, 0)
    assert pcp.count == 0 and m.zones[0].free_pages == free0 + 1


def test_drain_all_empties_every_cpu() -> None:
    m, pcp = _machine()
    zone = m.zones[0]
    free0 = zone.free_pages
    for cpu in (0, 1):
        for _ in range(3):
            assert pcp.rmqueue_pcplist(cpu, 0, MIGRATE_MOVABLE) >= 0
    taken = sum(p.count for p in pcp.cpus) + 6
    assert zone.free_pages == free0 - taken
    pcp.drain_all()
    assert pcp.count == 0 and zone.free_pages == free0 - 6


class _Pcp:
    """A machine with per-cpu lists and one owner that records every page it holds."""

    def __init__(self, cpus: int = 2, pages: int = 8192) -> None:
        from pagemig.mm.owner import SimpleOwner

        self.m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, pages),), min_free_kbytes=1024, cpus=cpus))
        self.owner = SimpleOwner(self.m, "test")

    def alloc(self, gfp: int, order: int = 0) -> int:
        pfn = self.m.alloc_pages(gfp, order, self.owner.owner_id, PageKind.KERNEL)
        if pfn >= 0:
            for p in range(pfn, pfn + (1 << order)):
                self.owner.pages.add(p, p + 1)
        return pfn

    def free(self, pfn: int, order: int = 0) -> None:
        for p in range(pfn, pfn + (1 << order)):
            self.owner.pages.remove(p)
        self.m.free_pages(pfn, order)


def test_machine_with_cpus_frees_to_and_allocates_from_the_lists() -> None:
    from pagemig.mm.invariants import assert_consistent

    t = _Pcp()
    m = t.m
    zone = m.zones[0]
    assert zone.pcp is not None and [(p.high, p.batch) for p in zone.pcp.cpus] == [(160, 1), (160, 1)]
    movable = 0x8  # __GFP_MOVABLE
    pfns = [t.alloc(movable) for _ in range(10)]
    free0 = zone.free_pages
    m.current_cpu = 1
    for pfn in pfns[:5]:
        t.free(pfn)
    # below high: all five sit on CPU 1's list, outside NR_FREE_PAGES and buddyinfo
    assert zone.pcp.cpus[1].count == 5 and m.nr_pcp_pages == 5 and zone.free_pages == free0
    assert_consistent(m)
    # the next allocation on CPU 1 takes the page freed last; on CPU 0 it does not
    assert t.alloc(movable) == pfns[4]
    m.current_cpu = 0
    assert t.alloc(movable) not in pfns
    m.drain_all_pages()
    assert m.nr_pcp_pages == 0 and zone.free_pages == free0 + 4 - 1
    assert_consistent(m)
    with pytest.raises(ValueError, match=r"machine\.cpus"):
        m.current_cpu = 2


def test_machine_with_cpus_keeps_every_page_under_a_random_workload() -> None:
    import random

    from pagemig.mm.invariants import assert_consistent

    t = _Pcp(cpus=4, pages=16384)
    m = t.m
    rng = random.Random(1)
    held: list[tuple[int, int]] = []
    for step in range(4000):
        m.current_cpu = rng.randrange(4)
        if held and rng.random() < 0.45:
            pfn, order = held.pop(rng.randrange(len(held)))
            t.free(pfn, order)
        else:
            order = rng.choice((0, 0, 0, 1, 2, 3, 4, 9))
            gfp = rng.choice((0, 0x8, 0x10))  # unmovable, movable, reclaimable
            pfn = t.alloc(gfp, order)
            if pfn >= 0:
                held.append((pfn, order))
        if step % 500 == 0:
            assert_consistent(m)
    assert_consistent(m)
    total = m.zones[0].managed_pages
    used = sum(1 << o for _, o in held)
    assert m.zones[0].free_pages + m.nr_pcp_pages + used == total
    m.drain_all_pages()
    assert m.nr_pcp_pages == 0
    assert_consistent(m)
