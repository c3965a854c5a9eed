"""migrate_pages on hand-built states: LRU pages moved by the core, driver pages through
their driver, the kernel's passes and retries, putback, and orphans.

Truth: the rules of v6.1 ``migrate_pages`` / ``unmap_and_move`` (kernel-mm.md section 1):
-EAGAIN keeps a page for the next pass (10 passes at most), -ENOMEM stops at once,
other errors fail the page for good, failures are put back, a page its driver freed
while isolated counts as migrated without a driver call.  Every scenario ends with
the checker (every pfn accounted for, every owner's content intact).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagemig.driver import Driver
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine
from pagemig.mm.migrate import (
    MIGRATE_PASSES,
    isolate_lru_page,
    isolate_lru_pages,
    migrate_pages,
    putback_movable_pages,
)
from pagemig.mm.movable import (
    EAGAIN,
    EBUSY,
    EIO,
    ENOMEM,
    MigrateMode,
    isolate_movable_page,
    set_movable,
)
from pagemig.mm.owner import Owner, SimpleOwner
from pagemig.mm.pages import Page, PageFlag, PageKind, copy_page

ISOLATED = int(PageFlag.ISOLATED)


class CountingOwner(SimpleOwner):
    """A SimpleOwner that records each pages_migrated call."""

    def __init__(self, machine: Machine, name: str) -> None:
        super().__init__(machine, name)
        self.calls: list[int] = []

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.calls.append(len(src))
        super().pages_migrated(src, dst)


class ScriptedDriver(Driver):
    """A driver whose answers come from a script per page.

    ``answers[pfn]`` is a list of migrate_page return codes, consumed one per call
    (the last one repeats); 0 really migrates.  ``refuse`` holds pfns whose isolation
    is refused.  ``free_during`` maps a pfn to another of the driver's pages that the
    driver frees while migrating the first (a page freed while isolated)."""

    name = "scripted"

    def __init__(self, machine: Machine) -> None:
        super().__init__(machine, {})
        self.tokens: dict[int, int] = {}
        self.answers: dict[int, list[int]] = {}
        self.refuse: set[int] = set()
        self.raise_on: set[int] = set()
        self.free_during: dict[int, int] = {}
        self.isolated: set[int] = set()
        self.log: Counter[str] = Counter()
        self.migrate_calls: list[int] = []

    def alloc(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            pfn = self.machine.alloc_pages(self.page_gfp(GFP_HIGHUSER_MOVABLE), 0, self.owner_id, PageKind.DRIVER)
            assert pfn >= 0
            page = Page(self.machine, pfn)
            page.token = 0xD000 + pfn
            self.tokens[pfn] = page.token
            set_movable(page, self)
            out.append(pfn)
        return out

    def free(self, pfn: int) -> None:
        self.tokens.pop(pfn)
        self.isolated.discard(pfn)
        self.machine.free_pages(pfn, 0)

    # the protocol
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        self.log["isolate"] += 1
        if page.pfn in self.refuse:
            return False
        self.isolated.add(page.pfn)
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        self.log["migrate"] += 1
        self.migrate_calls.append(src.pfn)
        if src.pfn in self.raise_on:
            raise RuntimeError("driver bug")
        other = self.free_during.pop(src.pfn, None)
        if other is not None:
            self.free(other)
        script = self.answers.get(src.pfn, [0])
        rc = script.pop(0) if len(script) > 1 else script[0]
        if rc:
            return rc
        copy_page(dst, src)
        set_movable(dst, self)
        self.tokens[dst.pfn] = self.tokens.pop(src.pfn)
        self.isolated.discard(src.pfn)
        return 0

    def putback_page(self, page: Page) -> None:
        self.log["putback"] += 1
        self.isolated.discard(page.pfn)

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.machine.movable.quarantine
        items = [(p, t) for p, t in self.tokens.items() if p not in q]
        return (np.array([p for p, _ in items], dtype=np.int64), np.array([t for _, t in items], dtype=np.uint64))


class Scratch(Owner):
    """Holds target pages before migration fills them (no content to check)."""

    name = "scratch"


def targets(machine: Machine, limit: int | None = None) -> tuple[Callable[[int], int], list[int]]:
    """get_new_page from the allocator, optionally running dry after ``limit`` pages."""
    scratch = Scratch()
    machine.register_owner(scratch)
    given_out: list[int] = []

    def get_new_page(_src: int) -> int:
        if limit is not None and len(given_out) >= limit:
            return -1
        pfn = machine.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, scratch.owner_id, PageKind.KERNEL)
        given_out.append(pfn)
        return pfn

    return get_new_page, given_out


def isolate_driver_pages(machine: Machine, pfns: list[int]) -> list[int]:
    return [p for p in pfns if isolate_movable_page(machine, p, MigrateMode.SYNC)]


# ------------------------------------------------------------------ LRU pages
def test_lru_batch_moves_content_owner_slot_and_dirty_bit(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    a = CountingOwner(m, "a")
    b = CountingOwner(m, "b")
    pa = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 12, a.owner_id, PageKind.ANON)
    pb = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 8, b.owner_id, PageKind.FILE)
    a.pages.add_many(pa, pa.astype(np.uint64) * 3 + 5)
    b.pages.add_many(pb, pb.astype(np.uint64) * 7 + 1)
    m.pages.flags[pb[:3]] |= int(PageFlag.DIRTY)
    src = np.concatenate((pa, pb))
    assert len(isolate_lru_pages(m, src)) == 20
    get, given_out = targets(m)
    res = migrate_pages(m, src, get)
    assert (res.nr_succeeded, res.nr_failed, res.rc, res.passes, res.nr_lru) == (20, 0, 0, 1, 20)
    # each owner heard once, about all of its pages
    assert a.calls == [12] and b.calls == [8]
    dst = np.asarray(given_out)
    assert np.array_equal(np.sort(a.pages.pfns()), np.sort(dst[:12]))
    assert (m.pages.kind[src] == PageKind.FREE).all()
    assert (m.pages.kind[dst[12:]] == PageKind.FILE).all()
    assert np.count_nonzero(m.pages.flags[dst] & int(PageFlag.DIRTY)) == 3
    assert not (m.pages.flags[dst] & ISOLATED).any()
    assert m.vmstat["pgmigrate_success"] == 20 and m.vmstat["pgmigrate_fail"] == 0
    assert_consistent(m)


def test_isolate_lru_rules(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    o = SimpleOwner(m, "o")
    p = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 5, o.owner_id, PageKind.ANON)
    o.pages.add_many(p, np.arange(5, dtype=np.uint64))
    m.pages.flags[p[0]] |= int(PageFlag.PINNED)
    m.pages.flags[p[1]] |= int(PageFlag.LOCKED)
    assert isolate_lru_page(m, int(p[2]))
    assert not isolate_lru_page(m, int(p[2]))  # already isolated
    k = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, o.owner_id, PageKind.KERNEL)
    o.pages.add(k, 9)
    got = isolate_lru_pages(m, [*p.tolist(), k])
    assert got.tolist() == [int(p[3]), int(p[4])]  # pinned, locked, isolated and kernel pages refused
    putback_movable_pages(m, [int(p[2]), *got.tolist()])
    m.pages.flags[p[:2]] &= ~int(PageFlag.PINNED | PageFlag.LOCKED) & 0xFF
    assert_consistent(m)


def test_locked_lru_page_is_retried_every_pass_then_fails(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    o = SimpleOwner(m, "o")
    p = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 3, o.owner_id, PageKind.ANON)
    o.pages.add_many(p, np.arange(3, dtype=np.uint64) + 1)
    isolate_lru_pages(m, p)
    m.pages.flags[p[1]] |= int(PageFlag.LOCKED)  # somebody holds it locked
    get, _ = targets(m)
    res = migrate_pages(m, p, get)
    assert res.passes == MIGRATE_PASSES and res.nr_retried == MIGRATE_PASSES
    assert (res.nr_succeeded, res.nr_failed, res.nr_failed_pages) == (2, 1, 1)
    assert res.putback == [int(p[1])] and not m.pages.flags[p[1]] & ISOLATED
    m.pages.flags[p[1]] &= ~int(PageFlag.LOCKED) & 0xFF
    assert_consistent(m)


def test_bad_input_is_refused_clearly(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    o = SimpleOwner(m, "o")
    p = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 2, o.owner_id, PageKind.ANON)
    o.pages.add_many(p, np.arange(2, dtype=np.uint64))
    get, _ = targets(m)
    with pytest.raises(ValueError, match="not isolated"):
        migrate_pages(m, p, get)
    isolate_lru_pages(m, p)
    with pytest.raises(ValueError, match="listed twice"):
        migrate_pages(m, [int(p[0]), int(p[0])], get)
    with pytest.raises(ValueError, match="out of range"):
        migrate_pages(m, [m.nr_pages], get)
    putback_movable_pages(m, p)
    assert_consistent(m)


# ------------------------------------------------------------------ driver pages
def test_eagain_twice_then_success_takes_three_passes(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    (pfn,) = d.alloc(1)
    d.answers[pfn] = [-EAGAIN, -EAGAIN, 0]
    src = isolate_driver_pages(m, [pfn])
    get, given_out = targets(m)
    res = migrate_pages(m, src, get, mode=MigrateMode.SYNC)
    assert (res.passes, res.nr_retried, res.nr_succeeded, res.nr_movable) == (3, 2, 1, 1)
    assert d.migrate_calls == [pfn, pfn, pfn]
    # the two refused targets went back to the allocator; the third holds the page now
    assert list(d.tokens) == [given_out[-1]] and m.pages.kind[pfn] == PageKind.FREE
    assert m.vmstat["pgmigrate_success"] == 1 and d.log["putback"] == 0
    assert_consistent(m)


def test_persistent_eagain_fails_after_ten_passes_and_is_put_back(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    (pfn,) = d.alloc(1)
    d.answers[pfn] = [-EAGAIN]
    get, _ = targets(m)
    res = migrate_pages(m, isolate_driver_pages(m, [pfn]), get)
    assert res.passes == 10 and len(d.migrate_calls) == 10
    assert (res.nr_succeeded, res.nr_failed, res.nr_failed_pages) == (0, 1, 1)
    assert d.log["putback"] == 1 and not m.pages.flags[pfn] & ISOLATED
    assert m.vmstat["pgmigrate_fail"] == 1
    assert_consistent(m)


def test_ebusy_fails_at_once_without_retry(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(3)
    d.answers[pfns[1]] = [-EBUSY]
    get, _ = targets(m)
    res = migrate_pages(m, isolate_driver_pages(m, pfns), get)
    assert res.passes == 1 and d.migrate_calls == pfns
    assert (res.nr_succeeded, res.nr_failed) == (2, 1) and res.putback == [pfns[1]]
    assert d.log["putback"] == 1
    assert_consistent(m)


def test_enomem_from_the_target_allocator_stops_everything(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(5)
    d.answers[pfns[0]] = [-EAGAIN, 0]
    get, _ = targets(m, limit=2)
    res = migrate_pages(m, isolate_driver_pages(m, pfns), get)
    # pass 1: page 0 -EAGAIN (target 1 returned), page 1 migrated (target 2), page 2: no target
    assert res.rc == -ENOMEM and res.err == -ENOMEM
    assert d.migrate_calls == [pfns[0], pfns[1]]
    assert res.nr_succeeded == 1
    # the failing page and the retried one count as failed; the unattempted ones do not
    assert res.nr_failed_pages == 2
    assert sorted(res.putback) == sorted([pfns[0], pfns[2], pfns[3], pfns[4]])
    assert d.log["putback"] == 4
    assert_consistent(m)


def test_enomem_from_the_driver_stops_everything(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(3)
    d.answers[pfns[0]] = [-ENOMEM]
    get, _ = targets(m)
    res = migrate_pages(m, isolate_driver_pages(m, pfns), get)
    assert res.rc == -ENOMEM and d.migrate_calls == [pfns[0]]
    assert sorted(res.putback) == sorted(pfns) and res.nr_succeeded == 0
    assert_consistent(m)


def test_page_freed_while_isolated_counts_as_migrated_without_a_driver_call(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(2)
    src = isolate_driver_pages(m, pfns)
    d.free(pfns[0])  # the driver frees an isolated page: it becomes an orphan
    assert m.pages.owner[pfns[0]] == 0 and m.pages.flags[pfns[0]] & ISOLATED
    assert_consistent(m, allow_isolated=True)
    get, given_out = targets(m)
    res = migrate_pages(m, src, get)
    assert (res.nr_succeeded, res.nr_orphans, res.nr_movable) == (2, 1, 1)
    assert d.migrate_calls == [pfns[1]] and len(given_out) == 1  # no target spent on the orphan
    # the orphan went back to the allocator first, so (LIFO) it may be the very target
    assert m.pages.kind[pfns[0]] == PageKind.FREE or given_out == [pfns[0]]
    assert pfns[0] not in d.tokens or given_out == [pfns[0]]
    assert_consistent(m)


def test_page_freed_during_another_pages_migration_is_released(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(3)
    d.free_during[pfns[0]] = pfns[2]  # migrating page 0, the driver frees isolated page 2
    d.answers[pfns[1]] = [-EBUSY]
    get, _ = targets(m)
    res = migrate_pages(m, isolate_driver_pages(m, pfns), get)
    assert res.nr_orphans == 1 and res.nr_succeeded == 2 and res.nr_failed == 1
    assert m.pages.kind[pfns[2]] == PageKind.FREE
    assert_consistent(m)


def test_raising_driver_costs_the_migration_not_the_page(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(2)
    d.raise_on.add(pfns[0])
    get, _ = targets(m)
    res = migrate_pages(m, isolate_driver_pages(m, pfns), get)
    assert res.nr_failed == 1 and res.nr_succeeded == 1
    assert m.movable.faults_by_kind() == {"raised": 1}
    assert d.tokens[pfns[0]] == m.pages.token[pfns[0]]  # still there, content intact
    assert_consistent(m)


def test_refused_isolation_leaves_the_page_alone(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    d = ScriptedDriver(m)
    pfns = d.alloc(2)
    d.refuse.add(pfns[0])
    assert isolate_driver_pages(m, pfns) == [pfns[1]]
    assert not m.pages.flags[pfns[0]] & ISOLATED
    putback_movable_pages(m, [pfns[1]])
    assert_consistent(m)


# ------------------------------------------------------------------ property
ANSWERS = st.sampled_from([0, 0, 0, -EAGAIN, -EBUSY, -EIO])


@given(n_lru=st.integers(0, 40), n_drv=st.integers(0, 12),
       scripts=st.lists(st.lists(ANSWERS, min_size=1, max_size=4), min_size=12, max_size=12),
       order_seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(list(MigrateMode)))
@settings(max_examples=60, deadline=None)
def test_every_page_ends_migrated_or_failed(n_lru: int, n_drv: int, scripts: list[list[int]],
                                            order_seed: int, mode: MigrateMode) -> None:
    """With targets to spare, each page is either migrated or failed and put back, the
    counters agree, and memory is consistent with every owner's content intact."""
    from pagemig.mm.machine import MachineConfig
    from pagemig.mm.zone import ZoneSpec

    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 2048),), min_free_kbytes=128))
    o = CountingOwner(m, "o")
    lru = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, n_lru, o.owner_id, PageKind.ANON)
    o.pages.add_many(lru, lru.astype(np.uint64) + 100)
    d = ScriptedDriver(m)
    drv = d.alloc(n_drv)
    for pfn, script in zip(drv, scripts, strict=False):
        d.answers[pfn] = list(script)
    src = [*isolate_lru_pages(m, lru).tolist(), *isolate_driver_pages(m, drv)]
    np.random.default_rng(order_seed).shuffle(src)
    get, _ = targets(m)
    res = migrate_pages(m, src, get, mode=mode)
    assert res.rc == 0
    assert res.nr_succeeded + res.nr_failed_pages == len(src)
    assert res.nr_lru == n_lru and len(o.calls) == (1 if n_lru else 0)
    assert m.vmstat["pgmigrate_success"] == res.nr_succeeded
    assert m.vmstat["pgmigrate_fail"] == res.nr_failed_pages
    assert d.log["putback"] == res.nr_failed
    assert res.passes <= MIGRATE_PASSES
    assert not (m.pages.flags & ISOLATED).any()
    assert_consistent(m)


def test_a_raising_target_allocator_leaves_every_page_accounted_for(one_zone_machine) -> None:
    m = one_zone_machine(4096)
    o = CountingOwner(m, "o")
    p = m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 6, o.owner_id, PageKind.ANON)
    o.pages.add_many(p, p.astype(np.uint64) + 7)
    d = ScriptedDriver(m)
    drv = d.alloc(2)
    get, _ = targets(m)
    calls = 0

    def flaky(src: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("allocator bug")
        return get(src)

    src = [int(p[0]), *isolate_driver_pages(m, drv), *isolate_lru_pages(m, p[1:]).tolist()]
    isolate_lru_page(m, int(p[0]))
    with pytest.raises(RuntimeError, match="allocator bug"):
        migrate_pages(m, src, flaky)
    # page 0 and driver page 0 moved before the failure; everything else went back
    assert not (m.pages.flags & ISOLATED).any()
    assert o.calls == [1] and len(d.tokens) == 2
    assert_consistent(m)
