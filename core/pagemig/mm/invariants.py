"""The checker: every page accounted for exactly once, and every owner's content intact.

It is independent of the allocator's bookkeeping on purpose: it rebuilds coverage
from the free lists and compares it with the page columns, so a bug that corrupts
both in the same way still shows up as a mismatch with what the owners hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np

from pagemig.mm.gfp import NR_MIGRATETYPES
from pagemig.mm.pages import DRIVER, FREE, NR_ORDERS, RESERVED, PageFlag, PageKind
from pagemig.mm.pcp import pindex_to_order

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine



class InvariantError(AssertionError):
    """The machine's state broke an invariant; the message lists every problem found."""


@attrs.frozen
class CheckReport:
    problems: tuple[str, ...]
    pages_free: int
    pages_owned: int
    pages_reserved: int
    pages_isolated: int
    pages_quarantined: int

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "pages_free": self.pages_free,
            "pages_owned": self.pages_owned,
            "pages_reserved": self.pages_reserved,
            "pages_isolated": self.pages_isolated,
            "pages_quarantined": self.pages_quarantined,
        }


def check(machine: Machine, *, allow_isolated: bool = False, limit: int = 20) -> CheckReport:
    """Check the whole machine.  ``allow_isolated`` is for checks in the middle of a compaction."""
    problems: list[str] = []
    pages = machine.pages
    n = pages.nr_pages
    kind = pages.kind
    flags = pages.flags
    owner = pages.owner

    def problem(msg: str) -> None:
        if len(problems) < limit:
            problems.append(msg)

    # 1. Free blocks: rebuilt from the lists, each aligned, in its zone, with a consistent head.
    cover = np.zeros(n + 1, dtype=np.int32)
    for zone in machine.zones:
        total = 0
        for order in range(NR_ORDERS):
            size = 1 << order
            for mt in range(NR_MIGRATETYPES):
                heads = np.fromiter(zone.free_area[order][mt], dtype=np.int64)
                if not len(heads):
                    continue
                total += size * len(heads)
                bad = heads[(heads & (size - 1)) != 0]
                if len(bad):
                    problem(f"{zone.name}: order-{order} free block at pfn {bad[0]:#x} is not aligned")
                out = heads[(heads < zone.start_pfn) | (heads + size > zone.end_pfn)]
                if len(out):
                    problem(f"{zone.name}: order-{order} free block at pfn {out[0]:#x} leaves the zone")
                    heads = heads[(heads >= zone.start_pfn) & (heads + size <= zone.end_pfn)]
                not_buddy = heads[(flags[heads] & PageFlag.BUDDY) == 0]
                if len(not_buddy):
                    problem(f"{zone.name}: listed free block at pfn {not_buddy[0]:#x} has no PageBuddy")
                wrong_order = heads[pages.private[heads] != order]
                if len(wrong_order):
                    problem(f"{zone.name}: free block at pfn {wrong_order[0]:#x} on the order-{order} list "
                            f"records order {pages.private[wrong_order[0]]}")
                wrong_mt = heads[owner[heads] != mt]
                if len(wrong_mt):
                    problem(f"{zone.name}: free block at pfn {wrong_mt[0]:#x} on list {mt} records list "
                            f"{owner[wrong_mt[0]]}")
                np.add.at(cover, heads, 1)
                np.add.at(cover, heads + size, -1)
        if total != zone.free_pages:
            problem(f"{zone.name}: free lists hold {total} pages but NR_FREE_PAGES is {zone.free_pages}")
        # Per-cpu lists: free pages outside NR_FREE_PAGES, not PageBuddy, each counted once.
        if zone.pcp is not None:
            on_lists = zone.pcp.pcp_pfns()
            held = sum(1 << o for _, o in on_lists)
            if held != zone.pcp.count:
                problem(f"{zone.name}: per-cpu lists hold {held} pages but their counts say {zone.pcp.count}")
            for cpu, pcp in enumerate(zone.pcp.cpus):
                n_cpu = sum(len(lst) << pindex_to_order(i, zone.pcp.thp_order) for i, lst in enumerate(pcp.lists))
                if n_cpu != pcp.count:
                    problem(f"{zone.name}: cpu {cpu}'s per-cpu lists hold {n_cpu} pages, its count is {pcp.count}")
            for pfn, order in on_lists:
                size = 1 << order
                if pfn & (size - 1) or not zone.start_pfn <= pfn or pfn + size > zone.end_pfn:
                    problem(f"{zone.name}: per-cpu order-{order} page at pfn {pfn:#x} is misaligned or outside")
                    continue
                if flags[pfn] & PageFlag.BUDDY:
                    problem(f"{zone.name}: per-cpu page at pfn {pfn:#x} has PageBuddy")
                cover[pfn] += 1
                cover[pfn + size] -= 1
    coverage = np.cumsum(cover[:n])
    multi = np.flatnonzero(coverage > 1)
    if len(multi):
        problem(f"pfn {multi[0]:#x} lies in {coverage[multi[0]]} free blocks ({len(multi)} such pages)")
    is_free = kind == FREE
    listed_not_free = np.flatnonzero((coverage > 0) & ~is_free)
    if len(listed_not_free):
        p = listed_not_free[0]
        problem(f"pfn {p:#x} is inside a free block but is {PageKind(kind[p]).name} "
                f"({len(listed_not_free)} such pages)")
    lost = np.flatnonzero(is_free & (coverage == 0))
    if len(lost):
        problem(f"pfn {lost[0]:#x} is FREE but on no free list: lost ({len(lost)} such pages)")
    stray_buddy = np.flatnonzero(((flags & PageFlag.BUDDY) != 0) & (coverage == 0))
    if len(stray_buddy):
        problem(f"pfn {stray_buddy[0]:#x} has PageBuddy but is on no list")

    # 2. In-use pages: a registered owner, or the isolation that holds an orphan.
    in_use = ~is_free & (kind != RESERVED)
    owners_n = len(machine.owners)
    bad_owner = np.flatnonzero(in_use & ((owner == 0) | (owner >= owners_n)))
    isolated_mask = (flags & PageFlag.ISOLATED) != 0
    orphans = in_use & (owner == 0) & (kind == DRIVER) & isolated_mask
    bad_owner = np.setdiff1d(bad_owner, np.flatnonzero(orphans))
    if len(bad_owner):
        p = bad_owner[0]
        problem(f"pfn {p:#x} ({PageKind(kind[p]).name}) has no registered owner (owner id {owner[p]})")
    res_dirty = np.flatnonzero((kind == RESERVED) & ((owner != 0) | (flags != 0)))
    if len(res_dirty):
        problem(f"reserved pfn {res_dirty[0]:#x} carries an owner or flags")
    n_isolated = int(np.count_nonzero(isolated_mask))
    if n_isolated and not allow_isolated:
        p = np.flatnonzero(isolated_mask)[0]
        problem(f"{n_isolated} pages left isolated after compaction (first pfn {p:#x})")
    locked = np.flatnonzero((flags & PageFlag.LOCKED) != 0)
    if len(locked) and not allow_isolated:
        problem(f"{len(locked)} pages left locked (first pfn {locked[0]:#x})")

    tails = np.flatnonzero((flags & PageFlag.TAIL) != 0)
    if len(tails):
        # each tail's head is the nearest HEAD below it, and shares its owner and kind
        head_idx = np.flatnonzero((flags & PageFlag.HEAD) != 0)
        pos = np.searchsorted(head_idx, tails) - 1
        if np.any(pos < 0):
            problem(f"compound tail pfn {tails[pos < 0][0]:#x} has no head")
        else:
            heads_of = head_idx[pos]
            span = np.left_shift(1, pages.private[np.minimum(heads_of + 1, n - 1)].astype(np.int64))
            orphaned = tails[(tails >= heads_of + span) | (owner[tails] != owner[heads_of])
                             | (kind[tails] != kind[heads_of])]
            if len(orphaned):
                problem(f"compound tail pfn {orphaned[0]:#x} does not match its head")

    # 3. Every owner holds exactly the pages memory says it holds, with the content it wrote.
    quarantine = np.fromiter(machine.movable.quarantine, dtype=np.int64)
    quarantined = np.zeros(n, dtype=bool)
    if len(quarantine):
        quarantined[quarantine] = True
    for oid in range(1, owners_n):
        o = machine.owners[oid]
        if o is None:
            continue
        expected = o.expected_contents()
        if expected is None:
            continue
        pfns, tokens = expected
        pfns = np.asarray(pfns, dtype=np.int64)
        # a compound page is held through its head; its tails follow it
        mine = np.flatnonzero(in_use & (owner == oid) & ~quarantined & ((flags & PageFlag.TAIL) == 0))
        claimed = np.sort(pfns)
        if len(np.unique(claimed)) != len(claimed):
            problem(f"{o.name}: holds some pfn twice")
        # A quarantined page is still its driver's: the driver may go on listing it or
        # may have dropped it when its callback failed; either way it is not lost.
        claimed = claimed[~quarantined[claimed]] if len(quarantine) and len(claimed) else claimed
        if not np.array_equal(claimed, mine):
            extra = np.setdiff1d(claimed, mine)
            missing = np.setdiff1d(mine, claimed)
            if len(extra):
                p = extra[0]
                problem(f"{o.name}: believes it holds pfn {p:#x}, which is {PageKind(kind[p]).name} "
                        f"owned by {owner[p]} ({len(extra)} such pages)")
            if len(missing):
                problem(f"{o.name}: memory says it holds pfn {missing[0]:#x} that it does not know "
                        f"({len(missing)} such pages)")
        if len(pfns):
            got = pages.token[pfns]
            differs = np.flatnonzero(got != np.asarray(tokens, dtype=np.uint64))
            if len(differs):
                p = pfns[differs[0]]
                problem(f"{o.name}: pfn {p:#x} holds content {int(got[differs[0]]):#x}, expected "
                        f"{int(tokens[differs[0]]):#x} ({len(differs)} such pages)")

    return CheckReport(
        problems=tuple(problems),
        pages_free=int(np.count_nonzero(is_free)),
        pages_owned=int(np.count_nonzero(in_use)),
        pages_reserved=int(np.count_nonzero(kind == RESERVED)),
        pages_isolated=n_isolated,
        pages_quarantined=len(quarantine),
    )


def assert_consistent(machine: Machine, *, allow_isolated: bool = False) -> CheckReport:
    """Raise :class:`InvariantError` listing every problem; return the report when all is well."""
    report = check(machine, allow_isolated=allow_isolated)
    if not report.ok:
        raise InvariantError("memory state is inconsistent:\n  " + "\n  ".join(report.problems))
    return report
