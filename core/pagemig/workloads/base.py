"""The page-holding helpers the built-in workloads share.

A workload (:class:`pagemig.api.Workload`) holds its pages through :class:`TrackedOwner` objects, one
per kind of page, because an owner's migration callback receives a batch of pages
whose ``private`` slot is all it needs to find them again, and one page set per
owner keeps that slot unambiguous.
"""

from __future__ import annotations

import numpy as np

from pagemig.api import Gfp, LruOwner, Machine, Owner, PageKind, PageSet


def pick_random(pfns: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``pfns`` chosen uniformly, sorted (so a seed gives the same choice whatever
    order the owner keeps its pages in)."""
    pfns = np.sort(np.asarray(pfns, dtype=np.int64))
    if n >= len(pfns):
        return pfns
    return np.sort(rng.choice(pfns, size=n, replace=False))


class TrackedOwner(Owner):
    """One kind of non-LRU page (slab, page tables, kernel memory) held by a workload, in
    one :class:`PageSet`.  LRU pages (anon, page cache) go to
    :class:`pagemig.api.LruOwner` instead, which reclaim knows how to shrink.

    Tokens are a per-owner sequence under the owner id, so every write is distinct
    and the checker sees a page that migration forgot to copy.
    """

    def __init__(self, machine: Machine, name: str, kind: PageKind, gfp: int) -> None:
        self.name = name
        self.machine = machine
        self.kind = int(kind)
        self.gfp = int(gfp)
        self.pages = PageSet(machine)
        self._clock = 0
        machine.register_owner(self)
        self._token_base = np.uint64(self.owner_id) << np.uint64(40)

    def __len__(self) -> int:
        return len(self.pages)

    def _tokens(self, n: int) -> np.ndarray:
        seq = np.arange(self._clock + 1, self._clock + 1 + n, dtype=np.uint64)
        self._clock += n
        return self._token_base | seq

    def alloc(self, n: int) -> np.ndarray:
        """Up to ``n`` order-0 pages (``alloc_pages_bulk``); fewer when memory runs out."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        pfns = self.machine.alloc_pages_bulk(self.gfp, n, self.owner_id, self.kind)
        if len(pfns):
            self.pages.add_many(pfns, self._tokens(len(pfns)))
        return pfns

    def alloc_slots(self, n: int) -> np.ndarray:
        """Like :meth:`alloc`, but returns the pages' slots: a slot names a page for as
        long as the owner holds it, wherever migration moves it."""
        pfns = self.alloc(n)
        return self.machine.pages.private[pfns].astype(np.int64)

    def free(self, pfns: np.ndarray) -> None:
        """Give pages back (they must be this owner's order-0 pages)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        if not len(pfns):
            return
        self.pages.remove_many(pfns)
        self.machine.free_pages_bulk(pfns)

    def free_slots(self, slots: np.ndarray) -> None:
        """Free the pages held in these slots (where they are now)."""
        if len(slots):
            self.free(self.pages.pfn[np.asarray(slots, dtype=np.int64)].copy())

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.pages.migrated(src, dst)

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pages.contents()


class ProcessPool:
    """The address spaces of short-lived processes: one :class:`LruOwner` per running
    process (its anon pages, which reclaim may swap out), handed back to the pool when
    the process exits, so a long run does not register an owner per process."""

    def __init__(self, machine: Machine, prefix: str) -> None:
        self.machine = machine
        self.prefix = prefix
        self.free: list[LruOwner] = []
        self.all: list[LruOwner] = []

    def get(self) -> LruOwner:
        if self.free:
            return self.free.pop()
        mm = LruOwner(self.machine, f"{self.prefix}:mm{len(self.all)}")
        self.all.append(mm)
        return mm

    def put(self, mm: LruOwner) -> None:
        """exit_mmap(): every page of the process goes, resident or swapped out."""
        mm.free(mm.pages.pfns())
        if mm.nr_swapped:
            mm.drop_swap()
        self.free.append(mm)

    def resident_pages(self) -> int:
        return sum(len(mm.pages) for mm in self.all)

    def swapped_pages(self) -> int:
        return sum(mm.nr_swapped for mm in self.all)


class CompoundOwner(Owner):
    """Compound (``__GFP_COMP``) allocations of one order, held through their head pages."""

    def __init__(self, machine: Machine, name: str, kind: PageKind, gfp: int, order: int) -> None:
        self.name = name
        self.machine = machine
        self.kind = int(kind)
        self.gfp = int(gfp) | (Gfp.COMP if order else 0)
        self.order = order
        self.pages = PageSet(machine)
        machine.register_owner(self)
        self._seq = 0

    def __len__(self) -> int:
        return len(self.pages)

    def alloc(self, n: int) -> list[int]:
        """Up to ``n`` blocks; stops at the first failure (the caller falls back as it wishes)."""
        out: list[int] = []
        base = self.owner_id << 40
        for _ in range(n):
            pfn = self.machine.alloc_pages(self.gfp, self.order, self.owner_id, self.kind)
            if pfn < 0:
                break
            self._seq += 1
            self.pages.add(pfn, base | self._seq)
            out.append(pfn)
        return out

    def free(self, heads: list[int] | np.ndarray) -> None:
        for pfn in list(heads):
            self.pages.remove(int(pfn))
            self.machine.free_pages(int(pfn), self.order)

    def free_slots(self, slots: list[int] | np.ndarray) -> None:
        """Free the blocks held in these slots (wherever migration put them)."""
        self.free([int(self.pages.pfn[s]) for s in slots])

    def slot_of(self, pfn: int) -> int:
        return int(self.machine.pages._private[pfn])

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.pages.migrated(src, dst)

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pages.contents()
