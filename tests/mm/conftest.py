"""Shared fixtures of the mm tests.

Additive by design: several test modules (compaction, migration, vmstat, reclaim, the
slow path, the allocator) live here, so every fixture has a distinct name and none is
autouse.  Fixtures hand out factories, since ``--import-mode=importlib`` makes
importing helpers from a conftest awkward.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.machine import GiB, Machine, MachineConfig
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageKind
from pagemig.mm.zone import ZoneSpec


def _one_zone_machine(pages: int = 8192, pageblock_order: int = 9, min_free_kbytes: int | None = 1024,
                      name: str = "Normal", **sysctl: int) -> Machine:
    """One zone starting at pfn 0, nothing reserved: every pfn is the test's to arrange."""
    cfg = MachineConfig(zones=(ZoneSpec(name, 0, pages),), pageblock_order=pageblock_order,
                        min_free_kbytes=min_free_kbytes, sysctl=dict(sysctl))
    return Machine(cfg)


@pytest.fixture
def one_zone_machine() -> Callable[..., Machine]:
    """Factory: ``one_zone_machine(pages=8192, pageblock_order=9, min_free_kbytes=1024, **sysctl)``."""
    return _one_zone_machine


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


@pytest.fixture
def frag_state() -> Callable[..., tuple[Machine, SimpleOwner]]:
    """Factory: ``frag_state(gib=1.0, seed=1)`` -> (an x86-64 guest in the frag state, its anon owner)."""

    def make(gib: float = 1.0, seed: int = 1) -> tuple[Machine, SimpleOwner]:
        machine = Machine(MachineConfig.x86_64_guest(int(gib * GiB)))
        return machine, fill_and_fragment(machine, seed=seed)

    return make


@pytest.fixture
def fragmenter() -> Callable[..., SimpleOwner]:
    """Factory: ``fragmenter(machine, keep_every=4, seed=1)`` puts any machine in the frag state."""
    return fill_and_fragment
