"""Compaction on hand-built states and on the "frag" state.

Truth: the rules of mm/compaction.c (v6.1) as kernel-mm.md section 2 states them,
worked through by hand per state in the comments (which blocks each scanner may use,
when a run finishes, the deferral and retry arithmetic), the kernel's published
outcome for full compaction of the frag state (about 98% of free memory in
pageblock-order blocks), and the checker after every run.
"""

from __future__ import annotations

import numpy as np
import pytest

from pagemig import hookimpl
from pagemig.mm import compaction as C
from pagemig.mm import vmstat
from pagemig.mm.gfp import (
    ALLOC_WMARK_MIN,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOIO,
    MigrateType,
)
from pagemig.mm.invariants import assert_consistent, check
from pagemig.mm.lru import LruOwner
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.movable import MigrateMode
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.mm.swap import register_swap_device
from pagemig.mm.zone import ZoneSpec

ANON = int(PageKind.ANON)
FREE = int(PageKind.FREE)
PB = 512


def loaded(kind: np.ndarray, block_types: np.ndarray | None = None, min_free_kbytes: int = 1024,
           pageblock_order: int = 9, **sysctl: int) -> Machine:
    """A one-zone machine in exactly the state ``kind`` describes: every FREE pfn a free
    order-0 block (the caller gives free runs that cannot merge, or wants them unmerged)."""
    n = len(kind)
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, n),), min_free_kbytes=min_free_kbytes,
                              pageblock_order=pageblock_order, sysctl=dict(sysctl)))
    nblocks = n >> pageblock_order
    if block_types is None:
        block_types = np.full(nblocks, MigrateType.MOVABLE, dtype=np.uint8)
    free = np.flatnonzero(kind == FREE)
    m.load_state(kind.astype(np.uint8), free, np.zeros(len(free), dtype=np.int64), block_types)
    return m


def loaded_blocks(kind: np.ndarray, block_order: int, block_types: np.ndarray | None = None) -> Machine:
    """As :func:`loaded`, with the free pfns in aligned runs of ``2^block_order`` listed as
    blocks of that order."""
    n = len(kind)
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, n),), min_free_kbytes=1024))
    heads = np.flatnonzero(kind == FREE)
    heads = heads[heads % (1 << block_order) == 0]
    if block_types is None:
        block_types = np.full(n // PB, MigrateType.MOVABLE, dtype=np.uint8)
    m.load_state(kind.astype(np.uint8), heads, np.full(len(heads), block_order), block_types)
    return m


def first_missing_order(m: Machine) -> int:
    """The lowest order above every free block of the machine's first zone."""
    counts = m.zones[0].nr_free_by_order()
    return max(o for o, n in enumerate(counts) if n) + 1


# ------------------------------------------------------------------ the frag state
def test_full_compaction_of_the_frag_state(frag_state) -> None:
    m, owner = frag_state(1.0)
    pbo = m.pageblock_order
    before = vmstat.machine_free_fraction_at_or_above(m, pbo)
    free_before = sum(z.free_pages for z in m.zones)
    assert before < 0.05, f"the frag state should have almost no free pageblocks ({before:.3f})"
    report = C.compact_memory(m)
    after = vmstat.machine_free_fraction_at_or_above(m, pbo)
    assert after >= 0.95, f"only {after:.3f} of free memory in order >= {pbo} blocks"
    assert sum(z.free_pages for z in m.zones) == free_before  # compaction moves, never frees
    assert_consistent(m)  # every pfn accounted for, every anon page's content intact
    assert [r.zone for r in report.zones] == ["DMA", "DMA32"]
    assert all(r.result == "COMPACT_COMPLETE" for r in report.zones)
    for r in report.zones:
        assert list(r.free_after) == m.zone_by_name(r.zone).nr_free_by_order()
    migrated = sum(r.migrated for r in report.zones)
    # most of the 1-in-4 kept pages of the lower three quarters had to move
    assert 0.6 * len(owner.pages) < migrated < len(owner.pages)
    assert report.counters["pgmigrate_success"] == migrated
    # each migrated page was isolated twice: as a source and as its target
    assert report.counters["compact_isolated"] >= 2 * migrated
    assert report.counters["compact_stall"] == 0  # not a direct compaction
    assert m.vmstat["compact_migrate_scanned"] == sum(r.migrate_scanned for r in report.zones)
    # the scanners met: next runs start again from the two ends
    for zone in m.zones:
        assert zone.compact_cached_migrate_pfn == [zone.start_pfn, zone.start_pfn]
        assert zone.compact_cached_free_pfn == ((zone.end_pfn - 1) & ~(PB - 1))


def test_full_compaction_moves_nothing_when_nothing_is_movable(one_zone_machine) -> None:
    m = one_zone_machine(8192)
    from pagemig.mm.owner import SimpleOwner

    o = SimpleOwner(m, "kernel")
    pfns = m.alloc_pages_bulk(GFP_KERNEL, 6000, o.owner_id, PageKind.KERNEL)
    o.pages.add_many(pfns, pfns.astype(np.uint64))
    drop = pfns[::2]
    o.pages.remove_many(drop)
    m.free_pages_bulk(drop)
    before = m.zones[0].nr_free_by_order()
    report = C.compact_memory(m)
    assert report.zones[0].migrated == 0 and m.zones[0].nr_free_by_order() == before
    assert_consistent(m)


# ------------------------------------------------------------------ which blocks async scans
def unmovable_and_movable_blocks() -> Machine:
    """16 pageblocks, all about half full of anon pages.  Blocks 0-7 are UNMOVABLE (anon
    pages that fell back into them), 8-15 MOVABLE.  In 0-8 the even pfns hold pages; in
    9-15 a random half does (a periodic pattern could hide every free page from the
    async free scanner, which looks at every 32nd pfn only)."""
    kind = np.full(16 * PB, FREE, dtype=np.uint8)
    kind[0:9 * PB:2] = ANON
    rng = np.random.default_rng(7)
    kind[9 * PB:][rng.random(7 * PB) < 0.5] = ANON
    types = np.full(16, MigrateType.MOVABLE, dtype=np.uint8)
    types[:8] = MigrateType.UNMOVABLE
    return loaded(kind, types)


def test_async_direct_compaction_leaves_unmovable_pageblocks_alone() -> None:
    m = unmovable_and_movable_blocks()
    pages_before = m.pages.kind.copy()
    res, cc = C.compact_zone_order(m, m.zones[0], 3, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_ASYNC,
                                   ALLOC_WMARK_MIN, 3)
    moved = np.flatnonzero((pages_before == ANON) & (m.pages.kind != ANON))
    assert res == C.COMPACT_SUCCESS and cc.nr_migrated > 0
    # nothing moved out of blocks 0-7; the sources are in block 8, the first MOVABLE block
    assert moved.min() >= 8 * PB and moved.max() < 9 * PB
    assert_consistent(m)


def test_sync_full_scans_unmovable_pageblocks() -> None:
    m = unmovable_and_movable_blocks()
    pages_before = m.pages.kind.copy()
    res, cc = C.compact_zone_order(m, m.zones[0], 3, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_SYNC_FULL,
                                   ALLOC_WMARK_MIN, 3)
    moved = np.flatnonzero((pages_before == ANON) & (m.pages.kind != ANON))
    assert cc.whole_zone and cc.ignore_skip_hint and cc.ignore_block_suitable
    assert res == C.COMPACT_SUCCESS
    # block 0 is emptied: all its 256 pages moved (a run finishes the pageblock it is in),
    # after which its free order-9 block may be stolen by a movable request
    assert moved.min() == 0 and np.count_nonzero(moved < PB) == 256
    assert m.zones[0].nr_free(9) >= 1
    assert_consistent(m)


def test_async_direct_compaction_for_an_unmovable_request_takes_only_unmovable_blocks() -> None:
    m = unmovable_and_movable_blocks()
    pages_before = m.pages.kind.copy()
    _, cc = C.compact_zone_order(m, m.zones[0], 3, GFP_KERNEL, C.COMPACT_PRIO_ASYNC, ALLOC_WMARK_MIN, 2)
    moved = np.flatnonzero((pages_before == ANON) & (m.pages.kind != ANON))
    assert cc.migratetype == MigrateType.UNMOVABLE
    assert len(moved) and moved.max() < 8 * PB
    assert_consistent(m)


def test_async_failure_in_an_order_aligned_chunk_puts_the_chunk_back() -> None:
    # block 0: anon pages at even pfns, but pfn 2 (in the first order-3 chunk 0-7) is a
    # kernel page: async direct compaction isolates pfn 0, fails at pfn 2, puts pfn 0 back
    # and takes the whole next chunk (pfns 8, 10, 12, 14) instead.
    kind = np.full(16 * PB, FREE, dtype=np.uint8)
    kind[0:PB:2] = ANON
    kind[2] = PageKind.KERNEL
    kind[9 * PB + 1::2] = ANON
    m = loaded(kind)
    cc = C.CompactControl(zone=m.zones[0], order=3, mode=MigrateMode.ASYNC, gfp=int(GFP_HIGHUSER_MOVABLE),
                          direct_compaction=True, alloc_flags=ALLOC_WMARK_MIN, highest_zoneidx=3)
    cc.migrate_pfn, cc.free_pfn = 0, 15 * PB
    C.isolate_migratepages_block(m, cc, 0, PB)
    assert cc.migratepages.tolist() == [8, 10, 12, 14]
    assert cc.migrate_pfn == 16  # stopped at the first pfn of the chunk after the good one
    assert not m.pages.flags[0] & int(PageFlag.ISOLATED)  # put back
    # visited 0, 1 (free, counts one), 2 (fails: 3..7 skipped), then 8..15
    assert cc.total_migrate_scanned == 3 + 8
    C.putback_movable_pages(m, cc.migratepages)


def test_sync_scanner_batches_of_32_then_rescans_the_rest_of_the_block() -> None:
    kind = np.full(16 * PB, FREE, dtype=np.uint8)
    kind[0:2 * PB:2] = ANON
    kind[9 * PB + 1::2] = ANON
    m = loaded(kind)
    batches: list[int] = []

    class Obs:
        @hookimpl
        def pagemig_compaction_migrated(self, machine, cc, result) -> None:
            batches.append(result.nr_succeeded)

    from pagemig.plugins import get_plugin_host

    host = get_plugin_host(autoload=False, extra_plugins=[("obs", Obs())])
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=MigrateMode.SYNC, ignore_skip_hint=True,
                          whole_zone=True)
    C.compact_zone(m, cc, host.hook)
    # blocks 0 and 1 hold 256 pages each.  A batch is COMPACT_CLUSTER_MAX pages, but a
    # batch that starts in the block the previous one migrated from (cc->rescan) takes
    # the rest of the block at once.  compact_zone's last_migrated_pfn starts at 0,
    # which is in the first block of a zone starting at pfn 0: its first batch is a rescan.
    assert batches[:3] == [256, 32, 224]
    assert_consistent(m)


# ------------------------------------------------------------------ suitability
def test_costly_order_skipped_under_extfrag_threshold() -> None:
    # every 16 pfns: 8 free (one order-3 block) then 8 in use: 512 order-3 blocks, 4096 free
    kind = np.full(8192, ANON, dtype=np.uint8)
    kind[(np.arange(8192) % 16) < 8] = FREE
    m = loaded_blocks(kind, 3)
    zone = m.zones[0]
    # order 4: fragindex = 1000 - (1000 + 4096*1000/16) / 512 = 1000 - 256000/512... :
    # (1000 + 256000) / 512 = 501 -> 499 <= 500: lack of memory, not fragmentation
    assert vmstat.fragmentation_index(zone, 4) == 499
    assert C.compaction_suitable(m, zone, 4, ALLOC_WMARK_MIN, 3) == C.COMPACT_SKIPPED
    res, _ = C.compact_zone_order(m, zone, 4, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_SYNC_LIGHT, ALLOC_WMARK_MIN, 3)
    assert res == C.COMPACT_SKIPPED
    m.set_sysctl("extfrag_threshold", 400)  # 499 > 400: now it is fragmentation
    assert C.compaction_suitable(m, zone, 4, ALLOC_WMARK_MIN, 3) == C.COMPACT_CONTINUE
    # order 3 is already free: success without compaction
    assert C.compaction_suitable(m, zone, 3, ALLOC_WMARK_MIN, 3) == C.COMPACT_SUCCESS


def test_non_costly_order_ignores_the_fragmentation_index() -> None:
    # order-2 free blocks only: for order 3, fragindex = 1000 - (1000 + 4096*1000/8)/1024
    # = 1000 - 513000/1024 = 1000 - 500 = 500, at the threshold, but order 3 is not
    # costly: compact anyway
    kind = np.full(8192, ANON, dtype=np.uint8)
    kind[(np.arange(8192) % 8) < 4] = FREE
    m = loaded_blocks(kind, 2)
    zone = m.zones[0]
    assert vmstat.fragmentation_index(zone, 3) == 500
    assert C.compaction_suitable(m, zone, 3, ALLOC_WMARK_MIN, 3) == C.COMPACT_CONTINUE


def test_too_little_free_memory_is_skipped() -> None:
    # 300 free pages: under min (256) + compact_gap(3) = 16 for order 3?  300 > 272: continue;
    # for order 5 (costly) the low mark (320) + 64 = 384 applies: skipped
    kind = np.full(8192, ANON, dtype=np.uint8)
    kind[np.arange(300) * 2] = FREE
    m = loaded(kind)
    zone = m.zones[0]
    assert (zone.wmark_min, zone.wmark_low) == (256, 320)
    assert C.compaction_suitable(m, zone, 3, ALLOC_WMARK_MIN, 3) == C.COMPACT_CONTINUE
    assert C.compaction_suitable(m, zone, 5, ALLOC_WMARK_MIN, 3) == C.COMPACT_SKIPPED
    assert C.compaction_suitable(m, zone, -1, ALLOC_WMARK_MIN, 3) == C.COMPACT_CONTINUE


@pytest.mark.parametrize(("kind", "reclaimable_owner", "swap", "expected"), [
    (PageKind.FILE, True, None, True),  # page cache of a reclaimable owner: reclaim could help
    (PageKind.FILE, False, None, False),  # page cache nobody can reclaim (a driver's, an import's)
    (PageKind.ANON, True, None, False),  # anon without swap
    (PageKind.ANON, True, 0, False),  # anon with a swap device that has no room
    (PageKind.ANON, True, 10_000, True),  # anon with room to swap
])
def test_zonelist_suitable_counts_only_what_reclaim_could_free(one_zone_machine, fake_swap, kind,
                                                               reclaimable_owner, swap, expected) -> None:
    """``compaction_zonelist_suitable()`` with vmscan's ``zone_reclaimable_pages()``: file LRU
    pages, plus anon ones while ``get_nr_swap_pages() > 0``.  4096 pages filled down to the
    min watermark (256 free): order 3 fails at min, and 256 < min + compact_gap(3) = 272, so
    only a reclaimable third of the 3840 held pages (1280 > 16) can make it suitable."""
    m = one_zone_machine(4096)
    if reclaimable_owner:
        LruOwner(m, "lru").alloc(4096, kind, gfp=GFP_KERNEL)
    else:
        owner = SimpleOwner(m, "cache")
        pfns = m.alloc_pages_bulk(GFP_KERNEL, 4096, owner.owner_id, kind)
        owner.pages.add_many(pfns, pfns.astype(np.uint64) + np.uint64(1))
    if swap is not None:
        register_swap_device(m, fake_swap(capacity=swap))
    zone = m.zones[0]
    assert zone.free_pages == zone.wmark_min == 256
    ac = m.buddy.alloc_context(GFP_KERNEL)
    assert C.compaction_suitable(m, zone, 3, ALLOC_WMARK_MIN) == C.COMPACT_SKIPPED
    assert C.compaction_zonelist_suitable(m, ac, 3, ALLOC_WMARK_MIN) is expected
    assert_consistent(m)


# ------------------------------------------------------------------ deferral
def test_deferral_arithmetic(one_zone_machine) -> None:
    zone = one_zone_machine(4096).zones[0]
    assert (zone.compact_defer_shift, zone.compact_considered, zone.compact_order_failed) == (0, 0, 0)
    assert not C.compaction_deferred(zone, 4)  # limit 1 << 0: the first attempt goes
    C.defer_compaction(zone, 4)  # shift 1: skip 1 of every 2
    assert (zone.compact_defer_shift, zone.compact_considered) == (1, 0)
    assert [C.compaction_deferred(zone, 4) for _ in range(3)] == [True, False, False]
    for _ in range(10):
        C.defer_compaction(zone, 4)
    assert zone.compact_defer_shift == C.COMPACT_MAX_DEFER_SHIFT == 6
    decisions = [C.compaction_deferred(zone, 4) for _ in range(64)]
    assert decisions == [True] * 63 + [False]  # 63 skipped, the 64th considered goes
    assert C.compaction_restarting(zone, 4)  # max shift and considered 64: skip bits get flushed
    C.compaction_defer_reset(zone, 4, alloc_success=True)
    assert (zone.compact_defer_shift, zone.compact_considered, zone.compact_order_failed) == (0, 0, 5)
    C.defer_compaction(zone, 2)  # a failure at order 2 lowers the failed order
    assert zone.compact_order_failed == 2
    C.compaction_defer_reset(zone, 7, alloc_success=False)  # expected success: shift kept
    assert (zone.compact_defer_shift, zone.compact_order_failed) == (1, 8)
    assert not C.compaction_deferred(zone, 3)  # below the failed order: never deferred
    assert zone.compact_considered == 0


def test_try_to_compact_pages_defers_after_a_sync_failure() -> None:
    # nothing movable, plenty free in order-0 blocks: compaction cannot help an order-3 request
    kind = np.full(8192, PageKind.KERNEL, dtype=np.uint8)
    kind[1::2] = FREE
    m = loaded(kind)
    zone = m.zones[0]
    ac = m.buddy.alloc_context(GFP_KERNEL)
    r = C.try_to_compact_pages(m, GFP_KERNEL, 3, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_ASYNC)
    assert r in (C.COMPACT_COMPLETE, C.COMPACT_PARTIAL_SKIPPED) and zone.compact_defer_shift == 0  # async: no defer
    r = C.try_to_compact_pages(m, GFP_KERNEL, 3, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_SYNC_LIGHT)
    assert zone.compact_defer_shift == 1
    r = C.try_to_compact_pages(m, GFP_KERNEL, 3, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_SYNC_LIGHT)
    assert r == C.COMPACT_DEFERRED  # skipped this time (1 of 2)
    r = C.try_to_compact_pages(m, GFP_KERNEL, 3, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_SYNC_FULL)
    assert r != C.COMPACT_DEFERRED  # the highest priority ignores deferral
    assert C.try_to_compact_pages(m, GFP_NOIO, 3, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_SYNC_FULL) == C.COMPACT_SKIPPED
    assert_consistent(m)


# ------------------------------------------------------------------ direct compaction
def test_direct_compaction_counts_stall_and_success(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(16384)
    fragmenter(m)
    order = first_missing_order(m)
    assert order <= 9
    ac = m.buddy.alloc_context(GFP_HIGHUSER_MOVABLE)
    pfn, zone, result = C.alloc_pages_direct_compact(m, order, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_SYNC_LIGHT)
    assert pfn >= 0 and zone is m.zones[0] and result == C.COMPACT_SUCCESS
    assert (m.vmstat["compact_stall"], m.vmstat["compact_success"], m.vmstat["compact_fail"]) == (1, 1, 0)
    assert zone.compact_order_failed == order + 1  # compaction_defer_reset(zone, order, true)
    assert getattr(m, "stall_seconds", 0.0) > 0  # direct compaction's time is the allocation's
    m.buddy.free_one_page(zone, pfn, order, m.buddy.get_pageblock_migratetype(pfn))
    assert_consistent(m)


def test_direct_compaction_failure_counts_fail() -> None:
    kind = np.full(8192, PageKind.KERNEL, dtype=np.uint8)
    kind[1::2] = FREE
    m = loaded(kind)
    ac = m.buddy.alloc_context(GFP_KERNEL)
    pfn, _, result = C.alloc_pages_direct_compact(m, 3, ALLOC_WMARK_MIN, ac, C.COMPACT_PRIO_SYNC_LIGHT)
    assert pfn == -1 and result in (C.COMPACT_COMPLETE, C.COMPACT_PARTIAL_SKIPPED)
    assert (m.vmstat["compact_stall"], m.vmstat["compact_fail"], m.vmstat["compact_success"]) == (1, 1, 0)
    # a skipped compaction is not a stall
    pfn, _, result = C.alloc_pages_direct_compact(m, 3, ALLOC_WMARK_MIN, m.buddy.alloc_context(GFP_NOIO),
                                                  C.COMPACT_PRIO_SYNC_LIGHT)
    assert result == C.COMPACT_SKIPPED and m.vmstat["compact_stall"] == 1


# ------------------------------------------------------------------ skip bits
def skip_state() -> Machine:
    """Block 0: kernel pages only; blocks 1-7: anon at even pfns; 8-15: anon at odd pfns."""
    kind = np.full(16 * PB, FREE, dtype=np.uint8)
    kind[0:PB] = PageKind.KERNEL
    kind[PB:8 * PB:2] = ANON
    kind[8 * PB + 1::2] = ANON
    return loaded(kind)


def test_a_block_yielding_nothing_is_marked_skip() -> None:
    m = skip_state()
    cc = C.CompactControl(zone=m.zones[0], order=-1, mode=MigrateMode.SYNC_LIGHT, whole_zone=True)
    C.compact_zone(m, cc)
    skip = m.buddy.pageblock_skip
    assert skip[0] == 1  # scanned to its end without isolating anything
    # block 1's first page is an LRU page at the block start: test_and_set_skip() claims the block
    assert skip[1] == 1
    assert_consistent(m)


def test_skip_flush_clears_blocks_that_can_serve_and_restarts_the_scanners(monkeypatch) -> None:
    m = skip_state()
    zone = m.zones[0]
    skip = m.buddy.pageblock_skip
    skip[:] = 1
    zone.compact_blockskip_flush = True
    C.reset_isolation_suitable(m)
    # __reset_isolation_suitable walks blocks 0..7 from below and 15..8 from above,
    # sampling every 8th page: blocks 1-7 show LRU pages (sources), 8-15 free pages
    # (targets).  Block 0 shows neither and keeps its bit.  The scanners restart at the
    # outermost blocks found: the migration scanner at block 1, the free one at the top.
    assert skip.tolist() == [1] + [0] * 15
    assert zone.compact_cached_migrate_pfn == [PB, PB] and zone.compact_cached_free_pfn == 16 * PB - 1
    assert not zone.compact_blockskip_flush
    visited: list[int] = []
    real = C.isolate_migratepages_block

    def spy(machine, cc, low, end):
        visited.append(low // PB)
        return real(machine, cc, low, end)

    monkeypatch.setattr(C, "isolate_migratepages_block", spy)
    # a run from the cached positions honours the skip bit: block 0 is not looked at
    cc = C.CompactControl(zone=zone, order=-1, mode=MigrateMode.SYNC_LIGHT)
    C.compact_zone(m, cc)
    assert cc.whole_zone  # it started at the restart point the flush recorded
    assert visited and 0 not in visited
    # compact_memory ignores skip hints: it looks at block 0
    visited.clear()
    C.compact_memory(m)
    assert 0 in visited
    assert (m.pages.kind[0:PB] == PageKind.KERNEL).all()
    assert_consistent(m)


def test_cached_positions_carry_over_between_runs_and_reset_when_scanners_meet(one_zone_machine,
                                                                               fragmenter) -> None:
    m = one_zone_machine(16384)
    fragmenter(m)
    zone = m.zones[0]
    order = first_missing_order(m)
    res, _ = C.compact_zone_order(m, zone, order, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_SYNC_LIGHT,
                                  ALLOC_WMARK_MIN, 3)
    assert res == C.COMPACT_SUCCESS
    # stopped early: the migration scanner restarts past where it started (the free
    # scanner's restart point only moves down as far as targets were left unused)
    assert zone.compact_cached_migrate_pfn[1] > zone.start_pfn
    assert zone.compact_cached_free_pfn <= (zone.end_pfn - 1) & ~(PB - 1)
    # the page is there now: the next request of that order needs no compaction
    res, cc2 = C.compact_zone_order(m, zone, order, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_SYNC_LIGHT,
                                    ALLOC_WMARK_MIN, 3)
    assert res == C.COMPACT_SUCCESS and cc2.total_migrate_scanned == 0 and cc2.batches == 0
    # whole-zone run to the end: the scanners meet and the positions go back to the ends
    C.compact_memory(m)
    assert zone.compact_cached_migrate_pfn == [0, 0] and zone.compact_cached_free_pfn == 16384 - PB
    assert_consistent(m)


# ------------------------------------------------------------------ kcompactd
def test_kcompactd_runs_the_requested_order_when_woken(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(16384, compaction_proactiveness=0)
    fragmenter(m)
    order = first_missing_order(m)
    assert not C.wakeup_kcompactd(m, 0, 3)  # order 0: nothing to do
    assert C.wakeup_kcompactd(m, order, 3)
    run = C.kcompactd_run(m, 0.1)
    assert run is not None and run.kind == "work" and run.order == order
    assert m.vmstat["compact_daemon_wake"] == 1
    assert m.vmstat["compact_daemon_migrate_scanned"] > 0
    assert m.vmstat["compact_daemon_migrate_scanned"] == sum(z["migrate_scanned"] for z in run.zones)
    assert m.vmstat["compact_stall"] == 0  # not an allocation's stall
    assert m.zones[0].nr_free_by_order()[order:] != [0] * (11 - order)
    assert C.compaction_state(m).kcompactd.max_order == 0
    assert C.kcompactd_run(m, 0.2) is None  # nothing more to do, proactiveness 0
    assert_consistent(m)


def test_proactive_compaction_every_500ms_down_to_the_low_mark(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(16384)  # compaction_proactiveness = 20: low 80, high 90
    fragmenter(m)
    assert vmstat.fragmentation_score_node(m) > 90
    assert C.kcompactd_run(m, 0.25) is None  # asleep until its first 500 ms timeout
    run = C.kcompactd_run(m, 0.5)
    assert run is not None and run.kind == "proactive" and not run.deferred
    assert run.score_before > 90 and run.score_after <= 80
    assert vmstat.fragmentation_score_zone(m.zones[0]) <= 80
    st = C.compaction_state(m).kcompactd
    assert st.next_wakeup == pytest.approx(1.0)
    assert C.kcompactd_run(m, 1.0) is None  # below the high mark now: nothing to do
    assert_consistent(m)


def test_proactive_compaction_backs_off_32s_when_the_score_does_not_drop(one_zone_machine) -> None:
    m = one_zone_machine(8192)
    from pagemig.mm.owner import SimpleOwner

    o = SimpleOwner(m, "kernel")
    pfns = m.alloc_pages_bulk(GFP_KERNEL, 8192, o.owner_id, PageKind.KERNEL)  # all above the low mark
    o.pages.add_many(pfns, pfns.astype(np.uint64))
    drop = pfns[1::2]
    o.pages.remove_many(drop)
    m.free_pages_bulk(drop)
    assert vmstat.fragmentation_score_node(m) > 90
    run = C.kcompactd_run(m, 0.5)
    assert run is not None and run.deferred and run.score_after >= run.score_before
    assert C.compaction_state(m).kcompactd.next_wakeup == pytest.approx(0.5 + 0.5 * 64)
    assert C.kcompactd_run(m, 10.0) is None
    assert C.kcompactd_run(m, 32.5) is not None
    assert_consistent(m)


def test_proactiveness_zero_disables_proactive_compaction(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(16384, compaction_proactiveness=0)
    fragmenter(m)
    assert all(C.kcompactd_run(m, t) is None for t in (0.5, 1.0, 100.0))
    m.set_sysctl("compaction_proactiveness", 100)
    C.trigger_proactive_compaction(m)
    run = C.kcompactd_run(m, 100.1)
    assert run is not None and run.kind == "proactive"
    # proactiveness 100: low mark max(100 - 100, 5) = 5
    assert vmstat.fragmentation_score_zone(m.zones[0]) <= 5 or run.deferred


def test_fragmentation_score_marks() -> None:
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 4096),), min_free_kbytes=1024))
    for p, low, high in [(20, 80, 90), (0, 100, 100), (95, 5, 15), (100, 5, 15), (50, 50, 60)]:
        m.set_sysctl("compaction_proactiveness", p)
        assert (C.fragmentation_score_wmark(m, True), C.fragmentation_score_wmark(m, False)) == (low, high)


# ------------------------------------------------------------------ accounting
def test_free_targets_are_owned_while_a_compaction_runs(one_zone_machine, fragmenter) -> None:
    m = one_zone_machine(8192)
    fragmenter(m)
    seen: list[tuple[int, bool, int]] = []

    class Snoop:
        @hookimpl
        def pagemig_compaction_migrated(self, machine, cc, result) -> None:
            report = check(machine, allow_isolated=True)
            seen.append((len(cc.freepages), report.ok, report.pages_isolated))

    from pagemig.plugins import get_plugin_host

    host = get_plugin_host(autoload=False, extra_plugins=[("snoop", Snoop())])
    C.compact_memory(m, host.hook)
    assert seen and all(ok for _, ok, _ in seen)
    assert any(n > 0 for n, _, _ in seen)  # targets were held mid-run, and accounted for
    assert check(m).pages_isolated == 0
    assert_consistent(m)


def test_bad_order_is_refused(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    with pytest.raises(ValueError, match="order"):
        C.CompactControl(zone=m.zones[0], order=11)
    with pytest.raises(ValueError, match="order"):
        C.CompactControl(zone=m.zones[0], order=-2)


# ------------------------------------------------------------------ the v5.1+ free-list searches
def state_with_blocks(anon: np.ndarray, free_blocks: list[tuple[int, int]]) -> Machine:
    """8192 pfns: ``anon`` marks anon pages; ``free_blocks`` lists (head, order) of free
    blocks; every other pfn is a free order-0 block."""
    kind = np.where(anon, ANON, FREE).astype(np.uint8)
    heads, orders = [], []
    covered = np.zeros(len(anon), dtype=bool)
    for head, order in free_blocks:
        heads.append(head)
        orders.append(order)
        covered[head:head + (1 << order)] = True
        kind[head:head + (1 << order)] = FREE
    single = np.flatnonzero((kind == FREE) & ~covered)
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, len(anon)),), min_free_kbytes=1024))
    m.load_state(kind, np.concatenate((heads, single)).astype(np.int64),
                 np.concatenate((orders, np.zeros(len(single), dtype=np.int64))),
                 np.full(len(anon) // PB, MigrateType.MOVABLE, dtype=np.uint8))
    return m


def test_costly_direct_compaction_starts_in_a_block_that_already_has_free_pages(monkeypatch) -> None:
    # blocks 0-7 full of anon pages except an order-4 free block at the start of block 2;
    # blocks 8-15 half free.  For order 5, fast_find_migrateblock looks below
    # high_pfn = pageblock_start(0 + (7680 - 0) / 2) = 3584 on the MOVABLE lists of
    # orders 4 and 3, finds the block at 1024, and the migration scanner starts there.
    rng = np.random.default_rng(5)
    anon = np.ones(16 * PB, dtype=bool)
    anon[8 * PB:] = rng.random(8 * PB) < 0.5
    m = state_with_blocks(anon, [(2 * PB, 4)])
    first: list[int] = []
    real = C.isolate_migratepages_block

    def spy(machine, cc, low, end):
        first.append(low)
        return real(machine, cc, low, end)

    monkeypatch.setattr(C, "isolate_migratepages_block", spy)
    res, _ = C.compact_zone_order(m, m.zones[0], 5, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_SYNC_LIGHT,
                                  ALLOC_WMARK_MIN, 3)
    assert first[0] == 2 * PB
    assert res == C.COMPACT_SUCCESS and 0 not in first and PB not in first
    assert_consistent(m)


def test_fast_free_search_takes_targets_from_the_free_lists() -> None:
    # everything in use except the second halves of blocks 0-5 (order-8 free blocks,
    # enough free memory for compaction to be worth it) and one order-2 free block in
    # block 13.  For an order-9 request, fast_isolate_freepages searches the MOVABLE
    # lists of orders 8..0 for a block in the top quarter between the scanners (at or
    # above pageblock_start(7680 - 7680/4) = 5632; no order-8 block is even above the
    # half-way mark 3584): the order-2 block at 13*512 + 64 is taken, no pageblock scanned.
    anon = np.ones(16 * PB, dtype=bool)
    m = state_with_blocks(anon, [(b * PB + 256, 8) for b in range(6)] + [(13 * PB + 64, 2)])
    # fragindex(9) = 1000 - (1000 + 1540*1000/512) / 7 = 428: "lack of memory" at the
    # default threshold of 500; lower the threshold to let compaction run
    assert vmstat.fragmentation_index(m.zones[0], 9) == 428
    m.set_sysctl("extfrag_threshold", 0)
    assert C.compaction_suitable(m, m.zones[0], 9, ALLOC_WMARK_MIN, 3) == C.COMPACT_CONTINUE
    _, cc = C.compact_zone_order(m, m.zones[0], 9, GFP_HIGHUSER_MOVABLE, C.COMPACT_PRIO_SYNC_LIGHT,
                                 ALLOC_WMARK_MIN, 3)
    assert cc.nr_migrated >= 4
    moved_to = np.flatnonzero(m.pages.kind[13 * PB + 64:13 * PB + 68] == ANON)
    assert len(moved_to) == 4  # the block's four pages now hold migrated pages
    assert_consistent(m)
