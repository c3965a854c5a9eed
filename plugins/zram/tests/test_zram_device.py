"""The zram device: the compressibility model, the swap-device protocol, reclaim swapping
into it with content intact, and the GFP masks of v4.8 and before."""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.gfp import Gfp, MigrateType
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.lru import LruOwner
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.mm.swap import swap_devices
from pagemig.mm.vmscan import reclaim_pages
from pagemig.sim.schema import TableError
from pagemig_zram.driver import (
    MAX_ZPAGE_SIZE,
    ZRAM_GFP_FIRST,
    ZRAM_GFP_RETRY,
    ZRAM_GFP_UNMOVABLE,
    ZramDevice,
)
from pagemig_zram.options import validate_options


def device(mib: int = 128, **opts: object) -> tuple[Machine, ZramDevice]:
    m = Machine(MachineConfig.x86_64_guest(mib * MiB))
    return m, ZramDevice(m, validate_options(opts))


def test_gfp_masks_are_v48s_and_the_old_ones() -> None:
    assert ZRAM_GFP_FIRST & Gfp.MOVABLE and not ZRAM_GFP_FIRST & Gfp.DIRECT_RECLAIM
    assert ZRAM_GFP_RETRY & Gfp.MOVABLE and ZRAM_GFP_RETRY & Gfp.DIRECT_RECLAIM
    assert not ZRAM_GFP_RETRY & (Gfp.IO | Gfp.FS)  # GFP_NOIO: reclaim may not start I/O
    assert not ZRAM_GFP_UNMOVABLE & Gfp.MOVABLE


def test_compression_model_is_a_function_of_content() -> None:
    _, z = device(compression_ratio=3.0, zero_fraction=0.1, seed=7)
    tokens = np.arange(1, 20001, dtype=np.uint64) * 2654435761
    lengths = np.array([z.compressed_length(int(t)) for t in tokens])
    again = np.array([z.compressed_length(int(t)) for t in tokens[::-1]])[::-1]
    assert np.array_equal(lengths, again)  # order does not matter, only content
    zero = np.mean(lengths == 0)
    assert abs(zero - 0.1) < 0.01  # 20,000 draws: the standard error is 0.002
    stored = lengths[lengths > 0]
    compressible = stored[stored < 4096]
    assert np.all((compressible >= 24) & (compressible <= MAX_ZPAGE_SIZE))
    assert set(stored[stored > MAX_ZPAGE_SIZE].tolist()) <= {4096}  # too big: stored whole
    # the median of the log-normal is PAGE_SIZE / ratio (huge pages lie above it anyway)
    assert abs(np.median(stored) - 4096 / 3.0) / (4096 / 3.0) < 0.05
    _, other = device(compression_ratio=3.0, zero_fraction=0.1, seed=8)
    assert [other.compressed_length(int(t)) for t in tokens[:50]] != lengths[:50].tolist()


def test_writes_read_back_and_discard_frees_the_pool() -> None:
    m, z = device()
    tokens = [(i * 0x9E3779B1) | 1 for i in range(5000)]
    slots = [z.write(t) for t in tokens]
    assert min(slots) >= 0 and len(set(slots)) == 5000
    assert [z.read(s) for s in slots] == tokens
    assert z.counters["orig_data_size"] == 5000 * 4096
    assert z.verify() == []
    assert_consistent(m)
    for s in slots:
        z.discard(s)
    z.tick(0.0)
    assert z.pool.pages_allocated == 0 and z.counters["compr_data_size"] == 0
    assert int(np.count_nonzero(m.pages.kind == PageKind.DRIVER)) == 0
    with pytest.raises(KeyError):
        z.read(slots[0])
    assert_consistent(m)


def test_pool_pages_come_from_the_right_pageblocks() -> None:
    for movable, mt in ((True, MigrateType.MOVABLE), (False, MigrateType.UNMOVABLE)):
        m, z = device(movable=movable)
        for i in range(4000):
            z.write(i * 977 + 5)
        pfns = z.pool.pages.pfns()
        assert bool(np.all(m.pages.flags[pfns] & PageFlag.MOVABLE)) is movable
        assert np.all(m.buddy.pageblock_mt[pfns >> m.pageblock_order] == mt)


def test_device_full_and_mem_limit() -> None:
    _, z = device(disksize="400KiB")  # 100 slots
    assert z.capacity == 100
    assert all(z.swap_out(i + 1) is not None for i in range(100))
    assert z.swap_out(101) is None
    _, lim = device(mem_limit="64KiB", zero_fraction=0.0)
    stored = 0
    while lim.write(stored * 31 + 1) >= 0:
        stored += 1
    assert stored > 0 and lim.pool.pages_allocated <= 16  # the write that crossed the limit was undone
    assert lim.counters["failed_writes"] == 1


def test_registers_as_the_swap_device_and_reclaim_swaps_into_it_intact() -> None:
    m, z = device(128)
    assert swap_devices(m) == [z]
    app = LruOwner(m, "app")
    app.alloc(12000, PageKind.ANON)
    tokens = dict(zip(*app.pages.contents(), strict=True))
    stats = reclaim_pages(m, 4000)
    assert stats.swapped > 0
    assert z.slots_used == stats.swapped
    assert m.vmstat["pswpout"] == stats.swapped
    assert z.verify() == []
    assert_consistent(m)
    assert app.swap_in(app.nr_swapped) == stats.swapped
    assert app.swap_corruptions == 0  # every page came back with the content it had
    assert z.slots_used == 0
    held = dict(zip(*app.pages.contents(), strict=True))
    assert sorted(held.values()) == sorted(tokens.values())
    z.tick(1.0)
    assert_consistent(m)


def test_swap_out_inside_reclaim_may_dip_below_the_watermarks() -> None:
    """PF_MEMALLOC: with free memory at the min watermark, swap-out still gets its pages
    (without entering reclaim again), while an ordinary write would have to reclaim."""
    m, z = device(128, zero_fraction=0.0)
    hog = LruOwner(m, "hog")
    while True:
        zone = max(m.zones, key=lambda zn: zn.free_pages)
        if zone.free_pages <= zone.wmark_min:
            break
        got = m.buddy.get_page_from_freelist(0, 0, m.buddy.alloc_context(int(Gfp.MOVABLE)))[0]
        if got < 0:
            break
        m.pages._kind[got] = PageKind.ANON
        m.pages._owner[got] = hog.owner_id
        hog.add(got)
    free_before = sum(zn.free_pages for zn in m.zones)
    assert z.swap_out(12345) is not None
    assert sum(zn.free_pages for zn in m.zones) < free_before
    assert m.vmstat["pgscan_direct"] == 0  # no recursion into reclaim
    assert_consistent(m)


@pytest.mark.parametrize(("table", "message"), [
    ({"disksize": "600MB"}, "binary"),
    ({"disksize": "0%"}, "more than 0%"),
    ({"compresion_ratio": 2}, 'did you mean "compression_ratio"'),
    ({"compression_ratio": 0.5}, "from 1"),
    ({"zero_fraction": "150%"}, "between 0% and 100%"),
    ({"movable": 1}, "true or false"),
])
def test_bad_options_are_refused_clearly(table: dict[str, object], message: str) -> None:
    with pytest.raises(TableError) as info:
        validate_options(table)
    assert message in str(info.value)


def test_disksize_as_a_share_of_memory() -> None:
    m, z = device(128, disksize="25%")
    assert z.disksize == m.managed_pages * 4096 // 4 // 4096 * 4096
