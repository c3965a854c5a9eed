"""vmstat: the fragmentation indexes by the kernel's integer formulas, and the /proc renderings.

Truth: the worked examples of shared/reference/kernel-mm.md section 4, more worked by
hand below (each expected value's arithmetic is in the comment beside it), the
kernel's seq_printf formats typed out by hand, and the snapshot parsers (written
against real /proc files captured from Linux 6.1) reading our renderings back.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagemig.mm import vmstat
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, MigrateType
from pagemig.mm.machine import Machine, MachineConfig
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import NR_ORDERS, PageKind
from pagemig.mm.zone import ZoneSpec
from pagemig.snapshot.parse import parse_buddyinfo, parse_pagetypeinfo, parse_vmstat


def counts(**by_order: int) -> list[int]:
    out = [0] * NR_ORDERS
    for key, n in by_order.items():
        out[int(key.removeprefix("o"))] = n
    return out


# ------------------------------------------------------------------ the formulas
def test_fragmentation_index_worked_example_of_the_reference() -> None:
    # kernel-mm.md 4: 100 order-0 and 50 order-1 blocks, k = 3: free 200, blocks 150,
    # 1000 - (1000 + 25000) / 150 = 827
    assert vmstat.fragmentation_index(counts(o0=100, o1=50), 3) == 827


def test_indexes_for_100_order0_and_50_order1_blocks_at_other_orders() -> None:
    c = counts(o0=100, o1=50)
    # a block of order 0 or 1 exists: the allocation would not fail -> -1000
    assert vmstat.fragmentation_index(c, 0) == -1000
    assert vmstat.fragmentation_index(c, 1) == -1000
    # k = 2: 1000 - (1000 + 200*1000/4) / 150 = 1000 - 51000/150 = 1000 - 340 = 660
    assert vmstat.fragmentation_index(c, 2) == 660
    # unusable, k = 1: suitable = 50 blocks of 2 pages: (200 - 100) * 1000 / 200 = 500
    assert vmstat.unusable_free_index(c, 1) == 500
    # k = 3: nothing suitable: all 200 pages unusable
    assert vmstat.unusable_free_index(c, 3) == 1000
    assert vmstat.unusable_free_index(c, 0) == 0
    # extfrag (percent), k = 1: (200 - 100) * 100 / 200 = 50
    assert vmstat.extfrag_for_order(c, 1) == 50


def test_indexes_for_a_mixed_zone_worked_by_hand() -> None:
    # 10 order-0, 5 order-2, 1 order-4: free = 10 + 20 + 16 = 46 pages in 16 blocks
    c = counts(o0=10, o2=5, o4=1)
    info = vmstat.fill_contig_page_info(c, 3)
    assert (info.free_pages, info.free_blocks_total, info.free_blocks_suitable) == (46, 16, 2)
    assert vmstat.fragmentation_index(c, 3) == -1000  # the order-4 block serves order 3
    # unusable k=3: (46 - 2*8) * 1000 / 46 = 30000 / 46 = 652 (652.17)
    assert vmstat.unusable_free_index(c, 3) == 652
    # k=5: 46000 / 32 = 1437; (1000 + 1437) / 16 = 152; 1000 - 152 = 848
    assert vmstat.fragmentation_index(c, 5) == 848
    assert vmstat.unusable_free_index(c, 5) == 1000
    # extfrag k=3: (46 - 16) * 100 / 46 = 3000 / 46 = 65
    assert vmstat.extfrag_for_order(c, 3) == 65
    # k=4: suitable 1 block: (46 - 16) * 1000 / 46 = 652 as well
    assert vmstat.unusable_free_index(c, 4) == 652


def test_empty_zone_conventions() -> None:
    c = counts()
    assert vmstat.fragmentation_index(c, 3) == 0  # no free blocks
    assert vmstat.unusable_free_index(c, 3) == 1000  # "all free memory is unusable"
    assert vmstat.extfrag_for_order(c, 9) == 0


def test_minchan_kim_published_unusable_index() -> None:
    # kernel-mm.md 6: "after: 13,594 blocks, unusable index 0.148" is not reproducible from
    # the table, but the unusable index of a zone whose free memory is all in order-3+
    # blocks is 0, and of one with all of it in order 0..2 is 1.000
    assert vmstat.unusable_free_index(counts(o3=4, o5=2), 3) == 0
    assert vmstat.unusable_free_index(counts(o0=7, o1=3, o2=9), 3) == 1000


@pytest.mark.parametrize("bad", [-1, NR_ORDERS])
def test_orders_out_of_range_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="order"):
        vmstat.fragmentation_index(counts(o0=1), bad)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        vmstat.unusable_free_index([1, -1] + [0] * 9, 0)


@given(st.lists(st.integers(0, 5000), min_size=NR_ORDERS, max_size=NR_ORDERS), st.integers(0, NR_ORDERS - 1))
@settings(max_examples=200, deadline=None)
def test_index_ranges_and_agreement(nr_free: list[int], order: int) -> None:
    """Properties of the formulas: ranges, and unusable/extfrag being one quantity in two scales."""
    fi = vmstat.fragmentation_index(nr_free, order)
    ui = vmstat.unusable_free_index(nr_free, order)
    ef = vmstat.extfrag_for_order(nr_free, order)
    free = sum(n << o for o, n in enumerate(nr_free))
    suitable_pages = sum(n << o for o, n in enumerate(nr_free) if o >= order)
    assert fi == -1000 or 0 <= fi < 1000
    assert (fi == -1000) == (suitable_pages > 0)
    assert 0 <= ui <= 1000 and 0 <= ef <= 100
    if free:
        assert ui == (free - suitable_pages) * 1000 // free
        assert ef == (free - suitable_pages) * 100 // free


# ------------------------------------------------------------------ hand-built machines
def two_zone_state() -> Machine:
    """DMA = pfns 0..4095 with one free order-9 block at 0; Normal = 4096..8191 with every
    other page free (2048 order-0 blocks); everything else in use."""
    m = Machine(MachineConfig(zones=(ZoneSpec("DMA", 0, 4096), ZoneSpec("Normal", 4096, 4096)),
                              min_free_kbytes=1024))
    kind = np.full(8192, PageKind.ANON, dtype=np.uint8)
    kind[0:512] = PageKind.FREE
    kind[4096:8192:2] = PageKind.FREE
    free_pfns = np.concatenate(([0], np.arange(4096, 8192, 2)))
    free_orders = np.concatenate(([9], np.zeros(2048, dtype=np.int64)))
    m.load_state(kind, free_pfns, free_orders, np.full(16, MigrateType.MOVABLE, dtype=np.uint8))
    return m


def test_fragmentation_scores_weighted_by_zone_size() -> None:
    m = two_zone_state()
    dma, normal = m.zones
    assert vmstat.fragmentation_score_zone(dma) == 0  # its free memory is one order-9 block
    assert vmstat.fragmentation_score_zone(normal) == 100  # all in order-0 blocks
    # weighted: present * score / (node present + 1) = 4096 * 100 / 8193 = 49 (49.99)
    assert vmstat.fragmentation_score_zone_weighted(m, normal) == 49
    assert vmstat.fragmentation_score_zone_weighted(m, dma) == 0
    assert vmstat.fragmentation_score_node(m) == 49


def test_extfrag_and_unusable_renderings_worked_by_hand() -> None:
    m = two_zone_state()
    # Normal: 2048 order-0 blocks.  unusable: 0 at order 0, 1000 above.
    # extfrag: -1000 at order 0; then 1000 - (1000 + 2048000 / 2^k) / 2048:
    # k=1 500, 2 750, 3 875, 4 938, 5 969, 6 984, 7 992, 8 996, 9 998, 10 999
    expected_extfrag = ("Node 0, zone   Normal -1.000  0.500  0.750  0.875  0.938  0.969  0.984  0.992  "
                        "0.996  0.998  0.999 \n")
    assert vmstat.render_extfrag_index(m).splitlines(keepends=True)[1] == expected_extfrag
    expected_unusable = "Node 0, zone   Normal 0.000 " + "1.000 " * 10 + "\n"
    assert vmstat.render_unusable_index(m).splitlines(keepends=True)[1] == expected_unusable
    # DMA: one order-9 block: usable up to order 9 (0.000), unusable at 10 (1.000)
    assert vmstat.render_unusable_index(m).splitlines()[0] == "Node 0, zone      DMA " + "0.000 " * 10 + "1.000 "
    info = {i.zone: i for i in vmstat.extfrag_info(m, 1)}
    assert info["Normal"].fragmentation_index == 500 and info["Normal"].unusable_index == 1000
    assert info["DMA"].free_pages == 512 and info["DMA"].free_blocks_suitable == 256


def test_buddyinfo_exact_text(one_zone_machine) -> None:
    m = one_zone_machine(8192)
    # boot frees 8192 pages: eight order-10 blocks
    assert vmstat.render_buddyinfo(m) == (
        "Node 0, zone   Normal      0      0      0      0      0      0      0      0      0      0      8 \n")
    o = SimpleOwner(m, "w")
    pfn = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, o.owner_id, PageKind.ANON)
    o.pages.add(pfn, 1)
    # one order-10 block split down to order 0: one block of each order 0..9 remains
    assert vmstat.render_buddyinfo(m) == (
        "Node 0, zone   Normal      1      1      1      1      1      1      1      1      1      1      7 \n")


def test_pagetypeinfo_exact_text_after_an_unmovable_allocation_steals_a_block(one_zone_machine) -> None:
    m = one_zone_machine(8192)
    o = SimpleOwner(m, "k")
    pfn = m.alloc_pages(GFP_KERNEL, 0, o.owner_id, PageKind.KERNEL)
    o.pages.add(pfn, 1)
    # An unmovable request finds no UNMOVABLE block: it steals the largest MOVABLE block
    # (order 10, two pageblocks, both converted to UNMOVABLE) and splits it on the
    # UNMOVABLE lists: Unmovable holds one block of each order 0..9, Movable seven of order 10.
    expected = (
        "Page block order: 9\n"
        "Pages per block:  512\n"
        "\n"
        "Free pages count per migrate type at order       0      1      2      3      4      5      6"
        "      7      8      9     10 \n"
        "Node    0, zone   Normal, type    Unmovable      1      1      1      1      1      1      1"
        "      1      1      1      0 \n"
        "Node    0, zone   Normal, type      Movable      0      0      0      0      0      0      0"
        "      0      0      0      7 \n"
        "Node    0, zone   Normal, type  Reclaimable      0      0      0      0      0      0      0"
        "      0      0      0      0 \n"
        "Node    0, zone   Normal, type   HighAtomic      0      0      0      0      0      0      0"
        "      0      0      0      0 \n"
        "Node    0, zone   Normal, type          CMA      0      0      0      0      0      0      0"
        "      0      0      0      0 \n"
        "Node    0, zone   Normal, type      Isolate      0      0      0      0      0      0      0"
        "      0      0      0      0 \n"
        "\n"
        "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n"
        "Node 0, zone   Normal            2           14            0            0            0            0 \n"
    )
    assert vmstat.render_pagetypeinfo(m) == expected


def test_pagetypeinfo_caps_long_free_lists_as_the_kernel_does(one_zone_machine) -> None:
    m = one_zone_machine(1 << 18, min_free_kbytes=1024)
    o = SimpleOwner(m, "w")
    pfns = np.sort(m.alloc_pages_bulk(GFP_HIGHUSER_MOVABLE, 1 << 18, o.owner_id, PageKind.ANON))
    o.pages.add_many(pfns, pfns.astype(np.uint64))
    drop = pfns[pfns % 2 == 1]
    o.pages.remove_many(drop)
    m.free_pages_bulk(drop)
    assert m.zones[0].nr_free(0) > 100000
    text = vmstat.render_pagetypeinfo(m)
    movable = next(line for line in text.splitlines() if "Movable" in line and "type" in line)
    assert movable.split()[6] == ">100000"
    pti = parse_pagetypeinfo(text)
    assert (0, "Normal", "Movable", 0) in pti.capped
    assert pti.free[(0, "Normal", "Movable")][0] == 100000


def test_renderings_read_back_by_the_snapshot_parsers(frag_state) -> None:
    m, _ = frag_state(0.25)
    bi = parse_buddyinfo(vmstat.render_buddyinfo(m))
    assert {z.zone: list(z.counts) for z in bi} == vmstat.free_blocks_by_order(m)
    pti = parse_pagetypeinfo(vmstat.render_pagetypeinfo(m))
    assert pti.pageblock_order == m.pageblock_order
    for zone in m.zones:
        for mt, name in enumerate(pti.types):
            assert list(pti.free[(0, zone.name, name)]) == zone.nr_free_by_type(mt)
        assert sum(pti.blocks[(0, zone.name)].values()) == len(range(zone.start_pfn, zone.end_pfn, 512))
    stat = parse_vmstat(vmstat.render_vmstat(m))
    assert stat["nr_free_pages"] == sum(z.free_pages for z in m.zones)
    assert stat["nr_anon_pages"] == int(np.count_nonzero(m.pages.kind == PageKind.ANON))
    for name in ("compact_stall", "compact_success", "compact_fail", "compact_migrate_scanned",
                 "compact_free_scanned", "compact_isolated", "compact_daemon_wake", "pgmigrate_success",
                 "pgmigrate_fail"):
        assert stat[name] == 0


def test_vmstat_lists_events_in_kernel_order_and_keeps_unknown_counters() -> None:
    m = two_zone_state()
    m.vmstat["compact_stall"] += 3
    m.vmstat["pgmigrate_success"] += 7
    m.vmstat["zz_private_counter"] += 1
    names = [k for k, _ in vmstat.vmstat_items(m)]
    assert names.index("pgalloc_dma") < names.index("pgalloc_normal") < names.index("pgfree")
    assert names.index("pgfree") < names.index("pgmigrate_success") < names.index("compact_migrate_scanned")
    assert names.index("compact_stall") < names.index("compact_daemon_wake") < names.index("zz_private_counter")
    stat = parse_vmstat(vmstat.render_vmstat(m))
    assert stat["compact_stall"] == 3 and stat["pgmigrate_success"] == 7 and stat["zz_private_counter"] == 1


def test_free_fraction_helpers() -> None:
    # one zone: 4 pages in order 0 and 2 order-9 blocks (1024 pages): share at order >= 9 = 1024 / 1028
    c = counts(o0=4, o9=2)
    assert vmstat.free_pages_at_or_above(c, 9) == 1024
    assert vmstat.free_fraction_at_or_above([c], 9) == pytest.approx(1024 / 1028)
    assert vmstat.free_fraction_at_or_above([counts()], 9) == 1.0
    m = two_zone_state()
    # DMA: 512 pages at order 9; Normal: 2048 order-0 pages: 512 / 2560
    assert vmstat.machine_free_fraction_at_or_above(m, 9) == pytest.approx(512 / 2560)


def test_pagetypeinfo_of_a_kernel_without_cma_has_the_real_uml_layout() -> None:
    """With four migratetypes (Linux 6.1 UML has no CMA and no memory isolation) our
    /proc/pagetypeinfo has the real file's layout: the same header lines, the same rows
    in the same order, every row the same width (the counts are fixed-width fields)."""
    from pathlib import Path

    from pagemig.snapshot import machine_from_snapshot

    snap = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots" / "uml-frag-1G" / "before"
    machine, _ = machine_from_snapshot(snap)
    real = (snap / "pagetypeinfo").read_text().splitlines()
    ours = vmstat.render_pagetypeinfo(machine, migratetypes=4).splitlines()
    assert len(ours) == len(real)
    for a, b in zip(ours, real, strict=True):
        assert len(a) == len(b) and a.split()[:5] == b.split()[:5], (a, b)
    assert ours[:4] == real[:4] and ours[9] == real[9]
    pti = parse_pagetypeinfo("\n".join(ours))
    assert pti.types == ("Unmovable", "Movable", "Reclaimable", "HighAtomic")
    bi_real = (snap / "buddyinfo").read_text()
    assert len(vmstat.render_buddyinfo(machine)) == len(bi_real)


def test_pagetypeinfo_refuses_a_bad_type_count(one_zone_machine) -> None:
    with pytest.raises(ValueError, match="migratetypes"):
        vmstat.render_pagetypeinfo(one_zone_machine(4096), migratetypes=7)
