"""Compaction against a driver that misbehaves at random.

The driver refuses isolation, answers -EAGAIN or -EBUSY, raises in any callback, and
frees its own pages while compaction holds them isolated; anon pages of a workload
sit beside its pages.  Whatever happens, after every compaction (full, direct at any
order and priority, kcompactd, proactive) the checker must find every pfn accounted
for, nothing left isolated or locked, and every surviving page holding what its
owner last wrote.  Truth: the checker (independent of the allocator's bookkeeping)
and the driver's own record of its pages.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagemig.driver import Driver
from pagemig.mm import compaction as C
from pagemig.mm.gfp import ALLOC_WMARK_MIN, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.movable import EAGAIN, EBUSY, MigrateMode, set_movable
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import Page, PageFlag, PageKind, copy_page
from pagemig.mm.zone import ZoneSpec


class FaultyDriver(Driver):
    """A driver that keeps its pages' tokens and misbehaves with the given odds."""

    name = "faulty"

    def __init__(self, machine: Machine, rng: random.Random, odds: dict[str, float]) -> None:
        super().__init__(machine, {})
        self.rng = rng
        self.odds = odds
        self.tokens: dict[int, int] = {}
        self.isolated: set[int] = set()
        self.next_token = 1

    def _roll(self, what: str) -> bool:
        return self.rng.random() < self.odds.get(what, 0.0)

    def alloc(self, n: int) -> int:
        got = 0
        for _ in range(n):
            pfn = self.machine.alloc_pages(self.page_gfp(GFP_HIGHUSER_MOVABLE), 0, self.owner_id, PageKind.DRIVER)
            if pfn < 0:
                break
            page = Page(self.machine, pfn)
            page.token = self.next_token
            self.tokens[pfn] = self.next_token
            self.next_token += 1
            set_movable(page, self)
            got += 1
        return got

    def free(self, pfn: int) -> None:
        del self.tokens[pfn]
        self.isolated.discard(pfn)
        self.machine.free_pages(pfn, 0)

    def free_some(self, n: int) -> None:
        """Churn: free n pages, isolated ones included (they become orphans)."""
        live = [p for p in self.tokens if p not in self.machine.movable.quarantine]
        for pfn in self.rng.sample(live, min(n, len(live))):
            self.free(pfn)

    # ---------------------------------------------------------------- the protocol
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        if self._roll("isolate_raises"):
            raise RuntimeError("isolate bug")
        if self._roll("refuse"):
            return False
        self.isolated.add(page.pfn)
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        if self._roll("free_other") and len(self.isolated) > 1:
            other = self.rng.choice(sorted(self.isolated - {src.pfn}))
            self.free(other)  # freed while compaction holds it isolated
        if self._roll("migrate_raises"):
            raise RuntimeError("migrate bug")
        if self._roll("eagain"):
            return -EAGAIN
        if self._roll("ebusy"):
            return -EBUSY
        copy_page(dst, src)
        set_movable(dst, self)
        self.tokens[dst.pfn] = self.tokens.pop(src.pfn)
        self.isolated.discard(src.pfn)
        return 0

    def putback_page(self, page: Page) -> None:
        if self._roll("putback_raises"):
            raise RuntimeError("putback bug")
        self.isolated.discard(page.pfn)

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.machine.movable.quarantine
        items = sorted((p, t) for p, t in self.tokens.items() if p not in q)
        return np.array([p for p, _ in items], dtype=np.int64), np.array([t for _, t in items], dtype=np.uint64)


def build(seed: int, pageblock_order: int, driver_share: float, free_share: float,
          odds: dict[str, float]) -> tuple[Machine, FaultyDriver, SimpleOwner, random.Random]:
    rng = random.Random(seed)
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 4096),), pageblock_order=pageblock_order,
                              min_free_kbytes=256))
    anon = SimpleOwner(m, "anon")
    drv = FaultyDriver(m, rng, odds)
    # fill in small chunks, drawing who allocates each chunk
    for _ in range(200):
        if rng.random() < driver_share:
            if not drv.alloc(16):
                break
        else:
            pfns = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 16, anon.owner_id, PageKind.ANON)
            if not len(pfns):
                break
            anon.pages.add_many(pfns, pfns.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(seed))
    held = anon.pages.pfns()
    drop = held[np.array([rng.random() < free_share for _ in range(len(held))], dtype=bool)]
    anon.pages.remove_many(drop)
    m.free_pages_bulk(drop)
    drv.free_some(int(len(drv.tokens) * free_share))
    return m, drv, anon, rng


ODDS = st.fixed_dictionaries({
    "refuse": st.sampled_from([0.0, 0.1, 0.5]),
    "isolate_raises": st.sampled_from([0.0, 0.02]),
    "migrate_raises": st.sampled_from([0.0, 0.05]),
    "eagain": st.sampled_from([0.0, 0.2, 0.6]),
    "ebusy": st.sampled_from([0.0, 0.1]),
    "free_other": st.sampled_from([0.0, 0.1]),
    "putback_raises": st.sampled_from([0.0, 0.02]),
})
ACTIONS = st.lists(st.one_of(
    st.just(("full",)),
    st.tuples(st.just("direct"), st.integers(1, 6), st.sampled_from([0, 1, 2]), st.booleans()),
    st.tuples(st.just("kcompactd"), st.integers(1, 6)),
    st.just(("proactive",)),
    st.tuples(st.just("churn"), st.integers(1, 40)),
), min_size=1, max_size=5)


@given(seed=st.integers(0, 2**31), pbo=st.sampled_from([5, 7, 9]), driver_share=st.floats(0.2, 0.8),
       free_share=st.floats(0.3, 0.7), odds=ODDS, actions=ACTIONS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_page_accounted_for_after_every_compaction(seed, pbo, driver_share, free_share, odds,
                                                         actions) -> None:
    m, drv, _, _ = build(seed, pbo, driver_share, free_share, odds)
    assert_consistent(m)
    now = 0.0
    for action in actions:
        kind = action[0]
        if kind == "full":
            C.compact_memory(m)
        elif kind == "direct":
            _, order, prio, movable = action
            gfp = GFP_HIGHUSER_MOVABLE if movable else GFP_KERNEL
            ac = m.buddy.alloc_context(gfp)
            pfn, zone, _ = C.alloc_pages_direct_compact(m, order, ALLOC_WMARK_MIN, ac, prio)
            if pfn >= 0:  # give the page back: we only wanted to see compaction run
                assert zone is not None
                m.buddy.free_one_page(zone, pfn, order, m.buddy.get_pageblock_migratetype(pfn))
        elif kind == "kcompactd":
            C.wakeup_kcompactd(m, action[1], int(m.zones[0].zone_type))
            now += 0.6
            C.kcompactd_run(m, now)
        elif kind == "proactive":
            m.set_sysctl("compaction_proactiveness", 100)
            C.trigger_proactive_compaction(m)
            now += 0.6
            C.kcompactd_run(m, now)
        else:
            drv.free_some(action[1])
            drv.alloc(action[1] // 2)
        report = assert_consistent(m)
        assert report.pages_isolated == 0
        assert not (m.pages.flags & int(PageFlag.LOCKED)).any()
        assert not C.compaction_state(m).active
    # every fault was a counted fault, never a lost page
    assert set(m.movable.faults_by_kind()) <= {"raised", "putback_failed"}
