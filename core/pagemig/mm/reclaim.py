"""Reclaim: the page-frame reclaim of mm/vmscan.c (v6.1), simplified honestly.

Who reclaims what
-----------------
The core keeps no LRU lists: pages are columns, and only their holder knows which of
its pages are old.  So every owner that holds LRU pages (``PageKind.ANON`` and
``PageKind.FILE``) and wants them reclaimable implements :class:`Reclaimable`:
``lru_sizes()`` says how many pages of each kind it holds, ``shrink(kind, nr_to_scan,
sc)`` scans that many of its oldest pages of that kind and frees what it can.
:class:`LruOwner` is a ready-made one (a FIFO per kind, NumPy throughout) that
workloads use or subclass.  Pages of owners that are not :class:`Reclaimable`
(kernel memory, drivers, an imported snapshot) are never reclaimed.

``shrink_node`` follows the kernel's ``shrink_node`` / ``get_scan_count``: at scan
priority ``p`` each LRU is scanned ``size >> p`` pages, split between anon and file
by ``swappiness`` (anon gets ``swappiness / 200`` of the pressure, file the rest,
as ``SCAN_FRACT`` does when anon and file cost the same), file only when anon cannot
be reclaimed (no swap device, or swap full), anon only when file is tiny
(``file + free <= sum of high watermarks``), both equally at priority 0.  The
pressure on each kind is spread across owners in proportion to their sizes.

Direct reclaim (``try_to_free_pages``) asks for ``SWAP_CLUSTER_MAX`` pages and
lowers the priority from 12 until it has them, as ``do_try_to_free_pages`` does;
for high orders it keeps reclaiming while compaction still lacks free pages
(``should_continue_reclaim``) and stops early for costly orders once compaction is
ready (``compaction_ready``).  kswapd (``balance_pgdat``) reclaims until one
eligible zone meets its high watermark at the requested order (``pgdat_balanced``:
since v4.10 one balanced zone is enough), dropping to order 0 once it has reclaimed
``compact_gap(order)`` pages.

Simplified, and why
-------------------
* One list per kind, no active/inactive split, no referenced bits, no refault
  detection (workingset), no MGLRU, no ``cache_trim_mode``: the owner's "oldest"
  is the order in which it added (or last touched) its pages.
* Anon and file reclaim are assumed to cost the same (``anon_cost == file_cost``),
  so ``SCAN_FRACT`` reduces to ``swappiness : 200 - swappiness``.
* Within one priority level the whole scan target is scanned (the kernel's
  ``scan_adjusted`` proportional stop is not modelled); the priority loop stops as
  the kernel's does once ``nr_to_reclaim`` is met.
* Dirty file pages: direct reclaim never writes them (v6.1 ``shrink_folio_list``:
  "only kswapd can writeback filesystem folios"); kswapd writes every dirty file
  page it scans (the kernel waits for ``PGDAT_DIRTY`` first).  Writeback completes
  at once, at the cost of :data:`~pagemig.mm.costs.COST_WRITEBACK_PAGE`, and the
  written page goes to the front of its list (``PG_reclaim`` rotation), to be
  dropped by the next scan.  So one pass drops clean pages, dirty ones need two.
* Swap-out is synchronous (as zram is): a swapped anon page is freed in the same
  pass.  ``pgpgout`` counts file writeback only (in KiB, as /proc/vmstat shows
  it); in v6.1 zram's ``rw_page`` path bypasses ``submit_bio`` and so does not
  count either.
* No memcg, no reclaim throttling, no vmpressure, no watermark boosting
  (the core never boosts), no ``laptop_mode``, no THP splitting (LruOwner holds
  order-0 pages).
* Slab shrinkers are optional (:class:`Shrinker`), scanned ``2 * (freeable >>
  priority)`` per call (``do_shrink_slab`` with ``DEFAULT_SEEKS``), without the
  kernel's deferred work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import numpy as np
import structlog

from pagemig.mm.costs import (
    COST_RECLAIM_CLEAN,
    COST_SCAN_PAGE,
    COST_SWAP_IN,
    COST_SWAP_OUT,
    COST_WRITEBACK_PAGE,
)
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, ZoneType
from pagemig.mm.owner import Owner, PageSet
from pagemig.mm.pages import ANON, DIRTY, FILE, LRU_KINDS, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE, PageFlag, PageKind
from pagemig.mm.zone import SWAP_CLUSTER_MAX

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine
    from pagemig.mm.zone import Zone

log = structlog.get_logger(__name__)

DEF_PRIORITY = 12  # scan 1/4096 of each LRU first
MAX_RECLAIM_RETRIES = 16  # mm/internal.h: kswapd gives up on a node, the slow path stops retrying
DEFAULT_SEEKS = 2  # a shrinker's cost to recreate an object
SHRINK_BATCH = 128
MAX_SWAPFILES_SHIFT = 5  # at most 32 swap devices (include/linux/swap.h)
MAX_SWAPFILES = 1 << MAX_SWAPFILES_SHIFT

_UNRECLAIMABLE_FLAGS = int(PageFlag.PINNED | PageFlag.ISOLATED | PageFlag.LOCKED | PageFlag.HEAD
                           | PageFlag.TAIL)

# /proc/vmstat's zone suffixes (TEXTS_FOR_ZONES): allocstall_dma, allocstall_dma32, ...
ZONE_VMSTAT_NAMES = {ZoneType.DMA: "dma", ZoneType.DMA32: "dma32", ZoneType.NORMAL: "normal",
                     ZoneType.HIGHMEM: "high", ZoneType.MOVABLE: "movable"}


def compact_gap(order: int) -> int:
    """``compact_gap()``: the free pages compaction wants beyond the watermark (twice the request).

    The kernel has it in include/linux/compaction.h; it is defined here, once, because
    compaction imports reclaim (``zone_reclaimable_pages``) and reclaim reaches compaction
    only lazily, and :mod:`pagemig.mm.compaction` re-exports it."""
    return 2 << order


# --------------------------------------------------------------------------- swap
@runtime_checkable
class SwapDevice(Protocol):
    """A swap device (``swapon``).  zram registers one; a test can register a fake.

    ``swap_out(token)`` stores a page's content and returns a handle (an int >= 0),
    or None when the device is full.  ``swap_in(handle)`` returns the content;
    ``swap_free(handle)`` releases the slot.  ``capacity`` is the device size in
    pages (``disksize``; a compressing device may be full earlier).  Optional:
    ``priority`` (higher is used first, as ``swapon -p``; default -2) and
    ``swap_out_many(tokens) -> handles`` (an int64 array, -1 where the device was
    full) for speed.
    """

    name: str

    @property
    def capacity(self) -> int: ...

    def swap_out(self, token: int) -> int | None: ...

    def swap_in(self, handle: int) -> int: ...

    def swap_free(self, handle: int) -> None: ...


class SwapSpace:
    """All swap devices of a machine, used highest priority first, as one device.

    It hands out composite handles (device index in the low bits), keeps the
    slot count per device (``nr_swap_pages`` is capacity minus slots in use) and
    counts ``pswpout``/``pswpin``, so every swap-out is counted however it happens.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.devices: list[SwapDevice] = []
        self.used: list[int] = []
        self._order: list[int] = []

    def register(self, dev: SwapDevice) -> None:
        if not isinstance(dev, SwapDevice):
            raise TypeError(f"{dev!r} is not a SwapDevice: it needs name, capacity, swap_out(token), "
                            "swap_in(handle) and swap_free(handle)")
        if len(self.devices) >= MAX_SWAPFILES:
            raise ValueError(f"at most {MAX_SWAPFILES} swap devices (MAX_SWAPFILES)")
        if any(d is dev for d in self.devices):
            raise ValueError(f"swap device {dev.name!r} is already registered")
        self.devices.append(dev)
        self.used.append(0)
        # stable sort: equal priorities keep registration order
        self._order = sorted(range(len(self.devices)), key=lambda i: -int(getattr(self.devices[i], "priority", -2)))

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def nr_free(self) -> int:
        """``get_nr_swap_pages()``: free slots over all devices."""
        return sum(max(0, int(d.capacity) - u) for d, u in zip(self.devices, self.used, strict=True))

    @property
    def nr_used(self) -> int:
        return sum(self.used)

    def _split(self, handle: int) -> tuple[int, int]:
        idx = handle & (MAX_SWAPFILES - 1)
        if handle < 0 or idx >= len(self.devices):
            raise ValueError(f"swap handle {handle!r} names no registered swap device")
        return idx, handle >> MAX_SWAPFILES_SHIFT

    def swap_out(self, token: int) -> int | None:
        out = self.swap_out_many(np.asarray([token], dtype=np.uint64))
        return None if out[0] < 0 else int(out[0])

    def swap_out_many(self, tokens: np.ndarray) -> np.ndarray:
        """Swap out a batch: a composite handle per token, -1 for those no device would take.

        Devices are tried highest priority first; a device is done with as soon as it
        reports full.
        """
        tokens = np.asarray(tokens, dtype=np.uint64)
        out = np.full(len(tokens), -1, dtype=np.int64)
        todo = np.arange(len(tokens))
        for idx in self._order:
            if not len(todo):
                break
            dev = self.devices[idx]
            room = int(dev.capacity) - self.used[idx]
            if room <= 0:
                continue
            take = todo[:room]
            many = getattr(dev, "swap_out_many", None)
            if many is not None:
                got = np.asarray(many(tokens[take]), dtype=np.int64)
                if got.shape != take.shape:
                    raise ValueError(f"swap device {dev.name!r}: swap_out_many returned {got.shape[0]} handles "
                                     f"for {len(take)} pages")
            else:
                got = np.full(len(take), -1, dtype=np.int64)
                for j, tok in enumerate(tokens[take].tolist()):
                    h = dev.swap_out(int(tok))
                    if h is None:
                        break
                    got[j] = h
            ok = got >= 0
            if np.any(got[ok] >= 1 << (63 - MAX_SWAPFILES_SHIFT)):
                raise ValueError(f"swap device {dev.name!r} returned a handle that does not fit 58 bits")
            out[take[ok]] = (got[ok] << MAX_SWAPFILES_SHIFT) | idx
            n = int(np.count_nonzero(ok))
            self.used[idx] += n
            todo = np.concatenate((take[~ok], todo[room:]))
        done = int(np.count_nonzero(out >= 0))
        if done:
            self.machine.vmstat["pswpout"] += done
        return out

    def swap_in(self, handle: int) -> int:
        """Read a page back (``swap_readpage``); the slot stays in use until :meth:`swap_free`."""
        idx, h = self._split(handle)
        self.machine.vmstat["pswpin"] += 1
        return int(self.devices[idx].swap_in(h))

    def swap_free(self, handle: int) -> None:
        idx, h = self._split(handle)
        self.devices[idx].swap_free(h)
        self.used[idx] -= 1


# --------------------------------------------------------------------------- reclaimable owners
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
        return self.machine.pages.private[pfns].astype(np.int64)

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
        swap = reclaim_state(self.machine).swap
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
        reclaim_state(self.machine).swapin_seconds += k * COST_SWAP_IN
        return k

    def drop_swap(self) -> None:
        """Forget every swapped-out page (the process exited): free their swap slots."""
        swap = reclaim_state(self.machine).swap
        for h in self.swap_handles.tolist():
            swap.swap_free(int(h))
        self.swap_handles = np.empty(0, dtype=np.int64)
        self.swap_tokens = np.empty(0, dtype=np.uint64)


# --------------------------------------------------------------------------- shrinkers
@runtime_checkable
class Shrinker(Protocol):
    """A slab cache's shrinker (``struct shrinker``), counting in pages.

    ``count_objects()`` says how many pages could be freed; ``scan_objects(n)``
    frees up to n of them and returns how many it freed.  Optional ``seeks``
    (default ``DEFAULT_SEEKS``).
    """

    name: str

    def count_objects(self) -> int: ...

    def scan_objects(self, nr_to_scan: int) -> int: ...


def register_shrinker(machine: Machine, shrinker: Shrinker) -> None:
    if not isinstance(shrinker, Shrinker):
        raise TypeError(f"{shrinker!r} is not a Shrinker: it needs name, count_objects() and scan_objects(n)")
    reclaim_state(machine).shrinkers.append(shrinker)


def shrink_slab(machine: Machine, priority: int) -> int:
    """``shrink_slab``/``do_shrink_slab``: scan ``freeable >> priority`` * 4 / seeks objects
    per shrinker in batches of 128, capped at twice the freeable count; ``slabs_scanned``."""
    freed = 0
    for shrinker in reclaim_state(machine).shrinkers:
        freeable = int(shrinker.count_objects())
        if freeable <= 0:
            continue
        seeks = int(getattr(shrinker, "seeks", DEFAULT_SEEKS))
        total_scan = ((freeable >> priority) * 4 // seeks) if seeks else freeable // 2
        total_scan = min(total_scan, 2 * freeable)
        while total_scan >= SHRINK_BATCH or total_scan >= freeable:
            nr = min(SHRINK_BATCH, total_scan)
            if nr <= 0:
                break
            got = int(shrinker.scan_objects(nr))
            if got < 0:
                raise ValueError(f"shrinker {shrinker.name!r} returned {got} freed")
            freed += got
            machine.vmstat["slabs_scanned"] += nr
            total_scan -= nr
    return freed


# --------------------------------------------------------------------------- node state
SuitableFn = Callable[["Machine", "Zone", int, int], str]


@attrs.define(eq=False)
class ReclaimState:
    """Per-node reclaim state (``pglist_data``'s reclaim part), kept on the machine as
    ``machine.reclaim``; ``machine.swap_devices`` is its device list."""

    swap: SwapSpace
    shrinkers: list[Shrinker] = attrs.field(factory=list)
    kswapd_failures: int = 0  # balance_pgdat runs that reclaimed nothing; reset by any progress
    in_reclaim: int = 0  # > 0 while owners shrink: PF_MEMALLOC for allocations made meanwhile
    direct_seconds: float = 0.0  # simulated time spent in direct reclaim
    kswapd_seconds: float = 0.0  # simulated CPU time kswapd spent reclaiming
    swapin_seconds: float = 0.0
    # compaction_suitable(machine, zone, order, highest_zoneidx) -> "success"/"continue"/"skipped";
    # None: ask pagemig.mm.compaction (reclaim/compaction mode is off when it is missing).
    compaction_suitable: SuitableFn | None = None
    _owners_seen: int = -1
    _owners: list[Reclaimable] = attrs.field(factory=list)
    _mask: np.ndarray | None = None


def reclaim_state(machine: Machine) -> ReclaimState:
    """The machine's reclaim state, made on first use."""
    state: ReclaimState | None = machine.reclaim
    if state is None:
        state = ReclaimState(swap=SwapSpace(machine))
        machine.reclaim = state
        machine.swap_devices = state.swap.devices
    return state


def register_swap_device(machine: Machine, dev: SwapDevice) -> None:
    """``swapon``: from now on anon pages are reclaimable into ``dev``."""
    reclaim_state(machine).swap.register(dev)
    log.debug("swapon", device=dev.name, capacity=int(dev.capacity))


def swap_devices(machine: Machine) -> list[SwapDevice]:
    return reclaim_state(machine).swap.devices


def compact_result_name(result: Any) -> str:
    """A ``compact_result`` as the seams to compaction name it (here and in the slow path):
    lower case without the prefix, ``CompactResult.COMPACT_PARTIAL_SKIPPED`` ->
    ``"partial_skipped"``; a name already in that form is returned as it is."""
    name = getattr(result, "name", str(result))
    return name.upper().removeprefix("COMPACT_").lower()


def compaction_suitable(machine: Machine, zone: Zone, order: int, highest_zoneidx: int) -> str | None:
    """The compaction module's verdict for a zone, as "success", "continue", "skipped"...,
    or None when there is no compaction module (then reclaim works as if compaction
    were configured out)."""
    fn = reclaim_state(machine).compaction_suitable
    if fn is not None:
        return compact_result_name(fn(machine, zone, order, highest_zoneidx))
    try:
        mod = importlib.import_module("pagemig.mm.compaction")
    except ImportError:
        return None
    kfn = getattr(mod, "compaction_suitable", None)
    if kfn is None:
        return None
    return compact_result_name(kfn(machine, zone, order, 0, highest_zoneidx))


# --------------------------------------------------------------------------- scan control
@attrs.define
class ScanControl:
    """``struct scan_control``, the part that is modelled."""

    nr_to_reclaim: int
    order: int = 0
    priority: int = DEF_PRIORITY
    reclaim_idx: int = int(ZoneType.MOVABLE)  # highest zone type whose pages may be freed
    may_writepage: bool = True
    may_swap: bool = True
    kswapd: bool = False
    nr_scanned: int = 0
    nr_reclaimed: int = 0
    nr_written: int = 0  # dirty file pages whose writeback reclaim started
    nr_swapped: int = 0  # anon pages swapped out
    seconds: float = 0.0  # simulated time this reclaim cost
    compaction_ready: bool = False


@attrs.frozen
class ReclaimStats:
    """What a reclaim did, for callers and tests."""

    scanned: int
    reclaimed: int
    written: int
    swapped: int
    seconds: float


def _eligible_zones(machine: Machine, reclaim_idx: int) -> list[Zone]:
    return [z for z in machine.zones if z.zone_type <= reclaim_idx and z.managed_pages > 0]


def _max_pfn(machine: Machine, reclaim_idx: int) -> int:
    ends = [z.end_pfn for z in machine.zones if z.zone_type <= reclaim_idx]
    return max(ends) if ends else 0


def reclaimable_owners(machine: Machine) -> list[Reclaimable]:
    """The owners that implement :class:`Reclaimable` (cached: owners are only ever added,
    and a protocol ``isinstance`` check costs microseconds)."""
    state = reclaim_state(machine)
    n = len(machine.owners)
    if state._owners_seen != n:
        owners: list[Reclaimable] = []
        mask = np.zeros(1 << 16, dtype=bool)
        for oid, o in enumerate(machine.owners):
            if o is not None and isinstance(o, Reclaimable):
                owners.append(o)
                mask[oid] = True
        state._owners = owners
        state._mask = mask
        state._owners_seen = n
    return state._owners


def _split(total: int, sizes: Sequence[int]) -> list[int]:
    """Share ``total`` in proportion to ``sizes`` (largest remainder; never above a size)."""
    whole = sum(sizes)
    if whole <= 0 or total <= 0:
        return [0] * len(sizes)
    if total >= whole:
        return list(sizes)
    raw = [total * s for s in sizes]
    shares = [r // whole for r in raw]
    left = total - sum(shares)
    order = sorted(range(len(sizes)), key=lambda i: -(raw[i] % whole))
    for i in order[:left]:
        shares[i] += 1
    return shares


def get_scan_count(machine: Machine, sc: ScanControl, anon: int, file: int, swap_ok: bool) -> dict[int, int]:
    """``get_scan_count()``: how many pages of each LRU to scan at ``sc.priority``.

    The kernel's cases in its order: anon not reclaimable (no swap room, ``may_swap``
    off) -> file only; priority 0 -> both whole lists (``SCAN_EQUAL``); file tiny
    (``file + free <= sum of the high watermarks``) -> anon only; otherwise
    ``SCAN_FRACT``: ``(size >> priority) * fraction // denominator``, rounded down as
    for the (online) root memcg, with ``fraction`` = ``swappiness`` for anon and
    ``200 - swappiness`` for file (what the v5.9+ cost formula gives when neither
    list has reclaim cost recorded).
    """
    p = sc.priority
    swappiness = machine.sysctl.swappiness
    if not swap_ok:
        return {ANON: 0, FILE: file >> p}
    if p == 0 and swappiness:
        return {ANON: anon, FILE: file}
    zones = _eligible_zones(machine, sc.reclaim_idx)
    free = sum(z.free_pages for z in zones)
    total_high = sum(z.watermark("high") for z in zones)
    if file + free <= total_high and anon >> p:
        return {ANON: anon >> p, FILE: 0}
    ap = swappiness
    fp = 200 - swappiness
    denominator = ap + fp
    return {ANON: (anon >> p) * ap // denominator, FILE: (file >> p) * fp // denominator}


def _count(machine: Machine, sc: ScanControl, scanned: dict[int, int], stolen: dict[int, int]) -> None:
    vm = machine.vmstat
    who = "kswapd" if sc.kswapd else "direct"
    total_scanned = scanned[ANON] + scanned[FILE]
    total_stolen = stolen[ANON] + stolen[FILE]
    if total_scanned:
        vm[f"pgscan_{who}"] += total_scanned
        vm["pgscan_anon"] += scanned[ANON]
        vm["pgscan_file"] += scanned[FILE]
    if total_stolen:
        vm[f"pgsteal_{who}"] += total_stolen
        vm["pgsteal_anon"] += stolen[ANON]
        vm["pgsteal_file"] += stolen[FILE]


def _shrink_lru_round(machine: Machine, sc: ScanControl, owners: list[Reclaimable]) -> tuple[int, int]:
    """One pass of ``shrink_lruvec`` + ``shrink_slab`` at ``sc.priority``: (scanned, reclaimed)."""
    state = reclaim_state(machine)
    swap = state.swap if sc.may_swap and state.swap.nr_free > 0 else None
    sizes = [o.lru_sizes() for o in owners]
    anon = sum(int(s.get(ANON, 0)) for s in sizes)
    file = sum(int(s.get(FILE, 0)) for s in sizes)
    targets = get_scan_count(machine, sc, anon, file, swap is not None)
    ctl = ShrinkControl(may_writepage=sc.may_writepage, swap=swap,
                        max_pfn=_max_pfn(machine, sc.reclaim_idx), kswapd=sc.kswapd)
    scanned: dict[int, int] = {ANON: 0, FILE: 0}
    stolen: dict[int, int] = {ANON: 0, FILE: 0}
    written = swapped = 0
    for kind in LRU_KINDS:
        shares = _split(targets[kind], [int(s.get(kind, 0)) for s in sizes])
        for owner, share in zip(owners, shares, strict=True):
            if share <= 0:
                continue
            res = owner.shrink(kind, share, ctl)
            if not isinstance(res, ShrinkResult):
                raise TypeError(f"{getattr(owner, 'name', owner)!r}.shrink returned {res!r}, not a ShrinkResult")
            res.check(getattr(owner, "name", type(owner).__name__), share)
            scanned[kind] += res.scanned
            stolen[kind] += res.reclaimed
            written += res.written
            swapped += res.swapped
    slab = shrink_slab(machine, sc.priority)
    _count(machine, sc, scanned, stolen)
    if written:
        machine.vmstat["pgpgout"] += written * (PAGE_SIZE // 1024)
    if written or swapped:
        machine.vmstat["nr_vmscan_write"] += written + swapped
    n_scanned = scanned[ANON] + scanned[FILE]
    n_reclaimed = stolen[ANON] + stolen[FILE] + slab
    sc.seconds += (n_scanned * COST_SCAN_PAGE + (n_reclaimed - swapped) * COST_RECLAIM_CLEAN
                   + written * COST_WRITEBACK_PAGE + swapped * COST_SWAP_OUT)
    sc.nr_scanned += n_scanned
    sc.nr_reclaimed += n_reclaimed
    sc.nr_written += written
    sc.nr_swapped += swapped
    return n_scanned, n_reclaimed


def in_reclaim_compaction(sc: ScanControl) -> bool:
    """``in_reclaim_compaction()``: reclaim on behalf of compaction for a high order."""
    return bool(sc.order) and (sc.order > PAGE_ALLOC_COSTLY_ORDER or sc.priority < DEF_PRIORITY - 2)


def should_continue_reclaim(machine: Machine, nr_reclaimed: int, sc: ScanControl) -> bool:
    """``should_continue_reclaim()``: for a high order, reclaim on until compaction has room.

    Stops when the last pass freed nothing, when any eligible zone lets compaction go
    ahead (or the allocation succeed), or when the inactive lists hold no more than
    ``compact_gap(order)`` pages.
    """
    if not in_reclaim_compaction(sc) or not nr_reclaimed:
        return False
    verdicts = [compaction_suitable(machine, z, sc.order, sc.reclaim_idx)
                for z in _eligible_zones(machine, sc.reclaim_idx)]
    if any(v is None for v in verdicts):
        return False  # no compaction module: CONFIG_COMPACTION=n, in_reclaim_compaction is false
    if any(v in ("success", "continue") for v in verdicts):
        return False
    sizes = [o.lru_sizes() for o in reclaimable_owners(machine)]
    inactive = sum(int(s.get(FILE, 0)) for s in sizes)
    if reclaim_state(machine).swap.nr_free > 0:
        inactive += sum(int(s.get(ANON, 0)) for s in sizes)
    return inactive > compact_gap(sc.order)


def shrink_node(machine: Machine, sc: ScanControl) -> int:
    """``shrink_node()``: reclaim from every reclaimable owner at ``sc.priority``; returns
    the pages reclaimed by this call.  Progress resets ``kswapd_failures``."""
    owners = reclaimable_owners(machine)
    state = reclaim_state(machine)
    start_reclaimed = sc.nr_reclaimed
    start_seconds = sc.seconds
    state.in_reclaim += 1
    try:
        while True:
            _, got = _shrink_lru_round(machine, sc, owners)
            if got:
                state.kswapd_failures = 0
            if not should_continue_reclaim(machine, got, sc):
                break
    finally:
        state.in_reclaim -= 1
    spent = sc.seconds - start_seconds
    if sc.kswapd:
        state.kswapd_seconds += spent
    else:
        state.direct_seconds += spent
    return sc.nr_reclaimed - start_reclaimed


def reclaim_pages(machine: Machine, nr_to_reclaim: int, *, priority: int = DEF_PRIORITY,
                  may_writepage: bool = True, may_swap: bool = True, kswapd: bool = False) -> ReclaimStats:
    """Reclaim about ``nr_to_reclaim`` pages, lowering the priority as the kernel does, with
    the given permissions (a convenience for commands, workloads and tests)."""
    if nr_to_reclaim < 0:
        raise ValueError(f"nr_to_reclaim must be >= 0, got {nr_to_reclaim}")
    if not 0 <= priority <= DEF_PRIORITY:
        raise ValueError(f"priority must be in 0..{DEF_PRIORITY}, got {priority}")
    sc = ScanControl(nr_to_reclaim=nr_to_reclaim, priority=priority, may_writepage=may_writepage,
                     may_swap=may_swap, kswapd=kswapd)
    while sc.nr_reclaimed < nr_to_reclaim:
        shrink_node(machine, sc)
        if sc.priority == 0:
            break
        sc.priority -= 1
    return ReclaimStats(scanned=sc.nr_scanned, reclaimed=sc.nr_reclaimed, written=sc.nr_written,
                        swapped=sc.nr_swapped, seconds=sc.seconds)


# --------------------------------------------------------------------------- direct reclaim
def compaction_ready(machine: Machine, zone: Zone, sc: ScanControl) -> bool:
    """``compaction_ready()``: compaction can already run with a buffer, so stop reclaiming."""
    verdict = compaction_suitable(machine, zone, sc.order, sc.reclaim_idx)
    if verdict is None or verdict == "skipped":
        return False
    if verdict == "success":
        return True
    mark = zone.watermark("high") + compact_gap(sc.order)
    return machine.buddy.zone_watermark_ok(zone, 0, mark, sc.reclaim_idx, 0)


def try_to_free_pages(machine: Machine, order: int, highest_zoneidx: int) -> ScanControl:
    """Direct reclaim (``try_to_free_pages`` -> ``do_try_to_free_pages``) for a request of
    ``order`` whose highest zone is ``highest_zoneidx``.

    Counts ``allocstall_<zone>`` for the request's highest zone (as the kernel does,
    even when that zone is empty).  Returns the scan control; ``nr_reclaimed`` is the
    progress (1 when nothing was reclaimed because compaction is ready).
    """
    sc = ScanControl(nr_to_reclaim=SWAP_CLUSTER_MAX, order=order, reclaim_idx=int(highest_zoneidx),
                     may_writepage=False, may_swap=True, kswapd=False)
    machine.vmstat[f"allocstall_{ZONE_VMSTAT_NAMES[ZoneType(int(highest_zoneidx))]}"] += 1
    zones = _eligible_zones(machine, sc.reclaim_idx)
    for priority in range(DEF_PRIORITY, -1, -1):
        sc.priority = priority
        if order > PAGE_ALLOC_COSTLY_ORDER and zones and all(compaction_ready(machine, z, sc) for z in zones):
            sc.compaction_ready = True
        else:
            shrink_node(machine, sc)
        if sc.nr_reclaimed >= sc.nr_to_reclaim or sc.compaction_ready:
            break
    if not sc.nr_reclaimed and sc.compaction_ready:
        sc.nr_reclaimed = 1  # "progress": the caller should go on to compaction
    return sc


# --------------------------------------------------------------------------- kswapd's reclaim
def pgdat_balanced(machine: Machine, order: int, highest_zoneidx: int) -> bool:
    """``pgdat_balanced()``: one eligible zone meets its high watermark at this order.

    A node with no managed zone up to ``highest_zoneidx`` needs no balancing.
    """
    zones = _eligible_zones(machine, highest_zoneidx)
    if not zones:
        return True
    buddy = machine.buddy
    return any(buddy.zone_watermark_ok(z, order, z.watermark("high"), highest_zoneidx, 0) for z in zones)


def kswapd_shrink_node(machine: Machine, sc: ScanControl) -> bool:
    """``kswapd_shrink_node()``: reclaim the sum of the eligible zones' high watermarks;
    drop to order 0 once ``compact_gap(order)`` pages were reclaimed (compaction does the
    rest).  True when enough was scanned that the priority need not rise."""
    sc.nr_to_reclaim = sum(max(z.watermark("high"), SWAP_CLUSTER_MAX)
                           for z in _eligible_zones(machine, sc.reclaim_idx))
    shrink_node(machine, sc)
    if sc.order and sc.nr_reclaimed >= compact_gap(sc.order):
        sc.order = 0
    return sc.nr_scanned >= sc.nr_to_reclaim


def balance_pgdat(machine: Machine, order: int, highest_zoneidx: int) -> tuple[int, ScanControl]:
    """``balance_pgdat()``: kswapd's reclaim until the node is balanced; returns the order
    it finished at (0 if it fell back from a high order) and its scan control."""
    sc = ScanControl(nr_to_reclaim=0, order=order, reclaim_idx=int(highest_zoneidx),
                     may_writepage=True, may_swap=True, kswapd=True)
    machine.vmstat["pageoutrun"] += 1
    state = reclaim_state(machine)
    sc.priority = DEF_PRIORITY
    balanced = False
    while True:
        before = sc.nr_reclaimed
        if pgdat_balanced(machine, sc.order, sc.reclaim_idx):
            balanced = True
            break
        sc.nr_scanned = 0
        raise_priority = not kswapd_shrink_node(machine, sc)
        progress = sc.nr_reclaimed - before
        if raise_priority or not progress:
            sc.priority -= 1
        if sc.priority < 1:
            break
    if not balanced and not sc.nr_reclaimed:
        state.kswapd_failures += 1
    return sc.order, sc


def zone_reclaimable_pages(machine: Machine, zone: Zone, owner_mask: np.ndarray | None = None) -> int:
    """``zone_reclaimable_pages()``: LRU pages in the zone held by reclaimable owners; anon
    pages only while swap has room."""
    if owner_mask is None:
        owner_mask = reclaimable_owner_mask(machine)
    pages = machine.pages
    sl = slice(zone.start_pfn, zone.end_pfn)
    kind = pages.kind[sl]
    mine = owner_mask[pages.owner[sl]]
    n = int(np.count_nonzero(mine & (kind == FILE)))
    if reclaim_state(machine).swap.nr_free > 0:
        n += int(np.count_nonzero(mine & (kind == ANON)))
    return n


def reclaimable_owner_mask(machine: Machine) -> np.ndarray:
    """A lookup table owner id -> holds reclaimable LRU pages (sized for any uint16 id)."""
    reclaimable_owners(machine)
    mask = reclaim_state(machine)._mask
    assert mask is not None
    return mask


__all__ = [
    "DEF_PRIORITY",
    "MAX_RECLAIM_RETRIES",
    "LruOwner",
    "ReclaimState",
    "ReclaimStats",
    "Reclaimable",
    "ScanControl",
    "ShrinkControl",
    "ShrinkResult",
    "Shrinker",
    "SwapDevice",
    "SwapSpace",
    "balance_pgdat",
    "compact_gap",
    "compact_result_name",
    "get_scan_count",
    "pgdat_balanced",
    "reclaim_pages",
    "reclaim_state",
    "register_shrinker",
    "register_swap_device",
    "shrink_node",
    "shrink_slab",
    "swap_devices",
    "try_to_free_pages",
    "zone_reclaimable_pages",
]
