"""The buddy allocator: free lists per zone, order and migratetype; split and merge;
migratetype fallback with stealing; watermarks; the fast path of ``alloc_pages``.

Follows mm/page_alloc.c (v5.x-v6.1): ``__rmqueue_smallest``, ``__rmqueue_fallback``,
``steal_suitable_fallback``, ``__free_one_page``, ``__zone_watermark_ok``,
``get_page_from_freelist``; a zone's per-cpu lists (mm/pcp.py, when the machine has
CPUs) come first in ``rmqueue``.  CMA, highatomic reserves and ``ALLOC_NOFRAGMENT``
are not modelled (docs/architecture.md says why).

The hot path reads and writes the page columns through memoryviews and keeps its
locals local; it is written for speed first, clarity second, and the tests hold it
to the kernel's rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np

from pagemig.mm.gfp import (
    ALLOC_HARDER,
    ALLOC_HIGH,
    ALLOC_NO_WATERMARKS,
    ALLOC_WMARK_MASK,
    FALLBACKS,
    GFP_MOVABLE_MASK,
    GFP_ZONEMASK,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    Gfp,
    MigrateType,
    gfp_migratetype,
    gfp_zone,
)
from pagemig.mm.pages import (
    ANON,
    BUDDY,
    FILE,
    FREE,
    ISOLATED,
    MAX_ORDER,
    MOVABLE,
    NR_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    PageFlag,
    PageKind,
)

if TYPE_CHECKING:
    from pagemig.mm.pages import PageArrays
    from pagemig.mm.zone import Zone


# GFP_ZONE_BAD (include/linux/gfp.h): zone-modifier combinations the kernel BUGs on.
_GFP_ZONE_BAD = frozenset({0x3, 0x5, 0x6, 0x7, 0xB, 0xD, 0xE, 0xF})


@attrs.define(slots=True)
class AllocContext:
    """``struct alloc_context``: computed once per GFP mask and cached."""

    gfp: int
    migratetype: int
    highest_zoneidx: int
    zonelist: list[Zone]  # allowed zones, highest first (the zonelist walk order)


class BuddyAllocator:
    """Free lists and pageblock bits of one machine: its page columns and zones (lowest first)."""

    def __init__(self, pages: PageArrays, zones: list[Zone], pageblock_order: int) -> None:
        self.pages = pages
        self.zones = zones
        self.pageblock_order = pageblock_order
        self.pageblock_nr_pages = 1 << pageblock_order
        nr_blocks = (pages.nr_pages + self.pageblock_nr_pages - 1) >> pageblock_order
        mtb = bytearray([MIGRATE_MOVABLE]) * nr_blocks  # memmap_init: every pageblock starts MOVABLE
        skb = bytearray(nr_blocks)
        self.pageblock_mt = np.frombuffer(mtb, dtype=np.uint8)
        self.pageblock_skip = np.frombuffer(skb, dtype=np.uint8)
        self._pb_mt = memoryview(mtb)
        self._pb_skip = memoryview(skb)
        self._ac_cache: dict[int, AllocContext] = {}
        self.cpu = 0  # the CPU the running task allocates and frees on (its per-cpu lists)
        self.extfrag_events = 0  # the mm_page_alloc_extfrag tracepoint: fallbacks that crossed types
        self.pageblock_steals = 0  # fallbacks that also changed the pageblock's type
        # page_zone() for the free path: the zone of each pageblock, None where a zone boundary
        # cuts a pageblock (then zone_of() looks it up).  One list slot per pageblock.
        self._block_zone: list[Zone | None] = [None] * nr_blocks
        for zone in zones:
            first = -(-zone.start_pfn >> pageblock_order)  # first pageblock wholly inside
            last = zone.end_pfn >> pageblock_order  # one past the last wholly inside
            self._block_zone[first:last] = [zone] * max(0, last - first)

    # ----------------------------------------------------------------- pageblocks
    def get_pageblock_migratetype(self, pfn: int) -> int:
        return self._pb_mt[pfn >> self.pageblock_order]

    def set_pageblock_migratetype(self, pfn: int, migratetype: int) -> None:
        self._pb_mt[pfn >> self.pageblock_order] = migratetype

    def pageblock_range(self, zone: Zone, pfn: int) -> tuple[int, int]:
        """The pageblock holding pfn, clipped to the zone (zones need not be pageblock-aligned)."""
        start = pfn & ~(self.pageblock_nr_pages - 1)
        return max(start, zone.start_pfn), min(start + self.pageblock_nr_pages, zone.end_pfn)

    # ----------------------------------------------------------------- free lists
    def add_free_block(self, zone: Zone, pfn: int, order: int, migratetype: int) -> None:
        """Put a block whose pages are already marked free onto a list, without merging."""
        pages = self.pages
        pages._flags[pfn] = BUDDY
        pages._private[pfn] = order
        pages._owner[pfn] = migratetype
        zone.free_area[order][migratetype][pfn] = None

    def del_free_block(self, zone: Zone, pfn: int) -> int:
        """Take a known free block off its list; returns its order.  The pages stay FREE."""
        pages = self.pages
        order = pages._private[pfn]
        del zone.free_area[order][pages._owner[pfn]][pfn]
        pages._flags[pfn] = 0
        pages._private[pfn] = 0
        pages._owner[pfn] = 0
        return order

    def free_one_page(self, zone: Zone, pfn: int, order: int, migratetype: int) -> None:
        """``__free_one_page()``: merge with free buddies as far as they go, then list the result.

        The pages must already be marked FREE (kind 0, flags 0).  Blocks of
        pageblock order or more merge across pageblocks only when both pageblocks'
        types are ones that fall back to each other (``migratetype_is_mergeable``),
        as in v5.x-v6.x.
        """
        pages = self.pages
        flags = pages._flags
        private = pages._private
        owner = pages._owner
        start = zone.start_pfn
        end = zone.end_pfn
        fa = zone.free_area
        pbo = self.pageblock_order
        zone.free_pages += 1 << order
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if buddy < start or buddy >= end or not flags[buddy] & BUDDY or private[buddy] != order:
                break
            if order >= pbo:
                buddy_mt = self._pb_mt[buddy >> pbo]  # the kernel asks the buddy's pageblock
                if buddy_mt != migratetype and (
                    buddy_mt >= MIGRATE_PCPTYPES or migratetype >= MIGRATE_PCPTYPES
                ):
                    break
            bmt = owner[buddy]  # the list the buddy is on
            del fa[order][bmt][buddy]
            flags[buddy] = 0
            private[buddy] = 0
            owner[buddy] = 0
            pfn &= ~(1 << order)
            order += 1
        flags[pfn] = BUDDY
        private[pfn] = order
        owner[pfn] = migratetype
        fa[order][migratetype][pfn] = None

    def rmqueue_smallest(self, zone: Zone, order: int, migratetype: int) -> int:
        """``__rmqueue_smallest()``: the smallest block of this type that fits, split down (``expand``)."""
        fa = zone.free_area
        for current in range(order, NR_ORDERS):
            area = fa[current][migratetype]
            if area:
                pfn = area.popitem()[0]
                pages = self.pages
                flags = pages._flags
                private = pages._private
                owner = pages._owner
                flags[pfn] = 0
                private[pfn] = 0
                owner[pfn] = 0
                while current > order:
                    current -= 1
                    half = pfn + (1 << current)
                    flags[half] = BUDDY
                    private[half] = current
                    owner[half] = migratetype
                    fa[current][migratetype][half] = None
                zone.free_pages -= 1 << order
                return pfn
        return -1

    # ----------------------------------------------------------------- fallback
    def can_steal_fallback(self, order: int, start_mt: int) -> bool:
        """``can_steal_fallback()``: large blocks, or any block for unmovable/reclaimable requests."""
        if order >= self.pageblock_order:
            return True
        return order >= self.pageblock_order // 2 or start_mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)

    def find_suitable_fallback(self, zone: Zone, order: int, start_mt: int,
                               only_stealable: bool) -> tuple[int, bool]:
        """``find_suitable_fallback()``: the first fallback type with a free block of this order."""
        area = zone.free_area[order]
        can_steal = False
        for fallback_mt in FALLBACKS[start_mt]:
            if not area[fallback_mt]:
                continue
            if self.can_steal_fallback(order, start_mt):
                can_steal = True
            if not only_stealable or can_steal:
                return fallback_mt, can_steal
        return -1, can_steal

    def count_block_pages(self, zone: Zone, pfn: int) -> tuple[int, int]:
        """Free and movable (LRU or driver-movable) pages in pfn's pageblock."""
        start, end = self.pageblock_range(zone, pfn)
        pages = self.pages
        kind = pages.kind[start:end]
        free = int(np.count_nonzero(kind == FREE))
        movable = int(np.count_nonzero(
            (kind == PageKind.ANON) | (kind == PageKind.FILE)
            | ((pages.flags[start:end] & PageFlag.MOVABLE) != 0)
        ))
        return free, movable

    def move_freepages_block(self, zone: Zone, pfn: int, migratetype: int) -> tuple[int, int]:
        """``move_freepages_block()``: every free block in pfn's pageblock onto the new type's list.

        Returns (free pages moved, movable pages seen), the two counts the
        stealing rule weighs.  As in the kernel (v5.x-v6.1), a pageblock whose end
        lies outside the zone is not touched (0, 0), and one whose start does is
        scanned from pfn; movable means on the LRU (not isolated) or ``__PageMovable``.
        """
        start = pfn & ~(self.pageblock_nr_pages - 1)
        end = start + self.pageblock_nr_pages
        if start < zone.start_pfn:
            start = pfn
        if end > zone.end_pfn:
            return 0, 0
        pages = self.pages
        heads = np.flatnonzero(pages.flags[start:end] & BUDDY) + start
        moved = 0
        owner = pages._owner
        private = pages._private
        fa = zone.free_area
        for head in heads.tolist():
            order = private[head]
            old = owner[head]
            if old == migratetype:
                moved += 1 << order
                continue
            del fa[order][old][head]
            owner[head] = migratetype
            fa[order][migratetype][head] = None
            moved += 1 << order
        kind = pages.kind[start:end]
        flags = pages.flags[start:end]
        movable = int(np.count_nonzero(
            (((kind == ANON) | (kind == FILE)) & ((flags & ISOLATED) == 0)) | ((flags & MOVABLE) != 0)
        ))
        return moved, movable

    def change_pageblock_range(self, pfn: int, order: int, migratetype: int) -> None:
        first = pfn >> self.pageblock_order
        n = max(1, (1 << order) >> self.pageblock_order)
        self.pageblock_mt[first:first + n] = migratetype

    def steal_suitable_fallback(self, zone: Zone, pfn: int, start_type: int, whole_block: bool) -> None:
        """``steal_suitable_fallback()``: move the block to the requester's list, and maybe the pageblock.

        A block of pageblock order or more converts all its pageblocks.  Otherwise,
        when stealing is allowed, all the pageblock's free pages move to the
        requester's list, and the pageblock changes type when its free pages plus
        the pages compatible with the new type reach half a pageblock.
        """
        pages = self.pages
        current_order = pages._private[pfn]
        old_block_type = self.get_pageblock_migratetype(pfn)
        if old_block_type == MigrateType.HIGHATOMIC:
            self._move_to_free_list(zone, pfn, start_type)
            return
        if current_order >= self.pageblock_order:
            self.change_pageblock_range(pfn, current_order, start_type)
            self.pageblock_steals += 1
            self._move_to_free_list(zone, pfn, start_type)
            return
        if not whole_block:
            self._move_to_free_list(zone, pfn, start_type)
            return
        free_pages, movable_pages = self.move_freepages_block(zone, pfn, start_type)
        if start_type == MIGRATE_MOVABLE:
            alike_pages = movable_pages
        elif old_block_type == MIGRATE_MOVABLE:
            alike_pages = self.pageblock_nr_pages - (free_pages + movable_pages)
        else:
            alike_pages = 0
        if not free_pages:
            self._move_to_free_list(zone, pfn, start_type)
            return
        if free_pages + alike_pages >= 1 << (self.pageblock_order - 1):
            self.set_pageblock_migratetype(pfn, start_type)
            self.pageblock_steals += 1

    def _move_to_free_list(self, zone: Zone, pfn: int, migratetype: int) -> None:
        pages = self.pages
        order = pages._private[pfn]
        old = pages._owner[pfn]
        if old != migratetype:
            del zone.free_area[order][old][pfn]
            pages._owner[pfn] = migratetype
            zone.free_area[order][migratetype][pfn] = None

    def rmqueue_fallback(self, zone: Zone, order: int, start_mt: int) -> bool:
        """``__rmqueue_fallback()``: steal the largest block of another type (v5.x-v6.1 logic)."""
        fallback_mt = -1
        can_steal = False
        current = MAX_ORDER
        found = False
        while current >= order:
            fallback_mt, can_steal = self.find_suitable_fallback(zone, current, start_mt, False)
            if fallback_mt != -1:
                found = True
                break
            current -= 1
        if not found:
            return False
        if not can_steal and start_mt == MIGRATE_MOVABLE and current > order:
            # A movable request that may not steal takes the smallest block instead,
            # so as to break up as little of the other type as possible.
            for current in range(order, NR_ORDERS):
                fallback_mt, can_steal = self.find_suitable_fallback(zone, current, start_mt, False)
                if fallback_mt != -1:
                    break
        area = zone.free_area[current][fallback_mt]
        pfn = next(reversed(area))  # get_page_from_free_area: the list's head
        self.extfrag_events += 1
        self.steal_suitable_fallback(zone, pfn, start_mt, can_steal)
        return True

    def rmqueue(self, zone: Zone, order: int, migratetype: int) -> int:
        """``__rmqueue()``: own type first, then steal from a fallback type and retry."""
        pfn = self.rmqueue_smallest(zone, order, migratetype)
        while pfn < 0:
            if migratetype >= MIGRATE_PCPTYPES or not self.rmqueue_fallback(zone, order, migratetype):
                return -1
            pfn = self.rmqueue_smallest(zone, order, migratetype)
        return pfn

    # ----------------------------------------------------------------- watermarks
    def zone_watermark_ok(self, zone: Zone, order: int, mark: int, highest_zoneidx: int,
                          alloc_flags: int, free_pages: int | None = None) -> bool:
        """``__zone_watermark_ok()``: enough free pages above the mark, and a block of the order."""
        if free_pages is None:
            free_pages = zone.free_pages
        free_pages -= (1 << order) - 1
        min_ = mark
        if alloc_flags & ALLOC_HIGH:
            min_ -= min_ // 2
        if alloc_flags & ALLOC_HARDER:
            min_ -= min_ // 4
        if free_pages <= min_ + zone.lowmem_reserve[highest_zoneidx]:
            return False
        if not order:
            return True
        fa = zone.free_area
        for o in range(order, NR_ORDERS):
            area = fa[o]
            if area[0] or area[1] or area[2]:
                return True
            if alloc_flags & ALLOC_HARDER and area[MigrateType.HIGHATOMIC]:
                return True
        return False

    # ----------------------------------------------------------------- the fast path
    def alloc_context(self, gfp: int) -> AllocContext:
        """``prepare_alloc_pages()``: zone, migratetype and zonelist of a GFP mask, cached per mask.

        Masks the kernel refuses (``GFP_ZONE_BAD``: two zone modifiers; or both
        mobility bits, which ``gfp_migratetype`` warns about) raise ValueError here,
        once, so that the hot path never sees them.
        """
        ac = self._ac_cache.get(gfp)
        if ac is None:
            if (gfp & GFP_ZONEMASK) in _GFP_ZONE_BAD:
                raise ValueError(f"GFP mask {gfp:#x} asks for two zones at once "
                                 "(GFP_ZONE_BAD: only one of __GFP_DMA, __GFP_DMA32, __GFP_HIGHMEM)")
            if gfp & GFP_MOVABLE_MASK == GFP_MOVABLE_MASK:
                raise ValueError(f"GFP mask {gfp:#x} has both __GFP_MOVABLE and __GFP_RECLAIMABLE")
            highest = gfp_zone(gfp)
            zonelist = [z for z in reversed(self.zones) if z.zone_type <= highest]
            if not zonelist:  # a request for a zone this machine lacks uses the lowest one it has
                zonelist = [self.zones[0]]
            ac = AllocContext(gfp, gfp_migratetype(gfp), int(highest), zonelist)
            self._ac_cache[gfp] = ac
        return ac

    def get_page_from_freelist(self, order: int, alloc_flags: int, ac: AllocContext) -> tuple[int, Zone | None]:
        """``get_page_from_freelist()``: the first zone in the zonelist above its watermark.

        The machine's ``alloc_pages`` inlines this walk for order-0 requests at the low watermark
        (its hot path); a change to the rules here must be made there too (the tests in
        tests/mm hold both to the kernel's rules).
        """
        no_wmarks = alloc_flags & ALLOC_NO_WATERMARKS
        for zone in ac.zonelist:
            if not no_wmarks:
                mark = zone.wmark_pages(alloc_flags & ALLOC_WMARK_MASK)
                # zone_watermark_fast(): the order-0 check without walking the free lists
                if order == 0 and not alloc_flags & (ALLOC_HIGH | ALLOC_HARDER):
                    if zone.free_pages <= mark + zone.lowmem_reserve[ac.highest_zoneidx]:
                        continue
                elif not self.zone_watermark_ok(zone, order, mark, ac.highest_zoneidx, alloc_flags):
                    continue
            pcp = zone.pcp
            if pcp is not None and (order <= PAGE_ALLOC_COSTLY_ORDER or order == self.pageblock_order):
                # rmqueue(): the per-cpu list first, then the buddy lists (rmqueue_buddy)
                pfn = pcp.rmqueue_pcplist(self.cpu, order, ac.migratetype)
                if pfn >= 0:
                    return pfn, zone
            pfn = self.rmqueue(zone, order, ac.migratetype)
            if pfn >= 0:
                return pfn, zone
        return -1, None

    def zone_of(self, pfn: int) -> Zone:
        if 0 <= pfn < self.pages.nr_pages:
            zone = self._block_zone[pfn >> self.pageblock_order]
            if zone is not None:
                return zone
        for zone in self.zones:
            if zone.start_pfn <= pfn < zone.end_pfn:
                return zone
        raise ValueError(f"pfn {pfn:#x} lies in no zone")

    def free_block_range(self, zone: Zone, start: int, end: int, *, lowest_first: bool = False) -> None:
        """Free [start, end) whose pages are already marked FREE: aligned blocks up to pageblock
        order, each merged as ``__free_one_page`` merges (larger blocks form by merging).

        Freed in ascending order this is exactly what freeing the pages one by one in
        ascending order does (same blocks, same lists, same list order).  With
        ``lowest_first`` the blocks are freed from the top down so that the lowest one
        ends up at the head of its list: what the kernel's boot-time
        ``memblock_free_all`` gets by freeing upwards with ``FPI_TO_TAIL``, so that a
        fresh machine hands out its lowest pages first.
        """
        if start < zone.start_pfn or end > zone.end_pfn or start > end:
            raise ValueError(f"free_block_range: [{start:#x}, {end:#x}) is not inside {zone.name} "
                             f"[{zone.start_pfn:#x}, {zone.end_pfn:#x})")
        pbo = self.pageblock_order
        mts = self._pb_mt
        blocks: list[tuple[int, int]] = []
        pfn = start
        while pfn < end:
            order = min(pbo, (pfn & -pfn).bit_length() - 1 if pfn else pbo)
            while pfn + (1 << order) > end:
                order -= 1
            blocks.append((pfn, order))
            pfn += 1 << order
        if lowest_first:
            blocks.reverse()
        free_one_page = self.free_one_page
        for pfn, order in blocks:
            free_one_page(zone, pfn, order, mts[pfn >> pbo])


__all__ = ["AllocContext", "BuddyAllocator", "Gfp"]
