"""Page kinds, free-block reconstruction and pageblock types: hand-worked cases, then the
real UML snapshots, whose own buddyinfo and pagetypeinfo are the answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagemig.mm.gfp import MigrateType
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.snapshot.importer import (
    blocks_from_free_mask,
    blocks_from_heads,
    classify_pages,
    fit_to_counts,
    import_snapshot,
    place_in_tail,
)
from pagemig.snapshot.model import Snapshot, load_snapshot
from pagemig.snapshot.parse import KPF, BuddyZone, ZoneInfo


def kind_counts(kind: np.ndarray) -> dict[str, int]:
    c = np.bincount(kind, minlength=len(PageKind))
    return {k.name: int(c[k]) for k in PageKind}


def w(*bits: KPF) -> int:
    return sum(1 << int(b) for b in bits)


def test_blocks_from_free_mask_hand_worked() -> None:
    # pfns 0-7 free (one order-3 block), 8 used, 9 free (its buddy 8 is not: order 0),
    # 10-11 free (order 1; its buddy 8-9 is not wholly free), 12-15 used.
    mask = np.zeros(16, bool)
    mask[[0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11]] = True
    pfns, orders = blocks_from_free_mask(mask, 0, max_order=4)
    assert list(zip(pfns.tolist(), orders.tolist(), strict=True)) == [(0, 3), (9, 0), (10, 1)]


def test_blocks_from_free_mask_stops_at_max_order() -> None:
    pfns, orders = blocks_from_free_mask(np.ones(16, bool), 16, max_order=2)
    assert pfns.tolist() == [16, 20, 24, 28] and orders.tolist() == [2, 2, 2, 2]


def test_blocks_from_heads_uses_alignment_and_quiet_run() -> None:
    flags = np.zeros(16, np.uint64)
    flags[0] = w(KPF.BUDDY)  # 0-3 quiet then a used page at 4: order 2
    flags[4] = w(KPF.SLAB)
    flags[6] = w(KPF.BUDDY)  # aligned to 2 only, 7 quiet: order 1
    flags[8] = w(KPF.BUDDY)  # 8-15 quiet: order 3
    pfns, orders = blocks_from_heads(flags, None, 0, 16, max_order=3)
    assert list(zip(pfns.tolist(), orders.tolist(), strict=True)) == [(0, 2), (6, 1), (8, 3)]


def test_classify_pages_precedence_and_compound_tails() -> None:
    flags = np.array([
        w(KPF.RESERVED),
        w(KPF.BUDDY),
        w(KPF.SLAB, KPF.COMPOUND_HEAD),
        w(KPF.COMPOUND_TAIL),  # tail of the slab page above
        w(KPF.ANON, KPF.LRU, KPF.MMAP, KPF.SWAPBACKED),
        w(KPF.LRU, KPF.MMAP),  # page cache
        w(KPF.PGTABLE),
        w(KPF.MMAP),  # mapped, on no LRU: zsmalloc in 6.1
        w(KPF.MMAP, KPF.PRIVATE),  # first page of a zspage
        0,  # vmalloc, stacks, per-cpu lists
        w(KPF.LOCKED, KPF.LRU, KPF.DIRTY),
        w(KPF.NOPAGE),
    ], dtype=np.uint64)
    kind, pf = classify_pages(flags)
    K = PageKind
    assert kind.tolist() == [K.RESERVED, K.FREE, K.SLAB_UNRECLAIMABLE, K.SLAB_UNRECLAIMABLE, K.ANON, K.FILE,
                             K.PAGETABLE, K.DRIVER, K.DRIVER, K.KERNEL, K.FILE, K.RESERVED]
    assert pf[2] == PageFlag.HEAD and pf[3] == PageFlag.TAIL
    assert pf[10] == PageFlag.LOCKED | PageFlag.DIRTY
    assert not (pf & PageFlag.PINNED).any()


def test_fit_to_counts_moves_cheapest_blocks() -> None:
    # three blocks all prefer type 1; the target wants one of type 0: the block that
    # loses least by the move (row 2) goes.
    score = np.array([[0.0, 10.0], [1.0, 9.0], [5.0, 6.0]])
    assert fit_to_counts(score, np.array([1, 2])).tolist() == [1, 1, 0]


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 6), st.integers(2, 3), st.data())
def test_fit_to_counts_is_optimal(nb: int, nt: int, data: st.DataObject) -> None:
    """Against brute force over every assignment with the right counts."""
    import itertools

    score = np.array(data.draw(st.lists(st.lists(st.integers(0, 20), min_size=nt, max_size=nt),
                                        min_size=nb, max_size=nb)), dtype=float)
    cuts = sorted(data.draw(st.lists(st.integers(0, nb), min_size=nt - 1, max_size=nt - 1)))
    target = np.diff([0, *cuts, nb])
    got = fit_to_counts(score, target)
    assert np.bincount(got, minlength=nt).tolist() == target.tolist()
    best = max(score[np.arange(nb), list(a)].sum() for a in itertools.product(range(nt), repeat=nb)
               if np.bincount(list(a), minlength=nt).tolist() == target.tolist())
    assert score[np.arange(nb), got].sum() == best


def _is_fixed_point(mask_len: int, lo: int, pfns: np.ndarray, orders: np.ndarray, top: int) -> bool:
    mask = np.zeros(mask_len, bool)
    for p, o in zip(pfns.tolist(), orders.tolist(), strict=True):
        assert not mask[p:p + (1 << o)].any(), "overlap"
        mask[p:p + (1 << o)] = True
    rp, ro = blocks_from_free_mask(mask, 0, top)
    s = np.argsort(pfns)
    return rp.tolist() == pfns[s].tolist() and ro.tolist() == orders[s].tolist()


def test_place_in_tail_dense_pattern() -> None:
    # one used page in every four, as frag leaves memory: per 4 pages an order-0 and an
    # order-1 block; 4 of each must fit in 16 pages exactly.
    pfns, orders, left = place_in_tail([4, 4, 0], 16, 32)
    assert left == [0, 0, 0]
    assert _is_fixed_point(32, 16, pfns, orders, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=4, max_size=4), st.integers(0, 15))
def test_place_in_tail_never_leaves_mergeable_buddies(diff: list[int], off: int) -> None:
    lo, hi = 64 + off, 128
    pfns, orders, left = place_in_tail(diff, lo, hi)
    assert all(0 <= x <= d for x, d in zip(left, diff, strict=True))
    assert ((pfns >= lo) & (pfns + (1 << orders.astype(int)) <= hi)).all()
    assert _is_fixed_point(128, lo, pfns, orders, 3)


# --- the real snapshots -------------------------------------------------------------


def test_frag128_free_blocks_match_buddyinfo_with_the_uml_tail(frag128: Path) -> None:
    snap = load_snapshot(frag128)
    zone = snap.populated_zones[0]
    state = import_snapshot(snap)
    (check,) = state.report.free
    assert state.report.mode == "all-pages"  # 6.1 flags every page of a free block
    # UML's kpageflags covers as many pfns as the zone manages, not the zone's span
    assert len(snap.kpageflags) == zone.managed == check.visible_end
    assert check.unseen_pages == zone.spanned - zone.managed == 3300
    assert any("3300 pages (12.9 MiB) short of the zone end" in n for n in state.report.notes)
    # what kpageflags shows plus what was placed in the tail is buddyinfo, order by order
    assert check.difference == (0,) * 11
    assert check.buddyinfo == snap.buddyinfo[0].counts
    assert check.pages(check.reconstructed) < check.pages(check.buddyinfo)  # the shortfall is real
    assert state.free_counts(state.zones[0]) == list(snap.buddyinfo[0].counts)
    # every FREE page lies in exactly one block and nothing else is FREE
    cover = np.zeros(state.nr_pfns, int)
    for p, o in zip(state.free_pfns.tolist(), state.free_orders.tolist(), strict=True):
        cover[p:p + (1 << o)] += 1
    assert cover.max() == 1
    assert ((cover == 1) == (state.kind == PageKind.FREE)).all()


def test_frag128_kinds_against_vmstat(frag128: Path) -> None:
    snap = load_snapshot(frag128)
    state = import_snapshot(snap)
    kinds = state.report.kind_counts
    # frag kept 1 page in 4 of 75% of MemTotal (86 MiB): 5.5 K pages of anon.  About a
    # quarter sit in the tail kpageflags does not show; vmstat's count fills it back.
    visible = kind_counts(state.kind[: len(snap.kpageflags)])
    assert visible["ANON"] < 0.8 * snap.vmstat["nr_anon_pages"]
    assert kinds["ANON"] == snap.vmstat["nr_anon_pages"]
    assert kinds["PAGETABLE"] == snap.vmstat["nr_page_table_pages"]
    assert any("unseen tail: vmstat counts" in n for n in state.report.notes)
    assert kinds["FREE"] == snap.buddyinfo[0].free_pages
    assert kinds["DRIVER"] <= 2  # no zram here
    assert not (state.flags & PageFlag.MOVABLE).any()


def test_zram128_zsmalloc_pages_read_as_driver(zram128: Path) -> None:
    snap = load_snapshot(zram128)
    state = import_snapshot(snap)
    driver = kind_counts(state.kind[: len(snap.kpageflags)])["DRIVER"]
    # nr_zspages counts zsmalloc's pages; those beyond kpageflags' end are not seen
    assert 0.6 * snap.vmstat["nr_zspages"] <= driver <= snap.vmstat["nr_zspages"]
    # and, zsmalloc's being movable in 6.1, they are offered to compaction
    drv = state.kind == PageKind.DRIVER
    assert ((state.flags[drv] & PageFlag.MOVABLE) != 0).all()
    assert not (state.flags[~drv] & PageFlag.MOVABLE).any()
    assert state.report.free[0].difference == (0,) * 11


@pytest.mark.parametrize("name", ["uml-frag-128M", "uml-zram-128M", "uml-frag-1G", "uml-zram-512M"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_pageblock_types_fit_pagetypeinfo(fixtures_dir: Path, name: str, when: str) -> None:
    snap = load_snapshot(fixtures_dir / name / when)
    state = import_snapshot(snap)
    assert snap.pagetypeinfo is not None
    (fit,) = state.report.fits
    target = snap.pagetypeinfo.blocks[(0, "Normal")]
    assert {t: fit.assigned[t] for t in target} == dict(target)
    assert fit.nr_blocks == snap.populated_zones[0].spanned >> snap.pagetypeinfo.pageblock_order
    # free lists: pagetypeinfo says which list each free block is on; the fitted type of
    # its pageblock agrees for nearly all of them
    assert fit.free_list_agreement >= 0.95
    counts = np.bincount(state.pageblock_mt, minlength=6)
    assert counts[MigrateType.MOVABLE] == target["Movable"]
    # slab in fitted RECLAIMABLE blocks became reclaimable slab, nowhere else
    recl = state.pageblock_mt[np.arange(state.nr_pfns) >> state.pageblock_order] == MigrateType.RECLAIMABLE
    assert not ((state.kind == PageKind.SLAB_RECLAIMABLE) & ~recl).any()


def test_heads_only_kernel_detected(frag128: Path) -> None:
    """An old kernel flags only the head of a free block: keep BUDDY on heads only and
    the import must still find the same blocks in the visible part."""
    snap = load_snapshot(frag128)
    full = import_snapshot(snap)
    vis = len(snap.kpageflags)
    heads = np.zeros(vis, bool)
    inside = full.free_pfns < vis
    heads[full.free_pfns[inside]] = True
    bud = np.uint64(1 << int(KPF.BUDDY))
    flags = snap.kpageflags.copy()
    flags[(flags & bud) != 0] = 0  # the tails of free blocks: no flags at all
    flags[heads] = bud
    import attrs

    old = import_snapshot(attrs.evolve(snap, kpageflags=flags, kpagecount=None))
    assert old.report.mode == "heads"
    # the same heads; a block followed by flagless in-use pages (per-cpu lists, vmalloc)
    # can only read as larger, never smaller, and the check against buddyinfo shows it
    vis_true = full.free_pfns < vis
    vis_old = old.free_pfns < vis
    assert old.free_pfns[vis_old].tolist() == full.free_pfns[vis_true].tolist()
    assert (old.free_orders[vis_old] >= full.free_orders[vis_true]).all()
    grew = int((old.free_orders[vis_old] > full.free_orders[vis_true]).sum())
    assert grew <= 0.01 * len(full.free_pfns)
    assert sum(abs(d) for d in old.report.free[0].difference) >= grew


def _kmalloc_large_snapshot(slab_pages: int) -> Snapshot:
    """64 pages, kpageflags showing the first 48 (as UML's stops at the managed count):
    an order-3 slab (SLAB on its head), an order-2 kmalloc_large page (a compound page
    with no other bit, 6.1's kmalloc_large_node), 36 anon pages; nothing free."""
    flags = np.zeros(48, dtype=np.uint64)
    flags[0] = w(KPF.SLAB, KPF.COMPOUND_HEAD)
    flags[1:8] = w(KPF.COMPOUND_TAIL)
    flags[8] = w(KPF.COMPOUND_HEAD)
    flags[9:12] = w(KPF.COMPOUND_TAIL)
    flags[12:48] = w(KPF.ANON, KPF.LRU)
    zone = ZoneInfo(node=0, name="Normal", start_pfn=0, spanned=64, present=64, managed=48,
                    free=0, min=0, low=0, high=0, counters={})
    return Snapshot(source=Path("hand-built"), buddyinfo=(BuddyZone(0, "Normal", (0, 0, 0, 0)),),
                    zoneinfo=(zone,), kpageflags=flags,
                    vmstat={"nr_anon_pages": 46, "nr_slab_unreclaimable": slab_pages,
                            "nr_slab_reclaimable": 0})


def test_kmalloc_large_pages_are_not_counted_again_in_the_unseen_tail() -> None:
    # vmstat's slab is the 8 slab pages plus the 4 of kmalloc_large (it adds
    # PAGE_SIZE << order to NR_SLAB_UNRECLAIMABLE_B): all 12 are visible, so the 16
    # unseen pages hold the 10 anon pages kpageflags misses and 6 nothing accounts for
    state = import_snapshot(_kmalloc_large_snapshot(slab_pages=12))
    tail = kind_counts(state.kind[48:])
    assert tail.get("SLAB_UNRECLAIMABLE", 0) == 0
    assert tail["ANON"] == 10
    assert tail["RESERVED"] == 6
    head = kind_counts(state.kind[:12])
    assert (head["SLAB_UNRECLAIMABLE"], head["KERNEL"]) == (8, 4)


def test_flagless_compound_credit_capped_at_vmstat_slab() -> None:
    # a compound page vmstat does not count as slab (a __GFP_COMP driver page) reads
    # the same; with slab = 10 only 2 of its 4 pages can be kmalloc_large's, and no
    # slab is missing from what is seen
    state = import_snapshot(_kmalloc_large_snapshot(slab_pages=10))
    tail = kind_counts(state.kind[48:])
    assert tail.get("SLAB_UNRECLAIMABLE", 0) == 0
    assert any(n.startswith("2 pages of flagless compound") for n in state.report.notes)
    # and with slab = 14, two slab pages really lie in the tail
    state = import_snapshot(_kmalloc_large_snapshot(slab_pages=14))
    assert kind_counts(state.kind[48:])["SLAB_UNRECLAIMABLE"] == 2
