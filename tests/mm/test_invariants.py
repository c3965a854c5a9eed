"""The checker catches what it promises to catch.

Each test plants one corruption by hand in an otherwise healthy machine (every
write below bypasses the allocator on purpose) and asserts the checker names it.
A checker that passes everything would pass every other test in the suite: this
file is what makes "assert_consistent after every step" worth something.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, Gfp, MigrateType
from pagemig.mm.invariants import InvariantError, assert_consistent, check
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import MAX_ORDER, PageFlag, PageKind


class World:
    """A 64 MiB guest with one owner holding 100 pages (tokens 1000..1099), one order-2
    compound page and one order-1 plain block held by a second owner."""

    def __init__(self) -> None:
        self.m = Machine(MachineConfig.x86_64_guest(64 * MiB))
        self.owner = SimpleOwner(self.m, "workload")
        self.pfns = [self.m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, self.owner.owner_id, PageKind.ANON)
                     for _ in range(100)]
        for i, pfn in enumerate(self.pfns):
            self.owner.pages.add(pfn, 1000 + i)
        self.other = SimpleOwner(self.m, "kernel")
        self.comp = self.m.alloc_pages(GFP_KERNEL | Gfp.COMP, 2, self.other.owner_id, PageKind.KERNEL)
        self.other.pages.add(self.comp, 7)
        self.plain = self.m.alloc_pages(GFP_KERNEL, 1, self.other.owner_id, PageKind.KERNEL)
        self.other.pages.add(self.plain, 8)
        self.other.pages.add(self.plain + 1, 9)
        assert_consistent(self.m)

    def a_free_block(self, order: int = MAX_ORDER, zones: tuple[int, ...] = (0, 1)) -> tuple[int, int]:
        """(zone index, head) of some free block of this order."""
        for zi in zones:
            for d in self.m.zones[zi].free_area[order]:
                if d:
                    return zi, next(iter(d))
        raise AssertionError(f"no free order-{order} block")


def plant_two_blocks(w: World) -> None:
    zi, head = w.a_free_block()
    zone = w.m.zones[zi]
    zone.free_area[0][MigrateType.MOVABLE][head + 5] = None  # a second block over page head+5
    zone.free_pages += 1


def plant_lost(w: World) -> None:
    zi, head = w.a_free_block()
    w.m.buddy.del_free_block(w.m.zones[zi], head)
    w.m.zones[zi].free_pages -= 1 << MAX_ORDER


def plant_count(w: World) -> None:
    w.m.zones[1].free_pages += 1


def plant_misaligned(w: World) -> None:
    zi, head = w.a_free_block()
    zone = w.m.zones[zi]
    w.m.buddy.del_free_block(zone, head)
    w.m.buddy.add_free_block(zone, head, MAX_ORDER - 1, MigrateType.MOVABLE)
    w.m.buddy.add_free_block(zone, head + 512 + 1, MAX_ORDER - 1, MigrateType.MOVABLE)


def plant_outside_zone(w: World) -> None:
    dma, dma32 = w.m.zones
    _, head = w.a_free_block(zones=(1,))
    assert dma32.contains(head)
    w.m.buddy.del_free_block(dma32, head)
    dma32.free_pages -= 1 << MAX_ORDER
    w.m.buddy.add_free_block(dma, head, MAX_ORDER, MigrateType.MOVABLE)
    dma.free_pages += 1 << MAX_ORDER


def plant_no_buddy_flag(w: World) -> None:
    _, head = w.a_free_block()
    w.m.pages.flags[head] = 0


def plant_wrong_order(w: World) -> None:
    _, head = w.a_free_block()
    w.m.pages.private[head] = 3


def plant_wrong_list(w: World) -> None:
    _, head = w.a_free_block()
    w.m.pages.owner[head] = MigrateType.RECLAIMABLE


def plant_not_free_inside_block(w: World) -> None:
    _, head = w.a_free_block()
    w.m.pages.kind[head + 3] = PageKind.KERNEL
    w.m.pages.owner[head + 3] = w.other.owner_id


def plant_stray_buddy(w: World) -> None:
    w.m.pages.flags[w.pfns[3]] = PageFlag.BUDDY


def plant_content(w: World) -> None:
    w.m.pages.token[w.pfns[10]] ^= np.uint64(1)


def plant_isolated(w: World) -> None:
    w.m.pages.flags[w.pfns[11]] |= np.uint8(PageFlag.ISOLATED)


def plant_locked(w: World) -> None:
    w.m.pages.flags[w.pfns[12]] |= np.uint8(PageFlag.LOCKED)


def plant_ownerless(w: World) -> None:
    w.m.pages.owner[w.pfns[13]] = 0


def plant_unregistered_owner(w: World) -> None:
    w.m.pages.owner[w.pfns[13]] = 999


def plant_believes(w: World) -> None:
    """The page is freed behind the owner's back: the owner still lists it."""
    w.m.free_pages(w.pfns[14])


def plant_unknown(w: World) -> None:
    """The owner forgets a page memory says it holds."""
    w.owner.pages.remove(w.pfns[15])


def plant_twice(w: World) -> None:
    w.owner.pages.add(w.pfns[16], 1016)


def plant_tail(w: World) -> None:
    w.m.pages.owner[w.comp + 2] = w.owner.owner_id


def plant_reserved(w: World) -> None:
    w.m.pages.owner[0] = w.owner.owner_id  # pfn 0 is reserved (BIOS)


def plant_swap_contents(w: World) -> None:
    """Two pages swapped content: each still carries *a* token the owner wrote, but not its own."""
    a, b = w.pfns[20], w.pfns[21]
    t = w.m.pages.token
    t[a], t[b] = t[b], t[a]


CASES: dict[str, tuple[Callable[[World], None], str]] = {
    "page in two free blocks": (plant_two_blocks, "lies in 2 free blocks"),
    "lost free page": (plant_lost, "on no free list: lost"),
    "free count": (plant_count, "NR_FREE_PAGES"),
    "misaligned block": (plant_misaligned, "is not aligned"),
    "block outside its zone": (plant_outside_zone, "leaves the zone"),
    "listed block without PageBuddy": (plant_no_buddy_flag, "has no PageBuddy"),
    "wrong order recorded": (plant_wrong_order, "records order 3"),
    "wrong list recorded": (plant_wrong_list, "records list 2"),
    "in-use page inside a free block": (plant_not_free_inside_block, "inside a free block but is KERNEL"),
    "PageBuddy on an in-use page": (plant_stray_buddy, "has PageBuddy but is on no list"),
    "wrong content": (plant_content, "holds content"),
    "swapped content": (plant_swap_contents, "(2 such pages)"),
    "left isolated": (plant_isolated, "left isolated"),
    "left locked": (plant_locked, "left locked"),
    "in use without owner": (plant_ownerless, "no registered owner (owner id 0)"),
    "unregistered owner": (plant_unregistered_owner, "owner id 999"),
    "owner lists a freed page": (plant_believes, "believes it holds"),
    "owner forgot a page": (plant_unknown, "that it does not know"),
    "owner lists a page twice": (plant_twice, "holds some pfn twice"),
    "compound tail with another owner": (plant_tail, "does not match its head"),
    "reserved page with an owner": (plant_reserved, "reserved pfn 0x0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_checker_finds_planted_corruption(case: str) -> None:
    plant, needle = CASES[case]
    w = World()
    plant(w)
    report = check(w.m)
    assert not report.ok
    assert any(needle in p for p in report.problems), report.problems
    with pytest.raises(InvariantError, match="inconsistent"):
        assert_consistent(w.m)


def test_isolated_and_locked_pages_are_allowed_mid_compaction() -> None:
    w = World()
    plant_isolated(w)
    plant_locked(w)
    assert check(w.m, allow_isolated=True).ok
    assert check(w.m, allow_isolated=True).pages_isolated == 1


def test_healthy_machine_report_counts() -> None:
    """Counts worked out from the layout: 64 MiB = 16384 pages; reserved: pfn 0, the 6144-page
    kernel image, the 256-page memmap (16384 * 64 / 4096); owned: 100 + 4 + 2."""
    w = World()
    report = check(w.m)
    assert report.ok and report.problems == ()
    assert report.pages_reserved == 1 + 6144 + 256
    assert report.pages_owned == 106
    assert report.pages_free == 16384 - 6401 - 106
    assert report.as_dict()["ok"] is True


def test_checker_reports_every_problem_at_once() -> None:
    w = World()
    plant_content(w)
    plant_locked(w)
    plant_count(w)
    problems = check(w.m).problems
    assert len(problems) >= 3
