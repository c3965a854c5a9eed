"""The buddy allocator against the kernel's rules, on states built by hand.

Truth: mm/page_alloc.c (v5.x-v6.1): ``__rmqueue_smallest``/``expand``,
``__rmqueue_fallback`` (largest block first; a movable request that may not steal
takes the smallest), ``can_steal_fallback``, ``steal_suitable_fallback`` (all free
pages of the pageblock move; the block changes type when free + alike pages reach
half a pageblock; a block of pageblock order or more converts all its pageblocks),
``__free_one_page`` (merge with the buddy while it is free and of the same order,
within the zone, across pageblocks only between mergeable types).  Every expected
pfn, list and type below is worked out by hand in the test's docstring.

Also: the bulk forms against their definition (n single calls), and bad calls.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemig.mm.gfp import (
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    Gfp,
    MigrateType,
)
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, SlowPath
from pagemig.mm.owner import Owner
from pagemig.mm.pages import MAX_ORDER, NR_ORDERS, PageFlag, PageKind
from pagemig.mm.zone import ZoneSpec

UNMOVABLE = MigrateType.UNMOVABLE
MOVABLE = MigrateType.MOVABLE
RECLAIMABLE = MigrateType.RECLAIMABLE
HIGHATOMIC = MigrateType.HIGHATOMIC
K = PageKind.KERNEL
ANON = PageKind.ANON


def build(types: list[int], used: list[tuple[int, int, int]], free: list[tuple[int, int]],
          zones: tuple[ZoneSpec, ...] = (ZoneSpec("Normal", 0, 2048),), pbo: int = 9) -> Machine:
    """A machine in a given state: pageblock types, (start, end, kind) ranges of in-use pages
    (the rest is KERNEL), and free blocks (pfn, order), each listed on its pageblock's type in
    the order given (the last one given is the head of its list)."""
    nr = max(z.end_pfn for z in zones)
    m = Machine(MachineConfig(zones=zones, pageblock_order=pbo, min_free_kbytes=0))
    kind = np.full(nr, K, dtype=np.uint8)
    for s, e, k in used:
        kind[s:e] = k
    for pfn, order in free:
        kind[pfn:pfn + (1 << order)] = PageKind.FREE
    m.load_state(kind, np.array([p for p, _ in free], dtype=np.int64),
                 np.array([o for _, o in free], dtype=np.int64), np.array(types, dtype=np.uint8))
    assert_consistent(m)
    return m


def lists(m: Machine, mt: int, zone: int = 0) -> dict[int, list[int]]:
    """The free lists of one type: order -> heads, head of the list first."""
    fa = m.zones[zone].free_area
    return {o: list(reversed(fa[o][mt])) for o in range(NR_ORDERS) if fa[o][mt]}


def pb_types(m: Machine) -> list[int]:
    return [int(t) for t in m.buddy.pageblock_mt]


def take(m: Machine, order: int, mt: int) -> int:
    """``__rmqueue`` in the (only) zone, and the checker on what it left (the page is just
    off the lists: mark it in use, as alloc_pages would, before checking)."""
    pfn = m.buddy.rmqueue(m.zones[0], order, mt)
    if pfn >= 0:
        m.pages.kind[pfn:pfn + (1 << order)] = K
        m.pages.owner[pfn:pfn + (1 << order)] = 1  # the imported owner
    assert_consistent(m)
    return pfn


# ------------------------------------------------------------------------------------------------ split
def test_expand_puts_the_upper_halves_on_the_requesters_list() -> None:
    """An order-0 request from an order-4 block at 32 (32-47): it splits into 40@3, 36@2, 34@1,
    33@0 (the upper half of each split), all on the requester's list; 32 is handed out."""
    m = build([MOVABLE] * 4, [], [(32, 4)])
    assert take(m, 0, MOVABLE) == 32
    assert lists(m, MOVABLE) == {3: [40], 2: [36], 1: [34], 0: [33]}
    assert m.zones[0].free_pages == 15


def test_smallest_block_that_fits_goes_first() -> None:
    """Own type holds order 3 at 8 and order 6 at 64: an order-2 request splits the order-3 one."""
    m = build([MOVABLE] * 4, [], [(64, 6), (8, 3)])
    assert take(m, 2, MOVABLE) == 8
    assert lists(m, MOVABLE) == {6: [64], 2: [12]}


def test_most_recently_freed_block_goes_first() -> None:
    """Two order-0 blocks on one list: the head (listed last) is taken: list_add + list_first_entry."""
    m = build([MOVABLE] * 4, [], [(5, 0), (9, 0)])
    assert take(m, 0, MOVABLE) == 9


def test_own_type_before_any_fallback() -> None:
    """An UNMOVABLE request with one UNMOVABLE order-0 page and a free MOVABLE order-10 block
    takes its own page: no fallback, no steal."""
    m = build([UNMOVABLE, MOVABLE, MOVABLE, MOVABLE], [], [(1024, 10), (3, 0)])
    assert take(m, 0, UNMOVABLE) == 3
    assert m.buddy.extfrag_events == 0
    assert pb_types(m) == [UNMOVABLE, MOVABLE, MOVABLE, MOVABLE]


# ------------------------------------------------------------------------------------------------ stealing
def test_unmovable_steals_a_movable_pageblock_at_exactly_half() -> None:
    """Pageblock 1 (512-1023) is MOVABLE: 256 ANON pages (512-767) and two free order-7 blocks
    (768, 896).  No UNMOVABLE page is free anywhere.  An UNMOVABLE order-0 request falls back to
    MOVABLE at order 7 (largest first); UNMOVABLE may always steal: move_freepages_block moves
    both blocks (256 free pages) and counts 256 movable; alike = 512 - (256 + 256) = 0;
    256 + 0 >= 256 (half a pageblock): the block becomes UNMOVABLE.  Then __rmqueue_smallest
    takes the head of the UNMOVABLE order-7 list (896, moved last) and splits it."""
    m = build([UNMOVABLE, MOVABLE, MOVABLE, MOVABLE], [(512, 768, ANON), (1024, 2048, ANON)],
              [(768, 7), (896, 7)])
    assert take(m, 0, UNMOVABLE) == 896
    assert pb_types(m) == [UNMOVABLE, UNMOVABLE, MOVABLE, MOVABLE]
    assert lists(m, UNMOVABLE) == {7: [768], 6: [960], 5: [928], 4: [912], 3: [904], 2: [900], 1: [898],
                                   0: [897]}
    assert lists(m, MOVABLE) == {}
    assert (m.buddy.extfrag_events, m.buddy.pageblock_steals) == (1, 1)


def test_unmovable_moves_the_free_pages_but_keeps_the_type_below_half() -> None:
    """As above with 257 ANON pages (512-768) and 255 free pages (769@0, 770@1, 772@2, 776@3,
    784@4, 800@5, 832@6, 896@7).  Fallback at order 7 (896); all eight blocks move to UNMOVABLE
    lists; alike = 512 - (255 + 257) = 0; 255 < 256: the pageblock stays MOVABLE.  The retry
    takes the smallest UNMOVABLE block now listed: 769."""
    free = [(769, 0), (770, 1), (772, 2), (776, 3), (784, 4), (800, 5), (832, 6), (896, 7)]
    m = build([UNMOVABLE, MOVABLE, MOVABLE, MOVABLE], [(512, 769, ANON), (1024, 2048, ANON)], free)
    assert take(m, 0, UNMOVABLE) == 769
    assert pb_types(m) == [UNMOVABLE, MOVABLE, MOVABLE, MOVABLE]
    assert lists(m, UNMOVABLE) == {o: [p] for p, o in free[1:]}
    assert lists(m, MOVABLE) == {}
    assert m.buddy.pageblock_steals == 0


@pytest.mark.parametrize(("kernel_pages", "converts"), [(200, True), (0, False)])
def test_unmovable_counts_unmovable_pages_of_a_movable_block_as_alike(kernel_pages: int, converts: bool) -> None:
    """Pageblock 1: `kernel_pages` KERNEL pages from 512, ANON up to 800, free 800@5, 832@6, 896@7
    (224 pages).  alike = 512 - (224 free + ANON) = kernel_pages: with 200, 224 + 200 = 424 >= 256
    and the block converts; with 0, 224 < 256 and it does not."""
    used = [(512, 512 + kernel_pages, K), (512 + kernel_pages, 800, ANON), (1024, 2048, ANON)]
    m = build([UNMOVABLE, MOVABLE, MOVABLE, MOVABLE], used, [(800, 5), (832, 6), (896, 7)])
    assert take(m, 0, UNMOVABLE) == 800  # order 7 stolen first, then the smallest UNMOVABLE block
    assert pb_types(m)[1] == (UNMOVABLE if converts else MOVABLE)


def test_unmovable_into_reclaimable_is_conservative() -> None:
    """UNMOVABLE falling back to a RECLAIMABLE block counts no page as alike: 288 reclaimable slab
    pages and 224 free: 224 + 0 < 256, no conversion (the same block typed MOVABLE would have
    converted, its 288 non-movable pages counting as alike)."""
    m = build([UNMOVABLE, RECLAIMABLE, MOVABLE, MOVABLE], [(512, 800, PageKind.SLAB_RECLAIMABLE)],
              [(800, 5), (832, 6), (896, 7)])
    assert take(m, 0, UNMOVABLE) == 800
    assert pb_types(m) == [UNMOVABLE, RECLAIMABLE, MOVABLE, MOVABLE]
    assert lists(m, UNMOVABLE) == {6: [832], 7: [896], 4: [816], 3: [808], 2: [804], 1: [802], 0: [801]}


def test_movable_below_half_pageblock_order_does_not_steal_the_block() -> None:
    """All pageblocks UNMOVABLE; free only 64@3 and 128@2 (in pageblock 0).  A MOVABLE order-0
    request finds order 3 first (largest), but order 3 < pageblock_order / 2 = 4 and a movable
    request may not steal: it takes the smallest fallback block instead (128@2), moves that one
    block alone to the MOVABLE list, leaves the pageblock UNMOVABLE and 64@3 where it was."""
    m = build([UNMOVABLE] * 4, [], [(64, 3), (128, 2)])
    assert take(m, 0, MOVABLE) == 128
    assert pb_types(m) == [UNMOVABLE] * 4
    assert lists(m, UNMOVABLE) == {3: [64]}
    assert lists(m, MOVABLE) == {1: [130], 0: [129]}


@pytest.mark.parametrize(("anon_end", "converts"), [(400, True), (300, False)])
def test_movable_at_half_pageblock_order_steals_the_block(anon_end: int, converts: bool) -> None:
    """Pageblock 0 UNMOVABLE with ANON pages 100..anon_end and free 5@0 and 64@4.  Order 4 =
    pageblock_order / 2: a movable request may steal.  Both free blocks move to MOVABLE lists (in
    address order, so 64 is the head of order 4); alike = the movable pages: 300 -> 17 + 300 = 317
    >= 256 converts; 200 -> 217 does not.  The retry takes the smallest MOVABLE block: 5."""
    m = build([UNMOVABLE] * 4, [(100, anon_end, ANON)], [(5, 0), (64, 4)])
    assert take(m, 0, MOVABLE) == 5
    assert pb_types(m)[0] == (MOVABLE if converts else UNMOVABLE)
    assert lists(m, MOVABLE) == {4: [64]}
    assert lists(m, UNMOVABLE) == {}


def test_isolated_lru_pages_do_not_count_as_movable() -> None:
    """move_freepages_block counts PageLRU || __PageMovable: an LRU page isolated by compaction is
    off the LRU.  With 300 ANON pages of which 100 are isolated, the steal of the previous test
    sees 17 + 200 = 217 < 256 and does not convert."""
    m = build([UNMOVABLE] * 4, [(100, 400, ANON)], [(5, 0), (64, 4)])
    m.pages.flags[100:200] |= np.uint8(PageFlag.ISOLATED)
    assert m.buddy.rmqueue(m.zones[0], 0, MOVABLE) == 5
    assert pb_types(m)[0] == UNMOVABLE


def test_driver_pages_marked_movable_count_as_movable() -> None:
    """__PageMovable pages count like LRU ones: 300 DRIVER pages marked MOVABLE convert the block."""
    m = build([UNMOVABLE] * 4, [(100, 400, PageKind.DRIVER)], [(5, 0), (64, 4)])
    m.pages.flags[100:400] |= np.uint8(PageFlag.MOVABLE)
    assert m.buddy.rmqueue(m.zones[0], 0, MOVABLE) == 5
    assert pb_types(m)[0] == MOVABLE


@pytest.mark.parametrize("order", [9, 10])
def test_a_block_of_pageblock_order_or_more_converts_all_its_pageblocks(order: int) -> None:
    """All MOVABLE; the only free block is 0 of order 9 (one pageblock) or 10 (two).  An
    UNMOVABLE request steals it whole: change_pageblock_range retypes every pageblock it covers,
    and the block is split on the UNMOVABLE lists (0 handed out)."""
    m = build([MOVABLE] * 4, [], [(0, order)])
    assert take(m, 0, UNMOVABLE) == 0
    n_blocks = 1 << (order - 9)
    assert pb_types(m) == [UNMOVABLE] * n_blocks + [MOVABLE] * (4 - n_blocks)
    assert lists(m, UNMOVABLE) == {o: [1 << o] for o in range(order)}
    assert m.buddy.pageblock_steals == 1


def test_fallback_takes_the_largest_block_first() -> None:
    """UNMOVABLE request; MOVABLE free blocks 0@2 (pageblock 0) and 512@6 (pageblock 1), the rest
    ANON.  The order-6 block is taken (largest first: "approximates the pageblock with the most
    free pages"), pageblock 1's free pages move; 0@2 stays on the MOVABLE list."""
    m = build([MOVABLE, MOVABLE, UNMOVABLE, UNMOVABLE],
              [(4, 512, ANON), (576, 1024, ANON)], [(0, 2), (512, 6)])
    assert take(m, 0, UNMOVABLE) == 512
    assert lists(m, MOVABLE) == {2: [0]}
    assert pb_types(m)[:2] == [MOVABLE, MOVABLE]  # 64 free + 0 alike < 256


def test_fallback_order_beats_fallback_type_and_type_order_breaks_ties() -> None:
    """UNMOVABLE falls back to RECLAIMABLE before MOVABLE, but only within one order: a MOVABLE
    order-6 block beats a RECLAIMABLE order-5 one; at equal order RECLAIMABLE wins."""
    m = build([MOVABLE, RECLAIMABLE, UNMOVABLE, UNMOVABLE], [], [(0, 6), (512, 5)])
    assert take(m, 0, UNMOVABLE) == 0
    m = build([MOVABLE, RECLAIMABLE, UNMOVABLE, UNMOVABLE], [], [(0, 5), (512, 5)])
    assert take(m, 0, UNMOVABLE) == 512


def test_reclaimable_and_movable_fallback_order() -> None:
    """RECLAIMABLE -> UNMOVABLE, MOVABLE; MOVABLE -> RECLAIMABLE, UNMOVABLE (equal orders)."""
    m = build([MOVABLE, UNMOVABLE, UNMOVABLE, UNMOVABLE], [], [(0, 5), (512, 5)])
    assert take(m, 0, RECLAIMABLE) == 512
    m = build([UNMOVABLE, RECLAIMABLE, UNMOVABLE, UNMOVABLE], [], [(0, 5), (512, 5)])
    assert take(m, 0, MOVABLE) == 512
    m = build([UNMOVABLE, RECLAIMABLE, UNMOVABLE, UNMOVABLE], [], [(0, 5)])
    assert take(m, 0, MOVABLE) == 0  # RECLAIMABLE has none: UNMOVABLE


def test_fallback_near_the_zone_end_moves_nothing_else() -> None:
    """A pageblock cut by the zone's end is not moved (move_freepages_block returns 0): the
    stolen block alone changes list.  Zone 0..1800, pageblock 3 = 1536..2047 runs past 1800;
    free blocks 1536@4 and 1600@3 in it, MOVABLE; an UNMOVABLE request steals 1536@4 only."""
    m = build([UNMOVABLE, UNMOVABLE, UNMOVABLE, MOVABLE], [], [(1600, 3), (1536, 4)],
              zones=(ZoneSpec("Normal", 0, 1800),))
    assert take(m, 0, UNMOVABLE) == 1536
    assert lists(m, MOVABLE) == {3: [1600]}
    assert pb_types(m)[3] == MOVABLE


def test_no_fallback_anywhere_fails() -> None:
    m = build([UNMOVABLE] * 4, [], [])
    assert take(m, 0, MOVABLE) == -1


# ------------------------------------------------------------------------------------------------ merge
def free_and_check(m: Machine, pfn: int, order: int) -> None:
    m.free_pages(pfn, order)
    assert_consistent(m)


def test_merge_climbs_while_buddies_are_free() -> None:
    """Free 1@0, 2@1, 4@2; freeing page 0 merges 0+1 -> 0@1, +2 -> 0@2, +4 -> 0@3; page 8 is in use."""
    m = build([MOVABLE] * 4, [], [(1, 0), (2, 1), (4, 2)])
    free_and_check(m, 0, 0)
    assert lists(m, MOVABLE) == {3: [0]}
    assert m.zones[0].free_pages == 8


def test_merge_from_the_upper_buddy() -> None:
    m = build([MOVABLE] * 4, [], [(0, 0)])
    free_and_check(m, 1, 0)
    assert lists(m, MOVABLE) == {1: [0]}


def test_no_merge_with_a_free_buddy_of_another_order() -> None:
    """Page 2 is a free order-0 block (3 is in use): freeing the order-1 block at 0 does not merge
    with it, because the buddy of [0, 2) at order 1 is [2, 4), not the order-0 block at 2."""
    m = build([MOVABLE] * 4, [], [(2, 0)])
    free_and_check(m, 0, 1)
    assert lists(m, MOVABLE) == {1: [0], 0: [2]}


def test_no_merge_across_zones() -> None:
    """DMA 0..1000 and DMA32 1000..2048: 1000@3 is free in DMA32; freeing 992@3 in DMA finds its
    buddy 1000 free and of the same order, but in another zone: no merge."""
    m = build([MOVABLE] * 4, [], [(1000, 3)], zones=(ZoneSpec("DMA", 0, 1000), ZoneSpec("DMA32", 1000, 1048)))
    free_and_check(m, 992, 3)
    assert lists(m, MOVABLE, zone=0) == {3: [992]}
    assert lists(m, MOVABLE, zone=1) == {3: [1000]}


def test_merge_across_pageblocks_of_mergeable_types() -> None:
    """Pageblock 0 MOVABLE and free (0@9); pageblock 1 UNMOVABLE, freed as one order-9 block:
    both types are mergeable (< MIGRATE_PCPTYPES), so they merge into 0@10, listed on the type of
    the block being freed (UNMOVABLE).  Neither pageblock changes type."""
    m = build([MOVABLE, UNMOVABLE, MOVABLE, MOVABLE], [], [(0, 9)])
    free_and_check(m, 512, 9)
    assert lists(m, UNMOVABLE) == {10: [0]}
    assert pb_types(m) == [MOVABLE, UNMOVABLE, MOVABLE, MOVABLE]


@pytest.mark.parametrize("other", [HIGHATOMIC, MigrateType.ISOLATE])
def test_no_merge_across_pageblocks_with_an_unmergeable_type(other: int) -> None:
    m = build([MOVABLE, other, MOVABLE, MOVABLE], [], [(0, 9)])
    free_and_check(m, 512, 9)
    assert lists(m, MOVABLE) == {9: [0]}
    assert lists(m, other) == {9: [512]}


def test_merge_stops_at_max_order() -> None:
    """4096 pages, all free: four order-10 blocks, never an order-11 one."""
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 4096),), min_free_kbytes=0))
    assert sorted(h for d in m.zones[0].free_area[MAX_ORDER] for h in d) == [0, 1024, 2048, 3072]
    assert m.zones[0].nr_free_by_order() == [0] * MAX_ORDER + [4]


def test_free_block_range_lowest_first() -> None:
    """With lowest_first, a freed range leaves its lowest block at the head of its list, as the
    kernel's boot-time free with FPI_TO_TAIL does; the blocks are the same either way."""
    for lowest_first, head in ((False, 1024), (True, 0)):
        m = build([MOVABLE] * 4, [], [])
        m.pages.kind[:] = PageKind.FREE
        m.buddy.free_block_range(m.zones[0], 0, 2048, lowest_first=lowest_first)
        assert lists(m, MOVABLE) == {10: [head, 1024 - head]}
        assert_consistent(m)


# ------------------------------------------------------------------------------------------------ alloc_pages
def test_compound_pages(one_zone_machine) -> None:
    m = one_zone_machine(2048, min_free_kbytes=0)  # the page allocator alone
    pfn = m.alloc_pages(GFP_KERNEL | Gfp.COMP, 3, 0, K)
    assert pfn % 8 == 0
    assert m.pages.flags[pfn] == PageFlag.HEAD
    assert list(m.pages.flags[pfn + 1:pfn + 8]) == [PageFlag.TAIL] * 7
    assert m.pages.private[pfn + 1] == 3  # the compound order, in page[1] as the kernel keeps it
    for bad in ((pfn, 2), (pfn, 0), (pfn + 1, 0), (pfn + 4, 2)):
        with pytest.raises(ValueError, match=r"compound|tail"):
            m.free_pages(*bad)
    m.free_pages(pfn, 3)
    assert m.zones[0].free_pages == 2048 and m.zones[0].nr_free_by_order()[MAX_ORDER] == 2


def test_non_compound_high_order_pages_are_plain(one_zone_machine) -> None:
    m = one_zone_machine(2048, min_free_kbytes=0)  # the page allocator alone
    pfn = m.alloc_pages(GFP_KERNEL, 2, 7, PageKind.PAGETABLE)
    assert list(m.pages.kind[pfn:pfn + 4]) == [PageKind.PAGETABLE] * 4
    assert list(m.pages.owner[pfn:pfn + 4]) == [7] * 4
    assert not m.pages.flags[pfn:pfn + 4].any() and not m.pages.private[pfn:pfn + 4].any()


@pytest.mark.parametrize("call", [
    lambda m: m.alloc_pages(GFP_KERNEL, MAX_ORDER + 1, 0),
    lambda m: m.alloc_pages(GFP_KERNEL, -1, 0),
    lambda m: m.free_pages(-1),
    lambda m: m.free_pages(2048),
    lambda m: m.free_pages(5),  # free already
    lambda m: m.alloc_pages_bulk(GFP_KERNEL, -1, 0),
])
def test_bad_calls_raise(call: object, one_zone_machine) -> None:
    m = one_zone_machine(2048, min_free_kbytes=0)  # the page allocator alone
    with pytest.raises(ValueError):
        call(m)  # type: ignore[operator]


def test_bad_frees_change_nothing(one_zone_machine) -> None:
    m = one_zone_machine(2048, min_free_kbytes=0)  # the page allocator alone
    a = m.alloc_pages(GFP_KERNEL, 2, 0)
    b = m.alloc_pages(GFP_KERNEL, 0, 0)
    before = snapshot(m)
    for bad in ((a + 1, 1), (a, 3), (a + 2, 2), (a, MAX_ORDER + 1)):  # misaligned, too big, wrong
        with pytest.raises(ValueError):
            m.free_pages(*bad)
    with pytest.raises(ValueError, match="twice"):
        m.free_pages_bulk([b, b])
    with pytest.raises(ValueError, match="double free"):
        m.free_pages_bulk([b, b + 1])  # b + 1 is free
    with pytest.raises(ValueError, match="outside"):
        m.free_pages_bulk([b, 1 << 20])
    with pytest.raises(ValueError, match="compound"):
        c = m.alloc_pages(GFP_KERNEL | Gfp.COMP, 1, 0)
        before = snapshot(m)
        m.free_pages_bulk([b, c])
    assert snapshot(m) == before
    m.free_pages(a, 2)
    with pytest.raises(ValueError, match="double free"):
        m.free_pages(a, 2)


def test_reserved_pages_cannot_be_freed() -> None:
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 2048),), reserved=((0, 16),)))
    with pytest.raises(ValueError, match="RESERVED"):
        m.free_pages(3)


# ------------------------------------------------------------------------------------------------ bulk = n singles
def snapshot(m: Machine) -> tuple[object, ...]:
    """Everything the allocator keeps, lists in their order."""
    p = m.pages
    return (p.kind.tobytes(), p.flags.tobytes(), p.owner.tobytes(), p.private.tobytes(), p.token.tobytes(),
            m.buddy.pageblock_mt.tobytes(),
            tuple(tuple(tuple(d) for d in per_order) for z in m.zones for per_order in z.free_area),
            tuple((z.free_pages, z.pgalloc, z.pgfree) for z in m.zones), m.vmstat.get("pgalloc_fail", 0))


class Unchecked(Owner):
    """Holds pages without a record of their content (the checker still checks the lists)."""

    name = "unchecked"


GFPS = [GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | Gfp.RECLAIMABLE, Gfp.DMA32 | Gfp.MOVABLE]
op = st.tuples(st.sampled_from(["alloc", "free"]), st.integers(0, len(GFPS) - 1), st.integers(0, 5),
               st.integers(0, 10**6))


def replay(ops: list[tuple[str, int, int, int]]) -> tuple[Machine, list[tuple[int, int]]]:
    """A machine with some history: three small zones, allocations of random orders and types
    and random frees.  Deterministic in ops, so two replays are two identical machines."""
    m = Machine(MachineConfig(zones=(ZoneSpec("DMA", 0, 512), ZoneSpec("DMA32", 512, 1536),
                                     ZoneSpec("Normal", 2048, 2048)), reserved=((1536, 512),),
                              min_free_kbytes=64, pageblock_order=7))
    m.slowpath = SlowPath()
    m.register_owner(Unchecked())
    m.register_owner(Unchecked())
    held: list[tuple[int, int]] = []
    for what, g, order, r in ops:
        if what == "alloc":
            pfn = m.alloc_pages(GFPS[g], order, 1, K)
            if pfn >= 0:
                held.append((pfn, order))
        elif held:
            pfn, order = held.pop(r % len(held))
            m.free_pages(pfn, order)
    return m, held


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=80), g=st.integers(0, len(GFPS) - 1), n=st.integers(0, 4200))
def test_alloc_pages_bulk_is_n_single_allocations(ops: list[tuple[str, int, int, int]], g: int, n: int) -> None:
    a, _ = replay(ops)
    b, _ = replay(ops)
    got = a.alloc_pages_bulk(GFPS[g], n, 2, PageKind.ANON)
    singles = []
    for _ in range(n):
        pfn = b.alloc_pages(GFPS[g], 0, 2, PageKind.ANON)
        if pfn < 0:
            break
        singles.append(pfn)
    assert got.tolist() == singles
    assert snapshot(a) == snapshot(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=80), n=st.integers(0, 3000), data=st.data())
def test_free_pages_bulk_is_single_frees_in_ascending_order(ops: list[tuple[str, int, int, int]], n: int,
                                                           data: st.DataObject) -> None:
    a, _ = replay(ops)
    b, _ = replay(ops)
    pa = a.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, n, 2, PageKind.ANON)
    pb = b.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, n, 2, PageKind.ANON)
    assert pa.tolist() == pb.tolist()
    chosen = data.draw(st.lists(st.sampled_from(pa.tolist()), unique=True) if len(pa) else st.just([]))
    a.free_pages_bulk(np.array(chosen[::-1], dtype=np.int64))
    for pfn in sorted(chosen):
        b.free_pages(pfn)
    assert snapshot(a) == snapshot(b)
    assert_consistent(a)


def test_bulk_on_a_fresh_machine_takes_whole_blocks(one_zone_machine) -> None:
    """2048 free pages, low watermark max(0, 2048 * 10 // 10000) = 2: a bulk request for 3000 gets
    2046 pages from the fast path, then single calls take the last 2 through the slow path."""
    m = one_zone_machine(2048, min_free_kbytes=0)  # the page allocator alone
    got = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 3000, 0, ANON)
    assert len(got) == 2048 and len(set(got.tolist())) == 2048
    assert (m.pages.kind == ANON).all()
    m.free_pages_bulk(got)
    assert m.zones[0].nr_free_by_order()[MAX_ORDER] == 2


def test_bulk_leaves_the_rest_of_a_split_block_on_the_requesters_list() -> None:
    """A free block on a list other than its pageblock's type (what a steal without conversion
    leaves): 0@4 on the MOVABLE list inside an UNMOVABLE pageblock.  Three single MOVABLE
    allocations take 0, 1, 2 and leave 3@0, 4@2, 8@3 on the MOVABLE lists (expand() lists the
    halves on the requester's type); the bulk form must leave exactly that."""
    machines = []
    for _ in range(2):
        m = build([UNMOVABLE] * 4, [], [(0, 4)])
        m.buddy.del_free_block(m.zones[0], 0)
        m.buddy.add_free_block(m.zones[0], 0, 4, MOVABLE)
        m.slowpath = SlowPath()
        machines.append(m)
    a, b = machines
    assert a.alloc_pages_bulk(Gfp.MOVABLE, 3, 1, K).tolist() == [0, 1, 2]
    assert [b.alloc_pages(Gfp.MOVABLE, 0, 1, K) for _ in range(3)] == [0, 1, 2]
    assert lists(a, MOVABLE) == {0: [3], 2: [4], 3: [8]}
    assert snapshot(a) == snapshot(b)


@pytest.mark.parametrize(("order", "kind", "owner"), [(0, 300, 1), (0, K, 70000), (0, K, -1), (3, 256, 1),
                                                      (3, K, 1 << 16), (0, "anon", 1)])
def test_a_kind_or_owner_that_does_not_fit_loses_no_page(order: int, kind: object, owner: object,
                                                         one_zone_machine) -> None:
    """The page columns hold kind in a byte and owner in 16 bits: a call with values outside
    them raises ValueError, and the block it had taken goes back where it came from."""
    m = one_zone_machine(2048, min_free_kbytes=0)  # the page allocator alone
    m.alloc_pages(GFP_KERNEL, 0, m.register_owner(Unchecked()))  # split the fresh blocks a little first
    before = snapshot(m)
    with pytest.raises(ValueError, match="do not fit"):
        m.alloc_pages(GFP_KERNEL, order, owner, kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="do not fit"):
        m.alloc_pages_bulk(GFP_KERNEL, 1 << order, owner, kind)  # type: ignore[arg-type]
    after = snapshot(m)
    assert after[:7] == before[:7]  # columns, pageblocks and free lists as they were
    assert_consistent(m)


def test_bulk_free_of_a_run_across_a_zone_boundary() -> None:
    """DMA 0..1000 and DMA32 1000..2048 (the boundary cuts a pageblock and an aligned 16-page
    block); everything in use.  Freeing 992..1007 in bulk must give what single frees give:
    992@3 in DMA and 1000@3 in DMA32, never a block across the boundary."""
    zones = (ZoneSpec("DMA", 0, 1000), ZoneSpec("DMA32", 1000, 1048))
    a = build([MOVABLE] * 16, [], [], zones=zones, pbo=7)
    b = build([MOVABLE] * 16, [], [], zones=zones, pbo=7)
    a.free_pages_bulk(np.arange(992, 1008))
    for pfn in range(992, 1008):
        b.free_pages(pfn)
    assert lists(a, MOVABLE, zone=0) == {3: [992]} and lists(a, MOVABLE, zone=1) == {3: [1000]}
    assert snapshot(a) == snapshot(b)
    assert_consistent(a)
