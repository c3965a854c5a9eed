"""Memory compaction as mm/compaction.c does it (v5.x-v6.1).

The pieces, by their kernel names:

* :func:`compact_zone` runs one zone: the migration scanner walks up from the
  zone start and isolates about :data:`COMPACT_CLUSTER_MAX` movable pages, the free
  scanner walks down from the zone end and isolates free pages as targets,
  :func:`~pagemig.mm.migrate.migrate_pages` moves the batch, and the loop repeats
  until :func:`compact_finished` says so (the scanners met, a page of the wanted
  order is free, or the proactive score is low enough).  Positions are cached per
  zone and reset when the scanners meet.
* Its phases are pluggy hooks (``pagemig_compaction_*`` in :mod:`pagemig.hookspecs`),
  called per zone run and per batch, never per page.  The kernel's policy lives
  here as plain functions (:func:`compact_finished`, :func:`isolate_migratepages`,
  :func:`isolate_freepages`) that :mod:`pagemig.compaction_policy` registers
  as the default hook implementations.  ``compact_zone`` calls the hook relay it
  is given (or ``machine.hook``, which a run sets); without one it calls these
  functions directly, so the mm layer works without pluggy.
* Who compacts: direct compaction from the allocator's slow path
  (:func:`try_to_compact_pages`, :func:`alloc_pages_direct_compact`, priorities; the
  retry decision, ``should_compact_retry``, is page_alloc.c's and lives in
  :mod:`pagemig.mm.slowpath`), kcompactd (:func:`wakeup_kcompactd`,
  :func:`kcompactd_run`, with proactive compaction every 500 ms of simulated time),
  and ``echo 1 > /proc/sys/vm/compact_memory`` (:func:`compact_memory`).
* Suitability (:func:`compaction_suitable` with ``extfrag_threshold``), skip bits
  and their reset, and deferral (``defer_shift`` up to 6).
* The v5.1+ free-list searches for orders above 0: :func:`fast_isolate_freepages`
  (targets taken straight off the MOVABLE free lists, from the top quarter of the
  zone) and, for costly orders, :func:`fast_find_migrateblock` (start the migration
  scanner in a block that already has free pages).  Full compaction (order -1)
  and anything ignoring skip hints scan linearly, as in the kernel.

Free pages isolated as migration targets leave the buddy allocator (``NR_FREE_PAGES``
drops, as ``__isolate_free_page`` does) and are held by a registered owner named
"compaction" as isolated kernel pages, so the checker accounts for every one of them
in the middle of a compaction (``allow_isolated=True``) and flags any left behind
afterwards.

The scanners are vectorised per pageblock: one NumPy pass classifies the pfns of
the block (free, compound, LRU candidate, driver candidate, failure) and the batch
is taken from the candidates; per-page Python work is left to driver pages, which
cost a driver call each anyway, and to free blocks taken off their lists.

Where v5.x and v6.1 differ in a detail, the choice is named where it is made: the
scanned counters count as v6.1 does (a free block met by the migration scanner is one
pfn, a free block isolated by the free scanner all of its pages: on the real 1 GiB UML
frag snapshot the simulator scans 115,600 + 50,938 pfns where Linux 6.1 scanned
113,932 + 49,815); ``fast_isolate_freepages`` moves the free scanner to the highest
block it saw only if that is above its min mark (the 2020 fix); ``fast_find_migrateblock``
does not mark the block it found as skip (v5.x did, and then abandoned that block).

Simplified, and why:

* no page capture (``capture_control``): the allocation after direct compaction
  goes through the free lists;
* no lock contention, no ``too_many_isolated`` throttling, no pcp lists to drain,
  no unevictable pages, no writeback (so ``ISOLATE_ASYNC_MIGRATE`` never refuses a
  page), no CMA, no hugetlb, no THP migration (compound pages are skipped whole, as
  compaction does);
* kcompactd is a function the event loop calls each step, not a thread: several
  500 ms periods elapsed between two calls count as one;
* simulated time: scanning, isolating and migrating cost the figures of
  :mod:`pagemig.mm.costs`; direct compaction adds its cost to
  ``machine.stall_seconds`` (the allocation's latency); kcompactd's and full
  compaction's are totalled in ``machine.compaction``.
"""

from __future__ import annotations

import enum
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np
import structlog

from pagemig.mm import costs
from pagemig.mm.gfp import (
    ALLOC_WMARK_MASK,
    GFP_KERNEL,
    MIGRATE_CMA,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    Gfp,
    gfp_migratetype,
)
from pagemig.mm.lru import reclaimable_owner_mask, zone_reclaimable_pages
from pagemig.mm.migrate import (
    LRU_UNISOLATABLE,
    MigrateReason,
    MigrateResult,
    mark_pages_free,
    migrate_pages,
    putback_movable_pages,
    putback_still_isolated,
)
from pagemig.mm.movable import MigrateMode, isolate_movable_page, putback_movable_page
from pagemig.mm.node import KCOMPACTD_INTERVAL, CompactionState
from pagemig.mm.owner import Owner
from pagemig.mm.pages import (
    ANON,
    BUDDY,
    DRIVER,
    FILE,
    HEAD,
    ISOLATED,
    KERNEL,
    MAX_ORDER,
    MOVABLE,
    NOT_ISOLATED_MASK,
    NR_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    TAIL,
)
from pagemig.mm.vmstat import (
    fragmentation_index,
    fragmentation_score_node,
    fragmentation_score_zone,
)
from pagemig.mm.zone import reset_cached_positions

if TYPE_CHECKING:
    from pagemig.mm.buddy import AllocContext
    from pagemig.mm.machine import Machine
    from pagemig.mm.zone import Zone

log = structlog.get_logger(__name__)

COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX: pages isolated per batch
COMPACT_MAX_DEFER_SHIFT = 6  # "Do not skip compaction more than 64 times"

DRV_FLAG_MASK = MOVABLE | ISOLATED | HEAD | TAIL


class CompactResult(enum.IntEnum):
    """``enum compact_result`` (include/linux/compaction.h, v6.1); larger is "more done",
    which is why ``try_to_compact_pages`` keeps the maximum over zones."""

    COMPACT_NOT_SUITABLE_ZONE = 0
    COMPACT_SKIPPED = 1
    COMPACT_DEFERRED = 2
    COMPACT_NO_SUITABLE_PAGE = 3
    COMPACT_CONTINUE = 4
    COMPACT_COMPLETE = 5
    COMPACT_PARTIAL_SKIPPED = 6
    COMPACT_CONTENDED = 7
    COMPACT_SUCCESS = 8


COMPACT_NOT_SUITABLE_ZONE = CompactResult.COMPACT_NOT_SUITABLE_ZONE
COMPACT_SKIPPED = CompactResult.COMPACT_SKIPPED
COMPACT_DEFERRED = CompactResult.COMPACT_DEFERRED
COMPACT_NO_SUITABLE_PAGE = CompactResult.COMPACT_NO_SUITABLE_PAGE
COMPACT_CONTINUE = CompactResult.COMPACT_CONTINUE
COMPACT_COMPLETE = CompactResult.COMPACT_COMPLETE
COMPACT_PARTIAL_SKIPPED = CompactResult.COMPACT_PARTIAL_SKIPPED
COMPACT_CONTENDED = CompactResult.COMPACT_CONTENDED
COMPACT_SUCCESS = CompactResult.COMPACT_SUCCESS


def compaction_made_progress(result: CompactResult) -> bool:
    """``compaction_made_progress()``: compaction expects the allocation to succeed."""
    return result == COMPACT_SUCCESS


def compaction_failed(result: CompactResult) -> bool:
    """``compaction_failed()``: the whole zone was scanned without success."""
    return result == COMPACT_COMPLETE


def compaction_needs_reclaim(result: CompactResult) -> bool:
    """``compaction_needs_reclaim()``: skipped for want of free pages."""
    return result == COMPACT_SKIPPED


def compaction_withdrawn(result: CompactResult) -> bool:
    """``compaction_withdrawn()``: deferred, contended, or only part of the zone scanned."""
    return result in (COMPACT_DEFERRED, COMPACT_CONTENDED, COMPACT_PARTIAL_SKIPPED)


class CompactPriority(enum.IntEnum):
    """``enum compact_priority`` (include/linux/compaction.h): lower is more thorough.
    The aliases are the kernel's, members of the same values."""

    COMPACT_PRIO_SYNC_FULL = 0
    MIN_COMPACT_PRIORITY = 0
    COMPACT_PRIO_SYNC_LIGHT = 1
    MIN_COMPACT_COSTLY_PRIORITY = 1
    DEF_COMPACT_PRIORITY = 1
    COMPACT_PRIO_ASYNC = 2
    INIT_COMPACT_PRIORITY = 2


COMPACT_PRIO_SYNC_FULL = CompactPriority.COMPACT_PRIO_SYNC_FULL
MIN_COMPACT_PRIORITY = CompactPriority.MIN_COMPACT_PRIORITY
COMPACT_PRIO_SYNC_LIGHT = CompactPriority.COMPACT_PRIO_SYNC_LIGHT
MIN_COMPACT_COSTLY_PRIORITY = CompactPriority.MIN_COMPACT_COSTLY_PRIORITY
DEF_COMPACT_PRIORITY = CompactPriority.DEF_COMPACT_PRIORITY
COMPACT_PRIO_ASYNC = CompactPriority.COMPACT_PRIO_ASYNC
INIT_COMPACT_PRIORITY = CompactPriority.INIT_COMPACT_PRIORITY


def compact_gap(order: int) -> int:
    """``compact_gap()`` (include/linux/compaction.h): the free pages compaction wants beyond
    the watermark, twice the request (migration needs targets while the sources are held)."""
    return 2 << order


class IsolateMigrate(enum.IntEnum):
    """``isolate_migrate_t``: what the migration scanner's pass produced."""

    ISOLATE_ABORT = 0
    ISOLATE_NONE = 1
    ISOLATE_SUCCESS = 2


ISOLATE_ABORT = IsolateMigrate.ISOLATE_ABORT
ISOLATE_NONE = IsolateMigrate.ISOLATE_NONE
ISOLATE_SUCCESS = IsolateMigrate.ISOLATE_SUCCESS


def _check_order(_inst: object, _attr: object, value: int) -> None:
    if not -1 <= value <= MAX_ORDER:
        raise ValueError(f"compaction order {value} is outside -1..{MAX_ORDER} (-1: compact the whole zone)")


_EMPTY = np.empty(0, dtype=np.int64)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class CompactControl:
    """``struct compact_control``: one compaction run of one zone.

    The policy fields are the kernel's; the rest is the run's state (scanner
    positions, the isolated batch, the free targets) and what it did, so that hooks
    and reports read one object.  ``counters`` holds this run's events under their
    /proc/vmstat names.
    """

    zone: Zone
    order: int = attrs.field(default=-1, validator=_check_order)
    mode: MigrateMode = MigrateMode.ASYNC
    gfp: int = int(GFP_KERNEL)
    migratetype: int = MIGRATE_MOVABLE
    alloc_flags: int = 0
    highest_zoneidx: int = 0
    whole_zone: bool = False
    ignore_skip_hint: bool = False
    ignore_block_suitable: bool = False
    direct_compaction: bool = False
    proactive_compaction: bool = False
    # run state
    rescan: bool = False  # v6.1 cc->rescan (finish_pageblock in v6.2+)
    contended: bool = False
    migrate_pfn: int = 0
    free_pfn: int = 0
    nr_migratepages: int = 0
    nr_freepages: int = 0
    migratepages: np.ndarray = attrs.field(factory=lambda: _EMPTY)  # in isolation order
    freepages: list[int] = attrs.field(factory=list)  # free targets, the next one to use last
    total_migrate_scanned: int = 0
    total_free_scanned: int = 0
    # what the run did
    counters: Counter[str] = attrs.field(factory=Counter)
    nr_migrated: int = 0
    nr_migrate_failed: int = 0
    batches: int = 0
    seconds: float = 0.0
    result: CompactResult | None = None
    # the v5.1+ free-list searches
    search_order: int = -1  # -1: start at order - 1
    fast_search_fail: int = 0
    fast_found: set[int] = attrs.field(factory=set)  # pageblocks fast_find_migrateblock already chose
    fast_start_pfn: int = 0

    def __attrs_post_init__(self) -> None:
        if self.search_order < 0:
            self.search_order = self.order
        self.mode = MigrateMode(self.mode)

    @property
    def sync(self) -> bool:
        return self.mode != MigrateMode.ASYNC

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures of the run, for reports and logs."""
        return {
            "zone": self.zone.name,
            "order": self.order,
            "mode": self.mode.name,
            "result": self.result.name if self.result is not None else None,
            "migrate_scanned": self.total_migrate_scanned,
            "free_scanned": self.total_free_scanned,
            "isolated": self.counters["compact_isolated"],
            "migrated": self.nr_migrated,
            "migrate_failed": self.nr_migrate_failed,
            "batches": self.batches,
            "seconds": self.seconds,
        }


# ------------------------------------------------------------------ per-machine state
class CompactionTargets(Owner):
    """Holds the free pages that running compactions isolated as migration targets.

    They are out of the buddy allocator (as in the kernel, where ``__isolate_free_page``
    takes them off the free lists and ``NR_FREE_PAGES``), so somebody must own them
    for the checker to account for every pfn.  They carry no content.
    """

    name = "compaction"

    def __init__(self, state: CompactionState) -> None:
        self.state = state

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        raise RuntimeError("free targets of a compaction are never LRU pages")

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        held = [np.asarray(cc.freepages, dtype=np.int64) for cc in self.state.active if cc.freepages]
        pfns = np.concatenate(held) if held else _EMPTY
        return pfns, np.zeros(len(pfns), dtype=np.uint64)


def compaction_state(machine: Machine) -> CompactionState:
    """The machine's compaction state, with the owner of isolated targets registered on
    first use (:mod:`pagemig.mm.node` says why then)."""
    state = machine.compaction
    if state.targets is None:
        state.targets = CompactionTargets(state)
        machine.register_owner(state.targets)
    return state


def _targets_owner_id(machine: Machine) -> int:
    """The owner id that isolated free targets carry."""
    targets = compaction_state(machine).targets
    assert targets is not None  # compaction_state registered it
    return targets.owner_id


def add_stall(machine: Machine, seconds: float) -> None:
    """Charge simulated time to the allocation in progress (``machine.stall_seconds``)."""
    machine.stall_seconds = machine.stall_seconds + seconds


def kswapd_is_running(machine: Machine) -> bool:
    """``kswapd_is_running()``: kswapd sets ``machine.kswapd.running`` while it works."""
    return machine.kswapd.running


def _count(machine: Machine, cc: CompactControl, name: str, n: int) -> None:
    if n:
        machine.vmstat[name] += n
        cc.counters[name] += n


# ------------------------------------------------------------------ geometry helpers
def pageblock_start_pfn(machine: Machine, pfn: int) -> int:
    return pfn & ~(machine.pageblock_nr_pages - 1)


def pageblock_end_pfn(machine: Machine, pfn: int) -> int:
    """``pageblock_end_pfn()``: ``ALIGN(pfn + 1, pageblock_nr_pages)``."""
    nr = machine.pageblock_nr_pages
    return (pfn + nr) & ~(nr - 1)


def block_start_pfn(pfn: int, order: int) -> int:
    return pfn & ~((1 << order) - 1)


def block_end_pfn(pfn: int, order: int) -> int:
    """``block_end_pfn()``: ``ALIGN(pfn + 1, 1 << order)``."""
    return (pfn + (1 << order)) & ~((1 << order) - 1)


# ------------------------------------------------------------------ deferral
def defer_compaction(zone: Zone, order: int) -> None:
    """``defer_compaction()``: after a failure, skip the next ``1 << defer_shift`` attempts."""
    zone.compact_considered = 0
    zone.compact_defer_shift += 1
    if order < zone.compact_order_failed:
        zone.compact_order_failed = order
    if zone.compact_defer_shift > COMPACT_MAX_DEFER_SHIFT:
        zone.compact_defer_shift = COMPACT_MAX_DEFER_SHIFT


def compaction_deferred(zone: Zone, order: int) -> bool:
    """``compaction_deferred()``: True if this attempt should be skipped (and count it)."""
    defer_limit = 1 << zone.compact_defer_shift
    if order < zone.compact_order_failed:
        return False
    zone.compact_considered += 1
    if zone.compact_considered >= defer_limit:
        zone.compact_considered = defer_limit
        return False
    return True


def compaction_defer_reset(zone: Zone, order: int, alloc_success: bool) -> None:
    """``compaction_defer_reset()``: after a success (or an expected one) at ``order``."""
    if alloc_success:
        zone.compact_considered = 0
        zone.compact_defer_shift = 0
    if order >= zone.compact_order_failed:
        zone.compact_order_failed = order + 1


def compaction_restarting(zone: Zone, order: int) -> bool:
    """``compaction_restarting()``: retrying after the longest deferral."""
    if order < zone.compact_order_failed:
        return False
    return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
            and zone.compact_considered >= 1 << zone.compact_defer_shift)


# ------------------------------------------------------------------ skip bits
def isolation_suitable(machine: Machine, cc: CompactControl, pfn: int) -> bool:
    if cc.ignore_skip_hint:
        return True
    return not machine.buddy._pb_skip[pfn >> machine.pageblock_order]


def set_pageblock_skip(machine: Machine, pfn: int) -> None:
    machine.buddy._pb_skip[pfn >> machine.pageblock_order] = 1


def pageblock_skip_persistent(machine: Machine, pfn: int) -> bool:
    """``pageblock_skip_persistent()``: a compound page of pageblock order or more covers
    the block; it is pointless to compact and cannot hold free pages."""
    pages = machine.pages
    f = pages._flags[pfn]
    if f & TAIL:
        return True  # a tail at a pageblock start: its compound spans the whole block
    if f & HEAD and pfn + 1 < pages.nr_pages:
        return pages._private[pfn + 1] >= machine.pageblock_order
    return False


def _reset_isolation_pfn(machine: Machine, zone: Zone, pfn: int, check_source: bool, check_target: bool) -> bool:
    """``__reset_isolation_pfn()``: clear a block's skip bit if a sample of its pages
    (every 8th) shows an LRU page (a migration source) or a free page (a target)."""
    if not zone.contains(pfn) or pageblock_skip_persistent(machine, pfn):
        return False
    buddy = machine.buddy
    pbo = machine.pageblock_order
    if check_source and check_target and not buddy._pb_skip[pfn >> pbo]:
        return True
    if not check_source and check_target and buddy._pb_mt[pfn >> pbo] != MIGRATE_MOVABLE:
        return False
    first = max(pageblock_start_pfn(machine, pfn), zone.start_pfn)
    last = min(pageblock_end_pfn(machine, pfn) - 1, zone.end_pfn - 1)
    step = 1 << PAGE_ALLOC_COSTLY_ORDER
    kind = machine.pages.kind[first:last + 1:step]
    flags = machine.pages.flags[first:last + 1:step]
    lru = (kind == ANON) | (kind == FILE)
    free = (flags & BUDDY) != 0
    if (check_source and lru.any()) or (check_target and free.any()):
        buddy._pb_skip[pfn >> pbo] = 0
        return True
    return False


def reset_isolation_suitable_zone(machine: Machine, zone: Zone) -> None:
    """``__reset_isolation_suitable()``: walk the zone from both ends at once, clearing
    skip bits where a block can serve as source or target, and restart the scanners
    at the outermost such blocks."""
    nr = machine.pageblock_nr_pages
    migrate_pfn = zone.start_pfn
    free_pfn = zone.end_pfn - 1
    reset_migrate = free_pfn
    reset_free = migrate_pfn
    source_set = False
    free_set = False
    zone.compact_blockskip_flush = False
    while migrate_pfn < free_pfn:
        if _reset_isolation_pfn(machine, zone, migrate_pfn, True, source_set) and migrate_pfn < reset_migrate:
            source_set = True
            reset_migrate = migrate_pfn
            zone.compact_init_migrate_pfn = reset_migrate
            zone.compact_cached_migrate_pfn = [reset_migrate, reset_migrate]
        if _reset_isolation_pfn(machine, zone, free_pfn, free_set, True) and free_pfn > reset_free:
            free_set = True
            reset_free = free_pfn
            zone.compact_init_free_pfn = reset_free
            zone.compact_cached_free_pfn = reset_free
        migrate_pfn += nr
        free_pfn -= nr
    if reset_migrate >= reset_free:  # no suitable block: leave no distance
        zone.compact_cached_migrate_pfn = [migrate_pfn, migrate_pfn]
        zone.compact_cached_free_pfn = free_pfn


def reset_isolation_suitable(machine: Machine) -> None:
    """``reset_isolation_suitable()``: kswapd, going to sleep, flushes the skip bits of
    every zone whose full compaction finished recently (``compact_blockskip_flush``)."""
    for zone in machine.zones:
        if zone.present_pages and zone.compact_blockskip_flush:
            reset_isolation_suitable_zone(machine, zone)


def update_cached_migrate(machine: Machine, cc: CompactControl, pfn: int) -> None:
    """``update_cached_migrate()``: where the async and sync scanners restart.  As the
    kernel does, this records ``pageblock_end_pfn(pfn)``: for a pfn at a block end
    that is the end of the next block."""
    zone = cc.zone
    pfn = pageblock_end_pfn(machine, pfn)
    cached = zone.compact_cached_migrate_pfn
    if pfn > cached[0]:
        cached[0] = pfn
    if cc.mode != MigrateMode.ASYNC and pfn > cached[1]:
        cached[1] = pfn


def update_pageblock_skip(machine: Machine, cc: CompactControl, pfn: int) -> None:
    """``update_pageblock_skip()``: the free scanner marks a fully scanned block and moves
    the cached free position down to it."""
    set_pageblock_skip(machine, pfn)
    if pfn < cc.zone.compact_cached_free_pfn:
        cc.zone.compact_cached_free_pfn = pfn


# ------------------------------------------------------------------ suitability
def _compaction_suitable(machine: Machine, zone: Zone, order: int, alloc_flags: int,
                         highest_zoneidx: int, wmark_target: int) -> CompactResult:
    """``__compaction_suitable()``: already allocatable -> SUCCESS; too few free pages
    to have targets -> SKIPPED; else CONTINUE."""
    if order == -1:
        return COMPACT_CONTINUE
    buddy = machine.buddy
    mark = zone.wmark_pages(alloc_flags & ALLOC_WMARK_MASK)
    if buddy.zone_watermark_ok(zone, order, mark, highest_zoneidx, alloc_flags):
        return COMPACT_SUCCESS
    watermark = zone.wmark_low if order > PAGE_ALLOC_COSTLY_ORDER else zone.wmark_min
    watermark += compact_gap(order)
    if not buddy.zone_watermark_ok(zone, 0, watermark, highest_zoneidx, 0, free_pages=wmark_target):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


def compaction_suitable(machine: Machine, zone: Zone, order: int, alloc_flags: int = 0,
                        highest_zoneidx: int | None = None) -> CompactResult:
    """``compaction_suitable()`` (v6.1): :func:`_compaction_suitable`, then for costly
    orders the fragmentation index: between 0 and ``extfrag_threshold`` the failure is
    lack of memory, not fragmentation, and compaction is skipped."""
    if highest_zoneidx is None:
        highest_zoneidx = int(zone.zone_type)
    ret = _compaction_suitable(machine, zone, order, alloc_flags, highest_zoneidx, zone.free_pages)
    if ret == COMPACT_CONTINUE and order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = fragmentation_index(zone, order)
        if 0 <= fragindex <= machine.sysctl.extfrag_threshold:
            ret = COMPACT_NOT_SUITABLE_ZONE
    if ret == COMPACT_NOT_SUITABLE_ZONE:
        ret = COMPACT_SKIPPED
    return ret


def compaction_zonelist_suitable(machine: Machine, ac: AllocContext, order: int, alloc_flags: int) -> bool:
    """``compaction_zonelist_suitable()``: would some zone pass the watermark test if
    reclaim freed a share (``1/order``) of its reclaimable pages?  What is reclaimable
    is vmscan's answer (:func:`pagemig.mm.lru.zone_reclaimable_pages`): LRU pages of
    owners reclaim can shrink, anon ones only while swap has room."""
    mask = reclaimable_owner_mask(machine)
    for zone in ac.zonelist:
        available = zone_reclaimable_pages(machine, zone, mask) // order + zone.free_pages
        res = _compaction_suitable(machine, zone, order, alloc_flags, ac.highest_zoneidx, available)
        if res != COMPACT_SKIPPED:
            return True
    return False


# ------------------------------------------------------------------ the finish test
def compact_scanners_met(machine: Machine, cc: CompactControl) -> bool:
    pbo = machine.pageblock_order
    return (cc.free_pfn >> pbo) <= (cc.migrate_pfn >> pbo)


def _compact_finished(machine: Machine, cc: CompactControl) -> CompactResult:
    zone = cc.zone
    if compact_scanners_met(machine, cc):
        reset_cached_positions(zone)
        if cc.direct_compaction:
            zone.compact_blockskip_flush = True
        return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
    if cc.proactive_compaction:
        if kswapd_is_running(machine):
            return COMPACT_PARTIAL_SKIPPED
        score = fragmentation_score_zone(zone)
        return COMPACT_CONTINUE if score > fragmentation_score_wmark(machine, low=True) else COMPACT_SUCCESS
    if cc.order == -1:
        return COMPACT_CONTINUE
    if cc.migrate_pfn & (machine.pageblock_nr_pages - 1):
        return COMPACT_CONTINUE  # always finish the pageblock being scanned
    ret = COMPACT_NO_SUITABLE_PAGE
    mt = cc.migratetype
    buddy = machine.buddy
    for order in range(cc.order, NR_ORDERS):
        if not zone.free_area_empty(order, mt):
            return COMPACT_SUCCESS
        if mt < MIGRATE_PCPTYPES:
            fallback, _ = buddy.find_suitable_fallback(zone, order, mt, True)
            if fallback != -1:
                if mt == MIGRATE_MOVABLE:
                    return COMPACT_SUCCESS  # movable pages are fine in any pageblock
                if cc.mode == MigrateMode.ASYNC or not cc.migrate_pfn & (machine.pageblock_nr_pages - 1):
                    return COMPACT_SUCCESS
                ret = COMPACT_CONTINUE
                break
    if cc.contended:
        ret = COMPACT_CONTENDED
    return ret


def compact_finished(machine: Machine, cc: CompactControl) -> CompactResult:
    """``compact_finished()``: the default ``pagemig_compaction_finished`` policy."""
    ret = _compact_finished(machine, cc)
    if ret == COMPACT_NO_SUITABLE_PAGE:
        ret = COMPACT_CONTINUE
    return ret


# ------------------------------------------------------------------ migration scanner
def suitable_migration_source(machine: Machine, cc: CompactControl, pfn: int) -> bool:
    """``suitable_migration_source()``: async direct compaction only takes pages from
    blocks of the requested type (any movable type for movable requests)."""
    if pageblock_skip_persistent(machine, pfn):
        return False
    if cc.mode != MigrateMode.ASYNC or not cc.direct_compaction:
        return True
    block_mt = machine.buddy._pb_mt[pfn >> machine.pageblock_order]
    if cc.migratetype == MIGRATE_MOVABLE:
        return block_mt in (MIGRATE_MOVABLE, MIGRATE_CMA)
    return block_mt == cc.migratetype


def _classify(machine: Machine, cc: CompactControl, low: int, end: int) -> tuple[np.ndarray, ...]:
    """One NumPy pass over [low, end): which pfns the scanner visits (it jumps over the
    rest of a free block and over a compound page's tails), and which of those are LRU
    candidates, driver candidates, failures.  Returns (visited, lru, drv, fail,
    special_rel, special_size) with positions relative to ``low``."""
    pages = machine.pages
    n = end - low
    kind = pages.kind[low:end]
    flags = pages.flags[low:end]
    special = np.flatnonzero(flags & (BUDDY | HEAD))
    if len(special):
        sp = special + low
        is_buddy = (flags[special] & BUDDY) != 0
        nxt = np.minimum(sp + 1, pages.nr_pages - 1)
        orders = np.where(is_buddy, pages.private[sp], pages.private[nxt]).astype(np.int64)
        # the kernel trusts an order only in range (buddy: 1..MAX_ORDER, compound: 0..MAX_ORDER)
        orders = np.where(orders > MAX_ORDER, 0, orders)
        sizes = np.left_shift(1, orders)
        ends = np.minimum(special + sizes, n)
        diff = np.bincount(special + 1, minlength=n + 1)[: n + 1] - np.bincount(ends, minlength=n + 1)[: n + 1]
        visited = np.cumsum(diff[:n]) == 0
    else:
        sizes = _EMPTY
        visited = np.ones(n, dtype=bool)
    lru_kind = (kind == ANON) | (kind == FILE) if cc.gfp & Gfp.FS else kind == ANON
    lru = visited & lru_kind & ((flags & LRU_UNISOLATABLE) == 0)
    drv = visited & (kind == DRIVER) & ((flags & DRV_FLAG_MASK) == MOVABLE)
    fail = visited & ~lru & ~drv & ((flags & BUDDY) == 0)
    return visited, lru, drv, fail, special, sizes


def isolate_migratepages_block(machine: Machine, cc: CompactControl, low_pfn: int, end_pfn: int) -> int:
    """``isolate_migratepages_block()``: isolate movable pages of [low_pfn, end_pfn), a
    range inside one pageblock, onto ``cc.migratepages``; returns 0 (the kernel's
    errors are contention and signals, which the simulator does not have).

    Free blocks are skipped by their order, compound pages whole; LRU pages that are
    pinned, locked or already isolated fail; a driver page is offered to its driver's
    ``isolate_page`` when it is marked movable and not isolated.  Isolation stops at
    ``COMPACT_CLUSTER_MAX`` pages unless the block is being rescanned.  Async direct
    compaction works in ``cc.order``-aligned chunks: a failure puts back what the
    chunk gave and moves to the next chunk, a chunk that gave pages ends the pass.
    A block scanned to its end without isolating anything gets its skip bit.
    """
    cc.migrate_pfn = low_pfn
    pages = machine.pages
    pbo = machine.pageblock_order
    nr_pb = machine.pageblock_nr_pages
    skip_bits = machine.buddy._pb_skip
    valid_page = not low_pfn & (nr_pb - 1)
    if valid_page and not cc.ignore_skip_hint and skip_bits[low_pfn >> pbo]:
        cc.total_migrate_scanned += 1
        update_cached_migrate(machine, cc, end_pfn)
        cc.migrate_pfn = end_pfn
        return 0
    n = end_pfn - low_pfn
    visited, lru, drv, fail, special, sizes = _classify(machine, cc, low_pfn, end_pfn)
    cand = np.flatnonzero(lru | drv)
    skip_on_failure = cc.direct_compaction and cc.mode == MigrateMode.ASYNC and cc.order >= 0
    limit = 0 if (cc.rescan or cc.contended) else max(COMPACT_CLUSTER_MAX - cc.nr_migratepages, 1)
    pflags = pages._flags
    isolated: list[int] | np.ndarray
    first_lru = -1
    skipped = 0  # visited pfns a chunk failure jumped over (not scanned)
    if not skip_on_failure:
        drv_c = drv[cand] if len(cand) else np.zeros(0, dtype=bool)
        if not drv_c.any():
            take = cand[:limit] if limit else cand
            isolated = take + low_pfn
            if len(isolated):
                pages.flags[isolated] |= ISOLATED
                first_lru = int(isolated[0])
            stop = int(take[-1]) + 1 if limit and len(take) == limit else n
        else:
            got: list[int] = []
            stop = n
            for rel, is_drv in zip(cand.tolist(), drv_c.tolist(), strict=True):
                pfn = low_pfn + rel
                if is_drv:
                    if not isolate_movable_page(machine, pfn, cc.mode):
                        continue
                else:
                    pflags[pfn] |= ISOLATED
                    if first_lru < 0:
                        first_lru = pfn
                got.append(pfn)
                if limit and len(got) >= limit:
                    stop = rel + 1
                    break
            isolated = np.asarray(got, dtype=np.int64)
    else:
        isolated, stop, first_lru, skipped = _isolate_in_chunks(
            machine, cc, low_pfn, end_pfn, visited, lru, drv, fail, special, sizes, cand, limit)
    # test_and_set_skip(): the first LRU page isolated at a pageblock start claims the block
    skip_updated = first_lru >= 0
    if skip_updated and not cc.ignore_skip_hint and not first_lru & (nr_pb - 1):
        skip_bits[first_lru >> pbo] = 1
    nr_isolated = len(isolated)
    new_low = low_pfn + stop
    # v6.1 counts the pfns the loop visits, a compound page with all its pages and a free
    # block as one pfn (its pages were counted only from v6.3)
    nr_scanned = int(np.count_nonzero(visited[:stop])) - skipped
    if len(special):
        comp = (pages.flags[special + low_pfn] & HEAD) != 0
        comp &= (special < stop) & visited[special]
        if comp.any():
            nr_scanned += int((sizes[comp] - 1).sum())
    if new_low == end_pfn and (not nr_isolated or cc.rescan):
        if valid_page and not skip_updated:
            skip_bits[low_pfn >> pbo] = 1
        update_cached_migrate(machine, cc, new_low)
    cc.total_migrate_scanned += nr_scanned
    if nr_isolated:
        _count(machine, cc, "compact_isolated", nr_isolated)
        arr = np.asarray(isolated, dtype=np.int64)
        cc.migratepages = np.concatenate((cc.migratepages, arr)) if len(cc.migratepages) else arr
        cc.nr_migratepages += nr_isolated
    cc.seconds += nr_scanned * costs.COST_SCAN_PAGE + nr_isolated * costs.COST_ISOLATE_PAGE
    cc.migrate_pfn = new_low
    return 0


def _isolate_in_chunks(machine: Machine, cc: CompactControl, low_pfn: int, end_pfn: int,
                       visited: np.ndarray, lru: np.ndarray, drv: np.ndarray, fail: np.ndarray,
                       special: np.ndarray, sizes: np.ndarray, cand: np.ndarray,
                       limit: int) -> tuple[np.ndarray, int, int, int]:
    """The async direct-compaction walk of ``isolate_migratepages_block`` (``skip_on_failure``).

    Only chunks holding candidates need a walk: a chunk without candidates isolates
    nothing, so its failures put nothing back.  Returns (isolated pfns, stop offset,
    first LRU pfn isolated or -1, pfns skipped after failures)."""
    order = cc.order
    pflags = machine.pages._flags
    vis_abs = np.flatnonzero(visited) + low_pfn
    fail_abs = np.flatnonzero(fail) + low_pfn
    cand_abs = cand + low_pfn
    cand_is_drv = drv[cand]
    n = end_pfn - low_pfn
    first_lru = -1
    stop = n
    committed: list[int] = []
    fail_at: dict[int, int] = {}  # chunk -> pfn of the failure that ended it
    # static first failure of every chunk (vectorised), overridden by dynamic ones below
    if len(fail_abs):
        fchunks, first_idx = np.unique(fail_abs >> order, return_index=True)
        fail_at = dict(zip(fchunks.tolist(), fail_abs[first_idx].tolist(), strict=True))
    if len(cand_abs):
        chunk_ids = cand_abs >> order
        starts = np.flatnonzero(np.concatenate(([True], chunk_ids[1:] != chunk_ids[:-1])))
        ends = np.concatenate((starts[1:], [len(cand_abs)]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            c = int(chunk_ids[a])
            c_end = (c + 1) << order
            static_fail = fail_at.get(c, -1)
            got: list[int] = []
            failed_pfn = -1
            hit_limit = False
            for j in range(a, b):
                pfn = int(cand_abs[j])
                if 0 <= static_fail < pfn:
                    failed_pfn = static_fail
                    break
                if cand_is_drv[j]:
                    if not isolate_movable_page(machine, pfn, cc.mode):
                        failed_pfn = pfn
                        break
                else:
                    pflags[pfn] |= ISOLATED
                    if first_lru < 0:
                        first_lru = pfn
                got.append(pfn)
                if limit and len(got) >= limit:
                    hit_limit = True
                    stop = pfn + 1 - low_pfn
                    break
            if hit_limit:
                committed = got
                break
            if failed_pfn < 0 and static_fail >= 0:
                failed_pfn = static_fail  # a failure after the last candidate of the chunk
            if failed_pfn >= 0:
                fail_at[c] = failed_pfn
                for pfn in got:  # the chunk cannot become a free cc.order block: put back
                    if pflags[pfn] & ISOLATED and machine.pages._kind[pfn] == DRIVER:
                        putback_movable_page(machine, pfn)
                    else:
                        pflags[pfn] &= NOT_ISOLATED_MASK
                continue
            committed = got
            k = int(np.searchsorted(vis_abs, c_end))
            stop = int(vis_abs[k]) - low_pfn if k < len(vis_abs) else n
            break
    # pfns the walk would have visited but jumped over after a failure in their chunk
    skipped = 0
    stop_abs = low_pfn + stop
    for c, q in fail_at.items():
        if q >= stop_abs:
            continue
        c_end = min((c + 1) << order, end_pfn)
        skipped += int(np.searchsorted(vis_abs, c_end)) - int(np.searchsorted(vis_abs, q, side="right"))
    return np.asarray(committed, dtype=np.int64), stop, first_lru, skipped


# ------------------------------------------------------------------ free-list searches (v5.1+)
FAST_START_DONE = 1 << 62  # ULONG_MAX in cc->fast_start_pfn: the fast start was used


def freelist_scan_limit(cc: CompactControl) -> int:
    """``freelist_scan_limit()``: fewer entries looked at after each failed fast search."""
    return (COMPACT_CLUSTER_MAX >> min(63, cc.fast_search_fail)) + 1


def _move_scanned_to_front(area: dict[int, None], scanned: list[int]) -> None:
    """``move_freelist_head()``: the entries scanned from the list's tail, up to and
    including the chosen one, go to the head's side so the next search skips them.  The
    dict keeps a list in reverse (its last key is the list head), so they move to its end."""
    for pfn in scanned:
        if pfn in area:
            del area[pfn]
            area[pfn] = None


def _rotate_behind(area: dict[int, None], pfn: int) -> None:
    """``move_freelist_tail()``: everything from the list head up to ``pfn`` goes to the
    tail, the unvisited rest to the head."""
    keys = list(area)
    i = keys.index(pfn)
    if i == len(keys) - 1:
        return  # already the head: list_is_first()
    area.clear()
    area.update(dict.fromkeys(keys[i + 1:] + keys[:i + 1]))


def isolate_free_block(machine: Machine, cc: CompactControl, pfn: int) -> int:
    """``__isolate_free_page()`` for the free block whose head is ``pfn``: take it off its
    list and hold its pages as targets of ``cc``; returns the pages taken, 0 if the
    watermark says no.  For policies (plugins) that pick their own targets."""
    pages = machine.pages
    if not pages._flags[pfn] & BUDDY or not cc.zone.contains(pfn):
        raise ValueError(f"pfn {pfn:#x} is not the head of a free block of zone {cc.zone.name}")
    zone = cc.zone
    size = 1 << machine.pages._private[pfn]
    if zone.free_pages <= zone.wmark_min + size + zone.lowmem_reserve[0]:
        return 0
    _take_free_blocks(machine, cc, [pfn], [size])
    _count(machine, cc, "compact_isolated", size)
    cc.seconds += size * costs.COST_ISOLATE_PAGE
    return size


def fast_isolate_around(machine: Machine, cc: CompactControl, pfn: int, nr_isolated: int) -> None:
    """``fast_isolate_around()``: after a free-list hit, scan the rest of its pageblock."""
    if cc.nr_freepages >= cc.nr_migratepages:
        return
    if cc.direct_compaction and cc.mode == MigrateMode.ASYNC:
        return  # minimise scanning during async compaction
    zone = cc.zone
    start = max(pageblock_start_pfn(machine, pfn), zone.start_pfn)
    end = min(pageblock_end_pfn(machine, pfn), zone.end_pfn)
    if start != pfn:
        isolate_freepages_block(machine, cc, start, pfn, 1)
        if cc.nr_freepages >= cc.nr_migratepages:
            return
    after = pfn + nr_isolated
    if after < end:
        isolate_freepages_block(machine, cc, after, end, 1)
    if cc.nr_freepages < cc.nr_migratepages:
        set_pageblock_skip(machine, start)  # full or nearly full: skip it in future


def _next_search_order(cc: CompactControl, order: int) -> int:
    """``next_search_order()``: round-robin over the orders below the request."""
    order -= 1
    if order < 0:
        order = cc.order - 1
    if order == cc.search_order:
        cc.search_order -= 1
        if cc.search_order < 0:
            cc.search_order = cc.order - 1
        return -1
    return order


def fast_isolate_freepages(machine: Machine, cc: CompactControl) -> int:
    """``fast_isolate_freepages()`` (v5.1+): look for a target on the MOVABLE free lists
    below the requested order, preferring the top quarter of the space between the
    scanners; returns the pfn the free scanner should continue from."""
    if cc.order <= 0:
        return cc.free_pfn
    zone = cc.zone
    compaction_state(machine)
    nr_pb = machine.pageblock_nr_pages
    limit = max(1, freelist_scan_limit(cc) >> 1)
    scan_start = False
    if cc.free_pfn >= zone.compact_init_free_pfn:
        limit = nr_pb >> 1
        scan_start = True
    distance = cc.free_pfn - cc.migrate_pfn
    low_pfn = pageblock_start_pfn(machine, cc.free_pfn - (distance >> 2))
    min_pfn = pageblock_start_pfn(machine, cc.free_pfn - (distance >> 1))
    low_pfn = max(low_pfn, min_pfn)
    cc.search_order = min(cc.order - 1, cc.search_order)
    highest = 0
    nr_scanned = 0
    page = -1
    nr_isolated = 0
    order = cc.search_order
    while page < 0 and order >= 0:
        area = zone.free_area[order][MIGRATE_MOVABLE]
        if zone.nr_free(order):
            order_scanned = 0
            high_pfn = 0
            scanned: list[int] = []
            chosen = -1
            for pfn in area:  # the list walked from its tail
                order_scanned += 1
                nr_scanned += 1
                scanned.append(pfn)
                if pfn >= highest:
                    highest = max(pageblock_start_pfn(machine, pfn), zone.start_pfn)
                if pfn >= low_pfn:
                    cc.fast_search_fail = 0
                    cc.search_order = order
                    chosen = pfn
                    break
                if pfn >= min_pfn and pfn > high_pfn:
                    high_pfn = pfn
                    limit >>= 1  # shorten the scan once a candidate is found
                if order_scanned >= limit:
                    break
            if chosen < 0 and high_pfn:
                chosen = high_pfn  # the best candidate in the top half
            if chosen >= 0:
                _move_scanned_to_front(area, scanned[:scanned.index(chosen) + 1])
            elif order_scanned >= limit:
                _move_scanned_to_front(area, scanned)  # stopped by the limit: skip these next time
            if chosen >= 0:
                got = isolate_free_block(machine, cc, chosen)
                if got:
                    nr_isolated = got
                    page = chosen
                else:
                    order = cc.search_order + 1  # isolation failed: abort the search
                    page = -1
                    chosen = -1
            if cc.nr_freepages >= cc.nr_migratepages:
                break
            if order_scanned >= limit:
                limit = max(1, limit >> 1)
        order = _next_search_order(cc, order)
    if page < 0:
        cc.fast_search_fail += 1
        if scan_start:
            # the highest block seen, if above the min mark ("highest >= min_pfn": the
            # fix of 2020 that stops a bad sample from pulling the free scanner down)
            if highest and highest >= min_pfn:
                page = highest
                cc.free_pfn = highest
            elif cc.direct_compaction and zone.contains(min_pfn):
                page = min_pfn
                cc.free_pfn = min_pfn
    if highest and highest >= zone.compact_cached_free_pfn:
        zone.compact_cached_free_pfn = highest - nr_pb
    cc.total_free_scanned += nr_scanned
    cc.seconds += nr_scanned * costs.COST_SCAN_PAGE
    if page < 0:
        return cc.free_pfn
    fast_isolate_around(machine, cc, page, nr_isolated)
    return page


def update_fast_start_pfn(cc: CompactControl, pfn: int) -> None:
    if cc.fast_start_pfn == FAST_START_DONE:
        return
    if not cc.fast_start_pfn:
        cc.fast_start_pfn = pfn
    cc.fast_start_pfn = min(cc.fast_start_pfn, pfn)


def reinit_migrate_pfn(cc: CompactControl) -> int:
    if not cc.fast_start_pfn or cc.fast_start_pfn == FAST_START_DONE:
        return cc.migrate_pfn
    cc.migrate_pfn = cc.fast_start_pfn
    cc.fast_start_pfn = FAST_START_DONE
    return cc.migrate_pfn


def fast_find_migrateblock(machine: Machine, cc: CompactControl) -> int:
    """``fast_find_migrateblock()`` (v5.1+): for a costly order, start the migration
    scanner in a MOVABLE block low in the zone that already has free pages of order 3
    or more (so fewer pages need moving to free it); returns where to scan from."""
    pfn = cc.migrate_pfn
    zone = cc.zone
    if cc.ignore_skip_hint:
        return pfn
    if pfn != zone.start_pfn and pfn != pageblock_start_pfn(machine, pfn):
        return pfn  # a continuation inside a block
    if cc.order <= PAGE_ALLOC_COSTLY_ORDER:
        return pfn
    if cc.direct_compaction and cc.migratetype != MIGRATE_MOVABLE:
        return pfn
    limit = freelist_scan_limit(cc)
    nr_scanned = 0
    distance = (cc.free_pfn - cc.migrate_pfn) >> 1
    if cc.migrate_pfn != zone.start_pfn:
        distance >>= 2
    high_pfn = pageblock_start_pfn(machine, cc.migrate_pfn + distance)
    skip_bits = machine.buddy._pb_skip
    pbo = machine.pageblock_order
    found = False
    order = cc.order - 1
    while order >= PAGE_ALLOC_COSTLY_ORDER and not found and nr_scanned < limit:
        if zone.nr_free(order):
            area = zone.free_area[order][MIGRATE_MOVABLE]
            for free_pfn in reversed(area):  # the list walked from its head
                if nr_scanned >= limit:
                    nr_scanned += 1
                    _rotate_behind(area, free_pfn)
                    break
                nr_scanned += 1
                if free_pfn < high_pfn:
                    if skip_bits[free_pfn >> pbo] or free_pfn >> pbo in cc.fast_found:
                        continue
                    cc.fast_found.add(free_pfn >> pbo)
                    _rotate_behind(area, free_pfn)
                    update_fast_start_pfn(cc, free_pfn)
                    pfn = max(pageblock_start_pfn(machine, free_pfn), zone.start_pfn)
                    cc.fast_search_fail = 0
                    found = True
                    # v5.x also set the block's skip bit here, which made
                    # isolate_migratepages_block() abandon the very block it had found;
                    # later kernels dropped it, and so does the simulator.  They mark the
                    # block skip once it is fully scanned (finish_pageblock) so that it is
                    # not chosen again; here a run never chooses a block twice
                    # (cc.fast_found): without that, a block whose pages cannot move
                    # (a driver answering -EAGAIN) was chosen again and again, for ever.
                    break
        order -= 1
    cc.total_migrate_scanned += nr_scanned
    cc.seconds += nr_scanned * costs.COST_SCAN_PAGE
    if not found:
        cc.fast_search_fail += 1
        pfn = reinit_migrate_pfn(cc)
    return pfn


def isolate_migratepages(machine: Machine, cc: CompactControl) -> IsolateMigrate:
    """``isolate_migratepages()``: the default ``pagemig_compaction_isolate_migratepages``
    policy.  From ``cc.migrate_pfn``, skip blocks marked skip (at their start) and, for
    async direct compaction, blocks of the wrong type; isolate from the first suitable
    block; never cross the free scanner."""
    zone = cc.zone
    nr_pb = machine.pageblock_nr_pages
    pbo = machine.pageblock_order
    skip_bits = machine.buddy._pb_skip
    low_pfn = fast_find_migrateblock(machine, cc)
    fast_find_block = low_pfn != cc.migrate_pfn and not cc.fast_search_fail
    block_start = max(low_pfn & ~(nr_pb - 1), zone.start_pfn)
    block_end = pageblock_end_pfn(machine, low_pfn)
    while block_end <= cc.free_pfn:
        if block_start >= zone.start_pfn and block_end <= zone.end_pfn:
            aligned = not low_pfn & (nr_pb - 1)
            if aligned and not fast_find_block and not cc.ignore_skip_hint and skip_bits[block_start >> pbo]:
                pass
            elif not suitable_migration_source(machine, cc, block_start):
                update_cached_migrate(machine, cc, block_end)
            else:
                if isolate_migratepages_block(machine, cc, low_pfn, block_end):
                    return ISOLATE_ABORT
                break
        fast_find_block = False
        low_pfn = block_end
        cc.migrate_pfn = low_pfn
        block_start = block_end
        block_end += nr_pb
    return ISOLATE_SUCCESS if cc.nr_migratepages else ISOLATE_NONE


# ------------------------------------------------------------------ free scanner
def suitable_migration_target(machine: Machine, cc: CompactControl, pfn: int) -> bool:
    """``suitable_migration_target()``: not a block that is already one free pageblock or
    more; a MOVABLE (or CMA) block unless block suitability is ignored (SYNC_FULL)."""
    pages = machine.pages
    if pages._flags[pfn] & BUDDY and pages._private[pfn] >= machine.pageblock_order:
        return False
    if cc.ignore_block_suitable:
        return True
    mt = machine.buddy._pb_mt[pfn >> machine.pageblock_order]
    return mt in (MIGRATE_MOVABLE, MIGRATE_CMA)


def _take_free_blocks(machine: Machine, cc: CompactControl, heads: list[int], sizes: list[int]) -> None:
    """Take free blocks off the buddy lists (``__isolate_free_page``) and hold their pages,
    split to order 0, as isolated targets owned by the compaction."""
    zone = cc.zone
    buddy = machine.buddy
    pbo = machine.pageblock_order
    for head, size in zip(heads, sizes, strict=True):
        order = buddy.del_free_block(zone, head)
        zone.free_pages -= size
        if order >= pbo - 1:
            # "Set the pageblock if the isolated page is at least half of a pageblock"
            for pfn in range(head, head + size, machine.pageblock_nr_pages):
                if buddy._pb_mt[pfn >> pbo] < MIGRATE_PCPTYPES:
                    buddy._pb_mt[pfn >> pbo] = MIGRATE_MOVABLE
    pages = machine.pages
    if len(heads) == 1:
        idx: slice | np.ndarray = slice(heads[0], heads[0] + sizes[0])
        pfns = list(range(heads[0], heads[0] + sizes[0]))
    else:
        h = np.asarray(heads, dtype=np.int64)
        s = np.asarray(sizes, dtype=np.int64)
        offs = np.cumsum(s) - s
        idx = np.repeat(h - offs, s) + np.arange(int(s.sum()))
        pfns = idx.tolist()
    owner_id = _targets_owner_id(machine)
    pages.kind[idx] = KERNEL
    pages.owner[idx] = owner_id
    pages.flags[idx] = ISOLATED
    pages.private[idx] = 0
    pages.token[idx] = 0
    cc.freepages.extend(pfns)
    cc.nr_freepages = len(cc.freepages)


def isolate_freepages_block(machine: Machine, cc: CompactControl, start_pfn: int, end_pfn: int,
                            stride: int) -> tuple[int, int]:
    """``isolate_freepages_block()`` (not strict): take whole free blocks from
    [start_pfn, end_pfn) until there are as many targets as pages to migrate; every
    ``stride``-th pfn is looked at (async compaction samples).  Returns (pages
    isolated, pfn where the scan stopped)."""
    pages = machine.pages
    zone = cc.zone
    mark = zone.wmark_min
    reserve = zone.lowmem_reserve[0]
    heads: list[int] = []
    sizes: list[int] = []
    free_now = zone.free_pages
    total = 0
    if stride == 1:
        rel = np.flatnonzero(pages.flags[start_pfn:end_pfn] & BUDDY)
        blockpfn = end_pfn
        nr_scanned = end_pfn - start_pfn
        if len(rel):
            hs = rel + start_pfn
            szs = np.left_shift(1, pages.private[hs].astype(np.int64))
            need = cc.nr_migratepages - cc.nr_freepages
            csum = np.cumsum(szs)
            k_target = int(np.searchsorted(csum, need)) if need > 0 else 0
            # __isolate_free_page's watermark: free pages before each take > min + size
            before = free_now - (csum - szs)
            bad = np.flatnonzero(before <= mark + szs + reserve)
            k_fail = int(bad[0]) if len(bad) else len(hs)
            if k_target < len(hs) and k_target < k_fail:
                t = k_target + 1
                blockpfn = int(hs[k_target] + szs[k_target])
                nr_scanned = blockpfn - start_pfn
            elif k_fail < len(hs):
                t = k_fail
                blockpfn = int(hs[k_fail])
                nr_scanned = blockpfn - start_pfn + 1
            else:
                t = len(hs)
            if t:
                heads = hs[:t].tolist()
                sizes = szs[:t].tolist()
                total = int(csum[t - 1])

    else:
        flags = pages._flags
        private = pages._private
        blockpfn = start_pfn
        nr_scanned = 0
        got = cc.nr_freepages
        while blockpfn < end_pfn:
            nr_scanned += 1
            f = flags[blockpfn]
            if f & (HEAD | TAIL):
                if f & HEAD and blockpfn + 1 < pages.nr_pages:
                    o = private[blockpfn + 1]
                    if o <= MAX_ORDER:
                        blockpfn += (1 << o) - 1
                        nr_scanned += (1 << o) - 1
                blockpfn += stride
                continue
            if not f & BUDDY:
                blockpfn += stride
                continue
            size = 1 << private[blockpfn]
            if free_now - total <= mark + size + reserve:
                break
            heads.append(blockpfn)
            sizes.append(size)
            total += size
            got += size
            nr_scanned += size - 1
            if cc.nr_migratepages <= got:
                blockpfn += size
                break
            blockpfn += size - 1 + stride
        blockpfn = min(blockpfn, end_pfn)
    if heads:
        _take_free_blocks(machine, cc, heads, sizes)
        _count(machine, cc, "compact_isolated", total)
    cc.total_free_scanned += nr_scanned
    cc.seconds += nr_scanned * costs.COST_SCAN_PAGE + total * costs.COST_ISOLATE_PAGE
    return total, blockpfn


def isolate_freepages(machine: Machine, cc: CompactControl) -> int:
    """``isolate_freepages()``: the default ``pagemig_compaction_isolate_freepages``
    policy.  Walk down from ``cc.free_pfn`` a pageblock at a time, never into the
    migration scanner's block, taking free blocks from suitable blocks whose skip bit
    is clear until there are as many targets as pages to migrate.  Returns the pages
    isolated."""
    zone = cc.zone
    nr_pb = machine.pageblock_nr_pages
    had = cc.nr_freepages
    fast_isolate_freepages(machine, cc)
    if cc.nr_freepages:
        return cc.nr_freepages - had
    isolate_start = cc.free_pfn
    block_start = isolate_start & ~(nr_pb - 1)
    block_end = min(block_start + nr_pb, zone.end_pfn)
    low_pfn = pageblock_end_pfn(machine, cc.migrate_pfn)
    stride = COMPACT_CLUSTER_MAX if cc.mode == MigrateMode.ASYNC else 1
    total = 0
    while block_start >= low_pfn:
        if (block_start >= zone.start_pfn and suitable_migration_target(machine, cc, block_start)
                and isolation_suitable(machine, cc, block_start)):
            nr_isolated, isolate_start = isolate_freepages_block(machine, cc, isolate_start, block_end, stride)
            total += nr_isolated
            if isolate_start == block_end:
                update_pageblock_skip(machine, cc, block_start)
            if cc.nr_freepages >= cc.nr_migratepages:
                if isolate_start >= block_end:
                    isolate_start = block_start - nr_pb  # restart at the next block down
                break
            if isolate_start < block_end:
                break  # isolation failed early (watermark): do not go on needlessly
            stride = 1 if nr_isolated else min(COMPACT_CLUSTER_MAX, stride << 1)
        block_end = block_start
        block_start -= nr_pb
        isolate_start = block_start
    cc.free_pfn = isolate_start
    return total


def release_freepages(machine: Machine, cc: CompactControl) -> int:
    """``release_freepages()``: give unused targets back to the buddy allocator; returns
    the highest pfn released (0 if none)."""
    if not cc.freepages:
        return 0
    arr = np.asarray(cc.freepages, dtype=np.int64)
    cc.freepages = []
    cc.nr_freepages = 0
    mark_pages_free(machine.pages, arr)
    buddy = machine.buddy
    pbo = machine.pageblock_order
    zone = cc.zone
    zone.pgfree += len(arr)
    srt = np.sort(arr)
    breaks = np.flatnonzero(np.diff(srt) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(srt)]))
    for s, e in zip(srt[starts].tolist(), (srt[ends - 1] + 1).tolist(), strict=True):
        if e - s == 1:
            buddy.free_one_page(zone, s, 0, buddy._pb_mt[s >> pbo])
        else:
            buddy.free_block_range(zone, s, e)
    return int(srt[-1])


# ------------------------------------------------------------------ compact_zone
class CompactionHooks(Protocol):
    """What a zone run calls of a plugin host's hook relay: the ``pagemig_compaction_*``
    hooks (pagemig.hookspecs, above this package).  The policy hooks are firstresult:
    a plugin's answer, or None when nobody answered."""

    def pagemig_compaction_begin(self, *, machine: Machine, cc: CompactControl) -> object: ...

    def pagemig_compaction_finished(self, *, machine: Machine, cc: CompactControl) -> int | None: ...

    def pagemig_compaction_isolate_migratepages(self, *, machine: Machine, cc: CompactControl) -> int | None: ...

    def pagemig_compaction_isolate_freepages(self, *, machine: Machine, cc: CompactControl) -> int | None: ...

    def pagemig_compaction_migrated(self, *, machine: Machine, cc: CompactControl, result: MigrateResult) -> object: ...

    def pagemig_compaction_end(self, *, machine: Machine, cc: CompactControl, result: CompactResult) -> object: ...


class _Policies:
    """The three policy calls of a zone run: through the hook relay when there is one
    (a plugin's firstresult answer wins), else the kernel's functions directly."""

    __slots__ = ("hook", "machine")

    def __init__(self, machine: Machine, hook: CompactionHooks | None) -> None:
        self.machine = machine
        self.hook = hook

    def finished(self, cc: CompactControl) -> CompactResult:
        r = None if self.hook is None else self.hook.pagemig_compaction_finished(machine=self.machine, cc=cc)
        return compact_finished(self.machine, cc) if r is None else CompactResult(r)

    def isolate_migratepages(self, cc: CompactControl) -> IsolateMigrate:
        r = (None if self.hook is None
             else self.hook.pagemig_compaction_isolate_migratepages(machine=self.machine, cc=cc))
        return isolate_migratepages(self.machine, cc) if r is None else IsolateMigrate(r)

    def isolate_freepages(self, cc: CompactControl) -> int:
        r = None if self.hook is None else self.hook.pagemig_compaction_isolate_freepages(machine=self.machine, cc=cc)
        return isolate_freepages(self.machine, cc) if r is None else int(r)

    def begin(self, cc: CompactControl) -> None:
        if self.hook is not None:
            self.hook.pagemig_compaction_begin(machine=self.machine, cc=cc)

    def migrated(self, cc: CompactControl, result: MigrateResult) -> None:
        if self.hook is not None:
            self.hook.pagemig_compaction_migrated(machine=self.machine, cc=cc, result=result)

    def end(self, cc: CompactControl, result: CompactResult) -> None:
        if self.hook is not None:
            self.hook.pagemig_compaction_end(machine=self.machine, cc=cc, result=result)


def _target_marking(machine: Machine, pfn: int) -> None:
    pages = machine.pages
    pages._kind[pfn] = KERNEL
    pages._owner[pfn] = _targets_owner_id(machine)
    pages._flags[pfn] = ISOLATED
    pages._private[pfn] = 0
    pages._token[pfn] = 0


def _migrate_batch(machine: Machine, cc: CompactControl, policies: _Policies) -> MigrateResult:
    """``migrate_pages(&cc->migratepages, compaction_alloc, compaction_free, cc, ...)``."""

    def get_new_pages(n: int) -> np.ndarray:
        # compaction_alloc(), n times: refill from the free scanner only when empty
        out: list[int] = []
        fp = cc.freepages
        while len(out) < n:
            if not fp:
                try:
                    policies.isolate_freepages(cc)
                except BaseException:
                    out.reverse()  # hand the targets taken so far back, for the cleanup
                    cc.freepages.extend(out)
                    cc.nr_freepages = len(cc.freepages)
                    raise
                fp = cc.freepages
                if not fp:
                    break
            k = min(n - len(out), len(fp))
            chunk = fp[-k:]
            del fp[-k:]
            cc.nr_freepages = len(fp)
            chunk.reverse()
            out.extend(chunk)
        return np.asarray(out, dtype=np.int64)

    def get_new_page(_src: int) -> int:
        got = get_new_pages(1)
        return int(got[0]) if len(got) else -1

    def put_new_page(dst: int) -> None:
        # compaction_free(): back on the target list, as an isolated target again
        _target_marking(machine, dst)
        cc.freepages.append(dst)
        cc.nr_freepages = len(cc.freepages)

    src = cc.migratepages[::-1]  # list_add() built the list in reverse
    res = migrate_pages(machine, src, get_new_page, put_new_page, cc.mode, MigrateReason.COMPACTION,
                        get_new_pages=get_new_pages, validate=False)
    cc.batches += 1
    cc.nr_migrated += res.nr_succeeded
    cc.nr_migrate_failed += res.nr_failed_pages
    cc.counters["pgmigrate_success"] += res.nr_succeeded
    cc.counters["pgmigrate_fail"] += res.nr_failed_pages
    cc.seconds += res.seconds
    return res


def compact_zone(machine: Machine, cc: CompactControl, hook: CompactionHooks | None = None) -> CompactResult:
    """``compact_zone()``: compact ``cc.zone`` until :func:`compact_finished` says stop.

    ``hook`` is a pluggy hook relay (``PluginHost.hook``); ``None`` takes
    ``machine.hook`` if the run set one, else calls the kernel's policy directly.
    Everything isolated is migrated or put back, and every unused target released,
    before this returns, even if a policy raises.
    """
    if not cc.zone.present_pages:
        return COMPACT_SKIPPED
    if hook is None:
        hook = machine.hook
    policies = _Policies(machine, hook)
    zone = cc.zone
    start_pfn, end_pfn = zone.start_pfn, zone.end_pfn
    sync = cc.mode != MigrateMode.ASYNC
    state = compaction_state(machine)
    cc.total_migrate_scanned = 0
    cc.total_free_scanned = 0
    cc.nr_migratepages = 0
    cc.nr_freepages = 0
    cc.migratepages = _EMPTY
    cc.freepages = []
    cc.fast_start_pfn = 0
    cc.migratetype = gfp_migratetype(cc.gfp)

    ret = compaction_suitable(machine, zone, cc.order, cc.alloc_flags, cc.highest_zoneidx)
    if ret in (COMPACT_SUCCESS, COMPACT_SKIPPED):
        cc.result = ret
        return ret
    if compaction_restarting(zone, cc.order):
        reset_isolation_suitable_zone(machine, zone)

    if cc.whole_zone:
        cc.migrate_pfn = start_pfn
        cc.free_pfn = pageblock_start_pfn(machine, end_pfn - 1)
    else:
        cc.migrate_pfn = zone.compact_cached_migrate_pfn[int(sync)]
        cc.free_pfn = zone.compact_cached_free_pfn
        if not start_pfn <= cc.free_pfn < end_pfn:
            cc.free_pfn = pageblock_start_pfn(machine, end_pfn - 1)
            zone.compact_cached_free_pfn = cc.free_pfn
        if not start_pfn <= cc.migrate_pfn < end_pfn:
            cc.migrate_pfn = start_pfn
            zone.compact_cached_migrate_pfn = [start_pfn, start_pfn]
        if cc.migrate_pfn <= zone.compact_init_migrate_pfn:
            cc.whole_zone = True
    last_migrated_pfn = 0
    update_cached = not sync and zone.compact_cached_migrate_pfn[0] == zone.compact_cached_migrate_pfn[1]

    policies.begin(cc)
    state.active.append(cc)
    machine.isolated_batches += 1
    pbo = machine.pageblock_order
    try:
        while True:
            ret = policies.finished(cc)
            if ret != COMPACT_CONTINUE:
                break
            iteration_start_pfn = cc.migrate_pfn
            cc.rescan = (last_migrated_pfn >> pbo) == (iteration_start_pfn >> pbo)
            isolated = policies.isolate_migratepages(cc)
            if isolated == ISOLATE_ABORT:
                ret = COMPACT_CONTENDED
                putback_movable_pages(machine, cc.migratepages)
                cc.migratepages = _EMPTY
                cc.nr_migratepages = 0
                break
            if isolated == ISOLATE_NONE:
                if update_cached:
                    zone.compact_cached_migrate_pfn[1] = zone.compact_cached_migrate_pfn[0]
            else:
                update_cached = False
                last_migrated_pfn = iteration_start_pfn
                res = _migrate_batch(machine, cc, policies)
                cc.migratepages = _EMPTY
                cc.nr_migratepages = 0
                policies.migrated(cc, res)
                if res.err:
                    if res.rc and not compact_scanners_met(machine, cc):
                        ret = COMPACT_CONTENDED
                        break
                    if cc.direct_compaction and cc.mode == MigrateMode.ASYNC:
                        # a page of this order-aligned block failed: skip the rest of it
                        cc.migrate_pfn = block_end_pfn(cc.migrate_pfn - 1, cc.order)
                        last_migrated_pfn = 0
            # check_drain: leaving the cc.order block we migrated from
            if (cc.order > 0 and last_migrated_pfn
                    and last_migrated_pfn < block_start_pfn(cc.migrate_pfn, cc.order)):
                last_migrated_pfn = 0
    except BaseException:
        if len(cc.migratepages):
            # only what is still isolated: migrate_pages may have moved or put back some
            putback_still_isolated(machine, cc.migratepages)
            cc.migratepages = _EMPTY
            cc.nr_migratepages = 0
        release_freepages(machine, cc)
        raise
    finally:
        free_pfn = release_freepages(machine, cc)
        if free_pfn:
            free_pfn = pageblock_start_pfn(machine, free_pfn)
            if free_pfn > zone.compact_cached_free_pfn:
                zone.compact_cached_free_pfn = free_pfn
        state.active.remove(cc)
        machine.isolated_batches -= 1

    _count(machine, cc, "compact_migrate_scanned", cc.total_migrate_scanned)
    _count(machine, cc, "compact_free_scanned", cc.total_free_scanned)
    cc.result = ret
    if cc.direct_compaction:
        add_stall(machine, cc.seconds)
        state.direct_seconds += cc.seconds
    policies.end(cc, ret)
    log.debug("compact_zone", **cc.summary())
    machine.movable.raise_if_failed()
    return ret


# ------------------------------------------------------------------ direct compaction
def compact_zone_order(machine: Machine, zone: Zone, order: int, gfp: int, prio: CompactPriority,
                       alloc_flags: int, highest_zoneidx: int,
                       hook: CompactionHooks | None = None) -> tuple[CompactResult, CompactControl]:
    """``compact_zone_order()``: one direct compaction of one zone at a priority."""
    full = prio == MIN_COMPACT_PRIORITY
    cc = CompactControl(
        zone=zone, order=order, gfp=int(gfp),
        mode=MigrateMode.ASYNC if prio == COMPACT_PRIO_ASYNC else MigrateMode.SYNC_LIGHT,
        alloc_flags=alloc_flags, highest_zoneidx=highest_zoneidx, direct_compaction=True,
        whole_zone=full, ignore_skip_hint=full, ignore_block_suitable=full,
    )
    return compact_zone(machine, cc, hook), cc


def _in_compaction(machine: Machine) -> bool:
    return bool(machine.compaction.active)


def try_to_compact_pages(machine: Machine, gfp: int, order: int, alloc_flags: int, ac: AllocContext,
                         prio: CompactPriority, hook: CompactionHooks | None = None) -> CompactResult:
    """``try_to_compact_pages()``: direct compaction of every zone of the zonelist,
    highest first, until one expects the allocation to succeed.  Deferred zones are
    skipped unless at the highest priority; sync failures defer the zone."""
    if not gfp & Gfp.IO:
        return COMPACT_SKIPPED  # GFP_NOIO: migration might need I/O
    if _in_compaction(machine):
        return COMPACT_SKIPPED  # PF_MEMALLOC: no compaction from inside a compaction
    rc = COMPACT_SKIPPED
    for zone in ac.zonelist:
        if not zone.present_pages:
            continue
        if prio > MIN_COMPACT_PRIORITY and compaction_deferred(zone, order):
            rc = max(COMPACT_DEFERRED, rc)
            continue
        status, _ = compact_zone_order(machine, zone, order, gfp, prio, alloc_flags, ac.highest_zoneidx, hook)
        rc = max(status, rc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(zone, order, False)
            break
        if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            defer_compaction(zone, order)
    return CompactResult(rc)


def alloc_pages_direct_compact(machine: Machine, order: int, alloc_flags: int, ac: AllocContext,
                               prio: CompactPriority,
                               hook: CompactionHooks | None = None) -> tuple[int, Zone | None, CompactResult]:
    """``__alloc_pages_direct_compact()``: compact, then try the free lists.  Counts
    ``compact_stall`` when some zone was not skipped, then ``compact_success`` or
    ``compact_fail`` by whether the allocation succeeded.  Returns (pfn or -1, zone,
    result); the caller prepares the page as ``alloc_pages`` does."""
    if not order:
        return -1, None, COMPACT_SKIPPED
    result = try_to_compact_pages(machine, ac.gfp, order, alloc_flags, ac, prio, hook)
    if result == COMPACT_SKIPPED:
        return -1, None, result
    machine.vmstat["compact_stall"] += 1
    pfn, zone = machine.buddy.get_page_from_freelist(order, alloc_flags, ac)
    if pfn >= 0 and zone is not None:
        zone.compact_blockskip_flush = False
        compaction_defer_reset(zone, order, True)
        machine.vmstat["compact_success"] += 1
        return pfn, zone, result
    machine.vmstat["compact_fail"] += 1
    return -1, None, result


# ------------------------------------------------------------------ full compaction
@attrs.frozen
class ZoneCompaction:
    """What compacting one zone did: free blocks per order before and after, and the run."""

    zone: str
    result: str
    free_before: tuple[int, ...]
    free_after: tuple[int, ...]
    migrate_scanned: int
    free_scanned: int
    isolated: int
    migrated: int
    migrate_failed: int
    batches: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["free_before"] = list(self.free_before)
        d["free_after"] = list(self.free_after)
        return d


@attrs.frozen
class CompactMemoryReport:
    """``echo 1 > /proc/sys/vm/compact_memory``: per zone, and the /proc/vmstat deltas."""

    zones: tuple[ZoneCompaction, ...]
    counters: dict[str, int]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"zones": [z.as_dict() for z in self.zones], "counters": dict(self.counters),
                "seconds": self.seconds}


def _zone_record(cc: CompactControl, before: list[int], result: CompactResult) -> ZoneCompaction:
    return ZoneCompaction(
        zone=cc.zone.name, result=result.name, free_before=tuple(before),
        free_after=tuple(cc.zone.nr_free_by_order()), migrate_scanned=cc.total_migrate_scanned,
        free_scanned=cc.total_free_scanned, isolated=cc.counters["compact_isolated"],
        migrated=cc.nr_migrated, migrate_failed=cc.nr_migrate_failed, batches=cc.batches,
        seconds=cc.seconds)


COUNTERS_OF_INTEREST = (
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall",
    "compact_fail", "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned", "pgmigrate_success", "pgmigrate_fail",
)


def compact_memory(machine: Machine, hook: CompactionHooks | None = None) -> CompactMemoryReport:
    """``echo 1 > /proc/sys/vm/compact_memory`` (``compact_nodes``): every populated zone,
    order -1 (no target: run until the scanners meet), ``MIGRATE_SYNC``, whole zone,
    skip hints ignored."""
    before_counters = {k: machine.vmstat[k] for k in COUNTERS_OF_INTEREST}
    records = []
    for zone in machine.zones:
        if not zone.present_pages:
            continue
        cc = CompactControl(zone=zone, order=-1, mode=MigrateMode.SYNC, ignore_skip_hint=True,
                            whole_zone=True, gfp=int(GFP_KERNEL))
        before = zone.nr_free_by_order()
        result = compact_zone(machine, cc, hook)
        records.append(_zone_record(cc, before, result))
    delta = {k: machine.vmstat[k] - v for k, v in before_counters.items()}
    seconds = sum(r.seconds for r in records)
    compaction_state(machine).full_seconds += seconds
    return CompactMemoryReport(tuple(records), delta, seconds)


# ------------------------------------------------------------------ kcompactd
def fragmentation_score_wmark(machine: Machine, low: bool) -> int:
    """``fragmentation_score_wmark()``: low = max(100 - proactiveness, 5), high = min(low + 10, 100)."""
    wmark_low = max(100 - machine.sysctl.compaction_proactiveness, 5)
    return wmark_low if low else min(wmark_low + 10, 100)


def should_proactive_compact_node(machine: Machine) -> bool:
    if not machine.sysctl.compaction_proactiveness or kswapd_is_running(machine):
        return False
    return fragmentation_score_node(machine) > fragmentation_score_wmark(machine, low=False)


def _zones_up_to(machine: Machine, highest_zoneidx: int) -> list[Zone]:
    return [z for z in machine.zones if z.zone_type <= highest_zoneidx and z.present_pages]


def kcompactd_node_suitable(machine: Machine) -> bool:
    """``kcompactd_node_suitable()`` (v6.1): some zone up to the requested one would compact."""
    st = compaction_state(machine).kcompactd
    for zone in _zones_up_to(machine, st.highest_zoneidx):
        if compaction_suitable(machine, zone, st.max_order, 0, st.highest_zoneidx) == COMPACT_CONTINUE:
            return True
    return False


def wakeup_kcompactd(machine: Machine, order: int, highest_zoneidx: int) -> bool:
    """``wakeup_kcompactd()``, called by kswapd: remember the largest order and the
    tightest zone asked for; wake kcompactd now if some zone is worth compacting.
    Returns whether it was woken (if not, the request waits for its next timeout)."""
    if not order:
        return False
    st = compaction_state(machine).kcompactd
    st.max_order = max(st.max_order, order)
    st.highest_zoneidx = min(st.highest_zoneidx, highest_zoneidx)
    if not kcompactd_node_suitable(machine):
        return False
    st.woken = True
    return True


def trigger_proactive_compaction(machine: Machine) -> None:
    """What a write to ``compaction_proactiveness`` does (``proactive_compact_trigger``):
    kcompactd runs its proactive check at its next turn."""
    if machine.sysctl.compaction_proactiveness:
        compaction_state(machine).kcompactd.proactive_trigger = True


@attrs.frozen
class KcompactdRun:
    """One turn of kcompactd: what woke it and what it compacted."""

    now: float
    kind: str  # "work" (kcompactd_do_work) or "proactive"
    order: int
    zones: tuple[dict[str, Any], ...]
    score_before: int | None = None
    score_after: int | None = None
    deferred: bool = False  # proactive back-off (score did not drop)


def kcompactd_do_work(machine: Machine, hook: CompactionHooks | None = None) -> list[CompactControl]:
    """``kcompactd_do_work()``: compact each zone up to the requested one for the
    requested order, ``MIGRATE_SYNC_LIGHT``, honouring skip hints and deferral."""
    st = compaction_state(machine).kcompactd
    order = st.max_order
    highest = st.highest_zoneidx
    machine.vmstat["compact_daemon_wake"] += 1
    st.runs += 1
    done = []
    for zone in _zones_up_to(machine, highest):
        if compaction_deferred(zone, order):
            continue
        if compaction_suitable(machine, zone, order, 0, int(zone.zone_type)) != COMPACT_CONTINUE:
            continue
        cc = CompactControl(zone=zone, order=order, highest_zoneidx=highest, mode=MigrateMode.SYNC_LIGHT,
                            ignore_skip_hint=False, gfp=int(GFP_KERNEL))
        status = compact_zone(machine, cc, hook)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(zone, order, False)
        elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
            defer_compaction(zone, order)
        machine.vmstat["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
        machine.vmstat["compact_daemon_free_scanned"] += cc.total_free_scanned
        compaction_state(machine).kcompactd_seconds += cc.seconds
        done.append(cc)
    if st.max_order <= order:
        st.max_order = 0
    if st.highest_zoneidx >= highest:
        st.highest_zoneidx = int(machine.zones[-1].zone_type)
    return done


def proactive_compact_node(machine: Machine, hook: CompactionHooks | None = None) -> list[CompactControl]:
    """``proactive_compact_node()``: every zone, order -1, ``MIGRATE_SYNC_LIGHT``, whole
    zone, skip hints ignored, until the zone's score falls to the low mark."""
    done = []
    for zone in machine.zones:
        if not zone.present_pages:
            continue
        cc = CompactControl(zone=zone, order=-1, mode=MigrateMode.SYNC_LIGHT, ignore_skip_hint=True,
                            whole_zone=True, gfp=int(GFP_KERNEL), proactive_compaction=True)
        compact_zone(machine, cc, hook)
        machine.vmstat["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
        machine.vmstat["compact_daemon_free_scanned"] += cc.total_free_scanned
        compaction_state(machine).kcompactd_seconds += cc.seconds
        done.append(cc)
    return done


def kcompactd_run(machine: Machine, now: float, hook: CompactionHooks | None = None) -> KcompactdRun | None:
    """One turn of the kcompactd thread at simulated time ``now`` (the event loop calls
    this every step).  Woken by :func:`wakeup_kcompactd`, it does the pending work at
    once; otherwise, when its 500 ms timeout has expired, it does work that is still
    requested or the proactive check (score above the high mark: compact each zone to
    the low mark; if the node's score did not drop, back off 500 ms << 6 = 32 s).
    With ``compaction_proactiveness = 0`` it sleeps until woken.  Several expired
    periods between two calls count as one, as a late timer would."""
    st = compaction_state(machine).kcompactd
    work_requested = st.max_order > 0
    if st.woken and work_requested and not st.proactive_trigger:
        st.woken = False
        ccs = kcompactd_do_work(machine, hook)
        st.next_wakeup = now + KCOMPACTD_INTERVAL
        return KcompactdRun(now, "work", ccs[0].order if ccs else 0, tuple(c.summary() for c in ccs))
    if not machine.sysctl.compaction_proactiveness and not st.proactive_trigger:
        return None  # MAX_SCHEDULE_TIMEOUT: asleep until woken
    if now < st.next_wakeup and not st.proactive_trigger:
        return None
    st.woken = False
    if work_requested and not st.proactive_trigger:
        order = st.max_order
        ccs = kcompactd_do_work(machine, hook)
        st.next_wakeup = now + KCOMPACTD_INTERVAL
        return KcompactdRun(now, "work", order, tuple(c.summary() for c in ccs))
    timeout = KCOMPACTD_INTERVAL
    run: KcompactdRun | None = None
    if should_proactive_compact_node(machine):
        prev = fragmentation_score_node(machine)
        ccs = proactive_compact_node(machine, hook)
        score = fragmentation_score_node(machine)
        st.proactive_runs += 1
        deferred = score >= prev
        if deferred:
            timeout = KCOMPACTD_INTERVAL * (1 << COMPACT_MAX_DEFER_SHIFT)
            st.proactive_deferrals += 1
        run = KcompactdRun(now, "proactive", -1, tuple(c.summary() for c in ccs), prev, score, deferred)
    st.proactive_trigger = False
    st.next_wakeup = now + timeout
    return run


__all__ = [
    "COMPACT_CLUSTER_MAX",
    "COMPACT_MAX_DEFER_SHIFT",
    "CompactControl",
    "CompactMemoryReport",
    "CompactPriority",
    "CompactResult",
    "CompactionState",
    "IsolateMigrate",
    "KcompactdRun",
    "ZoneCompaction",
    "alloc_pages_direct_compact",
    "compact_finished",
    "compact_memory",
    "compact_zone",
    "compaction_defer_reset",
    "compaction_deferred",
    "compaction_restarting",
    "compaction_state",
    "compaction_suitable",
    "defer_compaction",
    "isolate_free_block",
    "isolate_freepages",
    "isolate_freepages_block",
    "isolate_migratepages",
    "isolate_migratepages_block",
    "kcompactd_run",
    "reset_isolation_suitable",
    "try_to_compact_pages",
    "wakeup_kcompactd",
]
