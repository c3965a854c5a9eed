"""Zones: min_free_kbytes, per-zone watermarks, lowmem_reserve, the watermark check, zone fallback.

Truth: the table in mm/page_alloc.c's comment above calculate_min_free_kbytes(),
and per-zone figures worked by hand from __setup_per_zone_wmarks() and
setup_per_zone_lowmem_reserve() (v6.1) for machines whose managed pages are counted
by hand from their layout.  Each hand computation is written out next to its numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagemig.mm.buddy import BuddyAllocator
from pagemig.mm.gfp import (
    ALLOC_HARDER,
    ALLOC_HIGH,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    MigrateType,
    ZoneType,
)
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import GiB, Machine, MachineConfig, SlowPath
from pagemig.mm.pages import PageKind
from pagemig.mm.zone import ZoneSpec, min_free_kbytes_for

# mm/page_alloc.c, the comment above calculate_min_free_kbytes(): lowmem MB -> min_free_kbytes
KERNEL_TABLE = {16: 512, 32: 724, 64: 1024, 128: 1448, 256: 2048, 512: 2896, 1024: 4096,
                2048: 5792, 4096: 8192, 8192: 11584, 16384: 16384}


@pytest.mark.parametrize(("mb", "kbytes"), sorted(KERNEL_TABLE.items()))
def test_min_free_kbytes_matches_the_kernels_table(mb: int, kbytes: int) -> None:
    if mb == 8192:
        # The comment's table is off by one here: the code is int_sqrt(8388608 * 16) =
        # int_sqrt(134217728) = 11585 (11585^2 = 134212225 <= 134217728 < 11586^2 = 134235396).
        # The kernel computes 11585, and so must we.
        assert min_free_kbytes_for(mb * 1024) == kbytes + 1 == 11585
        return
    assert min_free_kbytes_for(mb * 1024) == kbytes


def test_min_free_kbytes_is_clamped() -> None:
    assert min_free_kbytes_for(0) == 128
    assert min_free_kbytes_for(1024) == 128  # sqrt(16384) = 128 exactly
    assert min_free_kbytes_for(1000) == 128  # 126 clamped up
    assert min_free_kbytes_for(4 << 30) == 262144  # 4 TiB: sqrt(2^36) = 2^18, the upper clamp
    assert min_free_kbytes_for(64 << 30) == 262144


@given(st.integers(0, 1 << 40))
def test_min_free_kbytes_is_the_clamped_integer_square_root(lowmem_kbytes: int) -> None:
    v = min_free_kbytes_for(lowmem_kbytes)
    assert 128 <= v <= 262144
    if 128 < v < 262144:
        assert v * v <= lowmem_kbytes * 16 < (v + 1) * (v + 1)


def zone_marks(m: Machine) -> dict[str, tuple[int, int, int, int]]:
    return {z.name: (z.managed_pages, z.wmark_min, z.wmark_low, z.wmark_high) for z in m.zones}


def test_one_gib_guest_by_hand() -> None:
    """An x86-64 guest of 1 GiB: 262144 pages.

    DMA [0, 4096) less pfn 0 (BIOS): 4095 managed.  DMA32 [4096, 262144) less the
    kernel image (24 MiB = 6144 pages at 16 MiB) and the memmap (64 bytes a page:
    262144 * 64 / 4096 = 4096 pages at the top): 247808 managed.  Lowmem = 251903
    pages = 1007612 KiB; int_sqrt(1007612 * 16 = 16121792) = 4015 (4015^2 = 16120225,
    4016^2 = 16128256).  pages_min = 4015 >> 2 = 1003.
      DMA:   min = 1003 * 4095 // 251903 = 16;  gap = max(16 >> 2, 4095 * 10 // 10000) = max(4, 4) = 4
      DMA32: min = 1003 * 247808 // 251903 = 986; gap = max(986 >> 2, 247808 * 10 // 10000) = max(246, 247) = 247
    lowmem_reserve: DMA keeps 247808 // 256 = 968 back from every request above it; DMA32 keeps
    0 (no Normal zone above it).
    """
    m = Machine(MachineConfig.x86_64_guest(1 * GiB))
    assert m.sysctl.min_free_kbytes == 4015
    assert zone_marks(m) == {"DMA": (4095, 16, 20, 24), "DMA32": (247808, 986, 1233, 1480)}
    dma, dma32 = m.zones
    assert dma.lowmem_reserve[ZoneType.DMA] == 0
    for zt in (ZoneType.DMA32, ZoneType.NORMAL, ZoneType.HIGHMEM, ZoneType.MOVABLE):
        assert dma.lowmem_reserve[zt] == 968
    assert dma32.lowmem_reserve == [0] * len(ZoneType)


def test_one_gib_guest_with_the_tables_min_free_kbytes() -> None:
    """min_free_kbytes = 4096 (the table's 1 GiB figure): pages_min = 1024.
    DMA: 1024 * 4095 // 251903 = 16, gap 4.  DMA32: 1024 * 247808 // 251903 = 1007,
    gap = max(251, 247) = 251."""
    m = Machine(MachineConfig.x86_64_guest(1 * GiB, min_free_kbytes=4096))
    assert zone_marks(m) == {"DMA": (4095, 16, 20, 24), "DMA32": (247808, 1007, 1258, 1509)}


def test_watermarks_follow_their_sysctls() -> None:
    """watermark_scale_factor = 200 (2%): DMA32 gap = max(986 >> 2, 247808 * 200 // 10000 = 4956)."""
    m = Machine(MachineConfig.x86_64_guest(1 * GiB))
    m.set_sysctl("watermark_scale_factor", 200)
    assert zone_marks(m)["DMA32"] == (247808, 986, 986 + 4956, 986 + 2 * 4956)
    m.set_sysctl("min_free_kbytes", 4096)
    assert zone_marks(m)["DMA32"] == (247808, 1007, 1007 + 4956, 1007 + 2 * 4956)
    with pytest.raises(KeyError):
        m.set_sysctl("no_such_knob", 1)


def test_sixteen_gib_guest_lowmem_reserve_by_hand() -> None:
    """16 GiB = 4194304 pages.  DMA32 [4096, 1048576) less the 6144-page kernel image: 1038336.
    Normal [1048576, 4194304) less the memmap (4194304 * 64 / 4096 = 65536): 3080192.
    DMA keeps 1038336 // 256 = 4056 from DMA32 requests and (1038336 + 3080192) // 256 = 16088
    from Normal ones; DMA32 keeps 3080192 // 256 = 12032 from Normal requests."""
    m = Machine(MachineConfig.x86_64_guest(16 * GiB))
    dma, dma32, normal = m.zones
    assert (dma.managed_pages, dma32.managed_pages, normal.managed_pages) == (4095, 1038336, 3080192)
    assert dma.lowmem_reserve[ZoneType.DMA32] == 4056
    assert dma.lowmem_reserve[ZoneType.NORMAL] == 16088
    assert dma.lowmem_reserve[ZoneType.MOVABLE] == 16088
    assert dma32.lowmem_reserve[ZoneType.NORMAL] == 12032
    assert dma32.lowmem_reserve[ZoneType.MOVABLE] == 12032
    assert normal.lowmem_reserve == [0] * len(ZoneType)
    # lowmem 4122623 pages = 16490492 KiB; int_sqrt(263847872) = 16243 (16243^2 = 263835049)
    assert m.sysctl.min_free_kbytes == 16243


def test_highmem_zone_watermarks_by_hand() -> None:
    """A 32-bit device with 768 MiB Normal and 256 MiB HighMem, nothing reserved.
    lowmem = 196608 pages = 786432 KiB -> int_sqrt(12582912) = 3547; pages_min = 886.
    Normal: min 886, gap max(221, 196) = 221.  HighMem: min = clamp(65536 // 1024, 32, 128) = 64;
    gap from its share tmp = 886 * 65536 // 196608 = 295: max(295 >> 2, 65) = 73.
    Normal keeps 65536 // 32 = 2048 back from HighMem requests."""
    cfg = MachineConfig(zones=(ZoneSpec("Normal", 0, 196608), ZoneSpec("HighMem", 196608, 65536)),
                        pageblock_order=10)
    m = Machine(cfg)
    assert m.sysctl.min_free_kbytes == 3547
    assert zone_marks(m) == {"Normal": (196608, 886, 1107, 1328), "HighMem": (65536, 64, 137, 210)}
    normal, high = m.zones
    assert normal.lowmem_reserve[ZoneType.HIGHMEM] == 2048
    assert normal.lowmem_reserve[ZoneType.MOVABLE] == 2048
    assert high.lowmem_reserve == [0] * len(ZoneType)


# ---------------------------------------------------------------------------- __zone_watermark_ok
def watermark_machine() -> Machine:
    """One Normal zone of 2048 pages, in use but for an order-3 block at 8 and 100 order-0
    blocks at 1024, 1026, ... (free_pages = 108)."""
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 2048),), min_free_kbytes=0))
    kind = np.full(2048, PageKind.KERNEL, dtype=np.uint8)
    heads = [8, *range(1024, 1224, 2)]
    orders = [3] + [0] * 100
    for h, o in zip(heads, orders, strict=True):
        kind[h:h + (1 << o)] = PageKind.FREE
    m.load_state(kind, np.array(heads), np.array(orders), np.full(4, MigrateType.UNMOVABLE))
    assert m.zones[0].free_pages == 108
    return m


@pytest.mark.parametrize(
    ("order", "mark", "flags", "ok"),
    [
        (0, 100, 0, True),  # 108 > 100
        (0, 107, 0, True),
        (0, 108, 0, False),  # free_pages <= min fails
        (3, 100, 0, True),  # 108 - 7 = 101 > 100, and an order-3 block exists
        (3, 101, 0, False),  # 101 <= 101
        (4, 50, 0, False),  # 108 - 15 = 93 > 50, but no block of order 4 or more
        (0, 200, ALLOC_HIGH, True),  # min 200 - 100 = 100 < 108
        (0, 216, ALLOC_HIGH, False),  # 216 - 108 = 108
        (0, 140, ALLOC_HARDER, True),  # 140 - 35 = 105
        (0, 148, ALLOC_HARDER, False),  # 148 - 37 = 111
        (0, 280, ALLOC_HIGH | ALLOC_HARDER, True),  # 280 - 140 = 140; 140 - 35 = 105
    ],
)
def test_zone_watermark_ok(order: int, mark: int, flags: int, ok: bool) -> None:
    m = watermark_machine()
    assert m.buddy.zone_watermark_ok(m.zones[0], order, mark, ZoneType.NORMAL, flags) is ok


def test_zone_watermark_ok_honours_lowmem_reserve() -> None:
    m = watermark_machine()
    zone = m.zones[0]
    zone.lowmem_reserve[ZoneType.MOVABLE] = 10
    assert m.buddy.zone_watermark_ok(zone, 0, 97, ZoneType.NORMAL, 0)
    assert m.buddy.zone_watermark_ok(zone, 0, 97, ZoneType.MOVABLE, 0)  # 108 > 97 + 10
    assert not m.buddy.zone_watermark_ok(zone, 0, 98, ZoneType.MOVABLE, 0)  # 108 <= 98 + 10


def test_highatomic_blocks_count_only_for_harder_requests() -> None:
    m = watermark_machine()
    zone = m.zones[0]
    buddy: BuddyAllocator = m.buddy
    buddy.del_free_block(zone, 8)
    buddy.add_free_block(zone, 8, 3, MigrateType.HIGHATOMIC)
    assert not buddy.zone_watermark_ok(zone, 3, 50, ZoneType.NORMAL, 0)
    assert buddy.zone_watermark_ok(zone, 3, 50, ZoneType.NORMAL, ALLOC_HARDER)


# ---------------------------------------------------------------------------- zone fallback
def three_zone_machine() -> Machine:
    """DMA, DMA32 and Normal of 4096 pages each, nothing reserved, min_free_kbytes = 0.
    Then pages_min = 0 and every zone's gap is max(0, 4096 * 10 // 10000) = 4: min 0, low 4.
    lowmem_reserve: DMA32 keeps 4096 // 256 = 16 from Normal requests; DMA keeps
    4096 // 256 = 16 from DMA32 requests and 8192 // 256 = 32 from Normal ones."""
    cfg = MachineConfig(zones=(ZoneSpec("DMA", 0, 4096), ZoneSpec("DMA32", 4096, 4096),
                               ZoneSpec("Normal", 8192, 4096)), min_free_kbytes=0)
    m = Machine(cfg)
    m.slowpath = SlowPath()  # the bare allocator's slow path: retry at the min watermark
    assert [(z.wmark_min, z.wmark_low) for z in m.zones] == [(0, 4)] * 3
    assert m.zones[1].lowmem_reserve[ZoneType.NORMAL] == 16
    assert m.zones[0].lowmem_reserve[ZoneType.NORMAL] == 32
    assert m.zones[0].lowmem_reserve[ZoneType.DMA32] == 16
    return m


def zone_sequence(m: Machine, gfp: int) -> list[tuple[str, int]]:
    """Allocate order-0 pages until failure; return runs of (zone name, count) in order."""
    runs: list[tuple[str, int]] = []
    while (pfn := m.alloc_pages(gfp, 0, 1, PageKind.KERNEL)) >= 0:
        name = m.zone_of(pfn).name
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1] + 1)
        else:
            runs.append((name, 1))
    return runs


class _Holder:
    name = "holder"
    owner_id = 0

    def expected_contents(self) -> None:
        return None


def test_zone_fallback_normal_dma32_dma() -> None:
    """GFP_KERNEL walks Normal -> DMA32 -> DMA, each while free_pages > low + lowmem_reserve:
    Normal 4096 - 4 = 4092, DMA32 4096 - (4 + 16) = 4076, DMA 4096 - (4 + 32) = 4060.  Then the
    slow path retries at the min watermark (0): Normal 4 more, DMA32 down to its reserve 16
    (4 more), DMA down to 32 (4 more).  Then nothing."""
    m = three_zone_machine()
    m.register_owner(_Holder())  # type: ignore[arg-type]
    assert zone_sequence(m, GFP_KERNEL) == [("Normal", 4092), ("DMA32", 4076), ("DMA", 4060),
                                            ("Normal", 4), ("DMA32", 4), ("DMA", 4)]
    assert [z.free_pages for z in m.zones] == [32, 16, 0]
    assert m.read_vmstat()["pgalloc_fail"] == 1
    assert_consistent(m)


def test_lower_zone_requests_stay_low() -> None:
    """GFP_DMA32 never touches Normal, and sees DMA's reserve for DMA32 requests (16)."""
    m = three_zone_machine()
    m.register_owner(_Holder())  # type: ignore[arg-type]
    assert zone_sequence(m, GFP_DMA32) == [("DMA32", 4092), ("DMA", 4076), ("DMA32", 4), ("DMA", 4)]
    # DMA is left with 16 free pages, its reserve against DMA32 requests; a GFP_DMA request
    # sees no reserve (lowmem_reserve[DMA] = 0): 12 pages down to low = 4, then 4 in the slow path.
    assert zone_sequence(m, GFP_DMA) == [("DMA", 16)]
    m2 = three_zone_machine()
    m2.register_owner(_Holder())  # type: ignore[arg-type]
    assert zone_sequence(m2, GFP_DMA) == [("DMA", 4096)]  # 4092 fast, 4 slow: all of it


def test_atomic_requests_dip_below_min() -> None:
    """GFP_ATOMIC in the slow path: ALLOC_HIGH halves min and ALLOC_HARDER takes a quarter off
    that.  With min_free_kbytes = 4096 on one 2048-page zone: pages_min 1024, gap = max(256, 2),
    low = 1280: the fast path stops at 1280 free, the atomic slow path at min = 1024 -> 512 -> 384."""
    m = Machine(MachineConfig(zones=(ZoneSpec("Normal", 0, 4096),), min_free_kbytes=4096))
    m.slowpath = SlowPath()
    m.register_owner(_Holder())  # type: ignore[arg-type]
    zone = m.zones[0]
    assert (zone.wmark_min, zone.wmark_low) == (1024, 1280)
    n_kernel = sum(1 for _ in iter(lambda: m.alloc_pages(GFP_KERNEL, 0, 1), -1))
    assert n_kernel == 4096 - 1024  # the slow path of GFP_KERNEL goes down to min
    n_atomic = sum(1 for _ in iter(lambda: m.alloc_pages(GFP_ATOMIC, 0, 1), -1))
    assert n_atomic == 1024 - 384
    assert zone.free_pages == 384


def test_movable_requests_use_all_zones() -> None:
    m = three_zone_machine()
    m.register_owner(_Holder())  # type: ignore[arg-type]
    runs = zone_sequence(m, GFP_HIGHUSER_MOVABLE)
    assert [r[0] for r in runs[:3]] == ["Normal", "DMA32", "DMA"]
    assert runs[:3] == [("Normal", 4092), ("DMA32", 4076), ("DMA", 4060)]
