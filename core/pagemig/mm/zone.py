"""Zones: their span, free areas, watermarks and the per-zone compaction state
(``struct zone``, include/linux/mmzone.h, v6.1; the watermark setup of mm/page_alloc.c).

Free lists are Python dicts (pfn -> None) per order and migratetype: a dict keeps
insertion order, so ``popitem()`` takes the most recently freed block first, as the
kernel's ``list_add`` / ``list_first_entry`` pair does, and removes any block (a buddy
being merged) in O(1).  They are the only per-block Python objects the core keeps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

from pagemig.mm.gfp import NR_MIGRATETYPES, ZoneType
from pagemig.mm.pages import NR_ORDERS, PAGE_SHIFT

if TYPE_CHECKING:
    from pagemig.mm.pcp import ZonePcp

# mm/page_alloc.c: lowmem_reserve_ratio[] (v5.x+: DMA 256, DMA32 256, Normal 32, the rest 0)
LOWMEM_RESERVE_RATIO = {ZoneType.DMA: 256, ZoneType.DMA32: 256, ZoneType.NORMAL: 32,
                        ZoneType.HIGHMEM: 0, ZoneType.MOVABLE: 0}
SWAP_CLUSTER_MAX = 32

# enum zone_watermarks: the index wmark_pages() takes, and what ALLOC_WMARK_* mean
WMARK_MIN = 0
WMARK_LOW = 1
WMARK_HIGH = 2


def min_free_kbytes_for(lowmem_kbytes: int) -> int:
    """``calculate_min_free_kbytes()``: int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144].

    The kernel's own comment tabulates it: 512 MiB -> 2896 KiB, 1 GiB -> 4096 KiB.
    """
    return max(128, min(262144, math.isqrt(lowmem_kbytes * 16)))


@attrs.frozen
class ZoneSpec:
    """Where a zone lies.  ``nr_pages`` is its span; reserved pages inside it are not managed."""

    name: str
    start_pfn: int
    nr_pages: int

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages

    @property
    def zone_type(self) -> ZoneType:
        return ZoneType[self.name.upper()]


class Zone:
    """One zone of the (single) node."""

    def __init__(self, spec: ZoneSpec, index: int, pageblock_order: int) -> None:
        self.name = spec.name
        self.zone_type = spec.zone_type
        self.index = index  # position in machine.zones, lowest zone first
        self.start_pfn = spec.start_pfn
        self.end_pfn = spec.end_pfn
        self.spanned_pages = spec.nr_pages
        self.present_pages = spec.nr_pages
        self.managed_pages = 0  # set when the buddy allocator takes the memory
        self.free_area: list[list[dict[int, None]]] = [
            [{} for _ in range(NR_MIGRATETYPES)] for _ in range(NR_ORDERS)
        ]
        self.free_pages = 0  # NR_FREE_PAGES (pages on per-cpu lists are not in it, as in 6.1)
        self.pcp: ZonePcp[Zone] | None = None  # the per-cpu lists (zone->per_cpu_pageset), if the machine has them
        self.pgalloc = 0  # pgalloc_<zone>: pages handed out
        self.pgfree = 0  # pages freed into this zone
        self.wmark_min = 0
        self.wmark_low = 0
        self.wmark_high = 0
        self.watermark_boost = 0
        self.lowmem_reserve: list[int] = [0] * len(ZoneType)
        # Compaction state (struct zone, CONFIG_COMPACTION)
        self.compact_cached_free_pfn = 0
        self.compact_cached_migrate_pfn = [0, 0]  # [async, sync]
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = 0
        self.compact_blockskip_flush = False
        # set by __reset_isolation_suitable; zero until then (the kernel's zeroed struct zone)
        self.compact_init_migrate_pfn = 0
        self.compact_init_free_pfn = 0
        self.pageblock_nr_pages = 1 << pageblock_order
        reset_cached_positions(self)

    def __repr__(self) -> str:
        return f"Zone({self.name}, pfn {self.start_pfn:#x}-{self.end_pfn:#x}, free {self.free_pages})"

    def contains(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn

    def nr_free(self, order: int) -> int:
        """``free_area[order].nr_free``: free blocks of this order on all lists."""
        return sum(len(d) for d in self.free_area[order])

    def nr_free_by_order(self) -> list[int]:
        return [self.nr_free(o) for o in range(NR_ORDERS)]

    def nr_free_by_type(self, migratetype: int) -> list[int]:
        return [len(self.free_area[o][migratetype]) for o in range(NR_ORDERS)]

    def free_area_empty(self, order: int, migratetype: int) -> bool:
        return not self.free_area[order][migratetype]

    def wmark_pages(self, i: int) -> int:
        """``wmark_pages(zone, i)``: watermark ``i`` (``WMARK_MIN``, ``WMARK_LOW``, ``WMARK_HIGH``,
        or ``alloc_flags & ALLOC_WMARK_MASK``) plus the zone's boost."""
        return (self.wmark_min, self.wmark_low, self.wmark_high)[i] + self.watermark_boost


def reset_cached_positions(zone: Zone) -> None:
    """``reset_cached_positions()`` (mm/compaction.c): the migration scanner restarts at the
    zone's start, the free scanner at the start of its last pageblock."""
    zone.compact_cached_migrate_pfn = [zone.start_pfn, zone.start_pfn]
    zone.compact_cached_free_pfn = (zone.end_pfn - 1) & ~(zone.pageblock_nr_pages - 1)


def setup_per_zone_wmarks(zones: list[Zone], min_free_kbytes: int, watermark_scale_factor: int) -> None:
    """``__setup_per_zone_wmarks()``: share min_free_kbytes by managed pages; gaps by the scale factor."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(z.managed_pages for z in zones if z.zone_type not in (ZoneType.HIGHMEM, ZoneType.MOVABLE))
    for zone in zones:
        tmp = pages_min * zone.managed_pages // lowmem_pages if lowmem_pages else 0
        if zone.zone_type in (ZoneType.HIGHMEM, ZoneType.MOVABLE):
            zone.wmark_min = max(SWAP_CLUSTER_MAX, min(zone.managed_pages // 1024, 128))
        else:
            zone.wmark_min = tmp
        gap = max(tmp >> 2, zone.managed_pages * watermark_scale_factor // 10000)
        zone.wmark_low = zone.wmark_min + gap
        zone.wmark_high = zone.wmark_min + 2 * gap


def setup_per_zone_lowmem_reserve(zones: list[Zone]) -> None:
    """``setup_per_zone_lowmem_reserve()``: what a lower zone keeps back from higher zones' requests."""
    for i, zone in enumerate(zones):
        ratio = LOWMEM_RESERVE_RATIO[zone.zone_type]
        zone.lowmem_reserve = [0] * len(ZoneType)
        managed = 0
        for upper in zones[i + 1:]:
            managed += upper.managed_pages
            zone.lowmem_reserve[upper.zone_type] = managed // ratio if ratio else 0
        # requests whose highest zone lies above every present zone see the same reserve
        top = zone.lowmem_reserve[zones[-1].zone_type]
        for zt in ZoneType:
            if zt > zones[-1].zone_type:
                zone.lowmem_reserve[zt] = top
