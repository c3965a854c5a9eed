"""LRU pages and their owners: who reclaim may take pages from, and how it counts them.

The core keeps no LRU lists (mm/swap.c, mm/vmscan.c's ``lruvec``): pages are columns,
and only their holder knows which of its pages are old.  So every owner that holds LRU
pages (``PageKind.ANON`` and ``PageKind.FILE``) and wants them reclaimable implements
:class:`Reclaimable`: ``lru_sizes()`` says how many pages of each kind it holds,
``shrink(kind, nr_to_scan, sc)`` scans that many of its oldest pages of that kind and
frees what it can.  :class:`LruOwner` is a ready-made one (a FIFO per kind, NumPy
throughout) that workloads use or subclass.  Pages of owners that are not
:class:`Reclaimable` (kernel memory, drivers, an imported snapshot) are never
reclaimed.  The counting helpers (:func:`zone_reclaimable_pages`) are here too, below
both reclaim (:mod:`pagemig.mm.vmscan`) and compaction, which ask them.

Simplified, and why:

* one list per kind, no active/inactive split, no referenced bits, no refault
  detection (workingset), no MGLRU: the owner's "oldest" is the order in which it
  added (or last touched) its pages;
* dirty file pages are written at once when reclaim may write
  (``ShrinkControl.may_writepage``) and go to the front of their list (``PG_reclaim``
  rotation), to be dropped by the next scan; swap-out is synchronous (as zram is);
* LruOwner holds order-0 pages only (no THP to split).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

import attrs
import numpy as np
import structlog

from pagemig.mm.costs import COST_SWAP_IN
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.owner import Owner, PageSet
from pagemig.mm.pages import ANON, DIRTY, FILE, LRU_KINDS, PageFlag, PageKind
from pagemig.mm.swap import SwapSpace
from pagemig.mm.zone import SWAP_CLUSTER_MAX

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine
    from pagemig.mm.zone import Zone

log = structlog.get_logger(__name__)

_UNRECLAIMABLE_FLAGS = int(PageFlag.PINNED | PageFlag.ISOLATED | PageFlag.LOCKED | PageFlag.HEAD
                           | PageFlag.TAIL)


@attrs.frozen
class ShrinkControl:
    """What one ``shrink`` call may do (the part of ``struct scan_control`` an owner needs).

    ``swap`` is None when anon pages may not be reclaimed now (no swap device, swap
    full, or ``may_swap`` off); ``max_pfn`` bounds the eligible zones (pages at or
    above it belong to zones this reclaim may not free for: skip them, unscanned).
    """

    may_writepage: bool
    swap: SwapSpace | None
    max_pfn: int
    kswapd: bool = False


@attrs.frozen
class ShrinkResult:
    """What an owner's ``shrink`` did.  ``reclaimed`` pages were freed back to the allocator
    (``swapped`` of them after a swap-out); ``written`` dirty pages had their writeback
    started and stay on the list; ``dirty`` dirty pages were passed over unwritten."""

    scanned: int = 0
    reclaimed: int = 0
    written: int = 0
    swapped: int = 0
    dirty: int = 0

    def check(self, who: str, nr_to_scan: int) -> None:
        """Refuse impossible answers: a bad count would corrupt every counter downstream."""
        fields = attrs.asdict(self)
        bad = {k: v for k, v in fields.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0}
        if bad:
            raise ValueError(f"{who}.shrink returned negative or non-integer counts: {bad}")
        if self.reclaimed > self.scanned or self.written + self.reclaimed > self.scanned:
            raise ValueError(f"{who}.shrink reclaimed/wrote more pages than it scanned: {fields}")
        if self.swapped > self.reclaimed:
            raise ValueError(f"{who}.shrink swapped more pages than it reclaimed: {fields}")
        if self.scanned > nr_to_scan:
            raise ValueError(f"{who}.shrink scanned {self.scanned} pages, more than the {nr_to_scan} asked")


@runtime_checkable
class Reclaimable(Protocol):
    """An owner whose LRU pages reclaim may take.

    ``lru_sizes()`` maps ``PageKind.ANON`` / ``PageKind.FILE`` to the number of pages
    on the owner's lists.  ``shrink(kind, nr_to_scan, sc)`` looks at up to
    ``nr_to_scan`` of its oldest pages of that kind and: drops clean file pages,
    starts writeback of dirty file pages if ``sc.may_writepage`` (else passes them
    over), swaps anon pages out through ``sc.swap`` (if not None) and frees every
    page it reclaims with ``machine.free_pages``/``free_pages_bulk``.  Pinned,
    isolated or locked pages are passed over.  It is called once per owner per kind
    per scan round, never per page.
    """

    def lru_sizes(self) -> Mapping[int, int]: ...

    def shrink(self, kind: PageKind, nr_to_scan: int, sc: ShrinkControl) -> ShrinkResult: ...


class _SlotQueue:
    """A FIFO of (slot, generation) pairs, oldest at the head, growable, in NumPy arrays.

    Entries go stale when their slot is freed or reused (the generation moved on);
    stale entries are dropped as they reach the head, so removing a page costs nothing.
    """

    __slots__ = ("gen", "head", "slot", "tail")

    def __init__(self, capacity: int = 1024) -> None:
        self.slot = np.empty(capacity, dtype=np.int64)
        self.gen = np.empty(capacity, dtype=np.int64)
        self.head = 0
        self.tail = 0

    def __len__(self) -> int:
        return self.tail - self.head

    def push(self, slots: np.ndarray, gens: np.ndarray) -> None:
        n = len(slots)
        if self.tail + n > len(self.slot):
            live = self.tail - self.head
            cap = len(self.slot)
            while cap < live + n or cap < 2 * live:  # keep amortised O(1)
                cap *= 2
            ns = np.empty(cap, dtype=np.int64)
            ng = np.empty(cap, dtype=np.int64)
            ns[:live] = self.slot[self.head:self.tail]
            ng[:live] = self.gen[self.head:self.tail]
            self.slot, self.gen, self.head, self.tail = ns, ng, 0, live
        self.slot[self.tail:self.tail + n] = slots
        self.gen[self.tail:self.tail + n] = gens
        self.tail += n

    def push1(self, slot: int, gen: int) -> None:
        if self.tail == len(self.slot):
            self.push(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
            if self.tail == len(self.slot):
                self.push(np.asarray([slot]), np.asarray([gen]))
                return
        self.slot[self.tail] = slot
        self.gen[self.tail] = gen
        self.tail += 1

    def unpop(self, slots: np.ndarray, gens: np.ndarray) -> None:
        """Put entries back at the old end (they were popped and not used)."""
        n = len(slots)
        if self.head < n:
            rest_s = self.slot[self.head:self.tail].copy()
            rest_g = self.gen[self.head:self.tail].copy()
            self.head = self.tail = 0
            self.push(slots, gens)
            self.push(rest_s, rest_g)
            return
        self.head -= n
        self.slot[self.head:self.head + n] = slots
        self.gen[self.head:self.head + n] = gens

    def pop(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(n, self.tail - self.head)
        s = self.slot[self.head:self.head + n].copy()
        g = self.gen[self.head:self.head + n].copy()
        self.head += n
        if self.head == self.tail:
            self.head = self.tail = 0
        return s, g


class LruOwner(Owner):
    """An owner of LRU pages (anon and/or file) that reclaim can shrink: a ready-made
    :class:`Reclaimable` for workloads.

    Pages live in a :class:`~pagemig.mm.owner.PageSet` (so migration is the usual
    slot update); each kind has a FIFO of slots, oldest first (:meth:`touch` moves
    pages to the young end).  Swapped-out anon pages are remembered by swap handle
    with the content they held, and :meth:`swap_in` checks that the swap device
    gave back exactly that: a content mismatch is counted in ``swap_corruptions``
    and logged.
    """

    def __init__(self, machine: Machine, name: str) -> None:
        self.machine = machine
        self.name = name
        self.pages = PageSet(machine)
        self._gen = np.zeros(1024, dtype=np.int64)
        self._queues: dict[int, _SlotQueue] = {ANON: _SlotQueue(), FILE: _SlotQueue()}
        self._front: dict[int, _SlotQueue] = {ANON: _SlotQueue(64), FILE: _SlotQueue(64)}  # PG_reclaim rotation
        self._nr: dict[int, int] = {ANON: 0, FILE: 0}
        self._next_token = 1
        self.swap_handles = np.empty(0, dtype=np.int64)  # swapped-out pages, oldest first
        self.swap_tokens = np.empty(0, dtype=np.uint64)
        self.swap_corruptions = 0
        machine.register_owner(self)

    # ------------------------------------------------------------ bookkeeping
    def _slots_of(self, pfns: np.ndarray) -> np.ndarray:
        slots: np.ndarray = self.machine.pages.private[pfns].astype(np.int64)
        return slots

    def _enqueue(self, pfns: np.ndarray) -> None:
        slots = self._slots_of(pfns)
        if len(self._gen) < len(self.pages.pfn):
            g = np.zeros(len(self.pages.pfn), dtype=np.int64)
            g[: len(self._gen)] = self._gen
            self._gen = g
        self._gen[slots] += 1
        kinds = self.machine.pages.kind[pfns]
        for kind in LRU_KINDS:
            m = kinds == kind
            if m.any():
                self._queues[kind].push(slots[m], self._gen[slots[m]])
                self._trim(kind)

    def _trim(self, kind: int) -> None:
        """Drop stale entries (freed, re-added or touched pages) once they outnumber the
        live ones, so an owner that churns pages without being reclaimed stays small."""
        for q in (self._queues[kind], self._front[kind]):
            if len(q) <= 2 * self._nr[kind] + 4096:
                continue
            slots, gens = q.pop(len(q))
            pfn = self.pages.pfn[slots]
            live = (pfn >= 0) & (self._gen[slots] == gens)
            live[live] &= self.machine.pages.kind[pfn[live]] == kind
            q.push(slots[live], gens[live])

    def add_many(self, pfns: np.ndarray, tokens: np.ndarray | None = None, *, dirty: bool = False) -> None:
        """Take freshly allocated ANON/FILE pages (kind already set by ``alloc_pages``),
        write ``tokens`` (fresh ones if None) and put them at the young end of their list."""
        pfns = np.asarray(pfns, dtype=np.int64)
        if not len(pfns):
            return
        pages = self.machine.pages
        kinds = pages.kind[pfns]
        if not np.all((kinds == ANON) | (kinds == FILE)):
            bad = pfns[(kinds != ANON) & (kinds != FILE)][0]
            raise ValueError(f"{self.name}: pfn {bad:#x} is {PageKind(pages.kind[bad]).name}, not an LRU page")
        if np.any(pages.owner[pfns] != self.owner_id):
            raise ValueError(f"{self.name}: some pages were not allocated for owner {self.owner_id}")
        if tokens is None:
            tokens = self.new_tokens(len(pfns))
        self.pages.add_many(pfns, np.asarray(tokens, dtype=np.uint64))
        if dirty:
            pages.flags[pfns] |= DIRTY
        for kind in LRU_KINDS:
            self._nr[kind] += int(np.count_nonzero(kinds == kind))
        self._enqueue(pfns)

    def add(self, pfn: int, token: int | None = None, *, dirty: bool = False) -> None:
        """One page (the scalar fast path of :meth:`add_many`, for page-at-a-time workloads)."""
        pages = self.machine.pages
        kind = pages._kind[pfn]
        if kind != ANON and kind != FILE:
            raise ValueError(f"{self.name}: pfn {pfn:#x} is {PageKind(kind).name}, not an LRU page")
        if pages._owner[pfn] != self.owner_id:
            raise ValueError(f"{self.name}: pfn {pfn:#x} was not allocated for owner {self.owner_id}")
        if token is None:
            token = (self.owner_id << 48) | self._next_token
            self._next_token += 1
        self.pages.add(pfn, token)
        if dirty:
            pages._flags[pfn] |= DIRTY
        self._nr[kind] += 1
        slot = pages._private[pfn]
        if slot >= len(self._gen):
            g = np.zeros(len(self.pages.pfn), dtype=np.int64)
            g[: len(self._gen)] = self._gen
            self._gen = g
        gen = int(self._gen[slot]) + 1
        self._gen[slot] = gen
        q = self._queues[kind]
        q.push1(slot, gen)
        if len(q) > 2 * self._nr[kind] + 4096:
            self._trim(kind)

    def new_tokens(self, n: int) -> np.ndarray:
        """Content no other owner writes: the owner id in the top 16 bits, a sequence below."""
        base = (self.owner_id << 48) | self._next_token
        self._next_token += n
        return np.arange(base, base + n, dtype=np.uint64)

    def alloc(self, n: int, kind: PageKind, gfp: int = GFP_HIGHUSER_MOVABLE, *, dirty: bool = False) -> np.ndarray:
        """Allocate up to ``n`` order-0 pages of ``kind`` and take them; returns their pfns."""
        if kind not in LRU_KINDS:
            raise ValueError(f"LruOwner holds ANON or FILE pages, not {PageKind(kind).name}")
        pfns = self.machine.alloc_pages_bulk(gfp, n, self.owner_id, kind)
        self.add_many(pfns, dirty=dirty)
        return pfns

    def free(self, pfns: np.ndarray | Iterable[int]) -> None:
        """Give pages back (munmap, truncate): forget them and free them."""
        pfns = np.asarray(list(pfns) if not isinstance(pfns, np.ndarray) else pfns, dtype=np.int64)
        if not len(pfns):
            return
        kinds = self.machine.pages.kind[pfns]
        self.pages.remove_many(pfns)
        for kind in LRU_KINDS:
            self._nr[kind] -= int(np.count_nonzero(kinds == kind))
        self.machine.free_pages_bulk(pfns)

    def write(self, pfns: np.ndarray, tokens: np.ndarray | None = None) -> None:
        """Store new content: the pages become dirty and young."""
        pfns = np.asarray(pfns, dtype=np.int64)
        tokens = self.new_tokens(len(pfns)) if tokens is None else np.asarray(tokens, dtype=np.uint64)
        slots = self._slots_of(pfns)
        if not np.array_equal(self.pages.pfn[slots], pfns):
            raise KeyError(f"{self.name}: write to pages it does not hold")
        self.pages.token[slots] = tokens
        pages = self.machine.pages
        pages.token[pfns] = tokens
        pages.flags[pfns] |= DIRTY
        self._enqueue(pfns)

    def touch(self, pfns: np.ndarray) -> None:
        """Access pages: they move to the young end of their list (``mark_page_accessed``)."""
        pfns = np.asarray(pfns, dtype=np.int64)
        slots = self._slots_of(pfns)
        if not np.array_equal(self.pages.pfn[slots], pfns):
            raise KeyError(f"{self.name}: touch of pages it does not hold")
        self._enqueue(pfns)

    # ------------------------------------------------------------ Owner
    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.pages.migrated(src, dst)  # slots moved with the pages: the lists need nothing

    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pages.contents()

    # ------------------------------------------------------------ Reclaimable
    def lru_sizes(self) -> dict[int, int]:
        return dict(self._nr)

    @property
    def nr_swapped(self) -> int:
        return len(self.swap_handles)

    def _take_oldest(self, kind: int, n: int, max_pfn: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to n live pages of ``kind`` from the old end (written-back ones first):
        (pfns, slots).  Pages of ineligible zones are put back, not counted."""
        pages = self.machine.pages
        got_pfns: list[np.ndarray] = []
        got_slots: list[np.ndarray] = []
        skipped: list[tuple[np.ndarray, np.ndarray]] = []
        need = n
        for q in (self._front[kind], self._queues[kind]):
            while need > 0 and len(q):
                slots, gens = q.pop(max(need, SWAP_CLUSTER_MAX))
                pfn = self.pages.pfn[slots]
                live = (pfn >= 0) & (self._gen[slots] == gens)
                live[live] &= pages.kind[pfn[live]] == kind
                slots, gens, pfn = slots[live], gens[live], pfn[live]
                high = pfn >= max_pfn
                if high.any():
                    skipped.append((slots[high], gens[high]))
                    slots, gens, pfn = slots[~high], gens[~high], pfn[~high]
                if len(slots) > need:  # the surplus goes back to the old end, in order
                    q.unpop(slots[need:], gens[need:])
                    slots, pfn = slots[:need], pfn[:need]
                got_pfns.append(pfn)
                got_slots.append(slots)
                need -= len(slots)
        for s, g in skipped:  # lru_gen/isolate_lru_folios: skipped pages go back to the list
            self._queues[kind].push(s, g)
        if not got_pfns:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(got_pfns), np.concatenate(got_slots)

    def shrink(self, kind: PageKind, nr_to_scan: int, sc: ShrinkControl) -> ShrinkResult:
        if kind not in LRU_KINDS or nr_to_scan <= 0:
            return ShrinkResult()
        if kind == ANON and sc.swap is None:
            return ShrinkResult()
        pfns, slots = self._take_oldest(kind, nr_to_scan, sc.max_pfn)
        scanned = len(pfns)
        if not scanned:
            return ShrinkResult()
        pages = self.machine.pages
        flags = pages.flags[pfns]
        keep = (flags & _UNRECLAIMABLE_FLAGS) != 0  # pinned, isolated, locked, compound: rotate
        written = dirty_n = swapped = 0
        front = np.zeros(scanned, dtype=bool)
        if kind == FILE:
            dirty = ((flags & DIRTY) != 0) & ~keep
            if sc.may_writepage:
                pages.flags[pfns[dirty]] &= ~DIRTY & 0xFF  # pageout(): writeback done at once
                written = int(np.count_nonzero(dirty))
                front = dirty
            else:
                dirty_n = int(np.count_nonzero(dirty))
            keep |= dirty
        else:
            cand = np.flatnonzero(~keep)
            assert sc.swap is not None
            handles = sc.swap.swap_out_many(pages.token[pfns[cand]])
            ok = handles >= 0
            keep[cand[~ok]] = True  # swap full: these stay
            if ok.any():
                self.swap_handles = np.concatenate((self.swap_handles, handles[ok]))
                self.swap_tokens = np.concatenate((self.swap_tokens, pages.token[pfns[cand[ok]]]))
            swapped = int(np.count_nonzero(ok))
        gone = pfns[~keep]
        if len(gone):
            self.pages.remove_many(gone)
            self._nr[kind] -= len(gone)
            self.machine.free_pages_bulk(gone)
        if front.any():
            self._front[kind].push(slots[front], self._gen[slots[front]])
        back = keep & ~front
        if back.any():  # activated or kept: to the young end
            self._queues[kind].push(slots[back], self._gen[slots[back]])
        return ShrinkResult(scanned=scanned, reclaimed=len(gone), written=written, swapped=swapped,
                            dirty=dirty_n)

    def swap_in(self, n: int, gfp: int = GFP_HIGHUSER_MOVABLE) -> int:
        """Fault back up to ``n`` swapped-out pages (oldest first): allocate, read, free the
        slot, verify the content.  Returns how many came back (fewer if memory ran out)."""
        n = min(n, self.nr_swapped)
        if n <= 0:
            return 0
        swap = self.machine.swap
        pfns = self.machine.alloc_pages_bulk(gfp, n, self.owner_id, ANON)
        k = len(pfns)
        handles, expect = self.swap_handles[:k], self.swap_tokens[:k]
        got = np.fromiter((swap.swap_in(int(h)) for h in handles.tolist()), dtype=np.uint64, count=k)
        for h in handles.tolist():
            swap.swap_free(int(h))
        bad = int(np.count_nonzero(got != expect))
        if bad:
            self.swap_corruptions += bad
            log.error("swap_content_lost", owner=self.name, pages=bad)
        self.swap_handles, self.swap_tokens = self.swap_handles[k:], self.swap_tokens[k:]
        self.add_many(pfns, got)
        self.machine.reclaim.swapin_seconds += k * COST_SWAP_IN
        return k

    def free_swapped(self, index: np.ndarray) -> None:
        """Forget some swapped-out pages (munmap of swap entries: ``free_swap_and_cache``) and
        free their slots; ``index`` counts into the swapped-out pages, oldest first."""
        index = np.unique(np.asarray(index, dtype=np.int64))
        if not len(index):
            return
        swap = self.machine.swap
        for h in self.swap_handles[index].tolist():
            swap.swap_free(int(h))
        keep = np.ones(len(self.swap_handles), dtype=bool)
        keep[index] = False
        self.swap_handles, self.swap_tokens = self.swap_handles[keep], self.swap_tokens[keep]

    def drop_swap(self) -> None:
        """Forget every swapped-out page (the process exited): free their swap slots."""
        swap = self.machine.swap
        for h in self.swap_handles.tolist():
            swap.swap_free(int(h))
        self.swap_handles = np.empty(0, dtype=np.int64)
        self.swap_tokens = np.empty(0, dtype=np.uint64)



def reclaimable_owners(machine: Machine) -> list[Reclaimable]:
    """The owners that implement :class:`Reclaimable`, cached in ``machine.reclaim``
    (owners are only ever added, and a protocol ``isinstance`` check costs microseconds)."""
    state = machine.reclaim
    n = len(machine.owners)
    if state.owners_seen != n:
        found: list[Owner] = []
        mask = np.zeros(1 << 16, dtype=bool)
        for oid, o in enumerate(machine.owners):
            if o is not None and isinstance(o, Reclaimable):
                found.append(o)
                mask[oid] = True
        state.reclaimable = found
        state.reclaimable_mask = mask
        state.owners_seen = n
    # every owner in the cache passed isinstance(o, Reclaimable) when it was filled
    return cast("list[Reclaimable]", state.reclaimable)


def reclaimable_owner_mask(machine: Machine) -> np.ndarray:
    """A lookup table owner id -> holds reclaimable LRU pages (sized for any uint16 id)."""
    reclaimable_owners(machine)
    return machine.reclaim.reclaimable_mask


def zone_reclaimable_pages(machine: Machine, zone: Zone, owner_mask: np.ndarray | None = None) -> int:
    """``zone_reclaimable_pages()`` (mm/vmscan.c): LRU pages in the zone held by reclaimable
    owners; anon pages only while swap has room.  It counts LRU pages, so it lives here,
    below both reclaim and compaction, which ask it."""
    if owner_mask is None:
        owner_mask = reclaimable_owner_mask(machine)
    pages = machine.pages
    sl = slice(zone.start_pfn, zone.end_pfn)
    kind = pages.kind[sl]
    mine = owner_mask[pages.owner[sl]]
    n = int(np.count_nonzero(mine & (kind == FILE)))
    if machine.swap.nr_free > 0:
        n += int(np.count_nonzero(mine & (kind == ANON)))
    return n


__all__ = [
    "LruOwner",
    "Reclaimable",
    "ShrinkControl",
    "ShrinkResult",
    "reclaimable_owner_mask",
    "reclaimable_owners",
    "zone_reclaimable_pages",
]
