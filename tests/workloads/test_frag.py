"""frag keeps 1 page of every 4, so each 2 MiB keeps a quarter of its pages (give or
take the group that straddles its edge), and no free block it leaves can be large:
every run of 4 consecutively allocated pages keeps one, so a free run is at most 6
pages long, which holds an aligned block of order 2 at most (order 1 at most when
the groups are 4-aligned and the first page is kept: page 1 is free alone, its
buddy page 0 being used, and pages 2-3 form an order-1 block)."""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.invariants import assert_consistent
from pagemig.mm.pages import PageKind
from pagemig.workloads import frag

from .conftest import build


def test_quarter_of_each_pageblock_kept(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(frag.Frag, m, frag.validate)
    w.step(0.0, 1.0)
    stats = w.stats()
    n = stats["pages_allocated"]
    assert n // 4 <= stats["pages_held"] <= -(-n // 4)  # 1 of every 4 (the last group may be short)
    anon = (m.pages.kind == PageKind.ANON).reshape(-1, 512)
    per_block = anon.sum(axis=1)
    touched = per_block > 0
    assert np.mean(np.abs(per_block[touched] - 128) <= 1) >= 0.97
    assert per_block.sum() == stats["pages_held"]
    assert_consistent(m)


@pytest.mark.parametrize(("survivor", "largest"), [("random", 2), ("first", 1)])
def test_no_large_free_block_in_fragged_blocks(machine, survivor: str,  # type: ignore[no-untyped-def]
                                               largest: int) -> None:
    m = machine(256)
    w = build(frag.Frag, m, frag.validate, size="128MiB", survivor=survivor)
    w.step(0.0, 1.0)
    held = w.owner.pages.pfns()
    anon_blocks = set(np.unique(held >> 9).tolist())
    edge_blocks = {int(held.min()) >> 9, int(held.max()) >> 9}  # the fill's first and last pageblocks
    inside = [o for zone in m.zones for o in range(11) for mt_list in zone.free_area[o] for head in mt_list
              if head >> 9 in anon_blocks - edge_blocks]
    assert inside and max(inside) <= largest


@pytest.mark.parametrize(("keep", "every"), [(1, 2), (3, 4), (0, 4), (4, 4)])
@pytest.mark.parametrize("survivor", ["random", "first"])
def test_keep_every(machine, keep: int, every: int, survivor: str) -> None:  # type: ignore[no-untyped-def]
    m = machine(128)
    w = build(frag.Frag, m, frag.validate, size="32MiB", keep=keep, every=every, survivor=survivor)
    w.step(0.0, 1.0)
    n = 32 * 256
    assert int(np.count_nonzero(m.pages.kind == PageKind.ANON)) == n // every * keep
    if survivor == "first":  # allocation order is pfn order here: the kept pages are the groups' first
        held = np.sort(w.owner.pages.pfns())
        assert np.all(np.diff(held.reshape(-1, max(keep, 1))[:, 0] if keep else held) >= 0)
    assert_consistent(m)


def test_random_survivors_differ_between_groups(machine) -> None:  # type: ignore[no-untyped-def]
    """The survivor's place in its group varies (a periodic pattern would line up with the
    free scanner's sampling stride, which the real machine's pfn order does not)."""
    m = machine(128)
    w = build(frag.Frag, m, frag.validate, size="32MiB")
    w.step(0.0, 1.0)
    held = np.sort(w.owner.pages.pfns())
    offsets = np.bincount(held % 4, minlength=4)
    assert np.all(offsets > len(held) // 8)  # each place in a group is taken by about a quarter


def test_fill_stays_clear_of_reclaim(machine) -> None:  # type: ignore[no-untyped-def]
    """Filling takes what is free above the watermarks, so nothing wakes kswapd or reclaims."""
    m = machine(128)
    w = build(frag.Frag, m, frag.validate, every=1)  # keep everything: memory full
    w.step(0.0, 1.0)
    for zone in m.zones:
        assert zone.free_pages >= zone.wmark_low
    assert m.vmstat["pgscan_kswapd"] == 0 and m.vmstat["allocstall_movable"] == 0
