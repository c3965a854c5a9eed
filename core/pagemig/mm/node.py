"""The node's state beside its zones: what ``struct pglist_data`` keeps for kswapd,
kcompactd and reclaim (include/linux/mmzone.h, v6.1), and compaction's per-node totals.

The machine builds these when it is built (one node, so one of each), and the modules
that act on them (:mod:`pagemig.mm.vmscan` for kswapd and reclaim,
:mod:`pagemig.mm.compaction` for kcompactd) read and write them as
``machine.kswapd``, ``machine.reclaim``, ``machine.compaction``.  They are plain data
here so that the machine can own them without importing the subsystems above it.

Simplified, and why:

* the kernel's fields are joined by the simulator's bookkeeping of the same things:
  where kswapd is in its loop (:class:`KswapdMode`: the simulator steps it, the kernel
  schedules a thread), the simulated seconds each daemon spent, and a cache of the
  owners reclaim can shrink (owners are only ever added, and a protocol check costs
  microseconds);
* compaction's free targets are held by an owner registered on first use
  (``CompactionState.targets``, made by :func:`pagemig.mm.compaction.compaction_state`):
  owner ids are handed out in registration order and show in the contents owners
  write, so registering it earlier would change what a run computes.
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs
import numpy as np

from pagemig.mm.gfp import ZoneType
from pagemig.mm.owner import Owner

MAX_NR_ZONES = len(ZoneType)  # "no zone requested yet" (kswapd_highest_zoneidx's reset value)


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
    running: bool = False  # kswapd_is_running(): at work in the current tick
    wakeups: int = 0
    runs: int = 0  # balance_pgdat calls
    kcompactd_wakeups: int = 0  # wakeup_kcompactd calls with order > 0


HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500  # kcompactd's proactive check period (mm/compaction.c)
KCOMPACTD_INTERVAL = HPAGE_FRAG_CHECK_INTERVAL_MSEC / 1000.0


@attrs.define(eq=False)
class Kcompactd:
    """The node's kcompactd (``pgdat->kcompactd_*``) as the event loop drives it."""

    max_order: int = 0
    highest_zoneidx: int = 0
    woken: bool = False  # wakeup_kcompactd found work worth waking for
    proactive_trigger: bool = False  # a write to compaction_proactiveness
    next_wakeup: float = KCOMPACTD_INTERVAL  # when the sleeping timeout (500 ms, or 32 s backed off) expires
    runs: int = 0  # kcompactd_do_work calls
    proactive_runs: int = 0  # proactive_compact_node calls
    proactive_deferrals: int = 0  # back-offs because the score did not drop


@attrs.define(eq=False)
class ReclaimState:
    """Per-node reclaim state (``pglist_data``'s reclaim part), ``machine.reclaim``."""

    kswapd_failures: int = 0  # balance_pgdat runs that reclaimed nothing; reset by any progress
    in_reclaim: int = 0  # > 0 while owners shrink: PF_MEMALLOC for allocations made meanwhile
    direct_seconds: float = 0.0  # simulated time spent in direct reclaim
    kswapd_seconds: float = 0.0  # simulated CPU time kswapd spent reclaiming
    swapin_seconds: float = 0.0
    # the owners that implement pagemig.mm.lru.Reclaimable, as of len(machine.owners) == owners_seen,
    # and a lookup table owner id -> is one of them (sized for any uint16 id)
    owners_seen: int = -1
    reclaimable: list[Owner] = attrs.field(factory=list)
    reclaimable_mask: np.ndarray = attrs.field(factory=lambda: np.zeros(1 << 16, dtype=bool))


class IsolatedTargets(Protocol):
    """What the node keeps of a compaction in progress: the free pages it holds as targets
    (``cc->freepages``; the run is a :class:`pagemig.mm.compaction.CompactControl`)."""

    freepages: list[int]


@attrs.define(eq=False)
class CompactionState:
    """Compaction's per-node state, ``machine.compaction``."""

    kcompactd: Kcompactd
    targets: Owner | None = None  # who holds isolated free targets; registered on first use (see above)
    active: list[IsolatedTargets] = attrs.field(factory=list)  # compactions in progress
    # simulated time spent, by who compacted (direct compaction's also goes on the
    # allocation's clock, machine.stall_seconds)
    direct_seconds: float = 0.0
    kcompactd_seconds: float = 0.0  # woken for an order, and proactive
    full_seconds: float = 0.0  # compact_memory


__all__ = [
    "KCOMPACTD_INTERVAL",
    "MAX_NR_ZONES",
    "CompactionState",
    "IsolatedTargets",
    "Kcompactd",
    "Kswapd",
    "KswapdMode",
    "ReclaimState",
]
