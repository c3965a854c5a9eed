"""Object stores and frees interleaved at random with isolation, migration, putback, mapped
objects and zs_compact (hypothesis): every handle still names its object, every stored
page reads back, and the machine stays consistent after every step."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import (
    EAGAIN,
    EBUSY,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig_zram.driver import ZramDevice
from pagemig_zram.options import validate_options

PICK = st.integers(0, 10**6)


class ZramMachine(RuleBasedStateMachine):
    @initialize(ratio=st.sampled_from([1.5, 3.0, 6.0]), seed=st.integers(0, 3))
    def setup(self, ratio: float, seed: int) -> None:
        self.m = Machine(MachineConfig.x86_64_guest(64 * MiB))
        self.holder = SimpleOwner(self.m, "targets")
        self.z = ZramDevice(self.m, validate_options({"compression_ratio": ratio, "seed": seed,
                                                      "zero_fraction": 0.0, "swap": False}))
        self.stored: dict[int, int] = {}  # slot -> content written
        self.isolated: set[int] = set()
        self.pinned: set[int] = set()  # handles mapped right now
        self.compactor: Iterator[tuple[int, int]] | None = None
        self.next_token = 1

    def _handles(self) -> list[int]:
        return [int(self.z.slot_handle[s]) for s in sorted(self.stored)]

    # ---------------------------------------------------------------- the device's users
    @precondition(lambda self: self.compactor is None)
    @rule(n=st.integers(1, 40))
    def write(self, n: int) -> None:
        for _ in range(n):
            token = (self.next_token * 0x9E3779B97F4A7C15) & ((1 << 64) - 1) or 1
            self.next_token += 1
            slot = self.z.write(token)
            if slot >= 0:
                self.stored[slot] = token

    @precondition(lambda self: self.compactor is None and bool(self.stored))
    @rule(i=PICK, n=st.integers(1, 40))
    def discard(self, i: int, n: int) -> None:
        slots = sorted(self.stored)
        for k in range(min(n, len(slots))):
            slot = slots[(i + k * 7) % len(slots)]
            if slot not in self.stored or int(self.z.slot_handle[slot]) in self.pinned:
                continue
            self.z.discard(slot)
            del self.stored[slot]

    @precondition(lambda self: self.compactor is None and bool(self.stored))
    @rule(i=PICK)
    def pin(self, i: int) -> None:
        handles = self._handles()
        h = handles[i % len(handles)]
        if h > 0 and h not in self.pinned:
            self.z.pool.map_object(h)
            self.pinned.add(h)

    @precondition(lambda self: self.compactor is None and bool(self.pinned))
    @rule()
    def unpin_all(self) -> None:
        for h in self.pinned:
            self.z.pool.unmap_object(h)
        self.pinned.clear()

    @precondition(lambda self: self.compactor is None)
    @rule()
    def tick(self) -> None:
        self.z.tick(0.0)

    # ---------------------------------------------------------------- zsmalloc's own compaction
    @precondition(lambda self: self.compactor is None)
    @rule(full=st.booleans())
    def start_zs_compact(self, full: bool) -> None:
        if full:
            self.z.compact()
        else:
            self.compactor = self.z.pool.compact_steps()

    @precondition(lambda self: self.compactor is not None)
    @rule(steps=st.integers(1, 5))
    def advance_zs_compact(self, steps: int) -> None:
        assert self.compactor is not None
        for _ in range(steps):
            held = next(self.compactor, None)
            if held is None:
                self.compactor = None
                return
            for zsp in held:  # the VM racing with the compactor is refused
                pfn = self.z.pool.zs_chain[zsp][0]
                assert not isolate_movable_page(self.m, pfn, MigrateMode.ASYNC)

    # ---------------------------------------------------------------- kernel compaction's side
    @rule(i=PICK, mode=st.sampled_from(list(MigrateMode)))
    def isolate(self, i: int, mode: MigrateMode) -> None:
        pages = self.m.pages
        cand = np.flatnonzero((pages.owner == self.z.owner_id) & (pages.kind == PageKind.DRIVER)
                              & ((pages.flags & PageFlag.MOVABLE) != 0)
                              & ((pages.flags & PageFlag.ISOLATED) == 0))
        if not len(cand):
            return
        pfn = int(cand[i % len(cand)])
        z = self.z.pool.zspage_of(pfn)
        ok = isolate_movable_page(self.m, pfn, mode)
        if self.z.pool.zs_compacting[z]:
            assert not ok
        if ok:
            self.isolated.add(pfn)

    @precondition(lambda self: self.compactor is None and bool(self.isolated))
    @rule(i=PICK)
    def migrate(self, i: int) -> None:
        src = sorted(self.isolated)[i % len(self.isolated)]
        pool = self.z.pool
        z = pool.zspage_of(src)
        dst = self.m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, self.holder.owner_id, PageKind.KERNEL)
        if dst < 0:
            return
        cls = pool.zs_class[z]
        assert cls is not None
        k = int(pool._slot_index[pool._slot_of(src)])
        starting = pool.zs_inuse[z] and any(
            int(h) in self.pinned for h in cls.slots[pool.zs_row[z], cls.first_obj[k]:cls.first_obj[k + 1]] if h)
        empty = pool.zs_inuse[z] == 0
        rc, consumed = migrate_movable_page(self.m, dst, src, MigrateMode.SYNC)
        if empty:
            assert rc == -EBUSY
        elif starting:
            assert rc == -EAGAIN
        else:
            assert rc == MIGRATEPAGE_SUCCESS and consumed
            assert pool.zs_chain[z][k] == dst
            self.m.free_pages(src)
            self.isolated.discard(src)
        if rc == -EBUSY:
            putback_movable_page(self.m, src)  # a permanent failure: compaction puts it back
            self.isolated.discard(src)
        if not consumed:
            self.m.free_pages(dst)

    @precondition(lambda self: self.compactor is None and bool(self.isolated))
    @rule(i=PICK)
    def putback(self, i: int) -> None:
        pfn = sorted(self.isolated)[i % len(self.isolated)]
        putback_movable_page(self.m, pfn)
        self.isolated.discard(pfn)

    # ---------------------------------------------------------------- after every step
    @invariant()
    def everything_reads_back(self) -> None:
        if self.compactor is not None:
            return  # the compactor is mid-move: check when it lets go
        assert self.z.verify() == []
        pool = self.z.pool
        for slot, token in self.stored.items():
            h = int(self.z.slot_handle[slot])
            # a mapped object is read where it lies (reading maps it, and it is mapped already)
            got = int(pool.h_value[h]) if h in self.pinned else self.z.read(slot)
            assert got == token
        assert_consistent(self.m, allow_isolated=bool(self.isolated))

    def teardown(self) -> None:
        if not hasattr(self, "z"):
            return
        if self.compactor is not None:
            for _ in self.compactor:
                pass
        for pfn in sorted(self.isolated):
            putback_movable_page(self.m, pfn)
        self.z.tick(0.0)
        assert self.z.verify() == []
        assert_consistent(self.m)


TestZramInterleavings = ZramMachine.TestCase
TestZramInterleavings.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
