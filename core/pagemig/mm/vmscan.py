"""Page-frame reclaim and kswapd: mm/vmscan.c (v6.1), simplified honestly.

Who reclaims what: owners that implement :class:`pagemig.mm.lru.Reclaimable`
(:mod:`pagemig.mm.lru`); slab caches through shrinkers (:mod:`pagemig.mm.shrinker`);
anon pages go to the swap devices of :mod:`pagemig.mm.swap`.

``shrink_node`` follows the kernel's ``shrink_node`` / ``get_scan_count``: at scan
priority ``p`` each LRU is scanned ``size >> p`` pages, split between anon and file
by ``swappiness`` (anon gets ``swappiness / 200`` of the pressure, file the rest,
as ``SCAN_FRACT`` does when anon and file cost the same), file only when anon cannot
be reclaimed (no swap device, or swap full), anon only when file is tiny
(``file + free <= sum of high watermarks``), both equally at priority 0.  The
pressure on each kind is spread across owners in proportion to their sizes.

Direct reclaim (``try_to_free_pages``) asks for ``SWAP_CLUSTER_MAX`` pages and
lowers the priority from 12 until it has them, as ``do_try_to_free_pages`` does;
for high orders it keeps reclaiming while compaction still lacks free pages
(``should_continue_reclaim``) and stops early for costly orders once compaction is
ready (``compaction_ready``).  kswapd (``balance_pgdat``) reclaims until one
eligible zone meets its high watermark at the requested order (``pgdat_balanced``:
since v4.10 one balanced zone is enough), dropping to order 0 once it has reclaimed
``compact_gap(order)`` pages.

Simplified, and why
-------------------
* One list per kind, no active/inactive split, no referenced bits, no refault
  detection (workingset), no MGLRU, no ``cache_trim_mode``: the owner's "oldest"
  is the order in which it added (or last touched) its pages.
* Anon and file reclaim are assumed to cost the same (``anon_cost == file_cost``),
  so ``SCAN_FRACT`` reduces to ``swappiness : 200 - swappiness``.
* Within one priority level the whole scan target is scanned (the kernel's
  ``scan_adjusted`` proportional stop is not modelled); the priority loop stops as
  the kernel's does once ``nr_to_reclaim`` is met.
* Dirty file pages: direct reclaim never writes them (v6.1 ``shrink_folio_list``:
  "only kswapd can writeback filesystem folios"); kswapd writes every dirty file
  page it scans (the kernel waits for ``PGDAT_DIRTY`` first).  Writeback completes
  at once, at the cost of :data:`~pagemig.mm.costs.COST_WRITEBACK_PAGE`, and the
  written page goes to the front of its list (``PG_reclaim`` rotation), to be
  dropped by the next scan.  So one pass drops clean pages, dirty ones need two.
* Swap-out is synchronous (as zram is): a swapped anon page is freed in the same
  pass.  ``pgpgout`` counts file writeback only (in KiB, as /proc/vmstat shows
  it); in v6.1 zram's ``rw_page`` path bypasses ``submit_bio`` and so does not
  count either.
* No memcg, no reclaim throttling, no vmpressure, no watermark boosting
  (the core never boosts), no ``laptop_mode``, no THP splitting (LruOwner holds
  order-0 pages).

kswapd
------
The event loop calls :func:`background_tick` at every step of simulated time.  kswapd
is a small state machine that follows the kernel's ``kswapd()`` loop and
``kswapd_try_to_sleep()``:

* asleep, it is woken by :func:`wakeup_kswapd` (from the allocator's slow path) unless
  the node is already balanced for that order and zone, or hopeless
  (``kswapd_failures >= MAX_RECLAIM_RETRIES``).  A wake records the largest order
  and highest zone asked for (``kswapd_order``, ``kswapd_highest_zoneidx``);
* woken, at the next tick it runs ``balance_pgdat`` for them: reclaim until one
  eligible zone meets its high watermark at the order, falling back to order 0
  once ``compact_gap(order)`` pages were reclaimed;
* then it tries to sleep: if the node is balanced at the order it finished at, it
  clears compaction's skip bits where a direct compactor asked for it
  (``reset_isolation_suitable``), wakes kcompactd for the order it was woken
  for (``wakeup_kcompactd``; nothing for order 0) and naps for 100 ms (HZ/10).
  Woken again during the nap: ``kswapd_low_wmark_hit_quickly`` and back to
  work.  Not balanced when the nap ends (or at once):
  ``kswapd_high_wmark_hit_quickly`` and back to work.  Otherwise it sleeps until
  woken.

kcompactd itself (its wake-ups, its 500 ms proactive timer, its compaction runs) is
:mod:`pagemig.mm.compaction`'s: kswapd wakes it, and :func:`background_tick` gives it
its turn after kswapd's.

Simplified, and why (kswapd):

* kswapd runs between events, not beside them: a whole ``balance_pgdat`` happens
  inside one tick (at most ``KSWAPD_RUNS_PER_TICK`` of them), and its simulated
  CPU time is accounted (``kswapd_seconds``) but does not delay the clock or the
  allocations that woke it.  So that a step with many allocations does not stall
  on direct reclaim merely because kswapd had no chance to run, an allocation about
  to reclaim for itself first lets a woken kswapd run (:func:`kswapd_catch_up`), as
  the real one would have been running since the low watermark woke it.
* No watermark boosting (the core's buddy allocator never boosts), no
  ``pfmemalloc_wait`` throttling, no freezer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import structlog

from pagemig.mm.compaction import (
    COMPACT_CONTINUE,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    compact_gap,
    compaction_suitable,
    kcompactd_run,
    reset_isolation_suitable,
    wakeup_kcompactd,
)
from pagemig.mm.costs import COST_RECLAIM_CLEAN, COST_SCAN_PAGE, COST_SWAP_OUT, COST_WRITEBACK_PAGE
from pagemig.mm.gfp import GFP_BIT_DIRECT_RECLAIM, ZoneType
from pagemig.mm.lru import Reclaimable, ShrinkControl, ShrinkResult, reclaimable_owners
from pagemig.mm.node import MAX_NR_ZONES, Kswapd, KswapdMode
from pagemig.mm.pages import ANON, FILE, LRU_KINDS, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE
from pagemig.mm.shrinker import shrink_slab
from pagemig.mm.zone import SWAP_CLUSTER_MAX, WMARK_HIGH

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine
    from pagemig.mm.zone import Zone

log = structlog.get_logger(__name__)

DEF_PRIORITY = 12  # scan 1/4096 of each LRU first
MAX_RECLAIM_RETRIES = 16  # mm/internal.h: kswapd gives up on a node, the slow path stops retrying
KSWAPD_NAP_SECONDS = 0.1  # schedule_timeout(HZ/10) in kswapd_try_to_sleep
KSWAPD_RUNS_PER_TICK = 4  # balance_pgdat calls one tick may make before yielding to the event loop

# /proc/vmstat's zone suffixes (TEXTS_FOR_ZONES): allocstall_dma, allocstall_dma32, ...
ZONE_VMSTAT_NAMES = {ZoneType.DMA: "dma", ZoneType.DMA32: "dma32", ZoneType.NORMAL: "normal",
                     ZoneType.HIGHMEM: "high", ZoneType.MOVABLE: "movable"}


# --------------------------------------------------------------------------- scan control
@attrs.define
class ScanControl:
    """``struct scan_control``, the part that is modelled."""

    nr_to_reclaim: int
    order: int = 0
    priority: int = DEF_PRIORITY
    reclaim_idx: int = int(ZoneType.MOVABLE)  # highest zone type whose pages may be freed
    may_writepage: bool = True
    may_swap: bool = True
    kswapd: bool = False
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    nr_written: int = 0  # dirty file pages whose writeback reclaim started
    nr_swapped: int = 0  # anon pages swapped out
    seconds: float = 0.0  # simulated time this reclaim cost
    compaction_ready: bool = False


@attrs.frozen
class ReclaimStats:
    """What a reclaim did, for callers and tests."""

    scanned: int
    reclaimed: int
    written: int
    swapped: int
    seconds: float


def _eligible_zones(machine: Machine, reclaim_idx: int) -> list[Zone]:
    return [z for z in machine.zones if z.zone_type <= reclaim_idx and z.managed_pages > 0]


def _max_pfn(machine: Machine, reclaim_idx: int) -> int:
    ends = [z.end_pfn for z in machine.zones if z.zone_type <= reclaim_idx]
    return max(ends) if ends else 0



def _split(total: int, sizes: Sequence[int]) -> list[int]:
    """Share ``total`` in proportion to ``sizes`` (largest remainder; never above a size)."""
    whole = sum(sizes)
    if whole <= 0 or total <= 0:
        return [0] * len(sizes)
    if total >= whole:
        return list(sizes)
    raw = [total * s for s in sizes]
    shares = [r // whole for r in raw]
    left = total - sum(shares)
    order = sorted(range(len(sizes)), key=lambda i: -(raw[i] % whole))
    for i in order[:left]:
        shares[i] += 1
    return shares


def get_scan_count(machine: Machine, sc: ScanControl, anon: int, file: int, swap_ok: bool) -> dict[int, int]:
    """``get_scan_count()``: how many pages of each LRU to scan at ``sc.priority``.

    The kernel's cases in its order: anon not reclaimable (no swap room, ``may_swap``
    off) -> file only; priority 0 -> both whole lists (``SCAN_EQUAL``); file tiny
    (``file + free <= sum of the high watermarks``) -> anon only; otherwise
    ``SCAN_FRACT``: ``(size >> priority) * fraction // denominator``, rounded down as
    for the (online) root memcg, with ``fraction`` = ``swappiness`` for anon and
    ``200 - swappiness`` for file (what the v5.9+ cost formula gives when neither
    list has reclaim cost recorded).
    """
    p = sc.priority
    swappiness = machine.sysctl.swappiness
    if not swap_ok:
        return {ANON: 0, FILE: file >> p}
    if p == 0 and swappiness:
        return {ANON: anon, FILE: file}
    zones = _eligible_zones(machine, sc.reclaim_idx)
    free = sum(z.free_pages for z in zones)
    total_high = sum(z.wmark_pages(WMARK_HIGH) for z in zones)
    if file + free <= total_high and anon >> p:
        return {ANON: anon >> p, FILE: 0}
    ap = swappiness
    fp = 200 - swappiness
    denominator = ap + fp
    return {ANON: (anon >> p) * ap // denominator, FILE: (file >> p) * fp // denominator}


def _count(machine: Machine, sc: ScanControl, scanned: dict[int, int], stolen: dict[int, int]) -> None:
    vm = machine.vmstat
    who = "kswapd" if sc.kswapd else "direct"
    total_scanned = scanned[ANON] + scanned[FILE]
    total_stolen = stolen[ANON] + stolen[FILE]
    if total_scanned:
        vm[f"pgscan_{who}"] += total_scanned
        vm["pgscan_anon"] += scanned[ANON]
        vm["pgscan_file"] += scanned[FILE]
    if total_stolen:
        vm[f"pgsteal_{who}"] += total_stolen
        vm["pgsteal_anon"] += stolen[ANON]
        vm["pgsteal_file"] += stolen[FILE]


def _shrink_lru_round(machine: Machine, sc: ScanControl, owners: list[Reclaimable]) -> tuple[int, int]:
    """One pass of ``shrink_lruvec`` + ``shrink_slab`` at ``sc.priority``: (scanned, reclaimed)."""
    swap = machine.swap if sc.may_swap and machine.swap.nr_free > 0 else None
    sizes = [o.lru_sizes() for o in owners]
    anon = sum(int(s.get(ANON, 0)) for s in sizes)
    file = sum(int(s.get(FILE, 0)) for s in sizes)
    targets = get_scan_count(machine, sc, anon, file, swap is not None)
    ctl = ShrinkControl(may_writepage=sc.may_writepage, swap=swap,
                        max_pfn=_max_pfn(machine, sc.reclaim_idx), kswapd=sc.kswapd)
    scanned: dict[int, int] = {ANON: 0, FILE: 0}
    stolen: dict[int, int] = {ANON: 0, FILE: 0}
    written = swapped = 0
    for kind in LRU_KINDS:
        shares = _split(targets[kind], [int(s.get(kind, 0)) for s in sizes])
        for owner, share in zip(owners, shares, strict=True):
            if share <= 0:
                continue
            res = owner.shrink(kind, share, ctl)
            if not isinstance(res, ShrinkResult):
                raise TypeError(f"{getattr(owner, 'name', owner)!r}.shrink returned {res!r}, not a ShrinkResult")
            res.check(getattr(owner, "name", type(owner).__name__), share)
            scanned[kind] += res.scanned
            stolen[kind] += res.reclaimed
            written += res.written
            swapped += res.swapped
    slab = shrink_slab(machine, sc.priority)
    _count(machine, sc, scanned, stolen)
    if written:
        machine.vmstat["pgpgout"] += written * (PAGE_SIZE // 1024)
    if written or swapped:
        machine.vmstat["nr_vmscan_write"] += written + swapped
    n_scanned = scanned[ANON] + scanned[FILE]
    n_reclaimed = stolen[ANON] + stolen[FILE] + slab
    sc.seconds += (n_scanned * COST_SCAN_PAGE + (n_reclaimed - swapped) * COST_RECLAIM_CLEAN
                   + written * COST_WRITEBACK_PAGE + swapped * COST_SWAP_OUT)
    sc.nr_scanned += n_scanned
    sc.nr_reclaimed += n_reclaimed
    sc.nr_written += written
    sc.nr_swapped += swapped
    return n_scanned, n_reclaimed


def in_reclaim_compaction(sc: ScanControl) -> bool:
    """``in_reclaim_compaction()``: reclaim on behalf of compaction for a high order."""
    return bool(sc.order) and (sc.order > PAGE_ALLOC_COSTLY_ORDER or sc.priority < DEF_PRIORITY - 2)


def should_continue_reclaim(machine: Machine, nr_reclaimed: int, sc: ScanControl) -> bool:
    """``should_continue_reclaim()``: for a high order, reclaim on until compaction has room.

    Stops when the last pass freed nothing, when any eligible zone lets compaction go
    ahead (or the allocation succeed), or when the inactive lists hold no more than
    ``compact_gap(order)`` pages.
    """
    if not in_reclaim_compaction(sc) or not nr_reclaimed:
        return False
    for z in _eligible_zones(machine, sc.reclaim_idx):
        if compaction_suitable(machine, z, sc.order, 0, sc.reclaim_idx) in (COMPACT_SUCCESS, COMPACT_CONTINUE):
            return False
    sizes = [o.lru_sizes() for o in reclaimable_owners(machine)]
    inactive = sum(int(s.get(FILE, 0)) for s in sizes)
    if machine.swap.nr_free > 0:
        inactive += sum(int(s.get(ANON, 0)) for s in sizes)
    return inactive > compact_gap(sc.order)


def shrink_node(machine: Machine, sc: ScanControl) -> int:
    """``shrink_node()``: reclaim from every reclaimable owner at ``sc.priority``; returns
    the pages reclaimed by this call.  Progress resets ``kswapd_failures``."""
    owners = reclaimable_owners(machine)
    state = machine.reclaim
    start_reclaimed = sc.nr_reclaimed
    start_seconds = sc.seconds
    state.in_reclaim += 1
    try:
        while True:
            _, got = _shrink_lru_round(machine, sc, owners)
            if got:
                state.kswapd_failures = 0
            if not should_continue_reclaim(machine, got, sc):
                break
    finally:
        state.in_reclaim -= 1
    spent = sc.seconds - start_seconds
    if sc.kswapd:
        state.kswapd_seconds += spent
    else:
        state.direct_seconds += spent
    return sc.nr_reclaimed - start_reclaimed


def reclaim_pages(machine: Machine, nr_to_reclaim: int, *, priority: int = DEF_PRIORITY,
                  may_writepage: bool = True, may_swap: bool = True, kswapd: bool = False) -> ReclaimStats:
    """Reclaim about ``nr_to_reclaim`` pages, lowering the priority as the kernel does, with
    the given permissions (a convenience for commands, workloads and tests)."""
    if nr_to_reclaim < 0:
        raise ValueError(f"nr_to_reclaim must be >= 0, got {nr_to_reclaim}")
    if not 0 <= priority <= DEF_PRIORITY:
        raise ValueError(f"priority must be in 0..{DEF_PRIORITY}, got {priority}")
    sc = ScanControl(nr_to_reclaim=nr_to_reclaim, priority=priority, may_writepage=may_writepage,
                     may_swap=may_swap, kswapd=kswapd)
    while sc.nr_reclaimed < nr_to_reclaim:
        shrink_node(machine, sc)
        if sc.priority == 0:
            break
        sc.priority -= 1
    return ReclaimStats(scanned=sc.nr_scanned, reclaimed=sc.nr_reclaimed, written=sc.nr_written,
                        swapped=sc.nr_swapped, seconds=sc.seconds)


# --------------------------------------------------------------------------- direct reclaim
def compaction_ready(machine: Machine, zone: Zone, sc: ScanControl) -> bool:
    """``compaction_ready()``: compaction can already run with a buffer, so stop reclaiming."""
    suitable = compaction_suitable(machine, zone, sc.order, 0, sc.reclaim_idx)
    if suitable == COMPACT_SUCCESS:
        return True  # the allocation should succeed already: do not reclaim
    if suitable == COMPACT_SKIPPED:
        return False  # compaction cannot proceed yet: reclaim
    mark = zone.wmark_pages(WMARK_HIGH) + compact_gap(sc.order)
    return machine.buddy.zone_watermark_ok(zone, 0, mark, sc.reclaim_idx, 0)


def try_to_free_pages(machine: Machine, order: int, highest_zoneidx: int) -> ScanControl:
    """Direct reclaim (``try_to_free_pages`` -> ``do_try_to_free_pages``) for a request of
    ``order`` whose highest zone is ``highest_zoneidx``.

    Counts ``allocstall_<zone>`` for the request's highest zone (as the kernel does,
    even when that zone is empty).  Returns the scan control; ``nr_reclaimed`` is the
    progress (1 when nothing was reclaimed because compaction is ready).
    """
    sc = ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, order=order, reclaim_idx=int(highest_zoneidx),
                     may_writepage=False, may_swap=True, kswapd=False)
    machine.vmstat[f"allocstall_{ZONE_VMSTAT_NAMES[ZoneType(int(highest_zoneidx))]}"] += 1
    zones = _eligible_zones(machine, sc.reclaim_idx)
    for priority in range(DEF_PRIORITY, -1, -1):
        sc.priority = priority
        if order > PAGE_ALLOC_COSTLY_ORDER and zones and all(compaction_ready(machine, z, sc) for z in zones):
            sc.compaction_ready = True
        else:
            shrink_node(machine, sc)
        if sc.nr_reclaimed >= sc.nr_to_reclaim or sc.compaction_ready:
            break
    if not sc.nr_reclaimed and sc.compaction_ready:
        sc.nr_reclaimed = 1  # "progress": the caller should go on to compaction
    return sc


# --------------------------------------------------------------------------- kswapd's reclaim
def pgdat_balanced(machine: Machine, order: int, highest_zoneidx: int) -> bool:
    """``pgdat_balanced()``: one eligible zone meets its high watermark at this order.

    A node with no managed zone up to ``highest_zoneidx`` needs no balancing.
    """
    zones = _eligible_zones(machine, highest_zoneidx)
    if not zones:
        return True
    buddy = machine.buddy
    return any(buddy.zone_watermark_ok(z, order, z.wmark_pages(WMARK_HIGH), highest_zoneidx, 0) for z in zones)


def kswapd_shrink_node(machine: Machine, sc: ScanControl) -> bool:
    """``kswapd_shrink_node()``: reclaim the sum of the eligible zones' high watermarks;
    drop to order 0 once ``compact_gap(order)`` pages were reclaimed (compaction does the
    rest).  True when enough was scanned that the priority need not rise."""
    sc.nr_to_reclaim = sum(max(z.wmark_pages(WMARK_HIGH), SWAP_CLUSTER_MAX)
                           for z in _eligible_zones(machine, sc.reclaim_idx))
    shrink_node(machine, sc)
    if sc.order and sc.nr_reclaimed >= compact_gap(sc.order):
        sc.order = 0
    return sc.nr_scanned >= sc.nr_to_reclaim


def balance_pgdat(machine: Machine, order: int, highest_zoneidx: int) -> tuple[int, ScanControl]:
    """``balance_pgdat()``: kswapd's reclaim until the node is balanced; returns the order
    it finished at (0 if it fell back from a high order) and its scan control."""
    sc = ScanControl(nr_to_reclaim=0, order=order, reclaim_idx=int(highest_zoneidx),
                     may_writepage=True, may_swap=True, kswapd=True)
    machine.vmstat["pageoutrun"] += 1
    state = machine.reclaim
    sc.priority = DEF_PRIORITY
    balanced = False
    while True:
        before = sc.nr_reclaimed
        if pgdat_balanced(machine, sc.order, sc.reclaim_idx):
            balanced = True
            break
        sc.nr_scanned = 0
        raise_priority = not kswapd_shrink_node(machine, sc)
        progress = sc.nr_reclaimed - before
        if raise_priority or not progress:
            sc.priority -= 1
        if sc.priority < 1:
            break
    if not balanced and not sc.nr_reclaimed:
        state.kswapd_failures += 1
    return sc.order, sc

# --------------------------------------------------------------------------- kswapd
def _wake_kcompactd(machine: Machine, order: int, highest_zoneidx: int) -> None:
    """kswapd's ``wakeup_kcompactd()`` call (nothing for order 0): counted, then compaction's."""
    if not order:
        return
    machine.kswapd.kcompactd_wakeups += 1
    wakeup_kcompactd(machine, order, highest_zoneidx)


def wakeup_kswapd(machine: Machine, order: int, highest_zoneidx: int, gfp: int = 0) -> None:
    """``wakeup_kswapd()``: record the request; wake kswapd unless the node is balanced for
    it or hopeless (then, for a request that cannot reclaim itself, wake kcompactd)."""
    if not any(z.zone_type <= highest_zoneidx and z.managed_pages for z in machine.zones):
        return
    k = machine.kswapd
    if k.kswapd_highest_zoneidx == MAX_NR_ZONES or k.kswapd_highest_zoneidx < highest_zoneidx:
        k.kswapd_highest_zoneidx = int(highest_zoneidx)
    k.kswapd_order = max(k.kswapd_order, order)
    if k.mode is KswapdMode.RUNNABLE or k.woken_while_napping:  # not on its wait queue
        return
    if machine.reclaim.kswapd_failures >= MAX_RECLAIM_RETRIES or pgdat_balanced(
            machine, order, highest_zoneidx):
        if not gfp & GFP_BIT_DIRECT_RECLAIM:
            _wake_kcompactd(machine, order, highest_zoneidx)
        return
    k.wakeups += 1
    if k.mode is KswapdMode.NAPPING:
        k.woken_while_napping = True  # its nap ends early, at the next tick
    else:
        k.mode = KswapdMode.RUNNABLE


def _prepare_kswapd_sleep(machine: Machine, order: int, highest_zoneidx: int) -> bool:
    """``prepare_kswapd_sleep()``: hopeless, or balanced."""
    if machine.reclaim.kswapd_failures >= MAX_RECLAIM_RETRIES:
        return True
    return pgdat_balanced(machine, order, highest_zoneidx)


def _sleep_zoneidx(k: Kswapd, prev: int) -> int:
    """``kswapd_highest_zoneidx()``: the requested zone, or the previous one if none was."""
    cur = k.kswapd_highest_zoneidx
    return prev if cur == MAX_NR_ZONES else cur


def _or_highest_zone(machine: Machine, zoneidx: int) -> int:
    """``zoneidx``, or the machine's highest zone type when no zone was asked for (``MAX_NR_ZONES``)."""
    return zoneidx if zoneidx != MAX_NR_ZONES else int(max(z.zone_type for z in machine.zones))


def _try_to_sleep(machine: Machine, now: float) -> bool:
    """The first half of ``kswapd_try_to_sleep``: nap if balanced (waking kcompactd).
    Returns True when kswapd went to nap, False when it must work again at once."""
    k = machine.kswapd
    zoneidx = _or_highest_zone(machine, k.highest_zoneidx)
    if _prepare_kswapd_sleep(machine, k.reclaim_order, zoneidx):
        reset_isolation_suitable(machine)
        _wake_kcompactd(machine, k.alloc_order, zoneidx)
        k.mode = KswapdMode.NAPPING
        k.nap_until = now + KSWAPD_NAP_SECONDS
        k.woken_while_napping = False
        return True
    machine.vmstat["kswapd_high_wmark_hit_quickly"] += 1
    k.mode = KswapdMode.RUNNABLE
    return False


def _run_once(machine: Machine) -> None:
    """From kswapd's wake-up to its next ``kswapd_try_to_sleep``: one ``balance_pgdat``."""
    k = machine.kswapd
    alloc_order = k.kswapd_order
    highest = _or_highest_zone(machine, _sleep_zoneidx(k, k.highest_zoneidx))
    k.kswapd_order = 0
    k.kswapd_highest_zoneidx = MAX_NR_ZONES
    reclaim_order, _ = balance_pgdat(machine, alloc_order, highest)
    k.runs += 1
    k.highest_zoneidx = highest
    if reclaim_order < alloc_order:
        # goto kswapd_try_sleep: sleep checked at the order reclaimed, kcompactd woken for the one asked
        k.alloc_order, k.reclaim_order = alloc_order, reclaim_order
    else:
        # the top of the loop: new requests that came in meanwhile (order 0 if none)
        k.alloc_order = k.reclaim_order = k.kswapd_order
        k.highest_zoneidx = _sleep_zoneidx(k, highest)


def kswapd_tick(machine: Machine, now: float) -> int:
    """Advance kswapd to ``now``; returns how many ``balance_pgdat`` runs it made."""
    k = machine.kswapd
    runs = 0
    if k.mode is KswapdMode.NAPPING:
        if k.woken_while_napping:
            # woken during the nap ("remaining" > 0): take the new request, count a quick hit
            k.woken_while_napping = False
            k.kswapd_highest_zoneidx = _sleep_zoneidx(k, k.highest_zoneidx)
            k.kswapd_order = max(k.kswapd_order, k.reclaim_order)
            machine.vmstat["kswapd_low_wmark_hit_quickly"] += 1
            k.mode = KswapdMode.RUNNABLE
        elif now >= k.nap_until:
            if _prepare_kswapd_sleep(machine, k.reclaim_order, _or_highest_zone(machine, k.highest_zoneidx)):
                k.mode = KswapdMode.SLEEPING
            else:
                machine.vmstat["kswapd_high_wmark_hit_quickly"] += 1
                k.mode = KswapdMode.RUNNABLE
    while k.mode is KswapdMode.RUNNABLE and runs < KSWAPD_RUNS_PER_TICK:
        _run_once(machine)
        runs += 1
        _try_to_sleep(machine, now)
    return runs


def kswapd_catch_up(machine: Machine) -> bool:
    """Let a woken kswapd do now what it would have done since it was woken.

    The real kswapd runs beside the allocating tasks from the moment the low watermark
    wakes it; the gap between low and min is there to give it that time.  The event
    loop runs kswapd only between steps, so an allocation that reaches min while
    kswapd sits woken would stall on direct reclaim far more often than in a kernel.
    The slow path calls this before it reclaims directly (``FullSlowPath.kswapd_catch_up``
    switches it off).  Returns whether kswapd ran.
    """
    k = machine.kswapd
    if not (k.mode is KswapdMode.RUNNABLE or k.woken_while_napping):
        return False
    return kswapd_tick(machine, machine.now) > 0


# ----------------------------------------------------------------------------- the tick
def background_tick(machine: Machine, now: float) -> float:
    """What the daemons do up to simulated time ``now``: kswapd, then kcompactd.

    Called by the event loop at every step.  Returns the simulated CPU seconds the
    daemons' reclaim spent in this tick (kcompactd's compaction time is the
    compaction module's to report).
    """
    k = machine.kswapd
    rs = machine.reclaim
    before = rs.kswapd_seconds
    k.running = True  # kswapd_is_running() for compaction
    runs = kswapd_tick(machine, now)
    # still at work (it used up its runs for this tick) unless it went to nap or sleep
    k.running = k.mode is KswapdMode.RUNNABLE
    kcompactd_run(machine, now)
    spent = rs.kswapd_seconds - before
    if runs:
        log.debug("kswapd_ran", runs=runs, seconds=spent, free=sum(z.free_pages for z in machine.zones))
    return spent


__all__ = [
    "DEF_PRIORITY",
    "KSWAPD_NAP_SECONDS",
    "MAX_RECLAIM_RETRIES",
    "ReclaimStats",
    "ScanControl",
    "background_tick",
    "balance_pgdat",
    "get_scan_count",
    "kswapd_catch_up",
    "kswapd_tick",
    "pgdat_balanced",
    "reclaim_pages",
    "shrink_node",
    "try_to_free_pages",
    "wakeup_kswapd",
]
