"""The GPU driver's contract: DMA pins refuse isolation, fences answer -EAGAIN until they
signal, migration carries content and moves the GPU MMU's reference, a buffer freed while
a page is isolated leaves an orphan, its own compaction, and its workload."""

from __future__ import annotations

import numpy as np
import pytest

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, Gfp, MigrateType
from pagemig.mm.invariants import assert_consistent
from pagemig.mm.machine import Machine, MachineConfig, MiB
from pagemig.mm.movable import (
    EAGAIN,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    is_orphan,
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.owner import SimpleOwner
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.sim.schema import TableError
from pagemig_gpu.driver import COST_GPU_CACHE_FLUSH, COST_GPU_REMAP, GpuDriver
from pagemig_gpu.options import validate_options
from pagemig_gpu.plugin import gpu_compact_validate


def gpu(mib: int = 128, **opts: object) -> tuple[Machine, GpuDriver, SimpleOwner]:
    m = Machine(MachineConfig.x86_64_guest(mib * MiB))
    holder = SimpleOwner(m, "targets")
    return m, GpuDriver(m, validate_options(opts)), holder


def migrate(m: Machine, holder: SimpleOwner, src: int) -> tuple[int, int]:
    dst = m.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, holder.owner_id, PageKind.KERNEL)
    rc, consumed = migrate_movable_page(m, dst, src, MigrateMode.SYNC)
    if rc == MIGRATEPAGE_SUCCESS:
        m.free_pages(src)
    if not consumed:
        m.free_pages(dst)
    return rc, dst


def test_buffers_are_movable_pages_in_movable_pageblocks_unless_movable_is_false() -> None:
    for movable, mt in ((True, MigrateType.MOVABLE), (False, MigrateType.UNMOVABLE)):
        m, g, _ = gpu(movable=movable)
        assert bool(g.gfp & Gfp.MOVABLE) is movable and g.gfp & Gfp.ZERO
        for _ in range(20):
            assert g.alloc_buffer(64) is not None
        pfns = g.pages.pfns()
        assert bool(np.all(m.pages.flags[pfns] & PageFlag.MOVABLE)) is movable
        assert np.all(m.buddy.pageblock_mt[pfns >> m.pageblock_order] == mt)
        assert g.verify() == []
        assert_consistent(m)


def test_pinned_buffers_refuse_isolation() -> None:
    m, g, _ = gpu()
    buf = g.alloc_buffer(8, pinned=True)
    assert buf is not None
    pfns = g.buffer_pfns(buf)
    assert np.all(m.pages.flags[pfns] & PageFlag.PINNED)
    assert not any(isolate_movable_page(m, int(p), MigrateMode.SYNC) for p in pfns)
    assert g.counters["isolate_refused_pinned"] == 8
    g.pin(buf, False)
    assert all(isolate_movable_page(m, int(p), MigrateMode.SYNC) for p in pfns)
    for p in pfns:
        putback_movable_page(m, int(p))
    assert g.verify() == []
    assert_consistent(m)


def test_a_buffer_in_flight_answers_eagain_until_its_fence_signals() -> None:
    m, g, holder = gpu()
    buf = g.alloc_buffer(4)
    assert buf is not None
    m.now = 10.0
    g.submit([buf], 0.05)
    src = int(g.buffer_pfns(buf)[2])
    assert isolate_movable_page(m, src, MigrateMode.SYNC)  # in flight: isolation is allowed
    assert migrate(m, holder, src)[0] == -EAGAIN
    m.now = 10.049
    assert migrate(m, holder, src)[0] == -EAGAIN
    m.now = 10.05  # the fence signals
    rc, dst = migrate(m, holder, src)
    assert rc == MIGRATEPAGE_SUCCESS
    assert int(g.buffer_pfns(buf)[2]) == dst
    assert g.counters["gpu_migrate_eagain"] == 2
    assert_consistent(m)


def test_migration_carries_content_and_remaps_the_gpu_mmu() -> None:
    m, g, holder = gpu()
    buf = g.alloc_buffer(16)
    assert buf is not None
    g.submit([buf], 0.0)  # writes new content into the render target
    before = g.buffer_pfns(buf).copy()
    content = m.pages.token[before].copy()
    m.stall_seconds = 0.0  # type: ignore[attr-defined]
    moved = {}
    for k in (0, 5, 15):
        assert isolate_movable_page(m, int(before[k]), MigrateMode.ASYNC)
        rc, dst = migrate(m, holder, int(before[k]))
        assert rc == MIGRATEPAGE_SUCCESS
        moved[k] = dst
    after = g.buffer_pfns(buf)
    for k in range(16):
        assert after[k] == moved.get(k, before[k])  # the GPU MMU maps the new page at the same place
    assert np.array_equal(m.pages.token[after], content)
    assert g.counters["gpu_remap"] == g.counters["gpu_cache_flush"] == g.counters["gpu_migrate"] == 3
    assert m.stall_seconds == pytest.approx(3 * (COST_GPU_REMAP + COST_GPU_CACHE_FLUSH))  # type: ignore[attr-defined]
    assert np.all(m.pages.flags[after] & PageFlag.MOVABLE)
    assert g.verify() == []
    assert_consistent(m)


def test_freeing_a_buffer_with_an_isolated_page_leaves_an_orphan_that_migration_releases() -> None:
    m, g, holder = gpu()
    buf = g.alloc_buffer(4)
    assert buf is not None
    src = int(g.buffer_pfns(buf)[1])
    assert isolate_movable_page(m, src, MigrateMode.SYNC)
    g.free_buffer(buf)
    assert is_orphan(m, src) and g.counters["freed_while_isolated"] == 1
    assert_consistent(m, allow_isolated=True)
    rc, _ = migrate(m, holder, src)  # the core finds the orphan: success without calling the driver
    assert rc == MIGRATEPAGE_SUCCESS
    m.release_orphan(src)
    assert m.pages.kind[src] == PageKind.FREE
    assert g.verify() == []
    assert_consistent(m)


def test_gpu_compact_moves_idle_unpinned_buffers_only() -> None:
    m, g, _ = gpu()
    idle = g.alloc_buffer(32)
    pinned = g.alloc_buffer(32, pinned=True)
    busy = g.alloc_buffer(32)
    assert idle is not None and pinned is not None and busy is not None
    m.now = 1.0
    g.submit([busy], 1.0)
    keep = {b.id: g.buffer_pfns(b).copy() for b in (idle, pinned, busy)}
    content = m.pages.token[keep[idle.id]].copy()
    moved = g.gpu_compact()
    assert moved == 32
    assert not np.array_equal(g.buffer_pfns(idle), keep[idle.id])
    assert np.array_equal(m.pages.token[g.buffer_pfns(idle)], content)
    assert np.array_equal(g.buffer_pfns(pinned), keep[pinned.id])
    assert np.array_equal(g.buffer_pfns(busy), keep[busy.id])
    assert g.gpu_compact(max_pages=10) == 0  # a whole buffer or nothing
    assert g.verify() == []
    assert_consistent(m)


def test_the_gpu_workload_reaches_its_target_and_submits_jobs() -> None:
    m, g, _ = gpu(256, target="25%", job_rate="100/s", buffer_life="5s", buffer_max="1MiB")
    for t in np.arange(0.0, 20.01, 0.5):
        m.now = float(t)
        g.tick(float(t))
        assert g.verify() == []
    want = int(0.25 * m.managed_pages)
    assert want * 0.9 <= len(g.pages) <= want
    assert g.counters["jobs_submitted"] == pytest.approx(2000, abs=1)
    assert g.counters["buffers_freed"] > 0  # buffers live 5 s on average
    assert_consistent(m)


@pytest.mark.parametrize(("table", "message"), [
    ({"target": "135%"}, "between 0% and 100%"),
    ({"job_rate": "fast"}, "a rate"),
    ({"buffer_min": "1MiB", "buffer_max": "64KiB"}, "at most buffer_max"),
    ({"pinned_fraktion": "5%"}, 'did you mean "pinned_fraction"'),
])
def test_bad_options_are_refused_clearly(table: dict[str, object], message: str) -> None:
    with pytest.raises(TableError) as info:
        validate_options(table)
    assert message in str(info.value)


def test_gpu_compact_command_arguments() -> None:
    gpu_compact_validate(())
    gpu_compact_validate(("100",))
    for bad in (("x",), ("0",), ("1", "2")):
        with pytest.raises(ValueError):
            gpu_compact_validate(bad)
