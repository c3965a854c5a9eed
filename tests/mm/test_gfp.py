"""GFP flags against the kernel's own tables.

Truth: include/linux/gfp_types.h (v6.1 numbering: __GFP_ATOMIC still at 0x200),
the GFP_ZONE_TABLE / GFP_ZONE_BAD comment of include/linux/gfp.h, gfp_migratetype()
(``(gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT``), the ``fallbacks[]`` array of
mm/page_alloc.c and gfp_to_alloc_flags() of v6.1.  The expected values are typed in
from those sources, not computed by the code under test.
"""

from __future__ import annotations

import pytest

from pagemig.mm import gfp as g
from pagemig.mm.gfp import Gfp, MigrateType, ZoneType
from pagemig.mm.machine import GiB, Machine, MachineConfig, MiB

# include/linux/gfp_types.h, v6.1: the plain ___GFP_* bits
KERNEL_BITS = {
    "DMA": 0x01, "HIGHMEM": 0x02, "DMA32": 0x04, "MOVABLE": 0x08, "RECLAIMABLE": 0x10, "HIGH": 0x20,
    "IO": 0x40, "FS": 0x80, "ZERO": 0x100, "ATOMIC": 0x200, "DIRECT_RECLAIM": 0x400,
    "KSWAPD_RECLAIM": 0x800, "WRITE": 0x1000, "NOWARN": 0x2000, "RETRY_MAYFAIL": 0x4000,
    "NOFAIL": 0x8000, "NORETRY": 0x10000, "MEMALLOC": 0x20000, "COMP": 0x40000,
    "NOMEMALLOC": 0x80000, "HARDWALL": 0x100000, "THISNODE": 0x200000, "ACCOUNT": 0x400000,
}


@pytest.mark.parametrize(("name", "value"), sorted(KERNEL_BITS.items()))
def test_gfp_bits_are_the_kernels(name: str, value: int) -> None:
    assert int(Gfp[name]) == value


def test_composites_are_the_kernels() -> None:
    reclaim = 0x400 | 0x800
    assert reclaim | 0x40 | 0x80 == g.GFP_KERNEL
    assert g.GFP_KERNEL_ACCOUNT == g.GFP_KERNEL | 0x400000
    assert g.GFP_ATOMIC == 0x20 | 0x200 | 0x800  # __GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM (v6.1)
    assert g.GFP_NOWAIT == 0x800
    assert reclaim == g.GFP_NOIO
    assert reclaim | 0x40 == g.GFP_NOFS
    assert reclaim | 0x40 | 0x80 | 0x100000 == g.GFP_USER
    assert g.GFP_HIGHUSER == g.GFP_USER | 0x02
    assert g.GFP_HIGHUSER_MOVABLE == g.GFP_HIGHUSER | 0x08
    assert (g.GFP_HIGHUSER_MOVABLE | 0x40000 | 0x80000 | 0x2000) & ~reclaim == g.GFP_TRANSHUGE_LIGHT
    assert g.GFP_TRANSHUGE == g.GFP_TRANSHUGE_LIGHT | 0x400


# GFP_ZONE_TABLE (include/linux/gfp.h), on x86-64 (CONFIG_ZONE_DMA, CONFIG_ZONE_DMA32, no HIGHMEM:
# OPT_ZONE_HIGHMEM is ZONE_NORMAL; the simulator keeps HIGHMEM, which walks the same zones).
ZONE_TABLE = {
    0x0: ZoneType.NORMAL,
    0x1: ZoneType.DMA,
    0x2: ZoneType.HIGHMEM,
    0x4: ZoneType.DMA32,
    0x8: ZoneType.NORMAL,  # MOVABLE alone is a policy, not a zone
    0x9: ZoneType.DMA,
    0xA: ZoneType.MOVABLE,  # MOVABLE + HIGHMEM
    0xC: ZoneType.DMA32,
}
ZONE_BAD = (0x3, 0x5, 0x6, 0x7, 0xB, 0xD, 0xE, 0xF)


@pytest.mark.parametrize(("bits", "zone"), sorted(ZONE_TABLE.items()))
def test_gfp_zone_table(bits: int, zone: ZoneType) -> None:
    assert g.gfp_zone(bits) == zone
    # the zone bits alone decide: other bits do not change the zone
    assert g.gfp_zone(bits | g.GFP_KERNEL | Gfp.NORETRY | Gfp.RECLAIMABLE) == zone


@pytest.mark.parametrize(
    ("gfp", "zone"),
    [(g.GFP_KERNEL, ZoneType.NORMAL), (g.GFP_USER, ZoneType.NORMAL), (g.GFP_ATOMIC, ZoneType.NORMAL),
     (g.GFP_HIGHUSER, ZoneType.HIGHMEM), (g.GFP_HIGHUSER_MOVABLE, ZoneType.MOVABLE),
     (g.GFP_DMA, ZoneType.DMA), (g.GFP_DMA32, ZoneType.DMA32), (g.GFP_KERNEL | Gfp.DMA32, ZoneType.DMA32),
     (g.GFP_TRANSHUGE, ZoneType.MOVABLE)],
)
def test_gfp_zone_of_the_composites(gfp: int, zone: ZoneType) -> None:
    assert g.gfp_zone(gfp) == zone


@pytest.mark.parametrize("bits", ZONE_BAD)
def test_bad_zone_combinations_are_refused_by_the_allocator(bits: int) -> None:
    """The kernel BUGs on GFP_ZONE_BAD; the simulator's allocator says which bits clash."""
    m = Machine(MachineConfig.x86_64_guest(64 * MiB))
    with pytest.raises(ValueError, match="zone"):
        m.alloc_pages(bits, 0, 0)


def test_movable_and_reclaimable_together_are_refused() -> None:
    """gfp_migratetype() warns on both bits (the result would be HIGHATOMIC): a caller bug."""
    m = Machine(MachineConfig.x86_64_guest(64 * MiB))
    with pytest.raises(ValueError, match="RECLAIMABLE"):
        m.alloc_pages(g.GFP_KERNEL | Gfp.MOVABLE | Gfp.RECLAIMABLE, 0, 0)


@pytest.mark.parametrize(
    ("gfp", "mt"),
    [(0, MigrateType.UNMOVABLE), (g.GFP_KERNEL, MigrateType.UNMOVABLE), (g.GFP_ATOMIC, MigrateType.UNMOVABLE),
     (g.GFP_USER, MigrateType.UNMOVABLE), (g.GFP_HIGHUSER, MigrateType.UNMOVABLE),
     (g.GFP_HIGHUSER_MOVABLE, MigrateType.MOVABLE), (Gfp.MOVABLE, MigrateType.MOVABLE),
     (g.GFP_KERNEL | Gfp.RECLAIMABLE, MigrateType.RECLAIMABLE), (g.GFP_TRANSHUGE, MigrateType.MOVABLE),
     (g.GFP_DMA | Gfp.MOVABLE, MigrateType.MOVABLE)],
)
def test_gfp_migratetype(gfp: int, mt: MigrateType) -> None:
    # (gfp & (__GFP_MOVABLE|__GFP_RECLAIMABLE)) >> 3: 0 UNMOVABLE, 1 MOVABLE, 2 RECLAIMABLE
    assert (gfp & 0x18) >> 3 == int(mt)
    assert g.gfp_migratetype(gfp) == mt


def test_fallback_table_is_the_kernels() -> None:
    """mm/page_alloc.c fallbacks[]: every type falls back to the other two, in this order."""
    assert g.FALLBACKS == {
        MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
        MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
        MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
    }
    assert [int(t) for t in MigrateType] == [0, 1, 2, 3, 4, 5]
    assert g.MIGRATE_PCPTYPES == 3


@pytest.mark.parametrize(
    ("gfp", "flags"),
    [
        # ALLOC_WMARK_MIN, plus __GFP_HIGH and __GFP_KSWAPD_RECLAIM as ALLOC_HIGH / ALLOC_KSWAPD,
        # plus ALLOC_HARDER for __GFP_ATOMIC without __GFP_NOMEMALLOC (v6.1 gfp_to_alloc_flags)
        (g.GFP_KERNEL, 0x800),
        (g.GFP_ATOMIC, 0x20 | 0x10 | 0x800),
        (g.GFP_ATOMIC | Gfp.NOMEMALLOC, 0x20 | 0x800),
        (g.GFP_NOWAIT, 0x800),
        (g.GFP_TRANSHUGE_LIGHT, 0),
        (Gfp.HIGH, 0x20),
    ],
)
def test_gfp_to_alloc_flags(gfp: int, flags: int) -> None:
    assert g.gfp_to_alloc_flags(gfp) == flags
    assert int(Gfp.HIGH) == g.ALLOC_HIGH and int(Gfp.KSWAPD_RECLAIM) == g.ALLOC_KSWAPD


def test_parse_gfp() -> None:
    assert g.parse_gfp("GFP_KERNEL | __GFP_NORETRY") == g.GFP_KERNEL | 0x10000
    assert g.parse_gfp("GFP_HIGHUSER_MOVABLE") == g.GFP_HIGHUSER_MOVABLE
    assert g.parse_gfp("__GFP_MOVABLE|__GFP_NOWARN") == 0x08 | 0x2000
    with pytest.raises(ValueError, match="GFP_BOGUS"):
        g.parse_gfp("GFP_KERNEL | GFP_BOGUS")


def test_blocking() -> None:
    assert g.gfpflags_allow_blocking(g.GFP_KERNEL)
    assert not g.gfpflags_allow_blocking(g.GFP_ATOMIC)
    assert not g.gfpflags_allow_blocking(g.GFP_TRANSHUGE_LIGHT)
    assert g.gfpflags_allow_blocking(g.GFP_TRANSHUGE)


def test_zonelists_walk_down_from_the_highest_allowed_zone() -> None:
    """The zonelist of a request: its highest zone first, then every zone below (Normal -> DMA32 -> DMA)."""
    m = Machine(MachineConfig.x86_64_guest(5 * GiB))
    names = {gfp: [z.name for z in m.buddy.alloc_context(gfp).zonelist]
             for gfp in (g.GFP_KERNEL, g.GFP_HIGHUSER_MOVABLE, g.GFP_DMA32, g.GFP_DMA)}
    assert names == {g.GFP_KERNEL: ["Normal", "DMA32", "DMA"], g.GFP_HIGHUSER_MOVABLE: ["Normal", "DMA32", "DMA"],
                     g.GFP_DMA32: ["DMA32", "DMA"], g.GFP_DMA: ["DMA"]}
