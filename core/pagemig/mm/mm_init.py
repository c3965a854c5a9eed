"""Boot: the complete simulated kernel in one call (after mm/mm_init.c and the init
calls that start kswapd and kcompactd, v6.1).

:func:`boot` builds the :class:`~pagemig.mm.machine.Machine` (memblock, zones,
watermarks, the buddy allocator) and gives it what the kernel has running by the time
userspace starts: the allocator's full slow path (:class:`~pagemig.mm.slowpath.FullSlowPath`:
kswapd wake-ups, direct reclaim, direct compaction), and the sysctl handler through
which ``compaction_proactiveness`` reaches compaction.  kswapd's, kcompactd's,
reclaim's and compaction's state are the machine's from its construction; the event
loop runs the daemons with :func:`pagemig.mm.vmscan.background_tick`.

This is the top of the mm package: it is the one module that imports the slow path,
and nothing in mm imports it.

Simplified, and why: there are no init levels, no ``kswapd_run``/``kcompactd_run``
threads to start (the daemons are functions of the event loop) and no memory
hotplug, so booting is construction plus two hand-offs.  A bare ``Machine(config)``
stays the page allocator alone, for the allocator's unit tests and benchmarks.
"""

from __future__ import annotations

import functools

from pagemig.mm.compaction import trigger_proactive_compaction
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.slowpath import FullSlowPath


def boot(config: MachineConfig, *, kswapd_catch_up: bool = True) -> Machine:
    """The machine of ``config`` with the kernel's slow path, reclaim, kswapd, kcompactd
    and compaction.  ``kswapd_catch_up`` lets a woken kswapd run before an allocation
    reclaims for itself (:func:`pagemig.mm.vmscan.kswapd_catch_up`); tests of what the
    allocating task itself does switch it off.  The slow path's ``stats`` and ``last``
    trace (``machine.slowpath``) are what an allocation probe reads."""
    machine = Machine(config)
    machine.slowpath = FullSlowPath(kswapd_catch_up=kswapd_catch_up)
    # proc_dointvec_minmax_warn_rt_change + compaction_proactiveness_sysctl_handler (mm/compaction.c)
    machine.register_sysctl_handler("compaction_proactiveness",
                                    functools.partial(trigger_proactive_compaction, machine))
    return machine


__all__ = ["boot"]
