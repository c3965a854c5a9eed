"""Put an imported snapshot into a simulated machine and run full compaction on it.

This is the one place the snapshot package touches the simulator, through its public
seams only: ``boot(MachineConfig(...))``, ``Machine.load_state`` and
``pagemig.mm.compaction.compact_memory`` (what ``echo 1 > /proc/sys/vm/compact_memory``
does: every zone, order -1, MIGRATE_SYNC, skip hints ignored).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from pagemig.mm.compaction import compact_memory
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.mm_init import boot
from pagemig.mm.movable import MIGRATEPAGE_SUCCESS, MigrateMode, set_movable
from pagemig.mm.pages import Page, PageFlag, copy_page
from pagemig.mm.vmstat import free_state, vmstat_items
from pagemig.mm.zone import ZoneSpec
from pagemig.snapshot.importer import ImportedState

#: vmstat counters a compaction changes; compared real against simulated.
COMPACTION_COUNTERS = (
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
    "compact_stall", "compact_fail", "compact_success",
    "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "pgmigrate_success", "pgmigrate_fail",
)


class ImportedMovableOps:
    """Movable operations for imported driver pages taken for zsmalloc's.

    What zsmalloc (6.1) does to a zspage page at rest: isolation succeeds, migration
    copies the page and moves the references (nothing here references it), putback
    relinks it.  The refusals zsmalloc can give (an empty zspage, one its own compactor
    holds, an object in use: -EAGAIN) need activity a snapshot does not have.
    """

    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        copy_page(dst, src)
        set_movable(dst, self)
        return MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        """Nothing to relink: the imported owner keeps no list."""


def build_machine(state: ImportedState, min_free_kbytes: int | None = None) -> Machine:
    """A simulated machine in the imported state: the same zones, pageblock order,
    pageblock types, free blocks and page kinds; DRIVER pages the import marked
    movable (zsmalloc's) are offered to compaction through :class:`ImportedMovableOps`."""
    cfg = MachineConfig(
        zones=tuple(ZoneSpec(z.name, z.start_pfn, z.spanned) for z in state.zones),
        pageblock_order=state.pageblock_order,
        min_free_kbytes=min_free_kbytes,
    )
    machine = boot(cfg)
    if machine.nr_pages != state.nr_pfns:
        raise ValueError(f"machine has {machine.nr_pages} pages, the snapshot {state.nr_pfns}")
    machine.load_state(state.kind, state.free_pfns, state.free_orders, state.pageblock_mt, state.pinned)
    movable = np.nonzero((state.flags & np.uint8(PageFlag.MOVABLE)) != 0)[0]
    if len(movable):
        ops = ImportedMovableOps()
        for pfn in movable.tolist():
            set_movable(Page(machine, pfn), ops)
    return machine


def buddyinfo_of(machine: Machine) -> dict[str, list[int]]:
    """Free blocks per order of every zone, as /proc/buddyinfo would print them."""
    return {z.name: [sum(len(d) for d in per_mt) for per_mt in z.free_area] for z in machine.zones}


@attrs.frozen
class SimCompaction:
    """Free blocks before and after a simulated full compaction, and what it counted.

    ``record`` and ``vmstat`` are the run-result forms (a ``compactions`` entry and the
    ``vmstat`` key of ``pagemig run``'s JSON), for ``pagemig snapshot compact --json``.
    """

    before: Mapping[str, Sequence[int]]
    after: Mapping[str, Sequence[int]]
    counters: Mapping[str, int]  # vmstat deltas of the run
    seconds: float  # host wall time of compact_memory in the simulator
    simulated_seconds: float | None  # what the simulator's cost model charged
    record: Mapping[str, Any] = attrs.field(factory=dict)
    vmstat: Mapping[str, int] = attrs.field(factory=dict)


def simulate_compact_memory(state: ImportedState, min_free_kbytes: int | None = None) -> SimCompaction:
    """Import ``state`` into a fresh machine and run full compaction there."""
    machine = build_machine(state, min_free_kbytes)
    before = buddyinfo_of(machine)
    vm0 = dict(machine.read_vmstat())
    free0 = free_state(machine)
    t0 = time.perf_counter()
    report = compact_memory(machine)
    seconds = time.perf_counter() - t0
    vm1 = machine.read_vmstat()
    keys = set(COMPACTION_COUNTERS) | {k for k in vm1 if k.startswith(("compact_", "pgmigrate_"))}
    counters = {k: int(vm1.get(k, 0)) - int(vm0.get(k, 0)) for k in sorted(keys)}
    counters.update({k: int(v) for k, v in getattr(report, "counters", {}).items()})
    sim_s = getattr(report, "seconds", None)
    record = {
        "index": 0, "trigger": "compact_memory", "time_s": 0.0,
        "before": free0, "after": free_state(machine),
        "counters": {k: v for k, v in counters.items() if v},
        "stall_seconds": float(sim_s) if sim_s is not None else None,
        "zones": report.as_dict()["zones"] if hasattr(report, "as_dict") else [],
    }
    return SimCompaction(before, buddyinfo_of(machine), counters, seconds,
                         None if sim_s is None else float(sim_s), record, dict(vmstat_items(machine)))
