"""Reclaim (mm/vmscan.c, v6.1): scan counts, what is dropped, written, swapped, counters.

Truth: get_scan_count()'s arithmetic and do_try_to_free_pages()'s priority loop worked
by hand for small LRUs (each computation written next to its numbers), the kernel's
rules for dirty and anon pages, and the checker after every scenario.  The owners
here are written for the tests (a fake swap device, a fake shrinker, a minimal
Reclaimable owner), except where LruOwner itself is under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagemig.mm import vmscan
from pagemig.mm.compaction import COMPACT_CONTINUE, COMPACT_SKIPPED, COMPACT_SUCCESS, CompactResult
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, ZoneType
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.lru import LruOwner, Reclaimable, ShrinkControl, ShrinkResult, zone_reclaimable_pages
from pagemig.mm.machine import Machine
from pagemig.mm.owner import Owner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.mm.shrinker import register_shrinker, shrink_slab
from pagemig.mm.swap import SwapSpace, register_swap_device, swap_devices
from pagemig.mm.vmscan import (
    DEF_PRIORITY,
    ScanControl,
    _split,
    balance_pgdat,
    get_scan_count,
    pgdat_balanced,
    reclaim_pages,
    shrink_node,
    try_to_free_pages,
)

ANON = PageKind.ANON
FILE = PageKind.FILE


class FakeShrinker:
    name = "dcache"

    def __init__(self, freeable: int) -> None:
        self.freeable = freeable
        self.asked: list[int] = []

    def count_objects(self) -> int:
        return self.freeable

    def scan_objects(self, nr_to_scan: int) -> int:
        self.asked.append(nr_to_scan)
        got = min(nr_to_scan, self.freeable)
        self.freeable -= got
        return got


class CountingOwner(Owner):
    """A minimal Reclaimable: holds no real pages, reclaims whatever it is asked to scan,
    and records the requests (to test how shrink_node shares the pressure)."""

    def __init__(self, machine: Machine, name: str, anon: int, file: int) -> None:
        self.name = name
        self.sizes: dict[int, int] = {ANON: anon, FILE: file}
        self.asked: list[tuple[PageKind, int]] = []
        machine.register_owner(self)

    def lru_sizes(self) -> dict[int, int]:
        return dict(self.sizes)

    def shrink(self, kind: PageKind, nr_to_scan: int, sc: ShrinkControl) -> ShrinkResult:
        self.asked.append((kind, nr_to_scan))
        n = min(nr_to_scan, self.sizes[kind])
        self.sizes[kind] -= n
        return ShrinkResult(scanned=n, reclaimed=n, swapped=n if kind == ANON else 0)


# ------------------------------------------------------------------ get_scan_count
def test_scan_count_fract_is_swappiness_to_200_minus_swappiness(one_zone_machine) -> None:
    m = one_zone_machine()
    sc = ScanControl(nr_to_reclaim=32, priority=4)
    # anon 10000 >> 4 = 625, * 60 // 200 = 187;  file 30000 >> 4 = 1875, * 140 // 200 = 1312
    assert get_scan_count(m, sc, 10000, 30000, True) == {ANON: 187, FILE: 1312}
    sc.priority = DEF_PRIORITY
    # 10000 >> 12 = 2 -> 2 * 60 // 200 = 0;  30000 >> 12 = 7 -> 7 * 140 // 200 = 4
    assert get_scan_count(m, sc, 10000, 30000, True) == {ANON: 0, FILE: 4}


def test_scan_count_file_only_without_swap_and_equal_at_priority_zero(one_zone_machine) -> None:
    m = one_zone_machine()
    sc = ScanControl(nr_to_reclaim=32, priority=3)
    assert get_scan_count(m, sc, 10000, 30000, False) == {ANON: 0, FILE: 30000 >> 3}
    sc.priority = 0
    assert get_scan_count(m, sc, 10000, 30000, True) == {ANON: 10000, FILE: 30000}
    m.set_sysctl("swappiness", 0)  # global reclaim: swappiness 0 is SCAN_FRACT with anon's share 0
    sc.priority = 2
    assert get_scan_count(m, sc, 10000, 30000, True) == {ANON: 0, FILE: 7500 * 200 // 200}


def test_scan_count_anon_only_when_file_is_tiny(one_zone_machine) -> None:
    m = one_zone_machine()  # high watermark 384
    lru = LruOwner(m, "w")
    lru.alloc(8192, ANON, gfp=GFP_KERNEL)  # the bare slow path lets GFP_KERNEL down to min (256)
    free = m.zones[0].free_pages
    assert 256 <= free <= 384
    anon = lru.lru_sizes()[ANON]
    sc = ScanControl(nr_to_reclaim=32, priority=2)
    # file + free <= high: SCAN_ANON
    assert get_scan_count(m, sc, anon, 0, True) == {ANON: anon >> 2, FILE: 0}
    # 200 file pages: 200 + free > 384, back to SCAN_FRACT
    assert get_scan_count(m, sc, anon, 200, True) == {ANON: (anon >> 2) * 60 // 200, FILE: 50 * 140 // 200}


@given(st.integers(0, 10_000), st.lists(st.integers(0, 5_000), min_size=1, max_size=8))
def test_split_shares_the_total_in_proportion(total: int, sizes: list[int]) -> None:
    shares = _split(total, sizes)
    assert sum(shares) == min(total, sum(sizes))
    assert all(0 <= s <= size for s, size in zip(shares, sizes, strict=True))
    whole = sum(sizes)
    if whole and total < whole:
        for s, size in zip(shares, sizes, strict=True):
            assert abs(s - total * size / whole) < 1  # largest remainder: within one page of exact


# ------------------------------------------------------------------ shrink_node
def test_shrink_node_spreads_pressure_across_owners_by_size(one_zone_machine) -> None:
    m = one_zone_machine()
    a = CountingOwner(m, "a", anon=0, file=300)
    b = CountingOwner(m, "b", anon=0, file=100)
    sc = ScanControl(nr_to_reclaim=1000, priority=2, may_swap=True)
    got = shrink_node(m, sc)
    # no swap device: SCAN_FILE, 400 >> 2 = 100, shared 3:1
    assert a.asked == [(FILE, 75)]
    assert b.asked == [(FILE, 25)]
    assert got == 100
    assert m.vmstat["pgscan_direct"] == 100 and m.vmstat["pgsteal_direct"] == 100
    assert m.vmstat["pgscan_file"] == 100 and m.vmstat["pgscan_anon"] == 0
    assert m.vmstat["pgscan_kswapd"] == 0


def test_clean_file_pages_go_before_dirty_ones(one_zone_machine) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "cache")
    dirty = w.alloc(100, FILE, dirty=True)  # the oldest
    clean = w.alloc(100, FILE)
    # direct reclaim never writes: one scan of all 200 drops the 100 clean pages only
    stats = reclaim_pages(m, 200, priority=0, may_writepage=False)
    assert (stats.scanned, stats.reclaimed, stats.written) == (200, 100, 0)
    assert set(w.pages.pfns().tolist()) == set(dirty.tolist())
    assert not np.any(m.pages.kind[clean] == FILE)
    assert m.vmstat["pgpgout"] == 0
    assert_consistent(m)


def test_kswapd_writes_dirty_pages_then_drops_them_on_the_next_scan(one_zone_machine) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "cache")
    w.alloc(100, FILE, dirty=True)
    w.alloc(50, FILE)
    sc = ScanControl(nr_to_reclaim=10_000, priority=0, may_writepage=True, kswapd=True)
    shrink_node(m, sc)
    # first pass, all 150: 100 dirty written (not freed), 50 clean dropped
    assert (sc.nr_scanned, sc.nr_reclaimed, sc.nr_written) == (150, 50, 100)
    assert m.vmstat["pgpgout"] == 100 * 4  # KiB
    assert m.vmstat["nr_vmscan_write"] == 100
    assert not np.any(m.pages.flags[w.pages.pfns()] & PageFlag.DIRTY)
    shrink_node(m, sc)
    # second pass: the written pages are clean now and were rotated to the old end
    assert (sc.nr_scanned, sc.nr_reclaimed, sc.nr_written) == (250, 150, 100)
    assert len(w.pages) == 0
    assert m.vmstat["pgscan_kswapd"] == 250 and m.vmstat["pgsteal_kswapd"] == 150
    assert_consistent(m)


def test_anon_is_not_reclaimed_without_swap(one_zone_machine) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "heap")
    w.alloc(500, ANON)
    stats = reclaim_pages(m, 500, priority=0)
    assert (stats.scanned, stats.reclaimed) == (0, 0)
    assert len(w.pages) == 500
    assert zone_reclaimable_pages(m, m.zones[0]) == 0
    assert_consistent(m)


def test_anon_is_swapped_out_through_a_swap_device_and_comes_back_intact(one_zone_machine, fake_swap) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "heap")
    pfns = w.alloc(500, ANON)
    tokens = m.pages.token[pfns].copy()
    dev = fake_swap(capacity=200)
    register_swap_device(m, dev)
    assert swap_devices(m) == [dev] and m.swap.devices == [dev]
    assert zone_reclaimable_pages(m, m.zones[0]) == 500
    stats = reclaim_pages(m, 500, priority=0)
    # priority 0 with swappiness: SCAN_EQUAL, all 500 scanned; the device takes 200
    assert (stats.scanned, stats.reclaimed, stats.swapped) == (500, 200, 200)
    assert m.vmstat["pswpout"] == 200 and m.vmstat["pgsteal_anon"] == 200
    assert len(w.pages) == 300 and w.nr_swapped == 200
    assert sorted(dev.store.values()) == sorted(tokens[:200].tolist())  # the oldest went first
    assert m.swap.nr_free == 0
    assert zone_reclaimable_pages(m, m.zones[0]) == 0  # swap full: anon not reclaimable
    assert_consistent(m)
    back = w.swap_in(200)
    assert back == 200 and w.swap_corruptions == 0
    assert m.vmstat["pswpin"] == 200 and not dev.store
    assert sorted(m.pages.token[w.pages.pfns()].tolist()) == sorted(tokens.tolist())
    assert_consistent(m)


def test_swap_in_detects_a_device_that_corrupts_content(one_zone_machine, fake_swap) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "heap")
    w.alloc(10, ANON)
    dev = fake_swap(capacity=100)
    register_swap_device(m, dev)
    reclaim_pages(m, 10, priority=0)
    first = next(iter(dev.store))
    dev.store[first] ^= 1
    w.swap_in(10)
    assert w.swap_corruptions == 1


def test_swap_space_uses_devices_by_priority_and_round_trips_handles(one_zone_machine, fake_swap) -> None:
    m = one_zone_machine()
    space = SwapSpace(m.vmstat)
    low = fake_swap(capacity=3, name="disk", priority=-2)
    high = fake_swap(capacity=2, name="zram", priority=100)
    space.register(low)
    space.register(high)
    handles = space.swap_out_many(np.arange(10, 17, dtype=np.uint64))
    assert (handles >= 0).tolist() == [True] * 5 + [False] * 2
    assert sorted(high.store.values()) == [10, 11] and sorted(low.store.values()) == [12, 13, 14]
    assert [space.swap_in(int(h)) for h in handles[:5]] == [10, 11, 12, 13, 14]
    assert space.nr_free == 0 and space.swap_out(99) is None
    space.swap_free(int(handles[0]))
    assert space.nr_free == 1 and space.swap_out(99) is not None
    with pytest.raises(TypeError, match="not a SwapDevice"):
        space.register(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        space.register(low)
    with pytest.raises(ValueError, match="no registered swap device"):
        space.swap_in(31)


def test_owners_that_answer_nonsense_get_a_clear_error(one_zone_machine) -> None:
    m = one_zone_machine()

    class Liar(CountingOwner):
        def shrink(self, kind: PageKind, nr_to_scan: int, sc: ShrinkControl) -> ShrinkResult:
            return ShrinkResult(scanned=1, reclaimed=5)

    Liar(m, "liar", anon=0, file=100)
    with pytest.raises(ValueError, match="more pages than it scanned"):
        shrink_node(m, ScanControl(nr_to_reclaim=32, priority=0))
    with pytest.raises(ValueError, match="nr_to_reclaim"):
        reclaim_pages(m, -1)


# ------------------------------------------------------------------ direct reclaim
def test_direct_reclaim_lowers_priority_until_32_pages(one_zone_machine) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "cache")
    w.alloc(6000, FILE)
    sc = try_to_free_pages(m, 0, ZoneType.NORMAL)
    # SCAN_FILE (no swap): 6000>>12 = 1, 5999>>11 = 2, 5997>>10 = 5, 5992>>9 = 11 (19 so far),
    # 5981>>8 = 23 -> 42 >= SWAP_CLUSTER_MAX at priority 8
    assert sc.priority == 8
    assert sc.nr_reclaimed == 42 and sc.nr_scanned == 42
    assert m.vmstat["allocstall_normal"] == 1
    assert m.vmstat["pgscan_direct"] == 42 and m.vmstat["pgsteal_direct"] == 42
    assert len(w.pages) == 6000 - 42
    assert_consistent(m)


def test_allocstall_is_counted_for_the_requests_highest_zone(one_zone_machine) -> None:
    m = one_zone_machine()
    try_to_free_pages(m, 0, ZoneType.MOVABLE)  # GFP_HIGHUSER_MOVABLE's zone, though the machine has none
    try_to_free_pages(m, 0, ZoneType.DMA32)
    assert m.vmstat["allocstall_movable"] == 1 and m.vmstat["allocstall_dma32"] == 1


def test_costly_direct_reclaim_stops_when_compaction_is_ready(one_zone_machine, monkeypatch) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "cache")
    w.alloc(6000, FILE)
    monkeypatch.setattr(vmscan, "compaction_suitable", lambda *_: COMPACT_SUCCESS)
    sc = try_to_free_pages(m, 9, ZoneType.NORMAL)
    assert sc.compaction_ready and sc.nr_scanned == 0
    assert sc.nr_reclaimed == 1  # do_try_to_free_pages reports progress so the caller compacts
    assert len(w.pages) == 6000


def test_reclaim_for_compaction_continues_until_compaction_can_run(one_zone_machine, monkeypatch) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "cache")
    w.alloc(6000, FILE)
    verdicts: list[int] = []

    def suitable(machine: Machine, zone: object, order: int, alloc_flags: int, idx: int) -> CompactResult:
        verdicts.append(order)
        return COMPACT_SKIPPED if len(verdicts) < 4 else COMPACT_CONTINUE

    monkeypatch.setattr(vmscan, "compaction_suitable", suitable)
    sc = ScanControl(nr_to_reclaim=32, order=4, priority=6)
    shrink_node(m, sc)
    # order 4 > PAGE_ALLOC_COSTLY_ORDER: reclaim/compaction mode.  Rounds at priority 6:
    # 6000>>6 = 93, 5907>>6 = 92, 5815>>6 = 90, 5725>>6 = 89; the verdict after the
    # fourth round lets compaction run, so reclaim stops there
    assert verdicts == [4, 4, 4, 4]
    assert sc.nr_reclaimed == 93 + 92 + 90 + 89
    assert len(w.pages) == 6000 - 364
    # at order 0 there is no such continuation
    sc0 = ScanControl(nr_to_reclaim=32, order=0, priority=6)
    shrink_node(m, sc0)
    assert sc0.nr_reclaimed == (6000 - 364) >> 6 and len(verdicts) == 4


# ------------------------------------------------------------------ kswapd
def test_balance_pgdat_reaches_the_high_watermark(one_zone_machine) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "cache")
    w.alloc(8192, FILE, gfp=GFP_KERNEL)  # down to the min watermark
    zone = m.zones[0]
    assert zone.free_pages <= zone.wmark_low
    assert not pgdat_balanced(m, 0, ZoneType.NORMAL)
    order, sc = balance_pgdat(m, 0, ZoneType.NORMAL)
    assert order == 0
    assert pgdat_balanced(m, 0, ZoneType.NORMAL)
    assert zone.free_pages > zone.wmark_high
    assert m.vmstat["pageoutrun"] == 1
    assert m.vmstat["pgsteal_kswapd"] == sc.nr_reclaimed > 0 and m.vmstat["pgsteal_direct"] == 0
    assert m.reclaim.kswapd_failures == 0
    assert_consistent(m)


def test_balance_pgdat_with_nothing_to_reclaim_counts_a_failure(one_zone_machine) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "heap")
    w.alloc(8192, ANON, gfp=GFP_KERNEL)  # anon, and no swap
    _, sc = balance_pgdat(m, 0, ZoneType.NORMAL)
    assert sc.nr_reclaimed == 0 and sc.priority == 0
    assert m.reclaim.kswapd_failures == 1
    assert_consistent(m)


def test_balance_pgdat_for_a_high_order_falls_back_to_order_0(one_zone_machine, checkerboard) -> None:
    m = one_zone_machine()
    checkerboard(m)
    assert m.zones[0].free_pages == 0
    order, sc = balance_pgdat(m, 3, ZoneType.NORMAL)
    # no order-3 block can form; once compact_gap(3) = 16 pages are reclaimed kswapd
    # checks order 0 only, and stops when free > high (384)
    assert order == 0
    assert sc.nr_reclaimed > 384
    assert pgdat_balanced(m, 0, ZoneType.NORMAL) and not pgdat_balanced(m, 3, ZoneType.NORMAL)
    assert_consistent(m)


def test_balance_pgdat_returns_at_once_when_balanced(one_zone_machine) -> None:
    m = one_zone_machine()
    order, sc = balance_pgdat(m, 3, ZoneType.NORMAL)
    assert order == 3 and sc.nr_scanned == 0 and m.vmstat["pageoutrun"] == 1
    assert m.reclaim.kswapd_failures == 0


# ------------------------------------------------------------------ slab
def test_shrink_slab_scans_twice_freeable_over_priority(one_zone_machine) -> None:
    m = one_zone_machine()
    s = FakeShrinker(1000)
    register_shrinker(m, s)
    assert shrink_slab(m, DEF_PRIORITY) == 0  # 1000 >> 12 = 0
    # priority 0: 1000 * 4 // 2 = 2000, capped at 2000; batches of 128 while >= 128: 15 (1920)
    freed = shrink_slab(m, 0)
    assert s.asked == [128] * 15
    assert m.vmstat["slabs_scanned"] == 1920
    assert freed == 1000
    with pytest.raises(TypeError, match="not a Shrinker"):
        register_shrinker(m, object())  # type: ignore[arg-type]


# ------------------------------------------------------------------ LruOwner under random use
def _migrate(m: Machine, src: np.ndarray) -> None:
    """What the core does for LRU pages: copy the columns to fresh pages, tell the owner, free src."""
    owner_ids = m.pages.owner[src]
    dst = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, len(src), 1, PageKind.KERNEL)
    src = src[: len(dst)]
    for col in ("kind", "flags", "owner", "private", "token"):
        getattr(m.pages, col)[dst] = getattr(m.pages, col)[src]
    for oid in np.unique(owner_ids[: len(dst)]).tolist():
        mask = owner_ids[: len(dst)] == oid
        m.owners[oid].pages_migrated(src[mask], dst[mask])  # type: ignore[union-attr]
    m.pages.flags[src] = 0
    m.free_pages_bulk(src)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc_a", "alloc_f", "free", "touch", "write", "reclaim",
                                           "migrate", "swapin"]),
                          st.integers(1, 300)), max_size=25))
def test_lru_owner_stays_consistent_under_random_operations(one_zone_machine, fake_swap,
                                                            ops: list[tuple[str, int]]) -> None:
    m = one_zone_machine(4096)
    register_swap_device(m, fake_swap(capacity=100_000))
    w = LruOwner(m, "w")
    for op, n in ops:
        held = w.pages.pfns()
        if op == "alloc_a":
            w.alloc(n, ANON)
        elif op == "alloc_f":
            w.alloc(n, FILE, dirty=n % 2 == 0)
        elif op == "free" and len(held):
            w.free(held[: n % len(held) + 1])
        elif op == "touch" and len(held):
            w.touch(held[-(n % len(held) + 1):])
        elif op == "write" and len(held):
            w.write(held[: n % len(held) + 1])
        elif op == "reclaim":
            reclaim_pages(m, n, priority=n % (DEF_PRIORITY + 1), kswapd=n % 2 == 0, may_writepage=n % 3 == 0)
        elif op == "migrate" and len(held):
            _migrate(m, held[: n % len(held) + 1])
        elif op == "swapin":
            w.swap_in(n)
        assert_consistent(m)
        sizes = w.lru_sizes()
        kinds = m.pages.kind[w.pages.pfns()]
        assert sizes[ANON] == int(np.count_nonzero(kinds == ANON))
        assert sizes[FILE] == int(np.count_nonzero(kinds == FILE))
        assert w.nr_swapped == m.swap.nr_used
        assert w.swap_corruptions == 0
    # every page the owner holds is on its lists exactly once: a priority-0 pass
    # (SCAN_EQUAL, swap has room) scans each of them
    total = len(w.pages)
    stats = reclaim_pages(m, 10 * total + 1, priority=0, kswapd=True)
    assert stats.scanned == total
    assert len(w.pages) == total - stats.reclaimed
    assert_consistent(m)


def test_reclaimable_protocol_is_what_owners_implement(one_zone_machine) -> None:
    m = one_zone_machine()
    assert isinstance(LruOwner(m, "w"), Reclaimable)
    assert isinstance(CountingOwner(m, "c", 0, 0), Reclaimable)
    assert not isinstance(Owner(), Reclaimable)


def test_an_owner_that_churns_without_reclaim_keeps_its_lists_small(one_zone_machine, fake_swap) -> None:
    m = one_zone_machine()
    w = LruOwner(m, "proc")
    for _ in range(60):
        pfns = w.alloc(500, ANON)
        w.touch(pfns[:100])
        w.free(pfns)
    w.alloc(10, ANON)
    # stale entries are dropped once they outnumber the live ones (plus a slack of 4096)
    assert len(w._queues[ANON]) <= 2 * 10 + 4096 + 600
    stats = reclaim_pages(m, 100, priority=0)
    assert stats.scanned == 0  # no swap: anon not scanned; the lists hold nothing stale that counts
    register_swap_device(m, fake_swap(100))
    assert reclaim_pages(m, 100, priority=0).scanned == 10
