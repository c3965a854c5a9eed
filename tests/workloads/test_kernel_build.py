"""kernel_build: page cache grows until free memory reaches the low watermark, then
kswapd takes the oldest clean pages back, and the processes' own memory comes and goes."""

from __future__ import annotations

import numpy as np

from pagemig.mm.invariants import assert_consistent
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.mm.vmscan import background_tick
from pagemig.workloads import kernel_build

from .conftest import build

OPTIONS = {"parallelism": 4, "job_anon": "16MiB", "tree": "1GiB", "headers": "16MiB", "source": "512KiB",
           "output": "512KiB", "job_time": "1s"}


def test_page_cache_grows_until_kswapd_takes_it_back(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(kernel_build.KernelBuild, m, kernel_build.validate, **OPTIONS)
    w.start(0.0)
    low = sum(z.wmark_low for z in m.zones)
    cache, reclaimed = [], []
    for t in range(120):
        m.now = float(t)
        w.step(float(t), 1.0)
        background_tick(m, float(t))
        cache.append(int(np.count_nonzero(m.pages.kind == PageKind.FILE)))
        reclaimed.append(m.vmstat["pgsteal_kswapd"] + m.vmstat["pgsteal_direct"])
    first = next(i for i, k in enumerate(reclaimed) if k > 0)
    assert first > 5
    grown = np.diff(cache[:first])
    assert np.all(grown >= 0)  # only growth until reclaim starts
    assert cache[first - 1] - cache[0] > m.managed_pages // 4  # by more than a quarter of memory
    assert m.vmstat["pgsteal_kswapd"] > 0 and m.vmstat["pageoutrun"] > 0  # kswapd did its share
    assert max(cache) < m.managed_pages - low  # reclaim capped it
    assert m.nr_free_pages >= sum(z.wmark_min for z in m.zones)
    assert_consistent(m)


def test_processes_free_their_memory_at_exit(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(kernel_build.KernelBuild, m, kernel_build.validate, **OPTIONS)
    w.start(0.0)
    for t in range(5):
        w.step(float(t), 1.0)
    st = w.stats()
    assert st["jobs_running"] == 4 and st["jobs_started"] >= 4
    counts = np.bincount(m.pages.kind, minlength=len(PageKind))
    assert counts[PageKind.ANON] == st["anon_pages"] > 0
    assert counts[PageKind.PAGETABLE] == st["pagetable_pages"] > 0
    w.stop(5.0)
    counts = np.bincount(m.pages.kind, minlength=len(PageKind))
    assert counts[PageKind.ANON] == 0 and counts[PageKind.PAGETABLE] == 0
    assert counts[PageKind.SLAB_UNRECLAIMABLE] == 0
    assert counts[PageKind.FILE] == w.stats()["page_cache_pages"] > 0
    assert_consistent(m)


def test_object_files_are_dirty_until_written_back(machine) -> None:  # type: ignore[no-untyped-def]
    m = machine(256)
    w = build(kernel_build.KernelBuild, m, kernel_build.validate, **{**OPTIONS, "dirty_expire": "5s"})
    w.start(0.0)
    for t in range(3):
        m.now = float(t)
        w.step(float(t), 1.0)
    dirty = int(np.count_nonzero(m.pages.flags & PageFlag.DIRTY))
    assert dirty == w.stats()["page_cache_dirty_pages"] > 0
    w.stop(3.0)
    for t in range(3, 12):
        m.now = float(t)
        w.idle(float(t), 1.0)
    assert int(np.count_nonzero(m.pages.flags & PageFlag.DIRTY)) == 0
    assert m.vmstat["pgpgout"] == w.stats()["page_cache_written_pages"] * 4  # KiB, as /proc/vmstat counts


def test_a_compilers_heap_grows_evenly_over_its_life_with_its_page_tables(machine) -> None:  # type: ignore[no-untyped-def]
    """One job at a time: its anonymous memory comes a slice per step (the same slice,
    give or take the page rounding), and page tables follow it: one PTE page per 512
    pages mapped plus the PGD, PUD and PMD pages."""
    m = machine(1024)
    w = build(kernel_build.KernelBuild, m, kernel_build.validate, seed=3, parallelism=1, job_time="12s",
              job_anon="64MiB", headers="0", source="0")
    w.start(0.0)
    held, tables = [], []
    t = 0
    while True:
        m.now = float(t)
        w.step(float(t), 1.0)
        if w.stats()["jobs_done"]:
            break
        held.append(w.stats()["anon_pages"])
        tables.append(w.stats()["pagetable_pages"])
        t += 1
    assert len(held) >= 4  # the job lived several steps
    slices = np.diff(held)
    assert held[0] > 0 and np.all(slices > 0)
    assert slices.max() - slices.min() <= 1  # evenly: ceil(want * elapsed / life) per step
    assert held[0] <= slices.max() + 1
    assert tables == [a // 512 + 3 for a in held]
    assert w.stats()["alloc_shortfall_pages"] == 0
    assert_consistent(m)


def _objects_and_links(machine, **options) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """Run short jobs, one per step, and return (objects done, link files, pages written)."""
    w = build(kernel_build.KernelBuild, machine, kernel_build.validate, parallelism=1, job_time="100ms",
              job_anon="64KiB", headers="0", source="0", output="64KiB", **options)
    w.start(0.0)
    for t in range(20):
        machine.now = float(t)
        w.step(float(t), 1.0)
    st = w.stats()
    return st["jobs_done"], st["links"], st["page_cache_written_pages"]


def test_thin_archives_write_each_object_once(machine) -> None:  # type: ignore[no-untyped-def]
    done, links, written = _objects_and_links(machine(256))
    assert done > 8 and links == 0
    assert written == done * 16  # 64 KiB objects


def test_pre_v4_13_links_write_each_object_again_per_directory_level(machine) -> None:  # type: ignore[no-untyped-def]
    """ld -r with two objects per directory and two levels: every second object completes a
    directory (a built-in.o of 2 objects), every fourth its parent (one of 4 objects)."""
    done, links, written = _objects_and_links(machine(256), link_levels=2, dir_objects=2)
    assert done > 8
    assert links == done // 2 + done // 4
    assert written == 16 * (done + 2 * (done // 2) + 4 * (done // 4))
