"""``kernel_build``: ``make -jN`` of a kernel tree, as the memory manager sees it.

What the seed's demo ran in its 1 GiB guest.  ``parallelism`` compiler processes run
at any time, each living a random ``job_time`` (log-normal around the mean).  A
process takes, when it starts:

* anonymous memory (its heap, ``job_anon`` on average): movable LRU pages;
* page tables for it (one page per 2 MiB mapped, plus the upper levels): unmovable;
* a kernel stack (order 2, 16 KiB, as x86-64's ``THREAD_SIZE``) and unreclaimable slab
  (task, mm, VMAs): unmovable;
* the source and header files it reads (``reads`` per job): page cache, movable LRU
  pages, shared between jobs, read from disk only when not already cached; every new
  file cached also costs reclaimable slab (dentries and inodes);

and when it exits it frees its anonymous memory, page tables, stack and slab, and
writes its object file (``output``) into the page cache as dirty pages, which the
flusher writes back ``dirty_expire`` later (``vm.dirty_expire_centisecs``, 30 s).

Page cache is never freed by the build itself: it grows until free memory reaches
the low watermark, then kswapd (or direct reclaim) takes the oldest clean pages
back through this workload's reclaim callbacks, as the kernel's LRU would.

File reads are skewed towards a hot set (headers) by drawing file-page indices as
``tree * u**3`` for uniform ``u``: an eighth of the tree takes half the reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_KERNEL_ACCOUNT, Gfp
from pagemig.mm.machine import Machine
from pagemig.mm.pages import PageFlag, PageKind
from pagemig.sim import schema
from pagemig.workloads.base import CompoundOwner, TrackedOwner, Workload

FIELDS = {
    "parallelism": schema.integer(8, "compiler processes at once (make -jN)", minimum=1, maximum=4096),
    "duration": schema.duration(None, "how long the build keeps starting jobs (default: until the workload stops)",
                                positive=True),
    "job_time": schema.duration("2s", "mean life of one compiler process", positive=True),
    "job_anon": schema.pages("48MiB", "mean anonymous memory of one compiler process", minimum=1),
    "tree": schema.pages("900MiB", "the source tree: distinct file pages a build can read", minimum=1),
    "reads": schema.pages("8MiB", "file pages one job reads (headers mostly, shared)"),
    "output": schema.pages("1MiB", "object file one job writes (dirty page cache)"),
    "slab": schema.pages("96KiB", "unreclaimable slab per process (task, mm, VMAs)"),
    "dirty_expire": schema.duration("30s", "age at which the flusher writes dirty pages back"),
}
validate = schema.validator(FIELDS)

FILES_PER_DENTRY_PAGE = 64  # reclaimable slab: one page of dentries and inodes per 64 newly cached file pages
STACK_ORDER = 2  # THREAD_SIZE_ORDER on x86-64 (16 KiB)
PTRS_PER_PTE = 512


@attrs.define
class Job:
    end: float
    anon: np.ndarray  # slots in the anon owner
    pagetables: np.ndarray  # slots in the page-table owner
    slab: np.ndarray  # slots in the slab owner
    stack: int  # slot in the stack owner, -1 if the allocation failed


class KernelBuild(Workload):
    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        super().__init__(machine, options, rng)
        n = self.name
        self.anon = TrackedOwner(machine, f"{n}:anon", PageKind.ANON, GFP_HIGHUSER_MOVABLE)
        self.cache = PageCacheOwner(machine, f"{n}:page_cache", self.options["tree"])
        self.dentries = SlabCacheOwner(machine, f"{n}:dentry_inode")
        self.slab = TrackedOwner(machine, f"{n}:slab", PageKind.SLAB_UNRECLAIMABLE, GFP_KERNEL)
        self.pagetables = TrackedOwner(machine, f"{n}:pagetables", PageKind.PAGETABLE,
                                       GFP_KERNEL_ACCOUNT | Gfp.ZERO)
        self.stacks = CompoundOwner(machine, f"{n}:stacks", PageKind.KERNEL, GFP_KERNEL_ACCOUNT, STACK_ORDER)
        self.jobs: list[Job] = []
        self.t0 = 0.0
        self.jobs_started = 0
        self.jobs_done = 0
        self.shortfall = 0
        self.running = True
        self.peak_cache = 0

    def start(self, now: float) -> None:
        self.t0 = now

    # ---------------------------------------------------------------- the jobs
    def _start_job(self, now: float) -> None:
        o = self.options
        rng = self.rng
        life = float(o["job_time"] * rng.lognormal(-0.125, 0.5))  # mean job_time (sigma 0.5)
        want = max(1, int(o["job_anon"] * rng.lognormal(-0.125, 0.5)))
        anon = self.anon.alloc_slots(want)
        nr_pt = len(anon) // PTRS_PER_PTE + 3  # PTE pages plus PMD, PUD and PGD
        pagetables = self.pagetables.alloc_slots(nr_pt)
        slab = self.slab.alloc_slots(o["slab"])
        stack_pfns = self.stacks.alloc(1)
        stack = int(self.machine.pages._private[stack_pfns[0]]) if stack_pfns else -1
        self.shortfall += (want - len(anon)) + (nr_pt - len(pagetables)) + (o["slab"] - len(slab))
        self.read_files()
        self.jobs.append(Job(end=now + life, anon=anon, pagetables=pagetables, slab=slab, stack=stack))
        self.jobs_started += 1

    def read_files(self) -> None:
        """The job's reads: misses come into the page cache, each new file page costing a
        share of a dentry/inode slab page."""
        o = self.options
        if not o["reads"]:
            return
        u = self.rng.random(o["reads"])
        idx = np.unique((o["tree"] * u**3).astype(np.int64))
        missed = self.cache.read(idx)
        self.dentries.grow(missed)

    def _end_job(self, job: Job) -> None:
        self.anon.free_slots(job.anon)
        self.pagetables.free_slots(job.pagetables)
        self.slab.free_slots(job.slab)
        if job.stack >= 0:
            self.stacks.free_slots([job.stack])
        self.cache.write_output(self.options["output"])
        self.jobs_done += 1

    def step(self, now: float, dt: float) -> None:
        end = now + dt
        self.cache.flush(now, self.options["dirty_expire"])
        still = []
        for job in self.jobs:
            if job.end < end:
                self._end_job(job)
            else:
                still.append(job)
        self.jobs = still
        duration = self.options["duration"]
        building = self.running and (duration is None or now < self.t0 + duration)
        while building and len(self.jobs) < self.options["parallelism"]:
            self._start_job(now)
        self.peak_cache = max(self.peak_cache, len(self.cache))

    def stop(self, now: float) -> None:
        """The build is interrupted: its processes exit (the page cache stays)."""
        self.running = False
        for job in self.jobs:
            self._end_job(job)
        self.jobs = []

    def stats(self) -> dict[str, int | float]:
        return {
            "jobs_started": self.jobs_started,
            "jobs_done": self.jobs_done,
            "jobs_running": len(self.jobs),
            "anon_pages": len(self.anon),
            "page_cache_pages": len(self.cache),
            "page_cache_peak_pages": self.peak_cache,
            "page_cache_dirty_pages": self.cache.nr_dirty(),
            "page_cache_read_pages": self.cache.pages_read,
            "page_cache_written_pages": self.cache.pages_written,
            "page_cache_reclaimed_pages": self.cache.reclaimed,
            "slab_reclaimable_pages": len(self.dentries),
            "slab_unreclaimable_pages": len(self.slab),
            "pagetable_pages": len(self.pagetables),
            "stack_pages": len(self.stacks) << STACK_ORDER,
            "alloc_shortfall_pages": self.shortfall,
        }


class PageCacheOwner(TrackedOwner):
    """The build's page cache: source-tree pages (clean once read) and object files
    (dirty until the flusher writes them back).

    ``resident[i]`` says whether file page ``i`` of the tree is cached; ``index`` maps a
    slot back to its tree page (-1 for written output), so that a page reclaim drops
    is read from disk again the next time a job needs it.
    """

    def __init__(self, machine: Machine, name: str, tree_pages: int) -> None:
        super().__init__(machine, name, PageKind.FILE, GFP_HIGHUSER_MOVABLE)
        self.resident = np.zeros(tree_pages, dtype=bool)
        self.index = np.full(len(self.pages.pfn), -1, dtype=np.int64)
        self.dirty_marks: list[tuple[float, int]] = []  # (time written, birth clock after the write)
        self.flushed_to = 0  # every page born before this clock value has been written back
        self.pages_read = 0
        self.pages_written = 0
        self.reclaimed = 0

    def _index_room(self) -> None:
        if len(self.index) < len(self.pages.pfn):
            grown = np.full(len(self.pages.pfn), -1, dtype=np.int64)
            grown[: len(self.index)] = self.index
            self.index = grown

    def read(self, idx: np.ndarray) -> int:
        """Bring the tree pages ``idx`` into the cache; returns how many were not there."""
        missing = idx[~self.resident[idx]]
        if not len(missing):
            return 0
        slots = self.alloc_slots(len(missing))
        got = missing[: len(slots)]
        self._index_room()
        self.index[slots] = got
        self.resident[got] = True
        self.pages_read += len(slots)
        return len(slots)

    def write_output(self, n: int) -> None:
        """An object file: new page-cache pages, dirty."""
        pfns = self.alloc(n)
        if len(pfns):
            self._index_room()
            self.index[self.machine.pages.private[pfns].astype(np.int64)] = -1
            self.machine.pages.flags[pfns] |= PageFlag.DIRTY
            self.pages_written += len(pfns)
            self.dirty_marks.append((self.machine.now, self._clock))

    def flush(self, now: float, expire: float) -> None:
        """The flusher: pages dirty for ``expire`` seconds are written back (now clean)."""
        upto = self.flushed_to
        while self.dirty_marks and self.dirty_marks[0][0] + expire <= now:
            upto = self.dirty_marks.pop(0)[1]
        if upto == self.flushed_to:
            return
        live = self.pages.pfn[: len(self.birth)]
        sel = (live >= 0) & (self.birth[: len(live)] < upto) & (self.birth[: len(live)] >= self.flushed_to)
        pfns = live[sel]
        self.machine.pages.flags[pfns] &= ~np.uint8(PageFlag.DIRTY)
        self.flushed_to = upto

    def nr_dirty(self) -> int:
        pfns = self.pages.pfns()
        return int(np.count_nonzero(self.machine.pages.flags[pfns] & PageFlag.DIRTY))

    def drop(self, pfns: np.ndarray) -> None:
        """Reclaim took these pages: forget them, and that their tree pages are cached."""
        slots = self.machine.pages.private[pfns].astype(np.int64)
        idx = self.index[slots]
        self.resident[idx[idx >= 0]] = False
        self.index[slots] = -1
        self.free(pfns)
        self.reclaimed += len(pfns)

    def drop_caches(self, level: int) -> int:
        """``echo 1 > drop_caches``: every clean page goes."""
        if not level & 1:
            return 0
        clean = self.clean()
        self.drop(clean)
        return len(clean)


class SlabCacheOwner(TrackedOwner):
    """Dentries and inodes: reclaimable slab that grows with the files cached and
    shrinks under reclaim (its shrinker) or ``drop_caches 2``."""

    def __init__(self, machine: Machine, name: str) -> None:
        super().__init__(machine, name, PageKind.SLAB_RECLAIMABLE, GFP_KERNEL | Gfp.RECLAIMABLE)
        self.objects = 0

    def grow(self, new_files: int) -> None:
        self.objects += new_files
        want = self.objects // FILES_PER_DENTRY_PAGE - len(self)
        if want > 0:
            self.alloc(want)

    def shrink_slab(self, nr: int) -> int:
        pfns = self.oldest(nr)
        self.free(pfns)
        self.objects = len(self) * FILES_PER_DENTRY_PAGE
        return len(pfns)

    def drop_caches(self, level: int) -> int:
        if not level & 2:
            return 0
        return self.shrink_slab(len(self))
