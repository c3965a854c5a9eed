"""kswapd and the kcompactd hand-off (mm/vmscan.c kswapd(), kswapd_try_to_sleep(),
wakeup_kswapd(); v6.1), driven through background_tick as the event loop drives it.

Truth: the kernel's wake/sleep rules and balance_pgdat's priority loop, worked by
hand for each state (numbers next to the code), and the checker.  kcompactd is a
recorder here (the ``fake_kcompactd`` fixture): what matters is when kswapd wakes it and
for which order; the last test runs the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pagemig.mm import vmscan
from pagemig.mm.gfp import GFP_ATOMIC, GFP_KERNEL, MigrateType, ZoneType
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.lru import LruOwner
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.mm_init import boot
from pagemig.mm.node import KswapdMode
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind
from pagemig.mm.slowpath import FullSlowPath
from pagemig.mm.swap import register_swap_device
from pagemig.mm.vmscan import KSWAPD_NAP_SECONDS, background_tick, reclaim_pages, wakeup_kswapd
from pagemig.mm.zone import ZoneSpec

ANON = PageKind.ANON
FILE = PageKind.FILE
NORMAL = int(ZoneType.NORMAL)


class FakeKcompactd:
    """Records kswapd's wake-ups of kcompactd and the ticks that give kcompactd its turn."""

    def __init__(self) -> None:
        self.wakes: list[tuple[int, int]] = []
        self.runs: list[float] = []

    def wakeup_kcompactd(self, _m: Machine, order: int, idx: int) -> None:
        self.wakes.append((order, int(idx)))

    def kcompactd_run(self, _m: Machine, now: float) -> None:
        self.runs.append(now)


@pytest.fixture
def fake_kcompactd(monkeypatch: pytest.MonkeyPatch) -> FakeKcompactd:
    """kcompactd replaced by a recorder, where kswapd and the tick call it."""
    fk = FakeKcompactd()
    monkeypatch.setattr(vmscan, "wakeup_kcompactd", fk.wakeup_kcompactd)
    monkeypatch.setattr(vmscan, "kcompactd_run", fk.kcompactd_run)
    return fk


@pytest.fixture
def setup(one_zone_machine: Callable[..., Machine], allocator_only: Callable[[Machine], Any],
          fake_kcompactd: FakeKcompactd) -> Callable[..., tuple[Machine, LruOwner, SimpleOwner, FakeKcompactd]]:
    """Factory: a booted machine filled with LRU pages through the bare allocator down to
    min (7936 held, 256 free), 10 given back (266 free); kcompactd a recorder."""

    def make(kind: PageKind = FILE) -> tuple[Machine, LruOwner, SimpleOwner, FakeKcompactd]:
        m = one_zone_machine(booted=True)
        w = LruOwner(m, "lru")
        with allocator_only(m):
            w.alloc(8192, kind, gfp=GFP_KERNEL)
        w.free(w.pages.pfns()[:10])
        assert m.zones[0].free_pages == 266 and len(w.pages) == 7926
        return m, w, SimpleOwner(m, "kernel"), fake_kcompactd

    return make


def take(m: Machine, k: SimpleOwner, n: int) -> None:
    for _ in range(n):
        pfn = m.alloc_pages(GFP_KERNEL, 0, k.owner_id, PageKind.KERNEL)
        assert pfn >= 0
        k.pages.add(pfn, 1)


def test_boot_gives_the_machine_the_full_slow_path_and_compactions_sysctl_handler() -> None:
    cfg = MachineConfig(zones=(ZoneSpec("Normal", 0, 8192),), min_free_kbytes=1024)
    m = boot(cfg)
    assert isinstance(m.slowpath, FullSlowPath) and m.slowpath.kswapd_catch_up
    assert m.kswapd.mode is KswapdMode.SLEEPING
    # a raised compaction_proactiveness reaches compaction (proactive_compact_trigger) ...
    m.set_sysctl("compaction_proactiveness", 40)
    assert m.compaction.kcompactd.proactive_trigger
    # ... and the page allocator alone has nobody to tell
    bare = Machine(cfg)
    bare.set_sysctl("compaction_proactiveness", 40)
    assert bare.sysctl.compaction_proactiveness == 40 and not bare.compaction.kcompactd.proactive_trigger


def test_kswapd_wakes_below_low_and_reclaims_to_high_at_the_next_tick(setup) -> None:
    m, _, k, fk = setup()
    take(m, k, 1)  # 266 <= low: the slow path wakes kswapd, and succeeds at min (265 left)
    ks = m.kswapd
    assert ks.mode is KswapdMode.RUNNABLE and ks.wakeups == 1
    assert m.vmstat["pgscan_kswapd"] == 0  # nothing happens until the event loop ticks
    spent = background_tick(m, 1.0)
    # balance_pgdat, order 0: priority 12..6 over 7926 file pages, each level scanning
    # L >> p: 1, 3, 7, 15, 30, 61 -> free 382 (not above high 384), 122 -> 504: balanced.
    # nr_to_reclaim = max(high, 32) = 384 is never scanned in one level, so the priority
    # rises every time.
    assert m.vmstat["pgsteal_kswapd"] == 1 + 3 + 7 + 15 + 30 + 61 + 122
    assert m.vmstat["pgscan_kswapd"] == 239 and m.vmstat["pgsteal_direct"] == 0
    assert m.vmstat["pageoutrun"] == 1
    assert m.zones[0].free_pages == 504
    assert spent > 0 and m.reclaim.kswapd_seconds == spent
    assert ks.mode is KswapdMode.NAPPING and ks.nap_until == 1.0 + KSWAPD_NAP_SECONDS
    assert fk.wakes == []  # order 0: no kcompactd
    assert fk.runs == [1.0]  # kcompactd gets its tick anyway (its proactive timer)
    background_tick(m, 1.05)
    assert ks.mode is KswapdMode.NAPPING
    background_tick(m, 1.2)
    assert ks.mode is KswapdMode.SLEEPING
    assert m.vmstat["kswapd_low_wmark_hit_quickly"] == 0 and m.vmstat["kswapd_high_wmark_hit_quickly"] == 0
    assert fk.runs == [1.0, 1.05, 1.2]
    assert_consistent(m)


def test_a_wake_during_the_nap_is_a_low_watermark_hit(setup) -> None:
    m, _, k, _fk = setup()
    take(m, k, 1)
    background_tick(m, 1.0)  # 504 free, napping until 1.1
    # the fast path serves allocations while free > low (320): 184 of them wake nobody;
    # the 185th finds 320 and wakes kswapd in its nap
    take(m, k, 184)
    ks = m.kswapd
    assert ks.mode is KswapdMode.NAPPING and not ks.woken_while_napping
    take(m, k, 1)
    assert ks.woken_while_napping
    background_tick(m, 1.05)
    assert m.vmstat["kswapd_low_wmark_hit_quickly"] == 1
    assert m.vmstat["pageoutrun"] == 2 and m.zones[0].free_pages > 384
    assert_consistent(m)


def test_a_nap_that_ends_below_high_is_a_high_watermark_hit(setup) -> None:
    m, _, k, _fk = setup()
    take(m, k, 1)
    background_tick(m, 1.0)  # 504 free
    take(m, k, 174)  # 330 free: above low, nobody woken, but below high
    ks = m.kswapd
    assert ks.mode is KswapdMode.NAPPING and not ks.woken_while_napping
    background_tick(m, 1.2)  # the nap is over and the node is not balanced: straight back to work
    assert m.vmstat["kswapd_high_wmark_hit_quickly"] == 1
    assert m.vmstat["kswapd_low_wmark_hit_quickly"] == 0
    assert m.vmstat["pageoutrun"] == 2 and m.zones[0].free_pages > 384
    assert ks.mode is KswapdMode.NAPPING
    assert_consistent(m)


def test_kswapd_woken_for_a_high_order_wakes_kcompactd_when_it_sleeps(one_zone_machine, checkerboard,
                                                                       fake_kcompactd) -> None:
    m = one_zone_machine(booted=True)
    checkerboard(m)  # even pfns page cache, odd kernel memory: reclaim frees order 0 only
    fk = fake_kcompactd
    wakeup_kswapd(m, 3, NORMAL, GFP_KERNEL)
    ks = m.kswapd
    assert ks.mode is KswapdMode.RUNNABLE and ks.kswapd_order == 3
    background_tick(m, 0.5)
    # balance_pgdat(order 3) can never make an order-3 block here; after compact_gap(3) = 16
    # pages it checks order 0 and returns 0 < 3: kswapd naps at order 0 and wakes
    # kcompactd for the order it was asked for
    assert fk.wakes == [(3, NORMAL)]
    assert ks.mode is KswapdMode.NAPPING and ks.kswapd_order == 0
    assert m.zones[0].free_pages > 384
    assert_consistent(m)


def test_kswapd_balanced_at_the_order_does_not_wake_kcompactd(setup) -> None:
    m, _, k, fk = setup()
    take(m, k, 1)
    background_tick(m, 1.0)
    # a later request for order 2 while the node is balanced at order 2 wakes nobody
    wakeup_kswapd(m, 2, NORMAL, GFP_KERNEL)
    assert m.kswapd.wakeups == 1 and fk.wakes == []
    # ... but one that cannot reclaim itself sends kcompactd instead of kswapd
    wakeup_kswapd(m, 2, NORMAL, GFP_ATOMIC)
    assert fk.wakes == [(2, NORMAL)]


def test_hopeless_node_after_max_reclaim_retries_failures(setup, fake_swap) -> None:
    m, _, k, fk = setup(kind=ANON)  # anon and no swap: kswapd can reclaim nothing
    take(m, k, 1)
    ks = m.kswapd
    for t in (1.0, 2.0, 3.0):
        background_tick(m, t)
        assert ks.mode is KswapdMode.RUNNABLE  # not balanced: straight back to work
    assert m.reclaim.kswapd_failures == 12
    background_tick(m, 4.0)
    # 4 runs per tick; after the 16th failure the node is hopeless and kswapd may sleep
    assert m.reclaim.kswapd_failures == 16
    assert m.vmstat["pageoutrun"] == 16
    assert m.vmstat["kswapd_high_wmark_hit_quickly"] == 15
    assert ks.mode is KswapdMode.NAPPING
    background_tick(m, 5.0)
    assert ks.mode is KswapdMode.SLEEPING
    # a hopeless node is not woken; atomic requests send kcompactd
    take(m, k, 1)
    assert ks.mode is KswapdMode.SLEEPING
    wakeup_kswapd(m, 1, NORMAL, GFP_ATOMIC)
    assert fk.wakes == [(1, NORMAL)]
    # any reclaim progress makes the node hopeful again
    register_swap_device(m, fake_swap(capacity=1000))
    assert reclaim_pages(m, 32).reclaimed >= 32
    assert m.reclaim.kswapd_failures == 0
    wakeup_kswapd(m, 0, NORMAL, GFP_KERNEL)
    assert ks.mode is KswapdMode.RUNNABLE
    background_tick(m, 6.0)
    assert m.zones[0].free_pages > 384 and m.vmstat["pswpout"] > 0
    assert_consistent(m)


def test_kswapd_flushes_compaction_skip_bits_before_it_sleeps(setup) -> None:
    m, _, k, _fk = setup()
    zone = m.zones[0]
    m.buddy.pageblock_skip[:] = 1
    zone.compact_blockskip_flush = True
    zone.compact_cached_free_pfn = zone.start_pfn + 512
    take(m, k, 1)
    background_tick(m, 1.0)
    # kswapd, going to sleep, runs compaction's __reset_isolation_suitable: the zone's two
    # ends walk towards each other a pageblock at a time (16 blocks: the migration side
    # takes 0..7, the free side 15..8).  Every sampled block holds LRU pages, so the
    # migration side clears the lower eight; the free side clears only MOVABLE blocks,
    # and the GFP_KERNEL fill stole every block for UNMOVABLE, so the upper eight keep theirs
    assert not zone.compact_blockskip_flush
    assert (m.buddy.pageblock_mt != MigrateType.MOVABLE).all()
    assert not m.buddy.pageblock_skip[:8].any() and m.buddy.pageblock_skip[8:].all()
    # no target block found: the scanners are left where the walks met (no distance)
    assert zone.compact_cached_migrate_pfn == [4096, 4096] and zone.compact_cached_free_pfn == 4095


def test_wakeup_for_a_zone_the_machine_lacks_is_ignored() -> None:
    m = boot(MachineConfig(zones=(ZoneSpec("DMA32", 0, 8192),), min_free_kbytes=1024))
    wakeup_kswapd(m, 0, int(ZoneType.DMA), GFP_KERNEL)  # no DMA zone: nothing to balance
    assert m.kswapd.mode is KswapdMode.SLEEPING


def _take_every_free_page(m: Machine) -> np.ndarray:
    """Every free page of the first zone, straight off the free lists (past the watermarks),
    as order-0 pages in pfn order; the caller gives them a kind and an owner."""
    zone = m.zones[0]
    got: list[int] = []
    for mt in range(3):
        while (pfn := m.buddy.rmqueue_smallest(zone, 0, mt)) >= 0:
            got.append(pfn)
    return np.sort(np.asarray(got, dtype=np.int64))


def test_kswapd_then_real_kcompactd_make_the_order_available(one_zone_machine) -> None:
    m = one_zone_machine(booted=True)
    zone = m.zones[0]
    pfns = _take_every_free_page(m)
    anon, cache = LruOwner(m, "heap"), LruOwner(m, "cache")
    for owner, kind, sel in ((anon, ANON, pfns % 2 == 0), (cache, FILE, pfns % 2 == 1)):
        m.pages.kind[pfns[sel]] = kind
        m.pages.owner[pfns[sel]] = owner.owner_id
        owner.add_many(pfns[sel])
    # free every 4th page of the top quarter: 512 free (> high 384), none with a free buddy
    anon.free(pfns[(pfns >= 6144) & (pfns % 4 == 0)])
    assert zone.free_pages == 512 and zone.nr_free(0) == 512
    wakeup_kswapd(m, 3, NORMAL, GFP_KERNEL)  # what an order-3 allocation's slow path does
    background_tick(m, 0.5)
    # kswapd reclaimed compact_gap(3) = 16 page-cache pages, found the node balanced at
    # order 0, and woke kcompactd for order 3, which compacted in the same tick
    assert 16 <= m.vmstat["pgsteal_kswapd"] < 64
    assert m.vmstat["compact_daemon_wake"] == 1
    assert m.vmstat["pgmigrate_success"] > 0
    assert any(zone.nr_free(o) for o in range(3, 11))
    assert not m.kswapd.running
    assert_consistent(m)
