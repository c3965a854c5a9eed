"""GFP flags, and what they mean to the allocator: zone, migratetype, what the slow path may do.

Bit values and composites follow include/linux/gfp_types.h (v6.1) so that a kernel
engineer can read ``GFP_HIGHUSER_MOVABLE`` here and mean what the kernel means.
"""

from __future__ import annotations

import enum


class MigrateType(enum.IntEnum):
    """Pageblock and free-list migratetypes (include/linux/mmzone.h)."""

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3
    CMA = 4
    ISOLATE = 5


# The types as plain ints, under the kernel's names, for the allocator's paths.
MIGRATE_UNMOVABLE = int(MigrateType.UNMOVABLE)
MIGRATE_MOVABLE = int(MigrateType.MOVABLE)
MIGRATE_RECLAIMABLE = int(MigrateType.RECLAIMABLE)
MIGRATE_HIGHATOMIC = int(MigrateType.HIGHATOMIC)
MIGRATE_CMA = int(MigrateType.CMA)
MIGRATE_ISOLATE = int(MigrateType.ISOLATE)
MIGRATE_PCPTYPES = 3  # UNMOVABLE, MOVABLE, RECLAIMABLE: the types that fall back to each other
NR_MIGRATETYPES = 6

# The kernel's fallback table (mm/page_alloc.c, ``fallbacks[]``).
FALLBACKS: dict[int, tuple[int, ...]] = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
}

# Names as /proc/pagetypeinfo prints them.
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")


class ZoneType(enum.IntEnum):
    DMA = 0
    DMA32 = 1
    NORMAL = 2
    HIGHMEM = 3
    MOVABLE = 4


class Gfp(enum.IntFlag):
    """``__GFP_*`` bits (include/linux/gfp_types.h, v6.1 numbering)."""

    DMA = 0x01
    HIGHMEM = 0x02
    DMA32 = 0x04
    MOVABLE = 0x08
    RECLAIMABLE = 0x10
    HIGH = 0x20
    IO = 0x40
    FS = 0x80
    ZERO = 0x100
    ATOMIC = 0x200  # __GFP_ATOMIC (until v6.2): the caller cannot sleep, may dip deeper
    DIRECT_RECLAIM = 0x400
    KSWAPD_RECLAIM = 0x800
    WRITE = 0x1000
    NOWARN = 0x2000
    RETRY_MAYFAIL = 0x4000
    NOFAIL = 0x8000
    NORETRY = 0x10000
    MEMALLOC = 0x20000
    COMP = 0x40000
    NOMEMALLOC = 0x80000
    HARDWALL = 0x100000
    THISNODE = 0x200000
    ACCOUNT = 0x400000


# Single bits as plain ints, for the allocator's and the slow path's tests of a mask.  (The
# kernel's ``__GFP_NORETRY`` names cannot be used: a double underscore is mangled inside a class.)
GFP_BIT_IO = int(Gfp.IO)
GFP_BIT_FS = int(Gfp.FS)
GFP_BIT_ATOMIC = int(Gfp.ATOMIC)
GFP_BIT_DIRECT_RECLAIM = int(Gfp.DIRECT_RECLAIM)
GFP_BIT_RETRY_MAYFAIL = int(Gfp.RETRY_MAYFAIL)
GFP_BIT_NOFAIL = int(Gfp.NOFAIL)
GFP_BIT_NORETRY = int(Gfp.NORETRY)
GFP_BIT_MEMALLOC = int(Gfp.MEMALLOC)
GFP_BIT_COMP = int(Gfp.COMP)
GFP_BIT_NOMEMALLOC = int(Gfp.NOMEMALLOC)
GFP_BIT_THISNODE = int(Gfp.THISNODE)
# GFP_ZONEMASK and GFP_MOVABLE_MASK (include/linux/gfp.h)
GFP_ZONEMASK = int(Gfp.DMA | Gfp.HIGHMEM | Gfp.DMA32 | Gfp.MOVABLE)
GFP_MOVABLE_MASK = int(Gfp.MOVABLE | Gfp.RECLAIMABLE)

__GFP_RECLAIM = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM

GFP_ATOMIC = Gfp.HIGH | Gfp.ATOMIC | Gfp.KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | Gfp.IO | Gfp.FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | Gfp.ACCOUNT
GFP_NOWAIT = Gfp.KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | Gfp.IO
GFP_USER = __GFP_RECLAIM | Gfp.IO | Gfp.FS | Gfp.HARDWALL
GFP_DMA = Gfp.DMA
GFP_DMA32 = Gfp.DMA32
GFP_HIGHUSER = GFP_USER | Gfp.HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | Gfp.MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | Gfp.COMP | Gfp.NOMEMALLOC | Gfp.NOWARN) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | Gfp.DIRECT_RECLAIM

# What the scenario files and the CLI accept as names.
GFP_NAMES: dict[str, int] = {
    "GFP_ATOMIC": GFP_ATOMIC,
    "GFP_KERNEL": GFP_KERNEL,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
    "GFP_NOWAIT": GFP_NOWAIT,
    "GFP_NOIO": GFP_NOIO,
    "GFP_NOFS": GFP_NOFS,
    "GFP_USER": GFP_USER,
    "GFP_DMA": GFP_DMA,
    "GFP_DMA32": GFP_DMA32,
    "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE,
    "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
}
GFP_NAMES.update({f"__GFP_{f.name}": int(f) for f in Gfp if f.name})


def parse_gfp(text: str) -> int:
    """Parse ``"GFP_KERNEL | __GFP_NORETRY"``; raises ValueError naming the unknown part."""
    value = 0
    for part in text.split("|"):
        name = part.strip()
        if name not in GFP_NAMES:
            raise ValueError(f"unknown GFP flag {name!r} (known: GFP_KERNEL, GFP_USER, "
                             "GFP_HIGHUSER_MOVABLE, __GFP_MOVABLE, __GFP_NORETRY, ...)")
        value |= GFP_NAMES[name]
    return value


def gfp_migratetype(gfp: int) -> int:
    """``gfp_migratetype()``: MOVABLE and RECLAIMABLE bits pick the type, neither is UNMOVABLE."""
    if gfp & Gfp.MOVABLE:
        return MigrateType.MOVABLE
    if gfp & Gfp.RECLAIMABLE:
        return MigrateType.RECLAIMABLE
    return MigrateType.UNMOVABLE


def gfp_zone(gfp: int) -> int:
    """``gfp_zone()``: the highest zone the request may use (the GFP_ZONE_TABLE)."""
    if gfp & Gfp.DMA:
        return ZoneType.DMA
    if gfp & Gfp.DMA32:
        return ZoneType.DMA32
    if gfp & Gfp.HIGHMEM:
        return ZoneType.MOVABLE if gfp & Gfp.MOVABLE else ZoneType.HIGHMEM
    return ZoneType.NORMAL


def gfpflags_allow_blocking(gfp: int) -> bool:
    return bool(gfp & Gfp.DIRECT_RECLAIM)


# alloc_flags (mm/internal.h)
ALLOC_WMARK_MIN = 0x00
ALLOC_WMARK_LOW = 0x01
ALLOC_WMARK_HIGH = 0x02
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_HARDER = 0x10
ALLOC_HIGH = 0x20
ALLOC_KSWAPD = 0x800


def gfp_to_alloc_flags(gfp: int) -> int:
    """The slow path's ``gfp_to_alloc_flags()``: min watermark, dipping deeper for atomic/high."""
    flags = ALLOC_WMARK_MIN
    if gfp & Gfp.HIGH:
        flags |= ALLOC_HIGH
    if gfp & Gfp.ATOMIC and not gfp & Gfp.NOMEMALLOC:
        flags |= ALLOC_HARDER
    if gfp & Gfp.KSWAPD_RECLAIM:
        flags |= ALLOC_KSWAPD
    return flags
