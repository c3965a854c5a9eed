"""Buffer allocation, job submission, time, DMA pins and the driver's own compaction,
interleaved at random with isolation, migration and putback (hypothesis): every buffer
keeps the content its last job wrote, in the order the GPU maps it, and the machine
stays consistent after every step."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import (
    EAGAIN,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    is_orphan,
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind
from pagemig_gpu.driver import GpuDriver
from pagemig_gpu.options import validate_options

PICK = st.integers(0, 10**6)


class GpuMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.m = Machine(MachineConfig.x86_64_guest(64 * MiB))
        self.holder = SimpleOwner(self.m, "targets")
        self.g = GpuDriver(self.m, validate_options({}))
        self.content: dict[int, np.ndarray] = {}  # buffer id -> what the GPU wrote, in its page order
        self.isolated: set[int] = set()

    def _buffer(self, i: int) -> int:
        ids = sorted(self.g.buffers)
        return ids[i % len(ids)]

    @rule(n=st.integers(1, 40), pinned=st.booleans())
    def alloc(self, n: int, pinned: bool) -> None:
        buf = self.g.alloc_buffer(n, pinned=pinned)
        if buf is not None:
            self.content[buf.id] = self.m.pages.token[self.g.buffer_pfns(buf)].copy()

    @precondition(lambda self: bool(self.g.buffers))
    @rule(i=PICK)
    def free(self, i: int) -> None:
        bid = self._buffer(i)
        pfns = set(self.g.buffer_pfns(self.g.buffers[bid]).tolist())
        self.g.free_buffer(self.g.buffers[bid])
        del self.content[bid]
        for pfn in pfns & self.isolated:
            assert is_orphan(self.m, pfn)

    @precondition(lambda self: bool(self.g.buffers))
    @rule(i=PICK, j=PICK, duration=st.sampled_from([0.0, 0.01, 0.1, 1.0]))
    def submit(self, i: int, j: int, duration: float) -> None:
        a, b = self.g.buffers[self._buffer(i)], self.g.buffers[self._buffer(j)]
        self.g.submit([a] if a is b else [a, b], duration)
        self.content[a.id] = self.m.pages.token[self.g.buffer_pfns(a)].copy()

    @rule(dt=st.sampled_from([0.005, 0.05, 0.5]))
    def advance(self, dt: float) -> None:
        self.m.now += dt

    @precondition(lambda self: bool(self.g.buffers))
    @rule(i=PICK, pinned=st.booleans())
    def pin(self, i: int, pinned: bool) -> None:
        self.g.pin(self.g.buffers[self._buffer(i)], pinned)

    @rule()
    def own_compaction(self) -> None:
        self.g.gpu_compact()

    @precondition(lambda self: len(self.g.pages) > 0)
    @rule(i=PICK, mode=st.sampled_from(list(MigrateMode)))
    def isolate(self, i: int, mode: MigrateMode) -> None:
        pfns = self.g.pages.pfns()
        pfn = int(pfns[i % len(pfns)])
        if pfn in self.isolated:
            return
        buf = self.g.buffer_of(pfn)
        ok = isolate_movable_page(self.m, pfn, mode)
        assert ok is (not buf.pinned)
        if ok:
            self.isolated.add(pfn)

    @precondition(lambda self: bool(self.isolated))
    @rule(i=PICK)
    def migrate(self, i: int) -> None:
        src = sorted(self.isolated)[i % len(self.isolated)]
        orphan = is_orphan(self.m, src)
        buf = None if orphan else self.g.buffer_of(src)
        busy = buf is not None and (self.g.in_flight(buf) or buf.pinned)
        dst = self.m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, self.holder.owner_id, PageKind.KERNEL)
        if dst < 0:
            return
        rc, consumed = migrate_movable_page(self.m, dst, src, MigrateMode.SYNC)
        if orphan:
            assert rc == MIGRATEPAGE_SUCCESS and not consumed
            self.m.release_orphan(src)
            self.isolated.discard(src)
        elif busy:
            assert rc == -EAGAIN and not consumed
        else:
            assert rc == MIGRATEPAGE_SUCCESS and consumed
            self.m.free_pages(src)
            self.isolated.discard(src)
        if not consumed:
            self.m.free_pages(dst)

    @precondition(lambda self: bool(self.isolated))
    @rule(i=PICK)
    def putback(self, i: int) -> None:
        pfn = sorted(self.isolated)[i % len(self.isolated)]
        putback_movable_page(self.m, pfn)
        self.isolated.discard(pfn)

    @invariant()
    def buffers_hold_what_the_gpu_wrote(self) -> None:
        assert self.g.verify() == []
        for bid, buf in self.g.buffers.items():
            assert np.array_equal(self.m.pages.token[self.g.buffer_pfns(buf)], self.content[bid])
        assert_consistent(self.m, allow_isolated=bool(self.isolated))

    def teardown(self) -> None:
        if not hasattr(self, "g"):
            return
        for pfn in sorted(self.isolated):
            putback_movable_page(self.m, pfn)
        assert_consistent(self.m)


TestGpuInterleavings = GpuMachine.TestCase
TestGpuInterleavings.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
