"""Migrations interleaved at random with inflate and deflate: the host's record, the balloon's
list and the machine stay consistent after every step (a hypothesis state machine)."""

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
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind
from pagemig_balloon.driver import BALLOON_TOKEN, BalloonDriver

modes = st.sampled_from(list(MigrateMode))


class BalloonMachine(RuleBasedStateMachine):
    @initialize(deflate_on_oom=st.booleans())
    def setup(self, deflate_on_oom: bool) -> None:
        self.m = Machine(MachineConfig.x86_64_guest(96 * MiB))
        self.holder = SimpleOwner(self.m, "targets")
        self.b = BalloonDriver(self.m, {"inflate_rate": 0, "deflate_on_oom": deflate_on_oom})
        self.migrated = 0
        self.managed0 = self.m.managed_pages

    # -------------------------------------------------------------- the host's requests
    @rule(n=st.integers(1, 700))
    def inflate(self, n: int) -> None:
        self.b.set_target_pages(min(self.b.target_pages + n, self.m.nr_pages))
        self.b.run_to_target(max_attempts=2)

    @rule(n=st.integers(1, 700))
    def deflate(self, n: int) -> None:
        before = len(self.b.pages)
        self.b.set_target_pages(max(self.b.target_pages - n, 0))
        self.b.run_to_target(max_attempts=2)
        # only isolated pages may stay behind a deflate
        assert len(self.b.pages) >= min(before, self.b.target_pages)
        if len(self.b.pages) > self.b.target_pages:
            assert self.b.nr_listed == 0 or self.b.num_pages <= self.b.target_pages

    @rule()
    def oom(self) -> None:
        before = len(self.b.pages)
        freed = self.b.oom_notify()
        assert len(self.b.pages) == before - freed
        if not self.b.deflate_on_oom:
            assert freed == 0

    # -------------------------------------------------------------- compaction's side
    @precondition(lambda self: self.b.nr_listed > 0)
    @rule(i=st.integers(0, 10**6), mode=modes)
    def isolate(self, i: int, mode: MigrateMode) -> None:
        listed = self.b.listed_pfns()
        pfn = int(listed[i % len(listed)])
        assert isolate_movable_page(self.m, pfn, mode)
        assert pfn in self.b.isolated

    @precondition(lambda self: bool(self.b.isolated))
    @rule(i=st.integers(0, 10**6), mode=modes, locked=st.booleans())
    def migrate(self, i: int, mode: MigrateMode, locked: bool) -> None:
        src = sorted(self.b.isolated)[i % len(self.b.isolated)]
        dst = self.m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, self.holder.owner_id, PageKind.KERNEL)
        if dst < 0:
            return
        self.b.locked = locked  # an inflate or deflate in progress holds the balloon lock
        try:
            rc, consumed = migrate_movable_page(self.m, dst, src, mode)
        finally:
            self.b.locked = False
        if locked:
            assert rc == -EAGAIN and not consumed
            assert src in self.b.isolated and self.b.host.taken[src]
        else:
            assert rc == MIGRATEPAGE_SUCCESS and consumed
            assert dst in self.b.pages and self.b.host.taken[dst] and not self.b.host.taken[src]
            assert self.m.pages.token[dst] == BALLOON_TOKEN
            self.m.free_pages(src)
            self.migrated += 1
        if not consumed:
            self.m.free_pages(dst)

    @precondition(lambda self: bool(self.b.isolated))
    @rule(i=st.integers(0, 10**6))
    def putback(self, i: int) -> None:
        pfn = sorted(self.b.isolated)[i % len(self.b.isolated)]
        putback_movable_page(self.m, pfn)
        assert pfn in set(self.b.listed_pfns().tolist())

    # -------------------------------------------------------------- after every step
    @invariant()
    def host_record_equals_the_balloon(self) -> None:
        b = self.b
        assert not b.check_host()
        listed = set(b.listed_pfns().tolist())
        assert listed.isdisjoint(b.isolated)
        assert set(b.host.pfns().tolist()) == listed | b.isolated
        assert b.num_pages == len(b.pages)
        assert self.m.vmstat["balloon_migrate"] == self.migrated
        assert (self.m.vmstat["balloon_inflate"] - self.m.vmstat["balloon_deflate"]) == len(b.pages)
        if not b.deflate_on_oom:
            assert self.m.managed_pages == self.managed0 - len(b.pages)

    @invariant()
    def memory_is_consistent(self) -> None:
        assert_consistent(self.m, allow_isolated=bool(self.b.isolated))
        iso = np.flatnonzero(self.m.pages.flags & 0x04)
        assert set(iso.tolist()) == self.b.isolated

    def teardown(self) -> None:
        if hasattr(self, "b"):
            for pfn in sorted(self.b.isolated):
                putback_movable_page(self.m, pfn)
            assert_consistent(self.m)


TestBalloonInterleavings = BalloonMachine.TestCase
TestBalloonInterleavings.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
