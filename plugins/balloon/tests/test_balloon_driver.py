"""The balloon driver's contract, checked against the kernel's rules and QEMU's arithmetic.

The migrations here go through the core's VM side of the protocol
(``isolate_movable_page`` / ``migrate_movable_page`` / ``putback_movable_page``), the
same calls compaction makes, with free targets taken from the buddy allocator.
"""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.buddy import AllocContext
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp, MigrateType
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import GiB, Machine, MachineConfig, MiB, SlowPath
from pagemig.mm.mm_init import boot
from pagemig.mm.movable import (
    EAGAIN,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.mm.zone import Zone
from pagemig_balloon.driver import (
    BALLOON_GFP_MOVABLE,
    BALLOON_GFP_UNMOVABLE,
    BALLOON_TOKEN,
    BalloonDriver,
    BalloonHost,
    BalloonProtocolError,
)

PAGES_PER_MIB = MiB // 4096


def small_machine(mib: int = 128) -> Machine:
    return Machine(MachineConfig.x86_64_guest(mib * MiB))


def free_total(m: Machine) -> int:
    return sum(z.free_pages for z in m.zones)


def migrate_one(m: Machine, src: int, mode: MigrateMode = MigrateMode.SYNC) -> int:
    """What compaction does for one isolated driver page: take a free target, migrate, release."""
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 1, PageKind.KERNEL)
    assert dst >= 0
    rc, consumed = migrate_movable_page(m, dst, src, mode)
    if rc == MIGRATEPAGE_SUCCESS:
        m.free_pages(src)
    if not consumed:
        m.free_pages(dst)
    return rc


@pytest.fixture
def machine() -> Machine:
    m = small_machine()
    SimpleOwner(m, "dst-holder")  # owner id 1: whoever holds a free target briefly
    return m


# ------------------------------------------------------------------ QEMU's `balloon N`
def test_balloon_512_in_a_1gib_guest_holds_512_mib() -> None:
    m = Machine(MachineConfig.x86_64_guest(1 * GiB))
    b = BalloonDriver(m)
    # virtio_balloon_to_target: num_pages = (ram_size - target) >> 12 = (1 GiB - 512 MiB) / 4 KiB
    assert b.set_target_mib(512) == (1 * GiB - 512 * MiB) // 4096 == 131072
    b.run_to_target()
    assert len(b.pages) == 131072
    # 131072 pages at 256 PFNs per request to the host
    assert b.host.inflate_requests == 131072 // 256
    assert m.vmstat["balloon_inflate"] == 131072
    b.assert_host_consistent()
    assert_consistent(m)


def test_target_above_ram_empties_the_balloon_and_bad_targets_are_refused(machine: Machine) -> None:
    b = BalloonDriver(machine)
    b.set_target_mib(64)
    b.run_to_target()
    assert len(b.pages) == 64 * PAGES_PER_MIB
    assert b.set_target_mib(100_000) == 0  # clamped to ram_size: nothing ballooned
    b.run_to_target()
    assert len(b.pages) == 0 and b.host.nr_taken == 0
    for bad in (0, -5):
        with pytest.raises(ValueError, match="positive"):
            b.set_target_mib(bad)
    with pytest.raises(TypeError):
        b.set_target_mib(1.5)  # type: ignore[arg-type]
    assert_consistent(machine)


def test_deflate_is_lifo_and_frees_pages(machine: Machine) -> None:
    b = BalloonDriver(machine)
    free0 = free_total(machine)
    b.set_target_pages(600)
    b.run_to_target()
    order = [pfn for pfn, _ in b._stack]  # insertion order
    assert free_total(machine) == free0 - 600
    b.set_target_pages(100)
    b.run_to_target()
    assert sorted(b.listed_pfns().tolist()) == sorted(order[:100])  # the last 500 in went out first
    assert machine.vmstat["balloon_deflate"] == 500
    assert b.host.deflate_requests == 2  # 256 + 244
    assert free_total(machine) == free0 - 100
    assert_consistent(machine)


# ------------------------------------------------------------------ GFP and pageblocks
def test_movable_balloon_pages_come_from_movable_pageblocks(machine: Machine) -> None:
    b = BalloonDriver(machine)
    assert b.gfp == BALLOON_GFP_MOVABLE
    assert b.gfp & Gfp.MOVABLE and b.gfp & Gfp.NORETRY and b.gfp & Gfp.NOWARN
    b.set_target_pages(2000)
    b.run_to_target()
    pfns = b.pages.pfns()
    assert np.all(machine.pages.flags[pfns] & PageFlag.MOVABLE)
    blocks = machine.buddy.pageblock_mt[pfns >> machine.pageblock_order]
    assert np.all(blocks == MigrateType.MOVABLE)


def test_unmovable_balloon_is_plain_unmovable_memory(machine: Machine) -> None:
    b = BalloonDriver(machine, {"movable": False})
    assert b.gfp == BALLOON_GFP_UNMOVABLE
    assert not b.gfp & Gfp.MOVABLE
    b.set_target_pages(2000)
    b.run_to_target()
    pfns = b.pages.pfns()
    assert not np.any(machine.pages.flags[pfns] & PageFlag.MOVABLE)
    # A fresh machine has only MOVABLE blocks; an unmovable request steals whole pageblocks
    # (a free block of pageblock order or more converts its pageblocks), so every balloon
    # page ends up in an UNMOVABLE pageblock.
    blocks = machine.buddy.pageblock_mt[pfns >> machine.pageblock_order]
    assert np.all(blocks == MigrateType.UNMOVABLE)
    assert not isolate_movable_page(machine, int(pfns[0]), MigrateMode.SYNC)
    assert_consistent(machine)


def test_managed_pages_follow_the_balloon_unless_deflate_on_oom(machine: Machine) -> None:
    managed0 = machine.managed_pages
    b = BalloonDriver(machine)
    b.set_target_pages(1000)
    b.run_to_target()
    assert machine.managed_pages == managed0 - 1000  # adjust_managed_page_count(page, -1)
    b.set_target_pages(0)
    b.run_to_target()
    assert machine.managed_pages == managed0
    m2 = small_machine()
    b2 = BalloonDriver(m2, {"deflate_on_oom": True})
    managed2 = m2.managed_pages
    b2.set_target_pages(1000)
    b2.run_to_target()
    assert m2.managed_pages == managed2


def test_oom_notifier_gives_back_oom_pages_only_with_deflate_on_oom(machine: Machine) -> None:
    b = BalloonDriver(machine, {"deflate_on_oom": True, "oom_pages": 300})
    b.set_target_pages(1000)
    b.run_to_target()
    assert b.oom_notify() == 300
    assert len(b.pages) == 700
    b.assert_host_consistent()
    plain = BalloonDriver(machine)
    plain.set_target_pages(10)
    plain.run_to_target()
    assert plain.oom_notify() == 0 and len(plain.pages) == 10


def test_deflate_on_oom_lets_a_failing_allocation_succeed() -> None:
    """Memory exhausted: a GFP_KERNEL allocation that would reach the OOM killer gets the
    pages the balloon's notifier gives back, and retries; without the feature it fails."""
    results = {}
    for on in (False, True):
        m = boot(MachineConfig.x86_64_guest(128 * MiB))  # the OOM step is the full slow path's
        b = BalloonDriver(m, {"deflate_on_oom": on, "inflate_rate": 0})
        b.set_target_pages(2000)
        b.run_to_target()
        hog = SimpleOwner(m, "hog")
        while True:
            pfn = m.alloc_pages(GFP_KERNEL, 0, hog.owner_id)
            if pfn < 0:
                break
            hog.pages.add(pfn, pfn)
        results[on] = (len(b.pages), b.oom_deflated, b.host.deflate_requests)
        b.assert_host_consistent()
        assert_consistent(m)
    assert results[False] == (2000, 0, 0)
    # each OOM gives back oom_pages = 256 pages, one host request each, until the balloon is empty
    assert results[True] == (0, 2000, -(-2000 // 256))


def test_inflation_follows_the_rate_in_simulated_time(machine: Machine) -> None:
    b = BalloonDriver(machine, {"inflate_rate": 1000})
    b.set_target_pages(5000)
    b.tick(0.0)
    assert len(b.pages) == 0
    b.tick(0.5)
    assert len(b.pages) == 500
    b.tick(1.25)
    assert len(b.pages) == 1250
    for t in np.arange(1.5, 6.01, 0.25):
        b.tick(float(t))
    assert len(b.pages) == 5000 and not b._work_pending
    b.assert_host_consistent()


def test_out_of_puff_waits_200ms_then_retries(machine: Machine) -> None:
    b = BalloonDriver(machine, {"inflate_rate": 0})
    free0 = free_total(machine)
    b.set_target_pages(free0)  # more than the watermarks ever let the balloon have
    machine.now = 1.0
    b.tick(1.0)
    assert b.out_of_puff == 1
    got = len(b.pages)
    assert 0 < got < free0
    machine.now = 1.1
    b.tick(1.1)
    assert b.out_of_puff == 1 and len(b.pages) == got  # msleep(200): no attempt yet
    machine.now = 1.25
    b.tick(1.25)
    assert b.out_of_puff == 2  # tried again, still out of puff
    b.assert_host_consistent()
    assert_consistent(machine)


# ------------------------------------------------------------------ the movable contract
def test_isolate_and_putback_leave_the_balloon_as_it_was(machine: Machine) -> None:
    b = BalloonDriver(machine)
    b.set_target_pages(300)
    b.run_to_target()
    listed = set(b.listed_pfns().tolist())
    host = set(b.host.pfns().tolist())
    picks = sorted(listed)[::37]
    for pfn in picks:
        assert isolate_movable_page(machine, pfn, MigrateMode.ASYNC)
        assert pfn not in set(b.listed_pfns().tolist())
        assert machine.pages.flags[pfn] & PageFlag.ISOLATED
    assert set(b.host.pfns().tolist()) == host  # the host does not hear about isolation
    assert not b.check_host()
    for pfn in picks:
        putback_movable_page(machine, pfn)
    assert set(b.listed_pfns().tolist()) == listed
    assert set(b.host.pfns().tolist()) == host
    assert not b.isolated
    assert_consistent(machine)


def test_isolated_pages_are_never_deflated(machine: Machine) -> None:
    b = BalloonDriver(machine)
    b.set_target_pages(50)
    b.run_to_target()
    pfn = int(b.listed_pfns()[0])
    assert isolate_movable_page(machine, pfn, MigrateMode.SYNC)
    b.set_target_pages(0)
    b.run_to_target(max_attempts=3)
    assert len(b.pages) == 1 and pfn in b.pages  # balloon_page_list_dequeue skipped it
    b.assert_host_consistent()
    putback_movable_page(machine, pfn)
    b.run_to_target()
    assert len(b.pages) == 0
    assert_consistent(machine)


def test_migrate_moves_the_page_at_the_host_and_counts_it(machine: Machine) -> None:
    b = BalloonDriver(machine)
    b.set_target_pages(100)
    b.run_to_target()
    before = b.pages.pfns().copy()
    src = int(b.listed_pfns()[10])
    assert isolate_movable_page(machine, src, MigrateMode.SYNC)
    rc = migrate_one(machine, src)
    assert rc == MIGRATEPAGE_SUCCESS
    assert src not in b.pages and not b.host.taken[src]
    assert len(b.pages) == 100 and b.host.nr_taken == 100
    (dst,) = np.setdiff1d(b.pages.pfns(), before).tolist()
    assert b.host.taken[dst] and dst in set(b.listed_pfns().tolist())
    assert not b.isolated
    assert machine.vmstat["balloon_migrate"] == 1 and b.counters["balloon_migrate"] == 1
    assert np.all(machine.pages.token[b.pages.pfns()] == BALLOON_TOKEN)
    assert np.all(machine.pages.flags[b.pages.pfns()] & PageFlag.MOVABLE)
    assert machine.pages.kind[src] == PageKind.FREE
    assert_consistent(machine)


def test_migrate_answers_eagain_while_the_balloon_lock_is_held(machine: Machine) -> None:
    b = BalloonDriver(machine)
    b.set_target_pages(20)
    b.run_to_target()
    src = int(b.listed_pfns()[0])
    assert isolate_movable_page(machine, src, MigrateMode.SYNC)
    b.locked = True
    assert migrate_one(machine, src) == -EAGAIN
    assert src in b.isolated and b.host.taken[src]
    b.locked = False
    assert migrate_one(machine, src) == MIGRATEPAGE_SUCCESS
    assert_consistent(machine)


class CompactingSlowPath(SlowPath):
    """A slow path that, like direct compaction, tries to migrate a balloon page before retrying."""

    def __init__(self, balloon: BalloonDriver) -> None:
        self.balloon = balloon
        self.results: list[int] = []

    def alloc_slowpath(self, machine: Machine, order: int, ac: AllocContext) -> tuple[int, Zone | None]:
        listed = self.balloon.listed_pfns()
        if len(listed):
            src = int(listed[len(listed) // 2])
            if isolate_movable_page(machine, src, MigrateMode.SYNC_LIGHT):
                dst, _ = machine.buddy.get_page_from_freelist(0, 0x04, machine.buddy.alloc_context(
                    GFP_HIGHUSER_MOVABLE))  # ALLOC_NO_WATERMARKS: a compaction free target
                if dst >= 0:
                    machine.pages._kind[dst] = PageKind.KERNEL
                    machine.pages._owner[dst] = 1
                    rc, consumed = migrate_movable_page(machine, dst, src, MigrateMode.SYNC_LIGHT)
                    self.results.append(rc)
                    if rc == MIGRATEPAGE_SUCCESS:
                        machine.free_pages(src)
                    else:
                        putback_movable_page(machine, src)
                    if not consumed:
                        machine.free_pages(dst)
                else:
                    putback_movable_page(machine, src)
        return super().alloc_slowpath(machine, order, ac)


def test_compaction_inside_inflate_gets_eagain() -> None:
    """The case virtballoon_migratepage's comment names: fill_balloon's own allocation enters
    direct compaction, which must not wait for the balloon lock that fill_balloon holds."""
    m = small_machine()
    SimpleOwner(m, "dst-holder")
    b = BalloonDriver(m, {"inflate_rate": 0})
    b.set_target_pages(500)
    b.run_to_target()
    hog = SimpleOwner(m, "hog")
    # Bring every zone down to its low watermark so the next allocations take the slow path.
    for zone in m.zones:
        while zone.free_pages > zone.wmark_low + zone.lowmem_reserve[2]:
            pfn = m.alloc_pages(GFP_KERNEL, 0, hog.owner_id)
            if pfn < 0:
                break
            hog.pages.add(pfn, pfn)
    slow = CompactingSlowPath(b)
    m.slowpath = slow
    b.set_target_pages(520)
    b.run_to_target(max_attempts=2)
    assert slow.results and set(slow.results) == {-EAGAIN}
    assert b.migrate_eagain == len(slow.results)
    b.assert_host_consistent()
    assert_consistent(m)
    # Outside fill_balloon the same migration succeeds.
    src = int(b.listed_pfns()[0])
    assert isolate_movable_page(m, src, MigrateMode.SYNC)
    m.slowpath = SlowPath()
    rc, consumed = migrate_movable_page(m, _free_target(m), src, MigrateMode.SYNC)
    assert rc == MIGRATEPAGE_SUCCESS and consumed
    m.free_pages(src)
    assert_consistent(m)


def _free_target(m: Machine) -> int:
    dst, _ = m.buddy.get_page_from_freelist(0, 0x04, m.buddy.alloc_context(GFP_HIGHUSER_MOVABLE))
    assert dst >= 0
    m.pages._kind[dst] = PageKind.KERNEL
    m.pages._owner[dst] = 1
    return dst


# ------------------------------------------------------------------ the host
def test_host_refuses_malformed_requests() -> None:
    host = BalloonHost(1000)
    with pytest.raises(BalloonProtocolError, match="at most 256"):
        host.inflate(range(257))
    host.inflate([1, 2, 3])
    with pytest.raises(BalloonProtocolError, match="already holds"):
        host.inflate([3])
    with pytest.raises(BalloonProtocolError, match="does not hold"):
        host.deflate([4])
    with pytest.raises(BalloonProtocolError, match="twice"):
        host.deflate([1, 1])
    host.deflate([1, 2])
    assert host.pfns().tolist() == [3] and host.nr_taken == 1


def test_one_pfn_requests_follow_the_same_rules_as_batches() -> None:
    """Balloon migration tells the host about dst and src one PFN each: each call is
    one request, and the checks of a batch still hold."""
    host = BalloonHost(1000)
    host.inflate([5])
    host.inflate_one(6)
    with pytest.raises(BalloonProtocolError, match="already holds"):
        host.inflate_one(6)
    host.deflate_one(5)
    with pytest.raises(BalloonProtocolError, match="does not hold"):
        host.deflate_one(5)
    assert host.pfns().tolist() == [6] and host.nr_taken == 1
    assert (host.inflate_requests, host.deflate_requests) == (2, 1)


def test_stats_assert_the_host_record(machine: Machine) -> None:
    b = BalloonDriver(machine)
    b.set_target_pages(10)
    b.run_to_target()
    stats = b.stats()
    assert stats["balloon_pages"] == stats["host_pages"] == 10
    assert stats["balloon_inflate"] == 10
    b.host.taken[int(b.listed_pfns()[0])] = False  # the host forgets a page
    with pytest.raises(BalloonProtocolError, match="host was not told"):
        b.stats()


def test_populate_after_a_release_that_isolated_pages_held_up(machine: Machine) -> None:
    """The bug the random conformance test hit by chance (issue: populate returned -1).

    Four pages, two isolated by compaction; release(4) sets the target to 0, and the
    deflation skips the isolated two (leak_balloon skips isolated pages): the balloon
    holds 2 pages against a target of 0.  After putback, populate(1) is the host asking
    for one page more than the balloon's actual size: 3 pages, one added.  Counted from
    the stale target it was target 1, a deflation by one, and populate answered -1."""
    b = BalloonDriver(machine, {"movable": True, "inflate_rate": 0})
    assert b.movable
    assert b.populate(4) == 4
    held = sorted(int(p) for p in b.pages.pfns())
    assert all(isolate_movable_page(machine, p, MigrateMode.SYNC) for p in held[:2])
    assert b.release(4) == 2
    assert len(b.pages) == 2 and b.target_pages == 0
    for p in held[:2]:
        putback_movable_page(machine, p)
    assert b.populate(1) == 1
    assert len(b.pages) == 3 and b.target_pages == 3
    b.assert_host_consistent()
    assert_consistent(machine)
