"""Shared fixtures of the mm tests.

Additive by design: several test modules (compaction, migration, vmstat, reclaim, the
slow path, the allocator) live here, so every fixture has a distinct name and none is
autouse.  Fixtures hand out factories, since ``--import-mode=importlib`` makes
importing helpers from a conftest awkward; the factories hold no state, so they are
session-scoped (which lets hypothesis tests take them too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.lru import LruOwner
from pagemig.mm.machine import GiB, Machine, MachineConfig, SlowPath
from pagemig.mm.mm_init import boot
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind
from pagemig.mm.zone import ZoneSpec


def _one_zone_machine(pages: int = 8192, pageblock_order: int = 9, min_free_kbytes: int | None = 1024,
                      name: str = "Normal", *, booted: bool = False, kswapd_catch_up: bool = True,
                      **sysctl: int) -> Machine:
    """One zone starting at pfn 0, nothing reserved: every pfn is the test's to arrange.

    With the defaults (8192 pages, min_free_kbytes 1024): min = 1024 >> 2 = 256,
    gap = max(256 >> 2, 8192 * 10 // 10000) = 64, low = 320, high = 384
    (``__setup_per_zone_wmarks``).  ``booted``: the complete kernel (``boot``), else the
    page allocator alone."""
    cfg = MachineConfig(zones=(ZoneSpec(name, 0, pages),), pageblock_order=pageblock_order,
                        min_free_kbytes=min_free_kbytes, sysctl=dict(sysctl))
    return boot(cfg, kswapd_catch_up=kswapd_catch_up) if booted else Machine(cfg)


@pytest.fixture(scope="session")
def one_zone_machine() -> Callable[..., Machine]:
    """Factory: ``one_zone_machine(pages=8192, pageblock_order=9, min_free_kbytes=1024, name="Normal",
    *, booted=False, kswapd_catch_up=True, **sysctl)``: the small machine of most mm tests."""
    return _one_zone_machine


@contextlib.contextmanager
def _allocator_only(machine: Machine) -> Iterator[Machine]:
    """For the duration, the page allocator's own slow path (it only retries at the min
    watermark: no kswapd wake-up, no reclaim, no compaction), so that a test can build its
    state on a booted machine with allocations that do nothing else."""
    full, machine.slowpath = machine.slowpath, SlowPath()
    try:
        yield machine
    finally:
        machine.slowpath = full


@pytest.fixture(scope="session")
def allocator_only() -> Callable[[Machine], contextlib.AbstractContextManager[Machine]]:
    """Factory: ``with allocator_only(machine): ...`` allocates through the bare slow path."""
    return _allocator_only


def _checkerboard(m: Machine, kind: PageKind = PageKind.FILE, lru_every: int = 2) -> tuple[LruOwner, SimpleOwner]:
    """Every page of the first zone taken (straight from the free lists, past the watermarks):
    every ``lru_every``-th pfn an LRU page of ``kind`` (a reclaimable owner, "lru"), the rest
    kernel memory ("kernel").  Whatever reclaim frees later stays order 0."""
    zone = m.zones[0]
    got: list[int] = []
    for mt in range(3):
        while (pfn := m.buddy.rmqueue_smallest(zone, 0, mt)) >= 0:
            got.append(pfn)
    pfns = np.sort(np.asarray(got, dtype=np.int64))
    lru = LruOwner(m, "lru")
    kernel = SimpleOwner(m, "kernel")
    mine = pfns[pfns % lru_every == 0]
    rest = pfns[pfns % lru_every != 0]
    m.pages.kind[mine] = kind
    m.pages.owner[mine] = lru.owner_id
    lru.add_many(mine)
    m.pages.kind[rest] = PageKind.KERNEL
    m.pages.owner[rest] = kernel.owner_id
    kernel.pages.add_many(rest, np.arange(len(rest), dtype=np.uint64) + 7)
    return lru, kernel


@pytest.fixture(scope="session")
def checkerboard() -> Callable[..., tuple[LruOwner, SimpleOwner]]:
    """Factory: ``checkerboard(machine, kind=FILE, lru_every=2)`` -> (the LRU owner, the kernel owner)."""
    return _checkerboard


class FakeSwap:
    """A swap device that keeps tokens in a dict and is full at ``capacity`` (0: no room at all,
    as ``get_nr_swap_pages() == 0``)."""

    def __init__(self, capacity: int, name: str = "fakeswap", priority: int = -2) -> None:
        self.name = name
        self.capacity = capacity
        self.priority = priority
        self.store: dict[int, int] = {}
        self._next = 0

    def swap_out(self, token: int) -> int | None:
        if len(self.store) >= self.capacity:
            return None
        h = self._next
        self._next += 1
        self.store[h] = token
        return h

    def swap_in(self, handle: int) -> int:
        return self.store[handle]

    def swap_free(self, handle: int) -> None:
        del self.store[handle]


@pytest.fixture(scope="session")
def fake_swap() -> Callable[..., FakeSwap]:
    """Factory: ``fake_swap(capacity, name="fakeswap", priority=-2)``, a swap device to register."""
    return FakeSwap


def fill_and_fragment(machine: Machine, keep_every: int = 4, seed: int = 1,
                      owner_name: str = "anon") -> SimpleOwner:
    """The "frag" state: fill memory above the high watermarks with movable anon pages,
    in the order the allocator hands them out, then free all but one page of every
    ``keep_every`` (the kernel's proactive-compaction evaluation and the oracle's frag.c
    free 3 of every 4).  Which page of each group survives is drawn at random: a real
    machine's pages are not in perfect pfn order, and a perfectly periodic survivor
    would defeat the free scanner's sampling stride.  Every page holds a distinct token."""
    owner = SimpleOwner(machine, owner_name)
    ac = machine.buddy.alloc_context(GFP_HIGHUSER_MOVABLE)
    want = sum(max(0, z.free_pages - z.wmark_high - z.lowmem_reserve[ac.highest_zoneidx]) for z in ac.zonelist)
    pfns = machine.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, want, owner.owner_id, PageKind.ANON)
    owner.pages.add_many(pfns, pfns.astype(np.uint64) * np.uint64(2654435761) + np.uint64(1))
    rng = np.random.default_rng(seed)
    groups = len(pfns) // keep_every
    keep = np.zeros(len(pfns), dtype=bool)
    keep[np.arange(groups) * keep_every + rng.integers(0, keep_every, groups)] = True
    drop = pfns[~keep]
    owner.pages.remove_many(drop)
    machine.free_pages_bulk(drop)
    return owner


@pytest.fixture(scope="session")
def frag_state() -> Callable[..., tuple[Machine, SimpleOwner]]:
    """Factory: ``frag_state(gib=1.0, seed=1)`` -> (an x86-64 guest in the frag state, its anon owner)."""

    def make(gib: float = 1.0, seed: int = 1) -> tuple[Machine, SimpleOwner]:
        machine = Machine(MachineConfig.x86_64_guest(int(gib * GiB)))
        return machine, fill_and_fragment(machine, seed=seed)

    return make


@pytest.fixture(scope="session")
def fragmenter() -> Callable[..., SimpleOwner]:
    """Factory: ``fragmenter(machine, keep_every=4, seed=1)`` puts any machine in the frag state."""
    return fill_and_fragment
