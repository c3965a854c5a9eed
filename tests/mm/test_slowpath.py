"""The allocator's slow path (``__alloc_pages_slowpath``, v6.1) on hand-built states.

Truth: the kernel's control flow, worked through by hand for each state (which
steps run, in which order, with which compaction priority, how often it retries),
the kernel's counters, and the checker after every scenario.  Compaction is a
stand-in in most tests (put behind the slow path with the ``stand_in`` fixture) so
that the slow path is tested against what compaction answers: ``ScriptedCompaction``
answers from a script; ``MiniCompaction`` really moves LRU pages out of one aligned
block, as compaction would, and counts ``compact_stall``/``compact_success``/``compact_fail``
as ``__alloc_pages_direct_compact`` does.  The rest run the real compaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pagemig.mm import slowpath
from pagemig.mm.buddy import AllocContext
from pagemig.mm.compaction import (
    COMPACT_COMPLETE,
    COMPACT_CONTINUE,
    COMPACT_DEFERRED,
    COMPACT_PARTIAL_SKIPPED,
    COMPACT_PRIO_ASYNC,
    COMPACT_PRIO_SYNC_FULL,
    COMPACT_PRIO_SYNC_LIGHT,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    CompactPriority,
    CompactResult,
    add_stall,
)
from pagemig.mm.costs import COST_ALLOC_FAST
from pagemig.mm.gfp import (
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
    Gfp,
    MigrateType,
)
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.lru import LruOwner
from pagemig.mm.machine import Machine
from pagemig.mm.node import KswapdMode
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.mm.slowpath import FullSlowPath, SlowPathTrace
from pagemig.mm.swap import register_swap_device
from pagemig.mm.zone import Zone

ANON = PageKind.ANON
FILE = PageKind.FILE
ASYNC, LIGHT, FULL = COMPACT_PRIO_ASYNC, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_SYNC_FULL


# Most tests here switch kswapd's catch-up off: they are about what the allocating task
# itself does, and with catch-up a woken kswapd would reclaim first.


def slow_path(m: Machine) -> FullSlowPath:
    """The booted machine's slow path (its ``stats`` and ``last`` trace are what the tests read)."""
    sp = m.slowpath
    assert isinstance(sp, FullSlowPath)
    return sp


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Any]:
    """Factory: ``stand_in(comp)`` puts a stand-in compaction behind the slow path, answering
    its two calls into compaction (``__alloc_pages_direct_compact`` and
    ``compaction_zonelist_suitable``) for the rest of the test."""

    def install(comp: Any) -> Any:
        monkeypatch.setattr(slowpath, "alloc_pages_direct_compact", comp.direct_compact)
        monkeypatch.setattr(slowpath, "compaction_zonelist_suitable", comp.zonelist_suitable)
        return comp

    return install


class ScriptedCompaction:
    """Answers each direct compaction from a script (the last answer repeats), never
    finds a page, and charges 1 ms per call to the allocation's stall clock (as
    compaction charges its time); reclaim could never help (``zonelist_suitable``)."""

    def __init__(self, *results: CompactResult) -> None:
        self.results = list(results) or [COMPACT_COMPLETE]
        self.prios: list[CompactPriority] = []

    def direct_compact(self, machine: Machine, order: int, alloc_flags: int, ac: AllocContext,
                       prio: CompactPriority) -> tuple[int, Zone | None, CompactResult]:
        i = min(len(self.prios), len(self.results) - 1)
        self.prios.append(prio)
        add_stall(machine, 1e-3)
        return -1, None, self.results[i]

    def zonelist_suitable(self, machine: Machine, ac: AllocContext, order: int, alloc_flags: int) -> bool:
        return False


class MiniCompaction:
    """A small honest compactor: frees one aligned block of the order by migrating its LRU
    pages to free pages elsewhere (as the core migrates LRU pages: columns copied, the owner
    told), then allocates.  Async mode only takes pageblocks of the request's type."""

    def __init__(self) -> None:
        self.prios: list[CompactPriority] = []

    def zonelist_suitable(self, machine: Machine, ac: AllocContext, order: int, alloc_flags: int) -> bool:
        return False

    def _candidate(self, machine: Machine, zone: Zone, order: int, ac: AllocContext, prio: CompactPriority) -> int:
        pages = machine.pages
        size = 1 << order
        for start in range(zone.start_pfn, zone.end_pfn - size + 1, size):
            kind = pages.kind[start:start + size]
            flags = pages.flags[start:start + size]
            lru = (kind == ANON) | (kind == FILE)
            if not np.all(lru | (kind == PageKind.FREE)) or not lru.any() or np.any(flags[lru] & PageFlag.PINNED):
                continue
            if prio == ASYNC:
                mt = machine.buddy.get_pageblock_migratetype(start)
                if (mt != MigrateType.MOVABLE) if ac.migratetype == MigrateType.MOVABLE else (mt != ac.migratetype):
                    continue
            return start
        return -1

    def direct_compact(self, machine: Machine, order: int, alloc_flags: int, ac: AllocContext,
                       prio: CompactPriority) -> tuple[int, Zone | None, CompactResult]:
        self.prios.append(prio)
        zone = ac.zonelist[0]
        vm = machine.vmstat
        vm["compact_stall"] += 1
        start = self._candidate(machine, zone, order, ac, prio)
        if start < 0:
            vm["compact_fail"] += 1
            return -1, None, COMPACT_COMPLETE
        pages = machine.pages
        end = start + (1 << order)
        src = start + np.flatnonzero(pages.kind[start:end] != PageKind.FREE)
        dst: list[int] = []
        hold: list[int] = []
        while len(dst) < len(src):
            p = machine.buddy.rmqueue(zone, 0, MigrateType.MOVABLE)
            assert p >= 0, "the test state leaves enough free pages"
            (hold if start <= p < end else dst).append(p)
        d = np.asarray(dst, dtype=np.int64)
        for col in ("kind", "flags", "owner", "private", "token"):
            getattr(pages, col)[d] = getattr(pages, col)[src]
        for oid in np.unique(pages.owner[src]).tolist():
            m = pages.owner[src] == oid
            machine.owners[oid].pages_migrated(src[m], d[m])  # type: ignore[union-attr]
        for p in src.tolist():
            machine.free_pages(p)
        for p in hold:
            machine.buddy.free_one_page(zone, p, 0, machine.buddy.get_pageblock_migratetype(p))
        vm["pgmigrate_success"] += len(src)
        pfn, got = machine.buddy.get_page_from_freelist(order, alloc_flags, ac)
        if pfn >= 0:
            vm["compact_success"] += 1
            return pfn, got, COMPACT_SUCCESS
        vm["compact_fail"] += 1
        return -1, None, COMPACT_COMPLETE


def fill_to_min(m: Machine, allocator_only: Callable[[Machine], Any], kind: PageKind = FILE) -> LruOwner:
    """Fill the zone with LRU pages through the bare slow path: the bulk grab stops at
    low + 1 (321 free), single allocations go on at low (to 320), the bare slow path at
    min (to 256).  So the owner ends with 8192 - 256 = 7936 pages and 256 are free."""
    w = LruOwner(m, "cache" if kind == FILE else "heap")
    with allocator_only(m):
        w.alloc(8192, kind, gfp=GFP_KERNEL)
    assert m.zones[0].free_pages == 256 and len(w.pages) == 7936
    return w


# ------------------------------------------------------------------ atomic requests
@pytest.mark.parametrize("gfp", [GFP_ATOMIC, GFP_NOWAIT])
def test_atomic_requests_never_reclaim_and_fail_after_the_min_watermark_retry(
        gfp: int, one_zone_machine, checkerboard, stand_in,
) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    lru, _ = checkerboard(m)
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    assert m.alloc_pages(gfp, 0, lru.owner_id, FILE) == -1
    trace = sp.last
    assert trace is not None and trace.reason == "atomic"
    assert trace.reclaim_rounds == 0 and trace.compact_attempts == 0
    assert m.vmstat["pgscan_direct"] == 0 and not any(k.startswith("allocstall") for k in m.vmstat)
    assert trace.seconds == pytest.approx(2 * COST_ALLOC_FAST)  # the min-watermark try and the retry loop's
    assert m.kswapd.mode is KswapdMode.RUNNABLE  # but kswapd was woken
    assert m.vmstat["pgalloc_fail"] == 1
    assert_consistent(m)


def test_gfp_atomic_dips_into_the_reserves(one_zone_machine, stand_in, allocator_only) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    w = fill_to_min(m, allocator_only)  # 256 free = min
    stand_in(ScriptedCompaction())
    # ALLOC_HIGH halves min (256 - 128 = 128), ALLOC_HARDER takes a quarter of that
    # (128 - 32 = 96): order 0 needs free > 96, so 256 - 96 = 160 allocations succeed
    got = [m.alloc_pages(GFP_ATOMIC, 0, w.owner_id, FILE) for _ in range(200)]
    assert sum(p >= 0 for p in got) == 160
    assert m.zones[0].free_pages == 96
    assert m.vmstat["pgscan_direct"] == 0
    for p in got:
        if p >= 0:
            m.free_pages(p)
    assert_consistent(m)


# ------------------------------------------------------------------ direct reclaim
def test_gfp_kernel_reclaims_file_pages_when_below_min(one_zone_machine, stand_in, allocator_only) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    w = fill_to_min(m, allocator_only)
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    k = SimpleOwner(m, "k")
    pfn = m.alloc_pages(GFP_KERNEL, 0, k.owner_id, PageKind.KERNEL)
    assert pfn >= 0
    k.pages.add(pfn, 1)
    # direct reclaim of 7936 clean file pages: 7936>>12 = 1, 7935>>11 = 3, 7932>>10 = 7,
    # 7925>>9 = 15, 7910>>8 = 30: 56 >= 32 at priority 8
    assert m.vmstat["allocstall_normal"] == 1
    assert m.vmstat["pgscan_direct"] == 56 and m.vmstat["pgsteal_direct"] == 56
    assert len(w.pages) == 7936 - 56
    trace = sp.last
    assert trace is not None and trace.reclaim_rounds == 1 and trace.reclaimed == 56
    assert trace.compact_attempts == 0  # order 0 never compacts
    assert m.zones[0].free_pages == 256 + 56 - 1
    assert sp.stats.successes == 1 and sp.stats.failures == 0
    assert_consistent(m)


# ------------------------------------------------------------------ compaction
def test_order3_gfp_kernel_blocked_by_movable_pages_is_rescued_by_compaction(
        one_zone_machine, checkerboard, stand_in,
) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    w, _ = checkerboard(m, kind=ANON, lru_every=1)  # everything is anon, movable, unreclaimable (no swap)
    # free every other page of the top half: 2048 free pages, none with a free buddy
    w.free(w.pages.pfns()[4096::2])
    assert m.zones[0].free_pages == 2048 and m.zones[0].nr_free(0) == 2048
    comp = MiniCompaction()
    stand_in(comp)
    sp = slow_path(m)
    k = SimpleOwner(m, "driver")
    pfn = m.alloc_pages(GFP_KERNEL | Gfp.COMP, 3, k.owner_id, PageKind.KERNEL)
    assert pfn >= 0 and pfn % 8 == 0
    k.pages.add(pfn, 42)
    trace = sp.last
    assert trace is not None
    # order 3, not movable: async compaction first, which only takes UNMOVABLE pageblocks
    # (there are none); then the loop: reclaim (nothing: anon without swap), compaction at
    # SYNC_LIGHT, which moves the 8 pages of the first block
    assert comp.prios == [ASYNC, LIGHT]
    assert trace.compact_results == [COMPACT_COMPLETE, COMPACT_SUCCESS]
    assert trace.reclaim_rounds == 1 and trace.reclaimed == 0
    assert m.vmstat["allocstall_normal"] == 1 and m.vmstat["pgscan_direct"] == 0
    assert m.vmstat["compact_stall"] == 2
    assert m.vmstat["compact_success"] == 1 and m.vmstat["compact_fail"] == 1
    assert m.vmstat["pgmigrate_success"] == 8
    assert_consistent(m)  # the anon owner's content came along with its pages


def test_movable_order3_request_goes_straight_to_reclaim(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    w, _ = checkerboard(m, kind=ANON, lru_every=1)
    w.free(w.pages.pfns()[4096::2])
    comp = MiniCompaction()
    stand_in(comp)
    pfn = m.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp.COMP, 3, w.owner_id, ANON)
    assert pfn >= 0
    # a movable, non-costly request skips the initial async compaction; the loop's
    # compaction runs at DEF_COMPACT_PRIORITY (SYNC_LIGHT)
    assert comp.prios == [LIGHT]
    m.free_pages(pfn, 3)
    assert_consistent(m)


# ------------------------------------------------------------------ giving up
def test_costly_noretry_gives_up_when_compaction_was_skipped_or_deferred(
        one_zone_machine, checkerboard, stand_in,
) -> None:
    for answer in (COMPACT_SKIPPED, COMPACT_DEFERRED):
        m = one_zone_machine(booted=True, kswapd_catch_up=False)
        checkerboard(m)
        comp = ScriptedCompaction(answer)
        stand_in(comp)
        sp = slow_path(m)
        assert m.alloc_pages(GFP_KERNEL | Gfp.NORETRY, 4, 1, PageKind.KERNEL) == -1
        assert comp.prios == [ASYNC]
        assert sp.last is not None and sp.last.reclaim_rounds == 0 and sp.last.reason == "noretry"
        assert m.vmstat["pgscan_direct"] == 0
        assert_consistent(m)


def test_costly_noretry_otherwise_makes_one_async_round(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_COMPLETE)
    stand_in(comp)
    sp = slow_path(m)
    assert m.alloc_pages(GFP_KERNEL | Gfp.NORETRY, 4, 1, PageKind.KERNEL) == -1
    assert comp.prios == [ASYNC, ASYNC]  # the loop keeps async: sync could be very expensive
    assert sp.last is not None and sp.last.reclaim_rounds == 1 and sp.last.reason == "noretry"


def test_noretry_stops_after_one_reclaim_and_compaction_round(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_COMPLETE)
    stand_in(comp)
    sp = slow_path(m)
    assert m.alloc_pages(GFP_KERNEL | Gfp.NORETRY, 2, 1, PageKind.KERNEL) == -1
    assert comp.prios == [ASYNC, LIGHT]
    trace = sp.last
    assert trace is not None and trace.reclaim_rounds == 1 and trace.reason == "noretry"
    assert trace.reclaimed >= 32
    # latency: three free-list tries (min watermark, loop, after reclaim), reclaim, 2 compactions
    assert trace.seconds > 3 * COST_ALLOC_FAST + 2e-3


def test_costly_orders_without_retry_mayfail_make_one_round(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_COMPLETE)
    stand_in(comp)
    sp = slow_path(m)
    assert m.alloc_pages(GFP_KERNEL, 5, 1, PageKind.KERNEL) == -1
    assert comp.prios == [ASYNC, LIGHT]
    assert sp.last is not None and sp.last.reason == "costly" and sp.last.reclaim_rounds == 1


def test_priority_escalates_to_sync_full_for_non_costly_orders(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_COMPLETE)
    stand_in(comp)
    sp = slow_path(m)
    assert m.alloc_pages(GFP_KERNEL, 3, 1, PageKind.KERNEL) == -1
    # "complete" = compaction_failed: each failure raises the priority until SYNC_FULL, then stop
    assert comp.prios == [ASYNC, LIGHT, FULL]
    trace = sp.last
    assert trace is not None and trace.reason == "no_progress" and trace.reclaim_rounds == 2
    assert trace.retries == 1
    assert_consistent(m)


def test_costly_retry_mayfail_stops_escalating_at_sync_light(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_COMPLETE)
    stand_in(comp)
    assert m.alloc_pages(GFP_KERNEL | Gfp.RETRY_MAYFAIL, 4, 1, PageKind.KERNEL) == -1
    assert comp.prios == [ASYNC, LIGHT]


def test_compaction_that_makes_progress_is_retried_max_compact_retries_times(
        one_zone_machine, checkerboard, stand_in,
) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_SUCCESS)  # progress, but someone else always takes the page
    stand_in(comp)
    assert m.alloc_pages(GFP_KERNEL, 3, 1, PageKind.KERNEL) == -1
    # initial async try; then at SYNC_LIGHT retries 1..16 go round again, the 17th
    # escalates to SYNC_FULL (retries reset); 17 more rounds there, and the 17th gives up
    assert comp.prios == [ASYNC] + [LIGHT] * 17 + [FULL] * 17
    assert_consistent(m)


def test_costly_retry_mayfail_compaction_retries_are_a_quarter(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    comp = ScriptedCompaction(COMPACT_SUCCESS)
    stand_in(comp)
    assert m.alloc_pages(GFP_KERNEL | Gfp.RETRY_MAYFAIL, 4, 1, PageKind.KERNEL) == -1
    # MAX_COMPACT_RETRIES / 4 = 4 retries at SYNC_LIGHT, the 5th round cannot escalate
    assert comp.prios == [ASYNC] + [LIGHT] * 5


def test_reclaim_retry_gives_up_after_max_reclaim_retries_without_progress(
        one_zone_machine, stand_in, allocator_only,
) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    fill_to_min(m, allocator_only, kind=ANON)  # 7936 anon pages, no swap: reclaim finds nothing, ever
    # should_reclaim_retry: no reclaimable pages (anon, no swap), so available = free = 256,
    # not above min (256): no retry, and no progress means no compaction retry either
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    k = SimpleOwner(m, "k")
    assert m.alloc_pages(GFP_KERNEL, 0, k.owner_id, PageKind.KERNEL) == -1
    assert sp.last is not None and sp.last.reason == "no_progress" and sp.last.retries == 0
    assert m.vmstat["allocstall_normal"] == 1


def test_reclaim_retry_goes_on_while_reclaim_could_help(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m, kind=FILE, lru_every=1)  # all 8192 pages clean page cache, none free
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    pfns = [m.alloc_pages(GFP_KERNEL, 0, 2, PageKind.KERNEL) for _ in range(3)]
    assert all(p >= 0 for p in pfns)
    # The first request reclaims until free > min (256), one direct reclaim per round, each
    # stopping at the first priority where it has 32 pages:
    #   8192: 2 + 3 + 7 + 15 + 31 = 58 (free 58)
    #   8134: 1 + 3 + 7 + 15 + 31 = 57 (115); 8077: 57 (172); 8020: 57 (229); 7963: 57 (286)
    # should_reclaim_retry says yes after each (progress, and the LRU could lift free above min).
    # The next two find 285 and 284 free, above min: no reclaim.
    assert sp.stats.direct_reclaims == 5 and sp.stats.retries == 4
    assert m.vmstat["allocstall_normal"] == 5
    assert m.vmstat["pgsteal_direct"] == 58 + 4 * 57
    assert sp.stats.failures == 0 and sp.stats.calls == 3
    assert m.zones[0].free_pages == 286 - 3
    for p in pfns:
        m.free_pages(p)
    assert_consistent(m)


def test_nofail_gets_one_attempt_with_alloc_harder_then_fails_without_an_oom_killer(
        one_zone_machine, checkerboard, stand_in, allocator_only,
) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    fill_to_min(m, allocator_only, kind=ANON)  # 256 free = min, nothing reclaimable
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    k = SimpleOwner(m, "k")
    assert m.alloc_pages(GFP_KERNEL, 0, k.owner_id, PageKind.KERNEL) == -1
    # NOFAIL: ALLOC_HARDER lowers min by a quarter (192), 256 > 192
    pfn = m.alloc_pages(GFP_KERNEL | Gfp.NOFAIL, 0, k.owner_id, PageKind.KERNEL)
    assert pfn >= 0
    k.pages.add(pfn, 5)
    assert_consistent(m)

    m2 = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m2, kind=ANON, lru_every=1)  # nothing free, nothing reclaimable
    stand_in(ScriptedCompaction())
    sp = slow_path(m2)
    assert m2.alloc_pages(GFP_KERNEL | Gfp.NOFAIL, 0, 1, PageKind.KERNEL) == -1
    assert sp.last is not None and sp.last.reason == "nofail"
    assert_consistent(m2)


def test_on_trace_receives_every_slow_path_allocation(one_zone_machine, checkerboard, stand_in) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m)
    seen: list[SlowPathTrace] = []
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    sp.on_trace = seen.append
    m.alloc_pages(GFP_NOWAIT, 0, 1, PageKind.KERNEL)
    m.alloc_pages(GFP_KERNEL | Gfp.NORETRY, 1, 1, PageKind.KERNEL)
    assert [t.order for t in seen] == [0, 1]
    assert sp.stats.calls == 2 and sp.stats.failures_by_reason == {"atomic": 1, "noretry": 1}
    assert isinstance(m.slowpath, FullSlowPath)


def test_real_compaction_rescues_an_order3_request(one_zone_machine, checkerboard) -> None:
    m = one_zone_machine(booted=True)
    w, _ = checkerboard(m, kind=ANON, lru_every=1)
    w.free(w.pages.pfns()[4096::2])
    sp = slow_path(m)
    k = SimpleOwner(m, "driver")
    pfn = m.alloc_pages(GFP_KERNEL | Gfp.COMP, 3, k.owner_id, PageKind.KERNEL)
    assert pfn >= 0
    k.pages.add(pfn, 42)
    assert sp.last is not None and sp.last.compact_attempts >= 1
    assert m.vmstat["compact_stall"] >= 1 and m.vmstat["compact_success"] == 1
    assert m.vmstat["pgmigrate_success"] >= 8
    assert_consistent(m)


@pytest.mark.parametrize(("order", "result", "prio", "retries", "expected"), [
    (0, COMPACT_SUCCESS, ASYNC, 0, (False, ASYNC, 0)),  # order 0 never retries compaction
    (3, COMPACT_SUCCESS, LIGHT, 0, (True, LIGHT, 1)),  # progress: count it, retry
    (3, COMPACT_SUCCESS, LIGHT, 16, (True, FULL, 0)),  # 17 > 16 retries: raise the priority instead
    (3, COMPACT_SUCCESS, FULL, 16, (False, FULL, 17)),  # ... unless already at SYNC_FULL
    (4, COMPACT_SUCCESS, LIGHT, 4, (False, LIGHT, 5)),  # costly: max 16/4 = 4 retries, SYNC_LIGHT its floor
    (4, COMPACT_SUCCESS, ASYNC, 4, (True, LIGHT, 0)),  # 5 > 4: ASYNC -> SYNC_LIGHT
    (4, COMPACT_COMPLETE, LIGHT, 0, (False, LIGHT, 0)),  # failed at the costly floor: give up
    (3, COMPACT_COMPLETE, LIGHT, 2, (True, FULL, 0)),  # failed: try harder
    (3, COMPACT_DEFERRED, ASYNC, 3, (True, LIGHT, 0)),  # withdrawn: try harder
    (3, COMPACT_PARTIAL_SKIPPED, FULL, 3, (False, FULL, 3)),
    (3, COMPACT_CONTINUE, LIGHT, 5, (True, LIGHT, 5)),  # neither: retry within the budget
])
def test_should_compact_retry_worked_by_hand(one_zone_machine, order, result, prio, retries, expected) -> None:
    """``should_compact_retry()`` of mm/page_alloc.c (v6.1), each case worked through by hand."""
    m = one_zone_machine(4096)
    ac = m.buddy.alloc_context(GFP_KERNEL)
    assert FullSlowPath().should_compact_retry(m, ac, order, 0, result, prio, retries) == expected


def test_should_compact_retry_after_skip_asks_whether_reclaim_could_help(one_zone_machine, stand_in) -> None:
    m = one_zone_machine(4096)
    ac = m.buddy.alloc_context(GFP_KERNEL)
    sp = FullSlowPath()
    # the real compaction_zonelist_suitable: an empty machine passes the watermark test,
    # so retrying makes sense
    assert sp.should_compact_retry(m, ac, 3, 0, COMPACT_SKIPPED, LIGHT, 0) == (True, LIGHT, 0)
    # a scripted compaction, whose zonelist_suitable says reclaim could not help: give up
    stand_in(ScriptedCompaction())
    assert sp.should_compact_retry(m, ac, 3, 0, COMPACT_SKIPPED, LIGHT, 0) == (False, LIGHT, 0)


def test_the_stall_clock_holds_every_slow_path_second(one_zone_machine, checkerboard) -> None:
    m = one_zone_machine(booted=True)
    w, _ = checkerboard(m, kind=ANON, lru_every=1)
    w.free(w.pages.pfns()[4096::2])
    sp = slow_path(m)
    k = SimpleOwner(m, "driver")
    before = m.stall_seconds
    for _ in range(4):
        pfn = m.alloc_pages(GFP_KERNEL | Gfp.COMP, 3, k.owner_id, PageKind.KERNEL)
        assert pfn >= 0
        k.pages.add(pfn, 1)
    # compaction charged its time to machine.stall_seconds, the slow path its own: the two
    # accounts agree, and compaction's migrations cost far more than the free-list tries
    assert m.stall_seconds - before == pytest.approx(sp.stats.stall_seconds)
    assert sp.stats.stall_seconds > 8 * 4 * 1e-6
    assert_consistent(m)


class AllocatingSwap:
    """A swap device that, like zram, allocates memory to store what it is given: one page
    per 4 pages swapped (its own owner), with GFP_NOIO as zram's fallback does."""

    name = "zram-like"

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.capacity = 10_000
        self.store: dict[int, int] = {}
        self.owner = SimpleOwner(machine, "zspages")
        self.failed_allocs = 0

    def swap_out(self, token: int) -> int | None:
        if len(self.store) % 4 == 0:
            pfn = self.machine.alloc_pages(GFP_KERNEL & ~Gfp.IO & ~Gfp.FS, 0, self.owner.owner_id, PageKind.DRIVER)
            if pfn < 0:
                self.failed_allocs += 1
                return None
            self.owner.pages.add(pfn, len(self.store))
        h = len(self.store)
        self.store[h] = token
        return h

    def swap_in(self, handle: int) -> int:
        return self.store[handle]

    def swap_free(self, handle: int) -> None:
        del self.store[handle]


def test_allocations_from_inside_reclaim_use_the_reserves_and_never_recurse(
        one_zone_machine, checkerboard, stand_in,
) -> None:
    m = one_zone_machine(booted=True, kswapd_catch_up=False)
    checkerboard(m, kind=ANON, lru_every=1)  # nothing free: the swap device's own pages must come from reserves
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    traces: list[SlowPathTrace] = []
    sp.on_trace = traces.append
    w = m.owners[1]
    w.free(w.pages.pfns()[:40])  # type: ignore[union-attr]  # 40 free pages, far below min
    dev = AllocatingSwap(m)
    register_swap_device(m, dev)
    k = SimpleOwner(m, "k")
    pfn = m.alloc_pages(GFP_KERNEL, 0, k.owner_id, PageKind.KERNEL)
    assert pfn >= 0
    k.pages.add(pfn, 9)
    # the device's allocations went through the slow path below every watermark
    # (PF_MEMALLOC: ALLOC_NO_WATERMARKS) and none of them reclaimed: every direct reclaim
    # is the outer allocation's
    outer = traces[-1]
    assert outer.order == 0 and outer.pfn == pfn and outer.reclaim_rounds >= 1
    inner = traces[:-1]
    assert len(inner) == len(dev.owner.pages) > 0
    assert all(t.reclaim_rounds == 0 and t.pfn >= 0 for t in inner)
    assert m.vmstat["allocstall_normal"] == outer.reclaim_rounds
    assert dev.failed_allocs == 0
    assert m.vmstat["pswpout"] == len(dev.store)
    assert_consistent(m)


def test_a_woken_kswapd_catches_up_before_the_allocation_reclaims(one_zone_machine, stand_in, allocator_only) -> None:
    m = one_zone_machine(booted=True)
    w = fill_to_min(m, allocator_only)  # 7936 clean file pages, 256 free
    stand_in(ScriptedCompaction())
    sp = slow_path(m)
    k = SimpleOwner(m, "k")
    pfn = m.alloc_pages(GFP_KERNEL, 0, k.owner_id, PageKind.KERNEL)
    assert pfn >= 0
    k.pages.add(pfn, 3)
    trace = sp.last
    assert trace is not None and trace.kswapd_ran and trace.reclaim_rounds == 0
    # kswapd's balance_pgdat, priorities 12..6 over 7936 pages: 1 + 3 + 7 + 15 + 30 + 61 + 122
    # = 239, free 256 -> 495 > high (384); the allocation then succeeds at min, without stalling
    assert m.vmstat["pgsteal_kswapd"] == 239 and m.vmstat["pgsteal_direct"] == 0
    assert not any(key.startswith("allocstall") for key in m.vmstat)
    assert m.zones[0].free_pages == 494 and len(w.pages) == 7936 - 239
    assert trace.seconds == pytest.approx(2 * COST_ALLOC_FAST)  # kswapd's time is not the allocation's
    assert m.kswapd.mode is KswapdMode.NAPPING
    assert_consistent(m)
