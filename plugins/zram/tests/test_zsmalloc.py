"""zsmalloc against mm/zsmalloc.c (v4.8): class geometry worked by hand, handles, the
movable callbacks' rules, and zs_compact on a hand-built class."""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, Gfp, MigrateType
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import (
    EAGAIN,
    EBUSY,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig_zram.zsmalloc import (
    ZS_ALMOST_EMPTY,
    ZS_ALMOST_FULL,
    ZS_EMPTY,
    ZS_FULL,
    ZS_SIZE_CLASSES,
    ZsPool,
    build_size_classes,
    decode_obj,
    get_fullness_group,
    get_pages_per_zspage,
    get_size_class_index,
)

GFP = int(Gfp.MOVABLE | Gfp.HIGHMEM | Gfp.KSWAPD_RECLAIM)


# ------------------------------------------------------------------ geometry, worked by hand
@pytest.mark.parametrize(("size", "pages", "objs"), [
    (32, 1, 128),     # 4096 % 32 == 0: one page, no waste
    (48, 3, 256),     # 1 page: 4080/4096 = 99%, 2: 8160/8192 = 99%, 3: 12288 % 48 == 0 -> 100%
    (2048, 1, 2),
    (2064, 4, 7),     # 50%, 75%, 83%, 88% for 1..4 pages
    (3264, 4, 5),     # 79%, 79%, 79%, then 16320/16384 = 99%
    (3280, 1, 1),     # 80% for 1..4 pages (3280, 6560, 9840, 13120): the first maximum wins
    (4096, 1, 1),
])
def test_pages_per_zspage_wastes_least(size: int, pages: int, objs: int) -> None:
    assert get_pages_per_zspage(size) == pages
    assert pages * 4096 // size == objs


def test_size_class_index() -> None:
    assert ZS_SIZE_CLASSES == 255  # DIV_ROUND_UP(4096 - 32, 16) + 1
    assert get_size_class_index(1) == 0
    assert get_size_class_index(32) == 0
    assert get_size_class_index(33) == 1  # the 48-byte class
    assert get_size_class_index(48) == 1
    assert get_size_class_index(49) == 2
    assert get_size_class_index(4096) == 254
    assert get_size_class_index(4104) == 254  # a whole page plus its handle: the last class


def test_merged_classes_share_geometry() -> None:
    table, distinct = build_size_classes()
    assert len(table) == 255
    by_size = {32 + 16 * i: table[i] for i in range(255)}
    # every size from 3280 up to 4096 holds one object in one page: one merged (huge) class,
    # which keeps the largest size, as zs_create_pool walks from the top down
    huge = by_size[4096]
    assert huge.huge and huge.size == 4096 and huge.index == 254
    assert by_size[3280] is huge and by_size[3264] is not huge
    assert not by_size[3264].huge
    for i, cls in enumerate(table):
        size = min(32 + 16 * i, 4096)
        assert cls.size >= size  # an object always fits its class
        assert cls.pages_per_zspage == get_pages_per_zspage(size)
        assert cls.objs_per_zspage == cls.pages_per_zspage * 4096 // size
    assert len({id(c) for c in table}) == len(distinct) < 255


def test_fullness_groups_use_three_quarters() -> None:
    assert get_fullness_group(0, 128) == ZS_EMPTY
    assert get_fullness_group(96, 128) == ZS_ALMOST_EMPTY  # 96 <= 128 * 3 / 4
    assert get_fullness_group(97, 128) == ZS_ALMOST_FULL
    assert get_fullness_group(128, 128) == ZS_FULL
    assert get_fullness_group(1, 2) == ZS_ALMOST_EMPTY  # 1 <= 2 * 3 // 4 == 1


# ------------------------------------------------------------------ a pool on a machine
class Harness:
    def __init__(self, movable: bool = True, mib: int = 128) -> None:
        self.m = Machine(MachineConfig.x86_64_guest(mib * MiB))
        self.holder = SimpleOwner(self.m, "targets")
        self.owner = SimpleOwner(self.m, "zsmalloc")
        self.pool = ZsPool(self.m, self.owner.owner_id, self.alloc, self, movable=movable)
        self.owner.expected_contents = self.pool.pages.contents  # type: ignore[method-assign]

    def alloc(self, gfp: int) -> int:
        return self.m.alloc_pages(gfp, 0, self.owner.owner_id, PageKind.DRIVER)

    # the movable operations, forwarded
    def isolate_page(self, page, mode):  # type: ignore[no-untyped-def]
        return self.pool.isolate_page(page, mode)

    def migrate_page(self, dst, src, mode):  # type: ignore[no-untyped-def]
        return self.pool.migrate_page(dst, src, mode)

    def putback_page(self, page):  # type: ignore[no-untyped-def]
        self.pool.putback_page(page)

    def migrate(self, src: int) -> tuple[int, int]:
        dst = self.m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, self.holder.owner_id, PageKind.KERNEL)
        assert dst >= 0
        rc, consumed = migrate_movable_page(self.m, dst, src, MigrateMode.SYNC)
        if rc == MIGRATEPAGE_SUCCESS:
            self.m.free_pages(src)
        if not consumed:
            self.m.free_pages(dst)
        return rc, dst

    def check(self, *, allow_isolated: bool = False) -> None:
        assert self.pool.verify() == []
        assert_consistent(self.m, allow_isolated=allow_isolated)


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_objects_straddle_pages_and_handles_name_where_they_start(h: Harness) -> None:
    pool = h.pool
    handles = [pool.malloc(40, GFP, 1000 + i) for i in range(256)]  # 40 + 8 = 48: the 3-page class
    assert pool.nr_zspages == 1 and pool.pages_allocated == 3
    _, _, z = pool.locate(handles[0])
    chain = pool.zs_chain[z]
    # object 85 lies at bytes 4080..4127: it starts in page 0 and ends in page 1
    pfn85, idx85 = decode_obj(int(pool.h_obj[handles[85]]))
    assert (pfn85, idx85) == (chain[0], 85)
    assert decode_obj(int(pool.h_obj[handles[86]])) == (chain[1], 86)  # 86 * 48 = 4128: page 1
    assert decode_obj(int(pool.h_obj[handles[171]])) == (chain[2], 171)  # 171 * 48 = 8208: page 2
    assert [pool.read(hd) for hd in handles] == [1000 + i for i in range(256)]
    h.check()


def test_migrating_a_middle_page_rewrites_only_objects_starting_in_it(h: Harness) -> None:
    pool = h.pool
    handles = [pool.malloc(40, GFP, 7 * i + 1) for i in range(200)]
    _, _, z = pool.locate(handles[0])
    p0, p1, p2 = pool.zs_chain[z]
    before = pool.h_obj.copy()
    assert isolate_movable_page(h.m, p1, MigrateMode.SYNC)
    rc, dst = h.migrate(p1)
    assert rc == MIGRATEPAGE_SUCCESS
    assert pool.zs_chain[z] == [p0, dst, p2]
    moved = [i for i, hd in enumerate(handles) if pool.h_obj[hd] != before[hd]]
    # objects 86..170 start in page 1 (ceil(4096/48) = 86, ceil(8192/48) = 171)
    assert moved == list(range(86, 171))
    assert all(decode_obj(int(pool.h_obj[handles[i]]))[0] == dst for i in moved)
    assert decode_obj(int(pool.h_obj[handles[85]]))[0] == p0  # straddles into page 1, starts in page 0
    assert [pool.read(hd) for hd in handles] == [7 * i + 1 for i in range(200)]
    assert h.m.pages.flags[dst] & PageFlag.MOVABLE
    h.check()


def test_movable_pool_pages_sit_in_movable_pageblocks_and_unmovable_ones_do_not() -> None:
    for movable, mt in ((True, MigrateType.MOVABLE), (False, MigrateType.UNMOVABLE)):
        hh = Harness(movable=movable)
        gfp = GFP if movable else int(Gfp.HIGHMEM | Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM)
        for i in range(3000):
            hh.pool.malloc(100 + i % 900, gfp, i + 1)
        pfns = hh.pool.pages.pfns()
        assert bool(np.all(hh.m.pages.flags[pfns] & PageFlag.MOVABLE)) is movable
        assert np.all(hh.m.buddy.pageblock_mt[pfns >> hh.m.pageblock_order] == mt)
        hh.check()


def test_isolation_takes_the_zspage_off_its_class_list(h: Harness) -> None:
    pool = h.pool
    first = pool.malloc(2000, GFP, 1)  # the 2048 class: 2 objects per 1-page zspage
    pfn, _, z = pool.locate(first)
    assert isolate_movable_page(h.m, pfn, MigrateMode.SYNC)
    second = pool.malloc(2000, GFP, 2)
    assert pool.locate(second)[2] != z  # no new object goes into an isolated zspage
    assert pool.nr_zspages == 2
    putback_movable_page(h.m, pfn)
    third = pool.malloc(2000, GFP, 3)  # back on its list: its free slot is used again
    assert pool.locate(third)[2] in (z, pool.locate(second)[2])
    h.check()


def test_migrate_answers_eagain_while_an_object_is_mapped(h: Harness) -> None:
    pool = h.pool
    handles = [pool.malloc(100, GFP, i + 1) for i in range(30)]
    pfn = pool.locate(handles[3])[0]
    assert pool.map_object(handles[3]) == 4
    assert isolate_movable_page(h.m, pfn, MigrateMode.ASYNC)
    rc, _ = h.migrate(pfn)
    assert rc == -EAGAIN
    assert pool.locate(handles[3])[0] == pfn
    pool.unmap_object(handles[3])
    rc, dst = h.migrate(pfn)
    assert rc == MIGRATEPAGE_SUCCESS and pool.locate(handles[3])[0] == dst
    h.check()


def test_emptied_isolated_zspage_answers_ebusy_and_is_freed_after_putback(h: Harness) -> None:
    pool = h.pool
    handles = [pool.malloc(40, GFP, i + 1) for i in range(10)]  # one 3-page zspage
    _, _, z = pool.locate(handles[0])
    chain = list(pool.zs_chain[z])
    iso = [p for p in chain if isolate_movable_page(h.m, p, MigrateMode.SYNC)]
    assert iso == chain
    for hd in handles:
        pool.free(hd)  # zs_free leaves an isolated zspage for putback to free
    assert all(h.m.pages.kind[p] == PageKind.DRIVER for p in chain)
    assert h.migrate(chain[0])[0] == -EBUSY
    for p in chain:
        putback_movable_page(h.m, p)
    assert pool.nr_zspages == 1  # on the empty list, waiting for the deferred free
    h.check()
    assert not isolate_movable_page(h.m, chain[1], MigrateMode.SYNC)  # zs_page_isolate refuses an empty zspage
    pool._async_free_zspages()
    assert pool.nr_zspages == 0 and pool.pages_allocated == 0
    assert all(h.m.pages.kind[p] == PageKind.FREE for p in chain)
    h.check()


def test_zs_compact_on_a_hand_built_class(h: Harness) -> None:
    pool = h.pool
    # the 2048 class: 2 objects per 1-page zspage; five full zspages
    handles = [pool.malloc(2000, GFP, i + 1) for i in range(10)]
    zs = [pool.locate(hd)[2] for hd in handles]
    assert len(set(zs)) == 5
    pool.free(handles[2])
    pool.free(handles[6])  # two zspages now half used (almost empty)
    cls = pool.zs_class[zs[0]]
    assert cls is not None
    # OBJ_ALLOCATED 10, OBJ_USED 8: 2 wasted objects = 1 zspage = 1 page to gain
    assert pool.zs_can_compact(cls) == 1
    assert pool.compact() == 1
    assert pool.nr_zspages == 4 and pool.zs_can_compact(cls) == 0
    live = [hd for i, hd in enumerate(handles) if i not in (2, 6)]
    assert [pool.read(hd) for hd in live] == [i + 1 for i in range(10) if i not in (2, 6)]
    assert all(pool.zs_inuse[pool.locate(hd)[2]] == 2 for hd in live)
    h.check()


def test_isolation_refuses_zspages_that_zs_compact_holds(h: Harness) -> None:
    pool = h.pool
    handles = [pool.malloc(2000, GFP, i + 1) for i in range(10)]
    pool.free(handles[2])
    pool.free(handles[6])
    steps = pool.compact_steps()
    src, dst = next(steps)
    for z in (src, dst):
        pfn = pool.zs_chain[z][0]
        assert not isolate_movable_page(h.m, pfn, MigrateMode.SYNC)
    for _ in steps:
        pass
    assert pool.pages_compacted == 1
    h.check()


def test_fullness_lists_keep_the_kernels_order(h: Harness) -> None:
    """insert_zspage: a zspage with fewer objects in use than the list's head goes right after it."""
    pool = h.pool
    a = [pool.malloc(2000, GFP, i + 1) for i in range(2)]  # zspage A, full
    b = [pool.malloc(2000, GFP, i + 10) for i in range(2)]  # zspage B, full
    za, zb = pool.locate(a[0])[2], pool.locate(b[0])[2]
    cls = pool.zs_class[za]
    assert cls is not None
    assert list(cls.lists[ZS_FULL]) == [zb, za]  # equal use: each new one goes to the head
    pool.free(a[0])
    pool.free(b[0])
    assert list(cls.lists[ZS_ALMOST_EMPTY]) == [zb, za]


def test_mapped_objects_stay_put_during_zs_compact(h: Harness) -> None:
    pool = h.pool
    handles = [pool.malloc(2000, GFP, i + 1) for i in range(10)]
    pool.free(handles[2])
    pool.free(handles[6])
    survivors = (handles[3], handles[7])  # one in each half-used zspage
    where = {hd: pool.locate(hd) for hd in survivors}
    for hd in survivors:
        pool.map_object(hd)
    assert pool.compact() == 0  # nothing may move: compaction gives up instead of spinning
    assert {hd: pool.locate(hd) for hd in survivors} == where
    pool.unmap_object(handles[7])
    assert pool.compact() == 1  # the unpinned survivor joins the pinned one's zspage
    assert pool.locate(handles[3]) == where[handles[3]]
    assert pool.locate(handles[7])[2] == where[handles[3]][2]
    pool.unmap_object(handles[3])
    h.check()
