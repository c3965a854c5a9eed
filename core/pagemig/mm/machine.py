"""The simulated machine: one node's memory, zones, buddy allocator, owners and counters
(the allocator's entry points of mm/page_alloc.c, v6.1, and the node they work on).

``Machine`` is the mm layer's public face.  Drivers and workloads allocate and free
through it; the slow path (reclaim, compaction) plugs in through :class:`SlowPath`
so that the allocator itself knows nothing of them, as ``get_page_from_freelist``
knows nothing of ``__alloc_pages_slowpath``.  :func:`pagemig.mm.mm_init.boot` builds
the complete kernel; ``Machine(config)`` alone is the page allocator.

The machine owns the node's state that reclaim, the daemons and compaction work on
(:mod:`pagemig.mm.node`), the swap space and the shrinker list (the kernel's
``swap_info[]`` and ``shrinker_list``), all built here, so that every module of mm
that acts on them sits above this one and the arrows point one way.
"""

from __future__ import annotations

import operator
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, NoReturn

import attrs
import numpy as np

from pagemig.mm.buddy import AllocContext, BuddyAllocator
from pagemig.mm.gfp import (
    ALLOC_NO_WATERMARKS,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MIN,
    GFP_BIT_COMP,
    GFP_BIT_NOMEMALLOC,
    NR_MIGRATETYPES,
    ZoneType,
    gfp_to_alloc_flags,
)
from pagemig.mm.movable import MovableRegistry
from pagemig.mm.node import CompactionState, Kcompactd, Kswapd, ReclaimState
from pagemig.mm.oom_kill import OomNotifierChain
from pagemig.mm.owner import Owner
from pagemig.mm.pages import (
    BUDDY,
    DRIVER,
    FREE,
    HEAD,
    ISOLATED,
    MAX_ORDER,
    NR_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGE_SIZE,
    RESERVED,
    TAIL,
    PageArrays,
    PageFlag,
    PageKind,
)
from pagemig.mm.pcp import ZonePcp
from pagemig.mm.shrinker import Shrinker
from pagemig.mm.swap import SwapSpace
from pagemig.mm.sysctl import Sysctl
from pagemig.mm.zone import (
    Zone,
    ZoneSpec,
    min_free_kbytes_for,
    reset_cached_positions,
    setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks,
)

MiB = 1 << 20
GiB = 1 << 30
PAGES_PER_MIB = MiB // PAGE_SIZE

_SPECIAL = ISOLATED | HEAD | TAIL  # flags that send free_pages() off its fast path
_pack_u16 = struct.Struct("=H").pack  # an owner id as the owner column's bytes
# Byte patterns for the multi-page paths: zeros of 1, 2 and 4 bytes a page per order
# (kind/flags, owner, private), and the tail pages' flags of a compound page.
_ZEROS = [[bytes(width << order) for order in range(MAX_ORDER + 1)] for width in (1, 2, 4)]
_PF_MEMALLOC_TRIES = (ALLOC_WMARK_LOW, ALLOC_WMARK_MIN, ALLOC_NO_WATERMARKS)
_TAILS = [bytes([TAIL]) * ((1 << order) - 1) for order in range(MAX_ORDER + 1)]


@attrs.frozen
class MachineConfig:
    """How the machine is built.  ``reserved`` ranges (start_pfn, nr_pages) are memblock
    reservations the buddy allocator never sees (kernel image, memmap, firmware)."""

    zones: tuple[ZoneSpec, ...]
    pageblock_order: int = 9
    min_free_kbytes: int | None = None
    reserved: tuple[tuple[int, int], ...] = ()
    sysctl: dict[str, int] = attrs.field(factory=dict)
    #: CPUs, each with per-cpu page lists in every zone (mm/pcp.py); 0: no per-cpu lists,
    #: every allocation and free goes straight to the buddy lists.
    cpus: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    @property
    def nr_pages(self) -> int:
        return max(z.end_pfn for z in self.zones)

    @classmethod
    def x86_64_guest(cls, mem_bytes: int, **kw: Any) -> MachineConfig:
        """A KVM/QEMU x86-64 guest: DMA below 16 MiB, DMA32 below 4 GiB, Normal above.

        Reserved as a guest kernel reserves them: pfn 0 (BIOS), the kernel image
        loaded at 16 MiB (about 24 MiB of text, data and bss), and the memmap
        (64 bytes per page) that memblock places at the top of memory.
        """
        nr = mem_bytes // PAGE_SIZE
        dma_end = min(nr, 16 * PAGES_PER_MIB)
        dma32_end = min(nr, 4 * GiB // PAGE_SIZE)
        zones = [ZoneSpec("DMA", 0, dma_end)]
        if dma32_end > dma_end:
            zones.append(ZoneSpec("DMA32", dma_end, dma32_end - dma_end))
        if nr > dma32_end:
            zones.append(ZoneSpec("Normal", dma32_end, nr - dma32_end))
        memmap = nr * 64 // PAGE_SIZE
        reserved = [(0, 1), (16 * PAGES_PER_MIB, 24 * PAGES_PER_MIB), (nr - memmap, memmap)]
        return cls(zones=tuple(zones), reserved=tuple(r for r in reserved if r[0] + r[1] <= nr), **kw)

    @classmethod
    def arm32_device(cls, mem_bytes: int, **kw: Any) -> MachineConfig:
        """A 32-bit ARM device: one Normal zone, pageblock order 10 (no hugetlb), the kernel
        image at the start of RAM and a 32-byte-per-page memmap at the top."""
        nr = mem_bytes // PAGE_SIZE
        memmap = nr * 32 // PAGE_SIZE
        kw.setdefault("pageblock_order", 10)
        return cls(zones=(ZoneSpec("Normal", 0, nr),),
                   reserved=((0, 16 * PAGES_PER_MIB), (nr - memmap, memmap)), **kw)


def _sorted_unique(arr: np.ndarray, lo: int, hi: int, who: str) -> np.ndarray:
    """arr sorted, or ValueError naming a pfn listed twice.  Counting beats sorting when the
    pfns are dense in their range (a bulk allocation's are): O(range) instead of O(n log n)."""
    span = hi - lo + 1
    if span <= 16 * len(arr):
        counts = np.bincount(arr - lo, minlength=span)
        if counts.max() > 1:
            raise ValueError(f"{who}: pfn {int(np.argmax(counts > 1)) + lo:#x} is listed twice (double free)")
        return np.flatnonzero(counts) + lo
    out = np.sort(arr)
    dup = np.flatnonzero(out[1:] == out[:-1])
    if len(dup):
        raise ValueError(f"{who}: pfn {int(out[dup[0]]):#x} is listed twice (double free)")
    return out


class SlowPath:
    """The seam for ``__alloc_pages_slowpath``.  This default only wakes nobody and retries
    at the min watermark; the compaction issue's slow path adds reclaim and compaction."""

    def wake_kswapd(self, machine: Machine, order: int, ac: AllocContext) -> None:
        """Nothing to wake in the bare allocator."""

    def alloc_slowpath(self, machine: Machine, order: int, ac: AllocContext) -> tuple[int, Zone | None]:
        self.wake_kswapd(machine, order, ac)
        return machine.buddy.get_page_from_freelist(order, gfp_to_alloc_flags(ac.gfp), ac)


class ImportedOwner(Owner):
    """Holds the in-use pages of an imported snapshot: they are what the real machine had,
    nobody here wrote them, so there is no content to check, but compaction may move them."""

    name = "imported"

    def pages_migrated(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Nothing to follow: the core moved kind and owner, and nobody references these pages."""


class Machine:
    """One node of simulated memory.

    Built alone, it is the page allocator: its slow path only retries at the min
    watermark (:class:`SlowPath`), nothing wakes kswapd, nothing compacts; what the
    allocator's unit tests and the benchmarks want.  :func:`pagemig.mm.mm_init.boot`
    makes the complete kernel.
    """

    def __init__(self, config: MachineConfig) -> None:
        self.config = config
        nr = config.nr_pages
        self.pages = PageArrays(nr)
        self.pages.kind[:] = RESERVED
        self.zones = [Zone(spec, i, config.pageblock_order)
                      for i, spec in enumerate(sorted(config.zones, key=lambda s: s.start_pfn))]
        self.buddy = BuddyAllocator(self.pages, self.zones, config.pageblock_order)
        if config.cpus:
            for zone in self.zones:
                zone.pcp = ZonePcp(self.buddy, zone, config.cpus, config.pageblock_order)
            # every order-0 call goes through get_page_from_freelist's rmqueue (pcp first):
            # the inlined order-0 path and the NumPy bulk forms know no per-cpu lists
            self.alloc_pages = self._alloc_pages_pcp  # type: ignore[method-assign]
            self.alloc_pages_bulk = self._alloc_pages_bulk_pcp  # type: ignore[method-assign]
            self.free_pages_bulk = self._free_pages_bulk_pcp  # type: ignore[method-assign]
        self.pageblock_order = config.pageblock_order
        self.owners: list[Owner | None] = [None]  # id 0: nobody
        self.movable = MovableRegistry(self)
        self.slowpath: SlowPath = SlowPath()
        self.vmstat: Counter[str] = Counter()  # event counters, named as /proc/vmstat names them
        self.sysctl = Sysctl(**config.sysctl)
        # min_free_kbytes_sysctl_handler, watermark_scale_factor_sysctl_handler (mm/page_alloc.c)
        self._sysctl_handlers: dict[str, list[Callable[[], None]]] = {
            "min_free_kbytes": [self.setup_watermarks],
            "watermark_scale_factor": [self.setup_watermarks],
            "percpu_pagelist_high_fraction": [self._zone_pcp_update],  # its sysctl handler
        }
        self.now = 0.0  # simulated seconds, advanced by the event loop
        self.isolated_batches = 0  # compactions in progress that hold isolated pages
        # The plugin host's hook relay, where compaction finds its policy hooks (set by a run).
        # Any: a pluggy HookRelay, whose hook attributes are made at run time, so no static
        # type describes them.
        self.hook: Any = None
        self.stall_seconds = 0.0  # simulated time charged to the allocation in progress
        # What reclaim, the daemons and compaction work on (struct pglist_data's parts)
        self.swap = SwapSpace(self.vmstat)
        self.shrinkers: list[Shrinker] = []
        self.oom_notify_list = OomNotifierChain()
        self.reclaim = ReclaimState()
        self.kswapd = Kswapd()
        self.compaction = CompactionState(kcompactd=Kcompactd(highest_zoneidx=int(self.zones[-1].zone_type)))
        self._boot(config)

    # ----------------------------------------------------------------- boot
    def _boot(self, config: MachineConfig) -> None:
        kind = self.pages.kind
        for zone in self.zones:
            kind[zone.start_pfn:zone.end_pfn] = FREE
        for start, n in config.reserved:
            kind[start:start + n] = RESERVED
        for zone in self.zones:
            zk = kind[zone.start_pfn:zone.end_pfn]
            zone.managed_pages = int(np.count_nonzero(zk == FREE))
            self._free_free_runs(zone)
        lowmem_kbytes = sum(z.managed_pages for z in self.zones
                            if z.zone_type not in (ZoneType.HIGHMEM, ZoneType.MOVABLE)) * (PAGE_SIZE // 1024)
        if config.min_free_kbytes is not None:
            self.sysctl.min_free_kbytes = config.min_free_kbytes
        elif not self.sysctl.min_free_kbytes:
            self.sysctl.min_free_kbytes = min_free_kbytes_for(lowmem_kbytes)
        self.setup_watermarks()

    def _free_free_runs(self, zone: Zone) -> None:
        """``memblock_free_all``: hand every run of FREE-marked pages of a zone to the buddy allocator.

        The kernel frees each range lowest pfn first in MAX_ORDER-aligned blocks with
        ``FPI_TO_TAIL`` (``__free_pages_core``), so every free list holds its blocks lowest
        pfn at the head and a fresh machine allocates from the bottom.  ``lowest_first``
        reaches the same lists (same blocks, same order on each list) by freeing top down
        to the heads, which the dict-backed lists can do cheaply."""
        zk = self.pages.kind[zone.start_pfn:zone.end_pfn] == FREE
        if not zk.any():
            return
        edges = np.flatnonzero(np.diff(np.concatenate(([False], zk, [False])).astype(np.int8)))
        for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            self.buddy.free_block_range(zone, zone.start_pfn + a, zone.start_pfn + b, lowest_first=True)

    def setup_watermarks(self) -> None:
        setup_per_zone_wmarks(self.zones, self.sysctl.min_free_kbytes, self.sysctl.watermark_scale_factor)
        setup_per_zone_lowmem_reserve(self.zones)
        self._zone_pcp_update()  # setup_per_zone_wmarks: the pcp high and batch follow the marks

    def _zone_pcp_update(self) -> None:
        for zone in self.zones:
            if zone.pcp is not None:
                zone.pcp.update(self.sysctl.percpu_pagelist_high_fraction)

    # ----------------------------------------------------------------- per-cpu lists
    @property
    def current_cpu(self) -> int:
        """The CPU whose per-cpu lists allocations and frees use (the running task's)."""
        return self.buddy.cpu

    @current_cpu.setter
    def current_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < max(1, self.config.cpus):
            raise ValueError(f"cpu {cpu} is outside 0..{max(1, self.config.cpus) - 1} (machine.cpus)")
        self.buddy.cpu = cpu

    def drain_all_pages(self, zone: Zone | None = None) -> None:
        """``drain_all_pages(zone)``: every CPU's per-cpu pages (of one zone, or all) back to
        the buddy lists, as the kernel does before direct reclaim retries, for
        alloc_contig_range and memory offline."""
        for z in self.zones if zone is None else (zone,):
            if z.pcp is not None:
                z.pcp.drain_all()

    @property
    def nr_pcp_pages(self) -> int:
        """Pages on per-cpu lists, all zones and CPUs: free to the kernel, not in NR_FREE_PAGES."""
        return sum(z.pcp.count for z in self.zones if z.pcp is not None)

    def set_sysctl(self, name: str, value: int) -> None:
        """``echo value > /proc/sys/vm/name``, then the tunable's handlers (its ``proc_handler``):
        watermarks follow their tunables at once, and whatever else registered reacts."""
        if not hasattr(self.sysctl, name):
            raise KeyError(name)
        setattr(self.sysctl, name, int(value))
        for handler in self._sysctl_handlers.get(name, ()):
            handler()

    def register_sysctl_handler(self, name: str, handler: Callable[[], None]) -> None:
        """Run ``handler`` after every write of tunable ``name``.  Subsystems above the
        allocator (compaction) register theirs at boot, so that the allocator's machine
        never imports them."""
        if not hasattr(self.sysctl, name):
            raise KeyError(name)
        self._sysctl_handlers.setdefault(name, []).append(handler)

    # ----------------------------------------------------------------- owners
    def register_owner(self, owner: Owner) -> int:
        if len(self.owners) >= 0xFFFF:
            raise RuntimeError("too many owners (the owner column is 16 bits)")
        owner.owner_id = len(self.owners)
        self.owners.append(owner)
        return owner.owner_id

    # ----------------------------------------------------------------- geometry
    @property
    def nr_pages(self) -> int:
        return self.pages.nr_pages

    @property
    def pageblock_nr_pages(self) -> int:
        return 1 << self.pageblock_order

    def zone_of(self, pfn: int) -> Zone:
        """``page_zone()``: the zone pfn lies in (ValueError in a hole); the buddy allocator's lookup."""
        return self.buddy.zone_of(pfn)

    def zone_by_name(self, name: str) -> Zone:
        for zone in self.zones:
            if zone.name.lower() == name.lower():
                return zone
        raise KeyError(name)

    @property
    def nr_free_pages(self) -> int:
        """NR_FREE_PAGES of the node.  (It was once a property named ``free_pages``, which
        the method ``free_pages(pfn, order)`` below silently replaced.)"""
        return sum(z.free_pages for z in self.zones)

    @property
    def managed_pages(self) -> int:
        return sum(z.managed_pages for z in self.zones)

    def adjust_managed_page_count(self, pfn: int, count: int) -> None:
        """``adjust_managed_page_count(page, count)``: the zone of ``pfn`` manages ``count``
        pages more (fewer, when negative); a balloon that hands pages to the host takes
        them out of what the guest counts as its memory, and back when it returns them."""
        self.buddy.zone_of(pfn).managed_pages += count

    # ----------------------------------------------------------------- allocation
    def alloc_pages(self, gfp: int, order: int, owner: int, kind: int = PageKind.KERNEL) -> int:
        """``alloc_pages(gfp, order)`` for ``owner``: returns the first pfn, or -1 on failure.

        The pages come back with kind and owner set; the owner writes their content.
        Order 0 is the hot path: ``get_page_from_freelist`` at the low watermark with
        ``zone_watermark_fast``'s order-0 test, and ``__rmqueue_smallest``'s first
        try, are inlined here (a Python call costs more than the work it wraps).
        The rules are the kernel's either way; the tests hold both paths to them.
        """
        buddy = self.buddy
        ac = buddy._ac_cache.get(gfp)
        if ac is None:
            ac = buddy.alloc_context(gfp)
        pages = self.pages
        if order == 0:
            mt = ac.migratetype
            hz = ac.highest_zoneidx
            for zone in ac.zonelist:
                if zone.free_pages <= zone.wmark_low + zone.watermark_boost + zone.lowmem_reserve[hz]:
                    continue
                area = zone.free_area[0][mt]
                if area:
                    pfn = area.popitem()[0]
                    zone.free_pages -= 1
                    pages._flags[pfn] = 0  # private is 0 already: the block's order
                else:
                    pfn = buddy.rmqueue(zone, 0, mt)
                    if pfn < 0:
                        continue
                try:
                    pages._kind[pfn] = kind
                    pages._owner[pfn] = owner
                except (TypeError, ValueError, OverflowError) as exc:
                    self._undo_alloc(zone, pfn, 0, kind, owner, exc)
                zone.pgalloc += 1
                return pfn
            pfn, zone = self.slowpath.alloc_slowpath(self, 0, ac)  # type: ignore[assignment]  # None: pfn < 0
            if pfn < 0:
                self.vmstat["pgalloc_fail"] += 1
                return -1
            assert zone is not None
            try:
                pages._kind[pfn] = kind
                pages._owner[pfn] = owner
            except (TypeError, ValueError, OverflowError) as exc:
                self._undo_alloc(zone, pfn, 0, kind, owner, exc)
            zone.pgalloc += 1
            return pfn
        if not 0 < order <= MAX_ORDER:
            raise ValueError(f"alloc_pages: order {order} is outside 0..{MAX_ORDER}")
        pfn, zone = buddy.get_page_from_freelist(order, ALLOC_WMARK_LOW, ac)  # type: ignore[assignment]  # as below
        if pfn < 0:
            pfn, zone = self.slowpath.alloc_slowpath(self, order, ac)  # type: ignore[assignment]  # None: pfn < 0
            if pfn < 0:
                self.vmstat["pgalloc_fail"] += 1
                return -1
        assert zone is not None
        n = 1 << order
        end = pfn + n
        try:
            pages._kind[pfn:end] = bytes((kind,)) * n
            pages._owner_b[2 * pfn:2 * end] = _pack_u16(owner) * n
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            self._undo_alloc(zone, pfn, order, kind, owner, exc)
        if gfp & GFP_BIT_COMP:
            pages._flags[pfn + 1:end] = _TAILS[order]
            pages._flags[pfn] = HEAD
            pages._private[pfn + 1] = order
        zone.pgalloc += n
        return pfn

    def alloc_page_in_reclaim(self, gfp: int, owner: int, kind: int = PageKind.DRIVER) -> int:
        """One page for an allocation made from inside reclaim (the task has ``PF_MEMALLOC``),
        such as a swap device storing a page it is handed: returns its pfn or -1.

        The free lists at the low watermark, then the min watermark, then (unless
        ``__GFP_NOMEMALLOC``) ignoring watermarks, as ``__alloc_pages_slowpath`` lets a
        ``PF_MEMALLOC`` task; it never enters the slow path (no kswapd wake-up, no
        reclaim or compaction: reclaim must not recurse).  A failure counts ``pgalloc_fail``.
        """
        buddy = self.buddy
        ac = buddy.alloc_context(gfp)
        tries = (ALLOC_WMARK_LOW, ALLOC_WMARK_MIN) if gfp & GFP_BIT_NOMEMALLOC else _PF_MEMALLOC_TRIES
        for flags in tries:
            pfn, zone = buddy.get_page_from_freelist(0, flags, ac)
            if pfn >= 0:
                assert zone is not None
                pages = self.pages
                try:
                    pages._kind[pfn] = kind
                    pages._owner[pfn] = owner
                except (TypeError, ValueError, OverflowError) as exc:
                    self._undo_alloc(zone, pfn, 0, kind, owner, exc)
                zone.pgalloc += 1
                return pfn
        self.vmstat["pgalloc_fail"] += 1
        return -1

    def _alloc_pages_pcp(self, gfp: int, order: int, owner: int, kind: int = PageKind.KERNEL) -> int:
        """alloc_pages() of a machine with per-cpu lists: every order through
        ``get_page_from_freelist`` (whose rmqueue tries the CPU's list first)."""
        if not 0 <= order <= MAX_ORDER:
            raise ValueError(f"alloc_pages: order {order} is outside 0..{MAX_ORDER}")
        buddy = self.buddy
        ac = buddy._ac_cache.get(gfp)
        if ac is None:
            ac = buddy.alloc_context(gfp)
        pfn, zone = buddy.get_page_from_freelist(order, ALLOC_WMARK_LOW, ac)
        if pfn < 0:
            pfn, zone = self.slowpath.alloc_slowpath(self, order, ac)
            if pfn < 0:
                self.vmstat["pgalloc_fail"] += 1
                return -1
        assert zone is not None
        pages = self.pages
        n = 1 << order
        end = pfn + n
        try:
            pages._kind[pfn:end] = bytes((kind,)) * n
            pages._owner_b[2 * pfn:2 * end] = _pack_u16(owner) * n
        except (TypeError, ValueError, OverflowError, struct.error) as exc:
            self._undo_alloc(zone, pfn, order, kind, owner, exc)
        if order and gfp & GFP_BIT_COMP:
            pages._flags[pfn + 1:end] = _TAILS[order]
            pages._flags[pfn] = HEAD
            pages._private[pfn + 1] = order
        zone.pgalloc += n
        return pfn

    def _alloc_pages_bulk_pcp(self, gfp: int, nr: int, owner: int, kind: int = PageKind.KERNEL) -> np.ndarray:
        """alloc_pages_bulk() with per-cpu lists: ``nr`` single allocations, up to the first failure."""
        if nr < 0:
            raise ValueError(f"alloc_pages_bulk: nr = {nr} is negative")
        out = []
        for _ in range(nr):
            pfn = self._alloc_pages_pcp(gfp, 0, owner, kind)
            if pfn < 0:
                break
            out.append(pfn)
        return np.array(out, dtype=np.int64)

    def _free_pages_bulk_pcp(self, pfns: Iterable[int] | np.ndarray) -> None:
        """free_pages_bulk() with per-cpu lists: checked as a whole, then freed one by one
        in ascending order (through the CPU's lists)."""
        arr = np.asarray(pfns if isinstance(pfns, np.ndarray) else list(pfns), dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"free_pages_bulk: expected a 1-d sequence of pfns, got shape {arr.shape}")
        arr = np.sort(arr)
        if len(arr) > 1 and (np.diff(arr) == 0).any():
            raise ValueError("free_pages_bulk: a pfn is listed twice")
        if len(arr) and (arr[0] < 0 or arr[-1] >= self.pages.nr_pages):
            raise ValueError(f"free_pages_bulk: a pfn is outside memory (0..{self.pages.nr_pages - 1})")
        k = self.pages.kind[arr]
        if ((k == FREE) | (k == RESERVED)).any():
            p = int(arr[np.flatnonzero((k == FREE) | (k == RESERVED))[0]])
            raise ValueError(f"free_pages_bulk: pfn {p:#x} is {PageKind(self.pages.kind[p]).name} (double free?)")
        f = self.pages.flags[arr]
        if ((f & (HEAD | TAIL)) != 0).any():
            raise ValueError("free_pages_bulk: a pfn is part of a compound page")
        for pfn in arr.tolist():
            self.free_pages(pfn, 0)

    def _undo_alloc(self, zone: Zone, pfn: int, order: int, kind: object, owner: object,
                    exc: Exception) -> NoReturn:
        """alloc_pages() was given a kind or owner its column cannot hold: give the block back
        (it merges where it was split from) and say so, so that a bad call loses no page."""
        n = 1 << order
        pages = self.pages
        pages.kind[pfn:pfn + n] = FREE
        pages.flags[pfn:pfn + n] = 0
        pages.owner[pfn:pfn + n] = 0
        pages.private[pfn:pfn + n] = 0
        self.buddy.free_one_page(zone, pfn, order, self.buddy._pb_mt[pfn >> self.pageblock_order])
        raise ValueError(f"alloc_pages: kind {kind!r} / owner {owner!r} do not fit the page columns "
                         f"(kind 0..255, owner 0..65535): {exc}") from exc

    def free_pages(self, pfn: int, order: int = 0) -> None:
        """``__free_pages(page, order)``.  A driver page freed while compaction holds it
        isolated is not freed yet: it becomes an orphan that the migration releases.

        Bad calls raise ValueError before anything changes: a pfn outside memory, a
        page that is free or reserved (double free), an order that does not match the
        block (misaligned, past the zone's end, not the compound page's order, a
        compound page's tail, any free page inside the block).
        """
        pages = self.pages
        if not 0 <= pfn < pages.nr_pages:
            raise ValueError(f"free_pages: pfn {pfn} is outside memory (0..{pages.nr_pages - 1})")
        k = pages._kind[pfn]
        if k == FREE or k == RESERVED:  # noqa: SIM109 - two compares beat building a tuple of globals
            raise ValueError(f"free_pages: pfn {pfn:#x} is {PageKind(k).name} (double free?)")
        flags = pages._flags
        f = flags[pfn]
        if f & _SPECIAL and self._free_special(pfn, order, f, k):
            return
        buddy = self.buddy
        pbo = buddy.pageblock_order
        zone = buddy._block_zone[pfn >> pbo] or buddy.zone_of(pfn)
        if order == 0:
            if zone.pcp is not None:  # free_unref_page(): onto this CPU's list
                pages._kind[pfn] = FREE
                pages._private[pfn] = 0
                zone.pgfree += 1
                zone.pcp.free_unref_page(buddy.cpu, pfn, 0)
                return
            # __free_one_page() for one page, inlined: most order-0 frees in fragmented memory
            # find no free buddy and end here; a merge goes on in buddy.free_one_page at order 1.
            pages._kind[pfn] = FREE
            private = pages._private
            private[pfn] = 0
            mt = buddy._pb_mt[pfn >> pbo]
            zone.pgfree += 1
            b = pfn ^ 1
            if not (zone.start_pfn <= b < zone.end_pfn and flags[b] & BUDDY and private[b] == 0):
                flags[pfn] = BUDDY
                pages._owner[pfn] = mt
                zone.free_area[0][mt][pfn] = None
                zone.free_pages += 1
                return
            owner = pages._owner
            del zone.free_area[0][owner[b]][b]
            flags[b] = 0
            owner[b] = 0
            flags[pfn] = 0
            owner[pfn] = 0
            zone.free_pages -= 1  # the buddy's page, counted again in the order-1 block
            buddy.free_one_page(zone, pfn & ~1, 1, mt)
            return
        if not 0 < order <= MAX_ORDER:
            raise ValueError(f"free_pages: order {order} is outside 0..{MAX_ORDER}")
        n = 1 << order
        end = pfn + n
        if pfn & (n - 1) or end > zone.end_pfn:
            raise ValueError(f"free_pages: pfn {pfn:#x} is not the start of an order-{order} block in {zone.name}")
        kb = pages._kind_buf
        if kb.find(FREE, pfn, end) >= 0 or kb.find(RESERVED, pfn, end) >= 0:
            bad = kb.find(FREE, pfn, end)
            bad = bad if bad >= 0 else kb.find(RESERVED, pfn, end)
            raise ValueError(f"free_pages: the order-{order} block at {pfn:#x} holds pfn {bad:#x}, which is "
                             f"{PageKind(kb[bad]).name} (double free or wrong order?)")
        pages._kind[pfn:end] = _ZEROS[0][order]
        flags[pfn:end] = _ZEROS[0][order]
        pages._owner_b[2 * pfn:2 * end] = _ZEROS[1][order]
        pages._private_b[4 * pfn:4 * end] = _ZEROS[2][order]
        zone.pgfree += n
        if zone.pcp is not None and (order <= PAGE_ALLOC_COSTLY_ORDER or order == pbo):
            zone.pcp.free_unref_page(buddy.cpu, pfn, order)
            return
        buddy.free_one_page(zone, pfn, order, buddy._pb_mt[pfn >> pbo])

    def _free_special(self, pfn: int, order: int, f: int, k: int) -> bool:
        """free_pages() of a page that is isolated or part of a compound page: check the
        call, and orphan an isolated driver page.  True when the page is dealt with."""
        pages = self.pages
        if f & ISOLATED:
            if k != DRIVER or order != 0:
                raise ValueError(f"free_pages: pfn {pfn:#x} is isolated by compaction")
            pages._owner[pfn] = 0
            pages._flags[pfn] &= ~int(PageFlag.MOVABLE) & 0xFF
            return True
        if f & TAIL:
            raise ValueError(f"free_pages: pfn {pfn:#x} is a tail of a compound page; free its head")
        if order == 0 or pfn + 1 >= pages.nr_pages or pages._private[pfn + 1] != order:
            got = pages._private[pfn + 1] if pfn + 1 < pages.nr_pages else "?"
            raise ValueError(f"free_pages: pfn {pfn:#x} heads a compound page of order {got}, "
                             f"freed as order {order}")
        return False

    def release_orphan(self, pfn: int) -> None:
        """Free a driver page that its driver freed while it was isolated."""
        pages = self.pages
        pages._flags[pfn] = 0
        pages._owner[pfn] = 1  # any non-zero owner: free_pages checks kind, not owner
        self.free_pages(pfn, 0)

    def alloc_pages_bulk(self, gfp: int, nr: int, owner: int, kind: int = PageKind.KERNEL) -> np.ndarray:
        """``alloc_pages_bulk()``: up to ``nr`` order-0 pages, fewer if memory runs out.

        The result is exactly what ``nr`` calls of ``alloc_pages(gfp, 0, ...)`` would
        return, in the same order, leaving the same free lists: in each zone above its
        low watermark, whole blocks of the request's type are taken smallest first
        (the pages ``__rmqueue_smallest`` would hand out one by one), the last one
        split as ``expand`` would leave it, and marked with NumPy in one go.  Where
        that runs out (the type's lists are empty but the zone is not at its
        watermark, or every zone is) single allocations take over, with fallback and
        the slow path.
        """
        if nr < 0:
            raise ValueError(f"alloc_pages_bulk: nr = {nr} is negative")
        try:
            fits = 0 <= operator.index(kind) <= 0xFF and 0 <= operator.index(owner) <= 0xFFFF
        except TypeError:
            fits = False
        if not fits:
            raise ValueError(f"alloc_pages_bulk: kind {kind!r} / owner {owner!r} do not fit the page columns "
                             "(kind 0..255, owner 0..65535)")
        buddy = self.buddy
        ac = buddy._ac_cache.get(gfp)
        if ac is None:
            ac = buddy.alloc_context(gfp)
        mt = ac.migratetype
        hz = ac.highest_zoneidx
        pages = self.pages
        parts: list[np.ndarray] = []  # the pages taken, in the order single calls would take them
        heads: list[int] = []  # the heads of the blocks they came from
        need = nr
        for zone in ac.zonelist:
            if need <= 0:
                break
            budget = zone.free_pages - (zone.wmark_low + zone.watermark_boost + zone.lowmem_reserve[hz])
            if budget <= 0:
                continue
            if budget > need:
                budget = need
            taken = 0
            fa = zone.free_area
            for order in range(NR_ORDERS):
                if taken >= budget:
                    break
                area = fa[order][mt]
                if not area:
                    continue
                k = min(len(area), (budget - taken) >> order)
                if k:
                    # what k popitem() calls would take (the head of the list first), in C
                    if k == len(area):
                        got = list(reversed(area))
                        area.clear()
                    else:
                        got = list(islice(reversed(area), k))
                        deque(map(area.__delitem__, got), maxlen=0)
                    heads.extend(got)
                    h = np.array(got, dtype=np.int64)
                    parts.append(h if not order else (h[:, None] + np.arange(1 << order, dtype=np.int64)).ravel())
                    taken += k << order
                if area and taken < budget:
                    # The next block is larger than what is left: single allocations would take
                    # its lowest pages and leave the rest as expand() splits it.
                    head = area.popitem()[0]
                    use = budget - taken
                    heads.append(head)
                    parts.append(np.arange(head, head + use, dtype=np.int64))
                    taken = budget
                    p = head + use
                    end = head + (1 << order)
                    while p < end:
                        o = (p & -p).bit_length() - 1
                        buddy.add_free_block(zone, p, o, mt)
                        p += 1 << o
            zone.free_pages -= taken
            zone.pgalloc += taken
            need -= taken
            if taken < budget:
                break  # this type's lists ran dry above the watermark: fallback is for single calls
        out = (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        if len(out):
            head_arr = np.array(heads, dtype=np.int64)
            pages.flags[head_arr] = 0
            pages.private[head_arr] = 0
            pages.kind[out] = kind
            pages.owner[out] = owner
        if need > 0:
            rest = []
            alloc = self.alloc_pages
            for _ in range(need):
                pfn = alloc(gfp, 0, owner, kind)
                if pfn < 0:
                    break
                rest.append(pfn)
            if rest:
                out = np.concatenate((out, np.asarray(rest, dtype=np.int64)))
        return out

    def free_pages_bulk(self, pfns: Iterable[int] | np.ndarray) -> None:
        """Free many order-0 pages: exactly what ``free_pages(pfn)`` of each in ascending
        order does (same blocks on the same lists in the same order), with the columns
        marked by NumPy and each contiguous run freed as aligned blocks.

        The whole call is checked before anything changes: a pfn outside memory, listed
        twice, free or reserved, or part of a compound page raises ValueError.
        """
        arr = np.asarray(pfns if isinstance(pfns, np.ndarray) else list(pfns), dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"free_pages_bulk: expected a 1-d sequence of pfns, got shape {arr.shape}")
        if not len(arr):
            return
        pages = self.pages
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= pages.nr_pages:
            raise ValueError(f"free_pages_bulk: pfn {lo if lo < 0 else hi} is outside memory "
                             f"(0..{pages.nr_pages - 1})")
        arr = _sorted_unique(arr, lo, hi, "free_pages_bulk")
        kinds = pages.kind[arr]
        bad = (kinds == FREE) | (kinds == RESERVED)
        if bad.any():
            bad_pfn = int(arr[bad][0])
            raise ValueError(f"free_pages_bulk: pfn {bad_pfn:#x} is {PageKind(pages.kind[bad_pfn]).name} "
                             "(double free?)")
        fl = pages.flags[arr]
        compound = (fl & (HEAD | TAIL)) != 0
        if compound.any():
            raise ValueError(f"free_pages_bulk: pfn {int(arr[compound][0]):#x} is part of a compound page; "
                             "free it with free_pages(head, order)")
        iso = (fl & ISOLATED) != 0
        if iso.any():
            for pfn in arr[iso].tolist():
                self.free_pages(pfn, 0)
            arr = arr[~iso]
            if not len(arr):
                return
        breaks = np.flatnonzero(np.diff(arr) != 1) + 1
        starts_a = arr[np.concatenate(([0], breaks))]
        ends_a = arr[np.concatenate((breaks - 1, [len(arr) - 1]))] + 1
        if len(starts_a) * 8 < len(arr):
            for s, e in zip(starts_a.tolist(), ends_a.tolist(), strict=True):
                pages.kind[s:e] = FREE
                pages.flags[s:e] = 0
                pages.owner[s:e] = 0
                pages.private[s:e] = 0
        else:
            pages.kind[arr] = FREE
            pages.flags[arr] = 0
            pages.owner[arr] = 0
            pages.private[arr] = 0
        buddy = self.buddy
        pbo = buddy.pageblock_order
        zones = self.zones
        # A freed page whose buddy is neither freed here nor a free order-0 block stays an
        # order-0 block of its own whatever else this call frees: only a run's first page (if
        # odd) and last page (if even) have their buddy outside the run, and a buddy outside the
        # run is not freed here.  Such "quiet" pages are marked and counted with NumPy and
        # listed with one dict.update per stretch of them that goes to one list, in ascending
        # order among the other frees (the order single frees give); the rest of each run
        # (its "middle") goes through free_block_range.
        zstart = np.array([z.start_pfn for z in zones], dtype=np.int64)
        zend = np.array([z.end_pfn for z in zones], dtype=np.int64)
        # first_q / last_q: the free list (zone * NR_MIGRATETYPES + type) of a run's quiet first
        # and last page, -1 where that page is not quiet
        first_q = np.full(len(starts_a), -1, dtype=np.int64)
        last_q = np.full(len(starts_a), -1, dtype=np.int64)
        for cand, q in (((starts_a & 1) == 1, first_q), (((ends_a - 1) & 1) == 0, last_q)):
            idx = np.flatnonzero(cand)
            p = (starts_a if q is first_q else ends_a - 1)[idx]
            zi = np.searchsorted(zstart, p, side="right") - 1
            b = p ^ 1
            inzone = (b >= zstart[zi]) & (b < zend[zi])
            bs = np.where(inzone, b, p)
            quiet = ~(inzone & ((pages.flags[bs] & BUDDY) != 0) & (pages.private[bs] == 0))
            q_pfns = p[quiet]
            q_mt = buddy.pageblock_mt[q_pfns >> pbo]
            q[idx[quiet]] = zi[quiet] * NR_MIGRATETYPES + q_mt
            pages.flags[q_pfns] = BUDDY
            pages.owner[q_pfns] = q_mt
            for zone, count in zip(zones, np.bincount(zi[quiet], minlength=len(zones)).tolist(), strict=True):
                zone.free_pages += count
                zone.pgfree += count
        last_q[(starts_a + 1 == ends_a) & (first_q >= 0)] = -1  # a lone page is one page: list it once
        mid_s = starts_a + (first_q >= 0)
        mid_e = ends_a - (last_q >= 0)
        # Events in ascending order, three slots a run: quiet first page, middle, quiet last page.
        # key >= 0: list a quiet page on lists[key]; key -1: free the middle [pfn, end).
        ev_key = np.stack((first_q, np.full(len(starts_a), -1, dtype=np.int64), last_q), axis=1).ravel()
        ev_pfn = np.stack((starts_a, mid_s, ends_a - 1), axis=1).ravel()
        ev_end = np.stack((mid_s, mid_e, ends_a), axis=1).ravel()
        present = np.stack((first_q >= 0, mid_e > mid_s, last_q >= 0), axis=1).ravel()
        ev_key, ev_pfn, ev_end = ev_key[present], ev_pfn[present], ev_end[present]
        # stretches: a middle alone, or consecutive quiet pages bound for the same list
        cut = np.flatnonzero((ev_key[1:] != ev_key[:-1]) | (ev_key[1:] < 0)) + 1
        bounds = [0, *cut.tolist(), len(ev_key)]
        keys = ev_key[bounds[:-1]].tolist()
        pfn_l = ev_pfn.tolist()
        end_l = ev_end.tolist()
        lists = [z.free_area[0][mt] for z in zones for mt in range(NR_MIGRATETYPES)]
        block_zone = buddy._block_zone
        pb_mt = buddy._pb_mt
        free_one_page = buddy.free_one_page
        max_block = 1 << pbo  # free_block_range's largest block: a pageblock
        for i, key in enumerate(keys):
            a = bounds[i]
            if key >= 0:
                b = bounds[i + 1]
                if b - a == 1:
                    lists[key][pfn_l[a]] = None
                else:
                    lists[key].update(dict.fromkeys(pfn_l[a:b]))
                continue
            s, e = pfn_l[a], end_l[a]
            n = e - s
            if not (n & (n - 1) or s & (n - 1)) and n <= max_block:  # one aligned block...
                zone = block_zone[s >> pbo] or buddy.zone_of(s)
                if e <= zone.end_pfn:  # ...inside one zone (a zone edge may cut a pageblock)
                    zone.pgfree += n
                    free_one_page(zone, s, n.bit_length() - 1, pb_mt[s >> pbo])
                    continue
            while s < e:
                zone = buddy.zone_of(s)
                stop = min(e, zone.end_pfn)
                zone.pgfree += stop - s
                buddy.free_block_range(zone, s, stop)
                s = stop

    # ----------------------------------------------------------------- import
    def load_state(self, kind: np.ndarray, free_pfns: np.ndarray, free_orders: np.ndarray,
                   pageblock_mt: np.ndarray, pinned: np.ndarray | None = None) -> ImportedOwner:
        """Put the machine into a captured state (a snapshot of a real machine).

        ``kind`` gives every pfn's :class:`PageKind`; the free blocks are listed by head
        pfn and order, and every FREE page must lie in exactly one of them.  In-use
        pages go to one :class:`ImportedOwner`; ``pinned`` pages are not migratable.
        """
        kind = np.asarray(kind, dtype=np.uint8)
        if kind.shape != (self.nr_pages,):
            raise ValueError(f"kind has {kind.shape} entries, the machine {self.nr_pages} pages")
        owner = ImportedOwner()
        self.register_owner(owner)
        pages = self.pages
        for zone in self.zones:
            for order_lists in zone.free_area:
                for d in order_lists:
                    d.clear()
            zone.free_pages = 0
        pages.kind[:] = kind
        pages.flags[:] = 0
        pages.private[:] = 0
        pages.owner[:] = 0
        in_use = (kind != FREE) & (kind != RESERVED)
        pages.owner[in_use] = owner.owner_id
        if pinned is not None:
            pages.flags[np.asarray(pinned, dtype=bool) & in_use] |= int(PageFlag.PINNED)
        self.buddy.pageblock_mt[:] = np.asarray(pageblock_mt, dtype=np.uint8)
        self.buddy.pageblock_skip[:] = 0
        for pfn, order in zip(np.asarray(free_pfns).tolist(), np.asarray(free_orders).tolist(), strict=True):
            zone = self.buddy.zone_of(pfn)
            self.buddy.add_free_block(zone, pfn, order, self.buddy._pb_mt[pfn >> self.pageblock_order])
            zone.free_pages += 1 << order
        for zone in self.zones:
            zk = kind[zone.start_pfn:zone.end_pfn]
            zone.managed_pages = int(np.count_nonzero(zk != RESERVED))
            reset_cached_positions(zone)
        self.setup_watermarks()
        return owner

    # ----------------------------------------------------------------- counters
    def read_vmstat(self) -> dict[str, int]:
        """The /proc/vmstat view: state gauges computed from the page columns plus event counters."""
        kind = self.pages.kind
        counts = np.bincount(kind, minlength=len(PageKind))
        out: dict[str, int] = {
            "nr_free_pages": self.nr_free_pages,
            "nr_anon_pages": int(counts[PageKind.ANON]),
            "nr_file_pages": int(counts[PageKind.FILE]),
            "nr_slab_reclaimable": int(counts[PageKind.SLAB_RECLAIMABLE]),
            "nr_slab_unreclaimable": int(counts[PageKind.SLAB_UNRECLAIMABLE]),
            "nr_page_table_pages": int(counts[PageKind.PAGETABLE]),
            "nr_driver_pages": int(counts[PageKind.DRIVER]),
            "nr_kernel_misc": int(counts[PageKind.KERNEL]),
        }
        for zone in self.zones:
            out[f"pgalloc_{zone.name.lower()}"] = zone.pgalloc
        out["pgfree"] = sum(z.pgfree for z in self.zones)
        for key, value in sorted(self.vmstat.items()):
            out[key] = out.get(key, 0) + value
        return out


__all__ = ["ALLOC_WMARK_MIN", "GiB", "ImportedOwner", "Machine", "MachineConfig", "MiB", "SlowPath"]
