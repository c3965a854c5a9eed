"""frag keeps 1 page of every 4, so each 2 MiB keeps a quarter of its pages, and the
free space it leaves is order-0 and order-1 blocks only (worked out by hand: in a
group of 4 aligned pages where the first is kept, page 1 is free alone (its buddy,
page 0, is used) and pages 2-3 form an order-1 block whose buddy is not free)."""

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
    assert stats["pages_held"] == -(-stats["pages_allocated"] // 4)  # ceil: 1 of every 4, the first kept
    anon = (m.pages.kind == PageKind.ANON).reshape(-1, 512)
    per_block = anon.sum(axis=1)
    touched = per_block > 0
    assert np.mean(per_block[touched] == 128) >= 0.97
    assert per_block.sum() == stats["pages_held"]
    assert_consistent(m)


def test_free_space_is_order_0_and_1_in_fragged_blocks(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(frag.Frag, m, frag.validate)
    w.step(0.0, 1.0)
    anon_blocks = set(np.flatnonzero((m.pages.kind == PageKind.ANON).reshape(-1, 512).any(axis=1)).tolist())
    orders_seen: dict[int, int] = {}
    for zone in m.zones:
        for order in range(11):
            for mt_list in zone.free_area[order]:
                for head in mt_list:
                    if head >> 9 in anon_blocks:
                        orders_seen[order] = orders_seen.get(order, 0) + 1
    big = sum(n for o, n in orders_seen.items() if o >= 2)
    assert big <= 0.01 * sum(orders_seen.values())
    assert abs(orders_seen[0] - orders_seen[1]) <= 0.01 * orders_seen[1]


@pytest.mark.parametrize(("keep", "every"), [(1, 2), (3, 4), (0, 4)])
def test_keep_every(machine, keep: int, every: int) -> None:  # type: ignore[no-untyped-def]
    m = machine(128)
    w = build(frag.Frag, m, frag.validate, size="32MiB", keep=keep, every=every)
    w.step(0.0, 1.0)
    n = 32 * 256
    expected = sum(1 for i in range(n) if i % every < keep)
    assert int(np.count_nonzero(m.pages.kind == PageKind.ANON)) == expected
    assert_consistent(m)


def test_fill_stays_clear_of_reclaim(machine) -> None:  # type: ignore[no-untyped-def]
    """Filling takes what is free above the watermarks, so nothing wakes kswapd or reclaims."""
    m = machine(128)
    w = build(frag.Frag, m, frag.validate, every=1)  # keep everything: memory full
    w.step(0.0, 1.0)
    for zone in m.zones:
        assert zone.free_pages >= zone.wmark_low
    assert m.vmstat["pgscan_kswapd"] == 0 and m.vmstat["allocstall_movable"] == 0
