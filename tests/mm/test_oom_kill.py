"""The OOM notifier chain and where the slow path calls it, against mm/oom_kill.c and
``__alloc_pages_may_oom`` of mm/page_alloc.c (v6.1)."""

from __future__ import annotations

import pytest

from pagemig.mm.gfp import GFP_KERNEL, GFP_NOWAIT, Gfp
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.mm_init import boot
from pagemig.mm.oom_kill import register_oom_notifier, unregister_oom_notifier
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind


def exhausted() -> tuple[Machine, SimpleOwner]:
    """A booted machine whose every page GFP_KERNEL can reach is taken (nothing reclaimable)."""
    m = boot(MachineConfig.x86_64_guest(64 * MiB))
    hog = SimpleOwner(m, "hog")
    while (pfn := m.alloc_pages(GFP_KERNEL, 0, hog.owner_id, PageKind.KERNEL)) >= 0:
        hog.pages.add(pfn, pfn)
    return m, hog


class Counting:
    def __init__(self, give: int = 0, hog: SimpleOwner | None = None, machine: Machine | None = None) -> None:
        self.calls = 0
        self.give = give
        self.hog = hog
        self.machine = machine

    def __call__(self) -> int:
        self.calls += 1
        if not self.give or self.hog is None or self.machine is None:
            return 0
        pfns = self.hog.pages.pfns()[: self.give]
        self.hog.pages.remove_many(pfns)
        self.machine.free_pages_bulk(pfns)
        return len(pfns)


def test_register_twice_is_refused_and_unregister_says_whether_it_was_there() -> None:
    m = Machine(MachineConfig.x86_64_guest(64 * MiB))
    nb = Counting()
    register_oom_notifier(m, nb)
    with pytest.raises(ValueError, match="registered already"):
        register_oom_notifier(m, nb)
    assert unregister_oom_notifier(m, nb) is True
    assert unregister_oom_notifier(m, nb) is False  # -ENOENT


def test_a_notifier_that_frees_pages_lets_the_allocation_succeed() -> None:
    m, hog = exhausted()
    nb = Counting(give=300, hog=hog, machine=m)
    register_oom_notifier(m, nb)
    # 300 pages back: the min watermark test passes again only once free > min, so the
    # chain may be called more than once; each call is progress, and the allocation succeeds
    assert m.alloc_pages(GFP_KERNEL, 0, hog.owner_id, PageKind.KERNEL) >= 0
    assert nb.calls >= 1
    assert m.oom_notify_list.calls == nb.calls
    assert m.oom_notify_list.freed == 300 * nb.calls


def test_no_progress_fails_after_one_call() -> None:
    m, hog = exhausted()
    nb = Counting()
    register_oom_notifier(m, nb)
    assert m.alloc_pages(GFP_KERNEL, 0, hog.owner_id, PageKind.KERNEL) < 0
    assert nb.calls == 1  # out_of_memory made no progress: the kernel would kill; here it fails


@pytest.mark.parametrize(("gfp", "order", "why"), [
    (GFP_KERNEL, 4, "costly orders: the OOM killer does not help"),
    (GFP_KERNEL | Gfp.NORETRY, 0, "__GFP_NORETRY gives up before the OOM step"),
    (GFP_KERNEL | Gfp.RETRY_MAYFAIL, 0, "__GFP_RETRY_MAYFAIL admits defeat"),
    (GFP_KERNEL | Gfp.THISNODE, 0, "__GFP_THISNODE"),
    (GFP_KERNEL | Gfp.DMA32, 0, "below ZONE_NORMAL: no killing for lowmem"),
    (GFP_NOWAIT, 0, "cannot reclaim: fails before the OOM step"),
])
def test_allocations_that_never_reach_out_of_memory(gfp: int, order: int, why: str) -> None:
    m, hog = exhausted()
    nb = Counting()
    register_oom_notifier(m, nb)
    m.alloc_pages(int(gfp), order, hog.owner_id, PageKind.KERNEL)
    assert nb.calls == 0, why


def test_the_bare_allocator_has_no_oom_step() -> None:
    m = Machine(MachineConfig.x86_64_guest(64 * MiB))
    hog = SimpleOwner(m, "hog")
    nb = Counting()
    register_oom_notifier(m, nb)
    while m.alloc_pages(GFP_KERNEL, 0, hog.owner_id, PageKind.KERNEL) >= 0:
        pass
    assert nb.calls == 0
