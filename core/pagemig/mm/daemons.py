"""The background daemons: kswapd (mm/vmscan.c) and the hand-off to kcompactd (mm/compaction.c).

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
the compaction module's: this module wakes it and calls
``pagemig.mm.compaction.kcompactd_run(machine, now)`` every tick.

Simplified, and why:

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

import enum
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import numpy as np
import structlog

from pagemig.mm.gfp import GFP_BIT_DIRECT_RECLAIM, ZoneType
from pagemig.mm.reclaim import (
    MAX_RECLAIM_RETRIES,
    balance_pgdat,
    pgdat_balanced,
    reclaim_state,
)

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine
    from pagemig.mm.slowpath import DirectCompaction, FullSlowPath

log = structlog.get_logger(__name__)

MAX_NR_ZONES = len(ZoneType)  # "no zone requested yet" (kswapd_highest_zoneidx's reset value)
KSWAPD_NAP_SECONDS = 0.1  # schedule_timeout(HZ/10) in kswapd_try_to_sleep
KSWAPD_RUNS_PER_TICK = 4  # balance_pgdat calls one tick may make before yielding to the event loop


class KswapdMode(enum.Enum):
    SLEEPING = "sleeping"  # schedule(): until woken
    NAPPING = "napping"  # schedule_timeout(HZ/10)
    RUNNABLE = "runnable"  # woken, runs at the next tick


@attrs.define
class Kswapd:
    """One node's kswapd: what it was asked for and where it is in its loop."""

    kswapd_order: int = 0  # pgdat->kswapd_order: the largest order asked for since it last ran
    kswapd_highest_zoneidx: int = MAX_NR_ZONES  # pgdat->kswapd_highest_zoneidx
    mode: KswapdMode = KswapdMode.SLEEPING
    nap_until: float = 0.0
    woken_while_napping: bool = False
    # the arguments of the pending kswapd_try_to_sleep (after a balance_pgdat)
    alloc_order: int = 0
    reclaim_order: int = 0
    highest_zoneidx: int = MAX_NR_ZONES
    wakeups: int = 0
    runs: int = 0  # balance_pgdat calls
    kcompactd_wakeups: int = 0  # wakeup_kcompactd calls with order > 0


@attrs.define
class Daemons:
    """The machine's background daemons (``machine.daemons``).

    ``wakeup_kcompactd`` and ``kcompactd_run`` default to the compaction module's
    functions; a test or a study may put others in.
    """

    kswapd: Kswapd = attrs.field(factory=Kswapd)
    wakeup_kcompactd: Callable[[Machine, int, int], object] | None = None
    kcompactd_run: Callable[[Machine, float], object] | None = None
    reset_isolation_suitable: Callable[[Machine], None] | None = None


def daemon_state(machine: Machine) -> Daemons:
    """The machine's daemons, made on first use (kcompactd from the compaction module if any)."""
    state: Daemons | None = machine.daemons
    if state is None:
        state = Daemons()
        try:
            mod = importlib.import_module("pagemig.mm.compaction")
        except ImportError:
            mod = None
        if mod is not None:
            state.wakeup_kcompactd = getattr(mod, "wakeup_kcompactd", None)
            state.kcompactd_run = getattr(mod, "kcompactd_run", None)
            state.reset_isolation_suitable = getattr(mod, "reset_isolation_suitable", None)
        machine.daemons = state
    return state


# ----------------------------------------------------------------------------- kcompactd hand-off
def wakeup_kcompactd(machine: Machine, order: int, highest_zoneidx: int) -> None:
    """Ask kcompactd to compact for ``order`` (the compaction module decides whether it runs)."""
    if not order:
        return
    state = daemon_state(machine)
    state.kswapd.kcompactd_wakeups += 1
    if state.wakeup_kcompactd is not None:
        state.wakeup_kcompactd(machine, order, highest_zoneidx)


def reset_isolation_suitable(machine: Machine) -> None:
    """``reset_isolation_suitable(pgdat)``: clear the skip bits of zones whose direct compactors
    asked for a flush (``compact_blockskip_flush``), as kswapd does before it sleeps.

    The compaction module's own version is used when it has one."""
    state = daemon_state(machine)
    if state.reset_isolation_suitable is not None:
        state.reset_isolation_suitable(machine)
        return
    pbo = machine.pageblock_order
    for zone in machine.zones:
        if not zone.compact_blockskip_flush:
            continue
        first = zone.start_pfn >> pbo
        last = (zone.end_pfn - 1) >> pbo
        machine.buddy.pageblock_skip[first:last + 1] = np.uint8(0)
        zone.reset_compaction_cache()
        zone.compact_blockskip_flush = False


# ----------------------------------------------------------------------------- kswapd
def wakeup_kswapd(machine: Machine, order: int, highest_zoneidx: int, gfp: int = 0) -> None:
    """``wakeup_kswapd()``: record the request; wake kswapd unless the node is balanced for
    it or hopeless (then, for a request that cannot reclaim itself, wake kcompactd)."""
    if not any(z.zone_type <= highest_zoneidx and z.managed_pages for z in machine.zones):
        return
    k = daemon_state(machine).kswapd
    if k.kswapd_highest_zoneidx == MAX_NR_ZONES or k.kswapd_highest_zoneidx < highest_zoneidx:
        k.kswapd_highest_zoneidx = int(highest_zoneidx)
    k.kswapd_order = max(k.kswapd_order, order)
    if k.mode is KswapdMode.RUNNABLE or k.woken_while_napping:  # not on its wait queue
        return
    if reclaim_state(machine).kswapd_failures >= MAX_RECLAIM_RETRIES or pgdat_balanced(
            machine, order, highest_zoneidx):
        if not gfp & GFP_BIT_DIRECT_RECLAIM:
            wakeup_kcompactd(machine, order, highest_zoneidx)
        return
    k.wakeups += 1
    if k.mode is KswapdMode.NAPPING:
        k.woken_while_napping = True  # its nap ends early, at the next tick
    else:
        k.mode = KswapdMode.RUNNABLE


def _prepare_kswapd_sleep(machine: Machine, order: int, highest_zoneidx: int) -> bool:
    """``prepare_kswapd_sleep()``: hopeless, or balanced."""
    if reclaim_state(machine).kswapd_failures >= MAX_RECLAIM_RETRIES:
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
    k = daemon_state(machine).kswapd
    zoneidx = _or_highest_zone(machine, k.highest_zoneidx)
    if _prepare_kswapd_sleep(machine, k.reclaim_order, zoneidx):
        reset_isolation_suitable(machine)
        wakeup_kcompactd(machine, k.alloc_order, zoneidx)
        k.mode = KswapdMode.NAPPING
        k.nap_until = now + KSWAPD_NAP_SECONDS
        k.woken_while_napping = False
        return True
    machine.vmstat["kswapd_high_wmark_hit_quickly"] += 1
    k.mode = KswapdMode.RUNNABLE
    return False


def _run_once(machine: Machine) -> None:
    """From kswapd's wake-up to its next ``kswapd_try_to_sleep``: one ``balance_pgdat``."""
    k = daemon_state(machine).kswapd
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
    k = daemon_state(machine).kswapd
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
    k = daemon_state(machine).kswapd
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
    state = daemon_state(machine)
    rs = reclaim_state(machine)
    before = rs.kswapd_seconds
    machine.kswapd_running = True  # kswapd_is_running() for compaction
    runs = kswapd_tick(machine, now)
    # still at work (it used up its runs for this tick) unless it went to nap or sleep
    machine.kswapd_running = state.kswapd.mode is KswapdMode.RUNNABLE
    if state.kcompactd_run is not None:
        state.kcompactd_run(machine, now)
    spent = rs.kswapd_seconds - before
    if runs:
        log.debug("kswapd_ran", runs=runs, seconds=spent, free=sum(z.free_pages for z in machine.zones))
    return spent


def install_full_mm(machine: Machine, compaction: DirectCompaction | None = None, *,
                    kswapd_catch_up: bool = True) -> FullSlowPath:
    """Give the machine the kernel's slow path, kswapd and kcompactd: ``machine.slowpath``
    becomes a :class:`~pagemig.mm.slowpath.FullSlowPath`, and the reclaim and daemon
    state is set up.  Returns the slow path (its ``stats`` and ``last`` trace are what
    an allocation probe reads)."""
    from pagemig.mm.compaction import trigger_proactive_compaction
    from pagemig.mm.slowpath import install_slowpath

    machine.register_sysctl_handler("compaction_proactiveness", lambda: trigger_proactive_compaction(machine))
    reclaim_state(machine)
    daemon_state(machine)
    return install_slowpath(machine, compaction, kswapd_catch_up=kswapd_catch_up)


__all__ = [
    "KSWAPD_NAP_SECONDS",
    "Daemons",
    "Kswapd",
    "KswapdMode",
    "background_tick",
    "daemon_state",
    "install_full_mm",
    "kswapd_catch_up",
    "kswapd_tick",
    "reset_isolation_suitable",
    "wakeup_kcompactd",
    "wakeup_kswapd",
]
