"""The allocator's slow path: ``__alloc_pages_slowpath`` (mm/page_alloc.c, v5.x-v6.1).

:class:`FullSlowPath` replaces the bare :class:`~pagemig.mm.machine.SlowPath` (which
only retries at the min watermark) with the kernel's sequence (``pagemig.mm.mm_init.boot``
gives it to the machine):

1. wake kswapd for the order (``wake_all_kswapds``), then retry the free lists at
   the flags ``gfp_to_alloc_flags`` gives (min watermark, deeper for atomic/high);
2. for costly orders, and for order > 0 requests that are not movable, try direct
   compaction at ``COMPACT_PRIO_ASYNC`` first (a costly ``__GFP_NORETRY`` request
   gives up right there if compaction was skipped or deferred, and otherwise keeps
   compacting asynchronously);
3. the loop: free lists again; without ``__GFP_DIRECT_RECLAIM`` (atomic, nowait)
   fail here; direct reclaim (``try_to_free_pages``) and the free lists; direct
   compaction at the current priority; ``__GFP_NORETRY`` stops after this one
   round, costly orders without ``__GFP_RETRY_MAYFAIL`` too; else
   ``should_reclaim_retry`` (up to ``MAX_RECLAIM_RETRIES`` rounds without progress;
   costly orders never count as progress) and ``should_compact_retry`` (priority
   escalation ASYNC -> SYNC_LIGHT -> SYNC_FULL, costly orders stop at SYNC_LIGHT,
   ``MAX_COMPACT_RETRIES``, a quarter of them for costly orders) decide whether to
   go round again.

Simplified, and why:

* No OOM killer: ``__alloc_pages_may_oom`` runs the OOM notifier chain
  (:mod:`pagemig.mm.oom_kill`; virtio_balloon's deflate-on-oom) and retries when a
  notifier freed pages; where the kernel would then kill a task and retry, the
  allocation fails.  ``__GFP_NOFAIL`` gets the kernel's extra attempt with ``ALLOC_HARDER``
  and then fails too (the kernel would loop until the OOM killer freed memory;
  a simulator that cannot kill would loop for ever).  Failures are counted in
  :class:`SlowPathStats` and by the machine (``pgalloc_fail``).
* No highatomic reserves or cpusets: ``unreserve_highatomic_pageblock`` has nothing
  to do.  ``drain_all_pages`` drains the per-cpu lists of a machine that has CPUs.  ``__GFP_MEMALLOC`` gets
  ``ALLOC_NO_WATERMARKS``, and so does an allocation made while reclaim is running
  (``PF_MEMALLOC``: a swap device such as zram allocating its storage), which never
  recurses into reclaim.
* kswapd runs when the event loop calls :func:`pagemig.mm.vmscan.background_tick`;
  besides, an allocation that fails at the min watermark first lets a woken kswapd
  catch up (the real one would have been reclaiming since the low watermark woke
  it), and only then reclaims for itself.  kswapd's time is not the allocation's.
* Simulated latency: each free-list attempt costs ``COST_ALLOC_FAST``, direct
  reclaim what its scanning, dropping and swapping cost, direct compaction what
  the compaction module charges.  The sum is the allocation's stall
  (:attr:`FullSlowPath.last`), what an allocation probe reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from pagemig.mm.compaction import (
    COMPACT_DEFERRED,
    COMPACT_SKIPPED,
    DEF_COMPACT_PRIORITY,
    INIT_COMPACT_PRIORITY,
    MIN_COMPACT_COSTLY_PRIORITY,
    MIN_COMPACT_PRIORITY,
    CompactPriority,
    CompactResult,
    alloc_pages_direct_compact,
    compaction_failed,
    compaction_made_progress,
    compaction_needs_reclaim,
    compaction_withdrawn,
    compaction_zonelist_suitable,
)
from pagemig.mm.costs import COST_ALLOC_FAST
from pagemig.mm.gfp import (
    ALLOC_HARDER,
    ALLOC_KSWAPD,
    ALLOC_NO_WATERMARKS,
    GFP_BIT_ATOMIC,
    GFP_BIT_DIRECT_RECLAIM,
    GFP_BIT_MEMALLOC,
    GFP_BIT_NOFAIL,
    GFP_BIT_NOMEMALLOC,
    GFP_BIT_NORETRY,
    GFP_BIT_RETRY_MAYFAIL,
    GFP_BIT_THISNODE,
    MIGRATE_MOVABLE,
    ZoneType,
    gfp_to_alloc_flags,
)
from pagemig.mm.lru import reclaimable_owner_mask, zone_reclaimable_pages
from pagemig.mm.machine import SlowPath
from pagemig.mm.oom_kill import out_of_memory
from pagemig.mm.pages import PAGE_ALLOC_COSTLY_ORDER
from pagemig.mm.vmscan import MAX_RECLAIM_RETRIES, kswapd_catch_up, try_to_free_pages, wakeup_kswapd
from pagemig.mm.zone import WMARK_MIN

if TYPE_CHECKING:
    from pagemig.mm.buddy import AllocContext
    from pagemig.mm.machine import Machine
    from pagemig.mm.zone import Zone

log = structlog.get_logger(__name__)


MAX_COMPACT_RETRIES = 16  # mm/page_alloc.c


# ----------------------------------------------------------------------------- the OOM step
def alloc_pages_may_oom(machine: Machine, order: int, ac: AllocContext) -> bool:
    """``__alloc_pages_may_oom()``: reclaim and compaction failed; may ``out_of_memory()``
    help?  True when it made progress (an OOM notifier freed pages: retry the allocation).

    The kernel's checks, in its order: the OOM killer does not help costly orders, nor
    ``__GFP_RETRY_MAYFAIL`` or ``__GFP_THISNODE`` requests, nor allocations limited to
    zones below ZONE_NORMAL.  (Its last attempt at the high watermark before the OOM call
    catches a parallel OOM kill; with nobody running in parallel it cannot succeed where
    the min watermark just failed, so it is left out.)
    """
    gfp = int(ac.gfp)
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return False
    if gfp & (GFP_BIT_RETRY_MAYFAIL | GFP_BIT_THISNODE):
        return False
    if ac.highest_zoneidx < ZoneType.NORMAL:
        return False
    return out_of_memory(machine)


# ----------------------------------------------------------------------------- accounting
@attrs.define
class SlowPathStats:
    """Totals over every slow-path allocation of a run."""

    calls: int = 0
    successes: int = 0
    failures: int = 0
    stall_seconds: float = 0.0
    max_stall_seconds: float = 0.0
    direct_reclaims: int = 0
    direct_compactions: int = 0
    retries: int = 0
    failures_by_reason: dict[str, int] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class SlowPathTrace:
    """One allocation through the slow path: what it did, what it cost, why it failed."""

    order: int
    gfp: int
    pfn: int = -1
    seconds: float = 0.0
    reclaim_rounds: int = 0
    reclaimed: int = 0
    compact_attempts: int = 0
    compact_results: list[CompactResult] = attrs.field(factory=list)
    compact_priority: CompactPriority = DEF_COMPACT_PRIORITY
    retries: int = 0
    kswapd_ran: bool = False  # a woken kswapd caught up before this allocation reclaimed
    reason: str = ""  # why it failed: atomic, noretry, costly, no_progress, nofail, in_reclaim

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


# ----------------------------------------------------------------------------- the slow path
class FullSlowPath(SlowPath):
    """``__alloc_pages_slowpath`` with kswapd, direct reclaim and direct compaction.

    ``on_trace`` (optional) receives every allocation's :class:`SlowPathTrace`, for
    a probe that wants each one rather than the last.  ``kswapd_catch_up`` lets a
    woken kswapd run before an allocation reclaims for itself (see
    :func:`pagemig.mm.vmscan.kswapd_catch_up`); off, kswapd runs only at ticks.
    """

    def __init__(self, on_trace: Callable[[SlowPathTrace], None] | None = None, *,
                 kswapd_catch_up: bool = True) -> None:
        self.on_trace = on_trace
        self.kswapd_catch_up = kswapd_catch_up
        self._alloc_flags: dict[int, int] = {}
        self.stats = SlowPathStats()
        self.last: SlowPathTrace | None = None

    # ------------------------------------------------------------ kswapd
    def wake_kswapd(self, machine: Machine, order: int, ac: AllocContext) -> None:
        """``wake_all_kswapds``: one node, so one kswapd, woken for the request's zone and order."""
        wakeup_kswapd(machine, order, ac.highest_zoneidx, ac.gfp)

    # ------------------------------------------------------------ pieces
    def _charge(self, machine: Machine, trace: SlowPathTrace, seconds: float) -> None:
        """Add to the allocation's latency and to the machine's stall clock
        (``machine.stall_seconds``, where direct compaction charges its own time)."""
        trace.seconds += seconds
        machine.stall_seconds = machine.stall_seconds + seconds

    def _freelist(self, machine: Machine, order: int, alloc_flags: int, ac: AllocContext,
                  trace: SlowPathTrace) -> tuple[int, Zone | None]:
        self._charge(machine, trace, COST_ALLOC_FAST)
        return machine.buddy.get_page_from_freelist(order, alloc_flags, ac)

    def _direct_compact(self, machine: Machine, order: int, alloc_flags: int, ac: AllocContext,
                        prio: CompactPriority, trace: SlowPathTrace) -> tuple[int, Zone | None, CompactResult | None]:
        """``__alloc_pages_direct_compact``; order 0 never compacts (result None).  Compaction
        charges its own time to ``machine.stall_seconds``, so the trace takes the difference."""
        if not order:
            return -1, None, None
        before = machine.stall_seconds
        pfn, zone, result = alloc_pages_direct_compact(machine, order, alloc_flags, ac, prio)
        trace.seconds += max(0.0, machine.stall_seconds - before)  # already on the stall clock
        trace.compact_attempts += 1
        trace.compact_results.append(result)
        self.stats.direct_compactions += 1
        return pfn, zone, result

    def _direct_reclaim(self, machine: Machine, order: int, alloc_flags: int, ac: AllocContext,
                        trace: SlowPathTrace) -> tuple[int, Zone | None, int]:
        """``__alloc_pages_direct_reclaim``: reclaim, then the free lists; if they fail, drain
        every CPU's per-cpu lists (``drain_all_pages(NULL)``) and try once more."""
        sc = try_to_free_pages(machine, order, ac.highest_zoneidx)
        self._charge(machine, trace, sc.seconds)
        trace.reclaim_rounds += 1
        trace.reclaimed += sc.nr_reclaimed
        self.stats.direct_reclaims += 1
        progress = sc.nr_reclaimed
        if not progress:
            return -1, None, 0
        pfn, zone = self._freelist(machine, order, alloc_flags, ac, trace)
        if pfn < 0 and machine.nr_pcp_pages:
            machine.drain_all_pages()
            pfn, zone = self._freelist(machine, order, alloc_flags, ac, trace)
        return pfn, zone, progress

    def should_reclaim_retry(self, machine: Machine, order: int, ac: AllocContext, alloc_flags: int,
                             did_some_progress: bool, no_progress_loops: int) -> tuple[bool, int]:
        """``should_reclaim_retry()``: go round again while reclaiming everything reclaimable
        could let some zone pass the min watermark at this order.  Returns (retry, loops).

        Costly orders never reset the no-progress count: reclaim freeing pages says
        nothing about whether their order will appear.
        """
        if did_some_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
            no_progress_loops = 0
        else:
            no_progress_loops += 1
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return False, no_progress_loops  # unreserve_highatomic_pageblock: no reserves modelled
        mask = reclaimable_owner_mask(machine)
        buddy = machine.buddy
        for zone in ac.zonelist:
            available = zone_reclaimable_pages(machine, zone, mask) + zone.free_pages
            if buddy.zone_watermark_ok(zone, order, zone.wmark_pages(WMARK_MIN), ac.highest_zoneidx, alloc_flags,
                                       free_pages=available):
                return True, no_progress_loops
        return False, no_progress_loops

    def should_compact_retry(self, machine: Machine, ac: AllocContext, order: int, alloc_flags: int,
                             result: CompactResult | None, priority: CompactPriority,
                             retries: int) -> tuple[bool, CompactPriority, int]:
        """``should_compact_retry()`` (mm/page_alloc.c, v6.1), the only copy: ``result`` is the
        last ``compact_result`` (None: order 0, no compaction ran).  The kernel updates the
        priority and the retry count through pointers; here they come back with the verdict: (retry, priority, retries).

        ``COMPACT_SKIPPED`` asks compaction whether reclaim could make some zone suitable
        (``compaction_zonelist_suitable``).
        """
        if not order or result is None:
            return False, priority, retries
        costly_order = order > PAGE_ALLOC_COSTLY_ORDER
        if compaction_made_progress(result):
            retries += 1
        if compaction_needs_reclaim(result):
            # skipped for want of order-0 pages: retry only if reclaim looks able to help
            return compaction_zonelist_suitable(machine, ac, order, alloc_flags), priority, retries
        if not (compaction_failed(result) or compaction_withdrawn(result)):
            max_retries = MAX_COMPACT_RETRIES // 4 if costly_order else MAX_COMPACT_RETRIES
            if retries <= max_retries:
                return True, priority, retries
        # check_priority: failed, withdrawn or out of retries; go on at a higher priority if allowed
        min_priority = MIN_COMPACT_COSTLY_PRIORITY if costly_order else MIN_COMPACT_PRIORITY
        if priority > min_priority:
            return True, CompactPriority(priority - 1), 0
        return False, priority, retries

    # ------------------------------------------------------------ the whole thing
    def alloc_slowpath(self, machine: Machine, order: int, ac: AllocContext) -> tuple[int, Zone | None]:
        trace = SlowPathTrace(order=order, gfp=ac.gfp)
        pfn, zone = self._slowpath(machine, order, ac, trace)
        trace.pfn = pfn
        st = self.stats
        st.calls += 1
        st.stall_seconds += trace.seconds
        st.max_stall_seconds = max(st.max_stall_seconds, trace.seconds)
        st.retries += trace.retries
        if pfn >= 0:
            st.successes += 1
        else:
            st.failures += 1
            st.failures_by_reason[trace.reason] = st.failures_by_reason.get(trace.reason, 0) + 1
        self.last = trace
        if self.on_trace is not None:
            self.on_trace(trace)
        return pfn, zone

    def _slowpath(self, machine: Machine, order: int, ac: AllocContext,
                  trace: SlowPathTrace) -> tuple[int, Zone | None]:
        gfp = int(ac.gfp)
        can_direct_reclaim = bool(gfp & GFP_BIT_DIRECT_RECLAIM)
        costly_order = order > PAGE_ALLOC_COSTLY_ORDER
        if gfp & GFP_BIT_ATOMIC and can_direct_reclaim:  # WARN_ON_ONCE: atomic reserves are for atomic context
            gfp &= ~GFP_BIT_ATOMIC
        compaction_retries = 0
        no_progress_loops = 0
        compact_priority = DEF_COMPACT_PRIORITY
        compact_result: CompactResult | None = None
        # PF_MEMALLOC: an allocation made from inside reclaim (a swap device storing a page)
        # may use every reserve, and must not recurse into reclaim
        in_reclaim = machine.reclaim.in_reclaim > 0
        pfmemalloc = bool(gfp & GFP_BIT_MEMALLOC or in_reclaim) and not gfp & GFP_BIT_NOMEMALLOC

        alloc_flags = self._alloc_flags.get(gfp, -1)
        if alloc_flags < 0:
            alloc_flags = self._alloc_flags[gfp] = gfp_to_alloc_flags(gfp)
        if alloc_flags & ALLOC_KSWAPD:
            self.wake_kswapd(machine, order, ac)
        pfn, zone = self._freelist(machine, order, alloc_flags, ac, trace)
        if pfn >= 0:
            return pfn, zone
        if self.kswapd_catch_up and alloc_flags & ALLOC_KSWAPD and not in_reclaim and kswapd_catch_up(machine):
            # kswapd would have been reclaiming since the low watermark woke it
            trace.kswapd_ran = True
            pfn, zone = self._freelist(machine, order, alloc_flags, ac, trace)
            if pfn >= 0:
                return pfn, zone

        if (can_direct_reclaim and (costly_order or (order > 0 and ac.migratetype != MIGRATE_MOVABLE))
                and not pfmemalloc):
            pfn, zone, compact_result = self._direct_compact(machine, order, alloc_flags, ac,
                                                             INIT_COMPACT_PRIORITY, trace)
            if pfn >= 0:
                return pfn, zone
            if costly_order and gfp & GFP_BIT_NORETRY:
                if compact_result in (COMPACT_SKIPPED, COMPACT_DEFERRED):
                    trace.reason = "noretry"
                    return -1, None
                compact_priority = INIT_COMPACT_PRIORITY  # keep it async: sync could be very expensive

        while True:  # retry:
            if alloc_flags & ALLOC_KSWAPD:
                self.wake_kswapd(machine, order, ac)
            if pfmemalloc:
                alloc_flags = ALLOC_NO_WATERMARKS | (alloc_flags & ALLOC_KSWAPD)
            pfn, zone = self._freelist(machine, order, alloc_flags, ac, trace)
            if pfn >= 0:
                return pfn, zone
            if not can_direct_reclaim:
                trace.reason = "atomic"
                return -1, None
            if in_reclaim:  # avoid recursion of direct reclaim
                trace.reason = "in_reclaim"
                return -1, None

            pfn, zone, did_some_progress = self._direct_reclaim(machine, order, alloc_flags, ac, trace)
            if pfn >= 0:
                return pfn, zone
            pfn, zone, compact_result = self._direct_compact(machine, order, alloc_flags, ac,
                                                             compact_priority, trace)
            if pfn >= 0:
                return pfn, zone

            if gfp & GFP_BIT_NORETRY:
                trace.reason = "noretry"
                break
            if costly_order and not gfp & GFP_BIT_RETRY_MAYFAIL:
                trace.reason = "costly"
                break
            retry, no_progress_loops = self.should_reclaim_retry(
                machine, order, ac, alloc_flags, did_some_progress > 0, no_progress_loops)
            if not retry and did_some_progress > 0:
                retry, compact_priority, compaction_retries = self.should_compact_retry(
                    machine, ac, order, alloc_flags, compact_result, compact_priority, compaction_retries)
                trace.compact_priority = compact_priority
            if retry:
                trace.retries += 1
                continue
            # Reclaim has failed us: __alloc_pages_may_oom; the OOM notifiers may give memory back
            if alloc_pages_may_oom(machine, order, ac):
                no_progress_loops = 0
                trace.retries += 1
                continue
            trace.reason = "no_progress"
            break

        if gfp & GFP_BIT_NOFAIL and can_direct_reclaim:
            # __alloc_pages_cpuset_fallback(ALLOC_HARDER): reserves, but not all of them
            pfn, zone = self._freelist(machine, order, (alloc_flags & ~ALLOC_NO_WATERMARKS) | ALLOC_HARDER,
                                       ac, trace)
            if pfn >= 0:
                return pfn, zone
            trace.reason = "nofail"
            log.warning("nofail_allocation_failed", order=order, gfp=hex(int(gfp)),
                        note="the kernel would loop until the OOM killer freed memory; the simulator has none")
        return -1, None


def stall_seconds(machine: Machine) -> float:
    """Simulated time the slow path has stalled allocations so far (0 with the bare
    allocator, whose slow path only retries at the min watermark)."""
    return float(getattr(getattr(machine.slowpath, "stats", None), "stall_seconds", 0.0))


__all__ = [
    "MAX_COMPACT_RETRIES",
    "FullSlowPath",
    "SlowPathStats",
    "SlowPathTrace",
    "alloc_pages_may_oom",
    "stall_seconds",
]
