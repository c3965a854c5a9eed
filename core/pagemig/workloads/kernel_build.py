"""``kernel_build``: ``make -jN`` of a kernel tree, as the memory manager sees it.

What the seed's demo ran in its 1 GiB guest.  ``parallelism`` compiler processes run
at any time, each living a random ``job_time`` (log-normal around the mean).  A
process takes, when it starts:

* page tables for its upper levels, a kernel stack (order 2, 16 KiB, as x86-64's
  ``THREAD_SIZE``) and unreclaimable slab (task, mm, VMAs): unmovable;
* the files it reads, into the page cache (movable LRU pages), read from disk only
  when not already cached: every job includes the same ``headers`` (a hot set that
  stays cached while it is in use) and compiles its own ``source`` pages, the next
  ones of the ``tree``; every newly cached file page costs a share of reclaimable
  slab (dentries and inodes);

while it runs, its heap (``job_anon`` at its peak, on average): movable LRU pages
faulted in a slice per step, evenly over its life, with a page-table page per 2 MiB
mapped.  A compiler's memory grows as it parses and optimises and only exit gives
it back, so at any moment the jobs hold about half their peaks, and their pages lie
physically interleaved with each other's and with the page cache allocated meanwhile;

and when it exits it frees its anonymous memory, page tables, stack and slab, and
writes its object file (``output``) into the page cache as dirty pages, which the
flusher writes back ``dirty_expire`` later (``vm.dirty_expire_centisecs``, 30 s).
The holes its heap leaves are what the next jobs and the page cache fill.

With ``link_levels`` > 0 the build is a pre-v4.13 one: each directory's objects are
linked with ``ld -r`` into its ``built-in.o``, and those into their parent's, so an
object's code is written again once per directory level (Nicholas Piggin measured
the sum of all ``built-in.o`` at 3.6 times vmlinux when he proposed thin archives,
commit a5967db9af51).  The tree is taken as uniform, ``dir_objects`` objects or
subdirectories per directory.  Thin archives (v4.13 and later, the default here)
write no such copies.

Page cache is never freed by the build itself: it grows until free memory reaches
the low watermark, then kswapd (or direct reclaim) takes the oldest clean pages
back through this workload's reclaim callbacks, as the kernel's LRU would.

The kernel's LRU keeps hot pages on its active list; here the resident header
pages are marked accessed (moved to the young end of the page cache's list) once
every ``HOT_TOUCH_INTERVAL`` seconds of a running build, which keeps them cached as
the active list would, without a list operation per read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from pagemig.api import (
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    PAGE_SIZE,
    Gfp,
    LruOwner,
    Machine,
    PageFlag,
    PageKind,
    TableError,
    Workload,
    duration_field,
    integer_field,
    pages_field,
    register_shrinker,
    table_validator,
)
from pagemig.workloads.base import CompoundOwner, ProcessPool, TrackedOwner

FIELDS = {
    "parallelism": integer_field(8, "compiler processes at once (make -jN)", minimum=1, maximum=4096),
    "duration": duration_field(None, "how long the build keeps starting jobs (default: until the workload stops)",
                                positive=True),
    "job_time": duration_field("2s", "mean life of one compiler process", positive=True),
    "job_anon": pages_field("48MiB", "mean anonymous memory of one compiler process at its peak (it grows "
                             "evenly over the process's life)", minimum=1),
    "tree": pages_field("1GiB", "the source tree, headers included", minimum=1),
    "headers": pages_field("48MiB", "headers every job reads (the hot part of the tree)"),
    "source": pages_field("96KiB", "source pages one job compiles (the next ones of the tree)"),
    "output": pages_field("256KiB", "object file one job writes (dirty page cache)"),
    "slab": pages_field("96KiB", "unreclaimable slab per process (task, mm, VMAs)"),
    "link_levels": integer_field(0, "directory levels whose built-in.o re-links each object (ld -r, before "
                                  "v4.13's thin archives); 0: thin archives", minimum=0, maximum=8),
    "dir_objects": integer_field(8, "objects (or subdirectories) linked into one built-in.o", minimum=2,
                                  maximum=4096),
    "dirty_expire": duration_field("30s", "age at which the flusher writes dirty pages back"),
}
_validate = table_validator(FIELDS)


def validate(table: Mapping[str, Any]) -> dict[str, Any]:
    out = _validate(table)
    if out["headers"] >= out["tree"]:
        raise TableError("headers", table.get("headers"), f"less than the tree ({out['tree']} pages)")
    return out


HOT_TOUCH_INTERVAL = 10.0  # seconds between marking the resident headers accessed

FILES_PER_DENTRY_PAGE = 64  # reclaimable slab: one page of dentries and inodes per 64 newly cached file pages
STACK_ORDER = 2  # THREAD_SIZE_ORDER on x86-64 (16 KiB)
PTRS_PER_PTE = 512
PT_UPPER = 3  # a process's PGD, PUD and PMD pages, taken at exec


@attrs.define
class Job:
    start: float
    end: float
    mm: LruOwner  # the process's anonymous memory
    want: int  # anonymous pages at its peak, just before exit
    pagetables: np.ndarray  # slots in the page-table owner
    slab: np.ndarray  # slots in the slab owner
    stack: int  # slot in the stack owner, -1 if the allocation failed
    asked: int = 0  # anonymous pages faulted in so far (got or not)
    got: int = 0  # anonymous pages it holds (reclaim may have swapped some out since)


class KernelBuild(Workload):
    def __init__(self, machine: Machine, options: Mapping[str, Any], rng: np.random.Generator) -> None:
        super().__init__(machine, options, rng)
        n = self.name
        self.procs = ProcessPool(machine, n)
        self.cache = PageCache(machine, f"{n}:page_cache", self.options["tree"])
        self.dentries = DentryCache(machine, f"{n}:dentry_inode")
        self.slab = TrackedOwner(machine, f"{n}:slab", PageKind.SLAB_UNRECLAIMABLE, GFP_KERNEL)
        self.pagetables = TrackedOwner(machine, f"{n}:pagetables", PageKind.PAGETABLE,
                                       GFP_KERNEL_ACCOUNT | Gfp.ZERO)
        self.stacks = CompoundOwner(machine, f"{n}:stacks", PageKind.KERNEL, GFP_KERNEL_ACCOUNT, STACK_ORDER)
        self.jobs: list[Job] = []
        self.t0 = 0.0
        self.jobs_started = 0
        self.jobs_done = 0
        self.jobs_killed = 0
        self.links = 0
        self.shortfall = 0
        self.running = True
        self.peak_cache = 0
        self.cursor = self.options["headers"]  # the next source page of the tree
        self.next_touch = 0.0

    def start(self, now: float) -> None:
        self.t0 = now
        self.next_touch = now + HOT_TOUCH_INTERVAL

    # ---------------------------------------------------------------- the jobs
    def _start_job(self, now: float, end: float) -> None:
        """fork + exec of a compiler: task, mm, stack and page-table roots at once, then
        its reads, then the first slice of its heap (:meth:`_grow`, up to ``end``)."""
        o = self.options
        rng = self.rng
        life = float(o["job_time"] * rng.lognormal(-0.125, 0.5))  # mean job_time (sigma 0.5)
        want = max(1, int(o["job_anon"] * rng.lognormal(-0.125, 0.5)))
        mm = self.procs.get()
        pagetables = self.pagetables.alloc_slots(PT_UPPER)
        slab = self.slab.alloc_slots(o["slab"])
        stack_pfns = self.stacks.alloc(1)
        stack = self.stacks.slot_of(stack_pfns[0]) if stack_pfns else -1
        self.shortfall += (PT_UPPER - len(pagetables)) + (o["slab"] - len(slab))
        self.read_files()
        job = Job(start=now, end=now + life, mm=mm, want=want, pagetables=pagetables, slab=slab, stack=stack)
        self._grow(job, end)
        self.jobs.append(job)
        self.jobs_started += 1

    def _grow(self, job: Job, until: float) -> None:
        """The heap faulted in up to ``until``: a compiler's memory grows while it parses
        and optimises (GCC's garbage-collected heap, obstacks) and only exit gives it
        back, so its pages come a slice per step, physically interleaved with the other
        jobs' slices and with the page cache read and written meanwhile.  A PTE page
        comes with every 512 pages mapped."""
        share = 1.0 if until >= job.end else (until - job.start) / (job.end - job.start)
        n = min(job.want, int(np.ceil(job.want * share))) - job.asked
        if n <= 0:
            return
        got = len(job.mm.alloc(n, PageKind.ANON, GFP_HIGHUSER_MOVABLE))
        job.asked += n
        job.got += got
        nr_pt = job.got // PTRS_PER_PTE + PT_UPPER - len(job.pagetables)
        more = self.pagetables.alloc_slots(nr_pt) if nr_pt > 0 else np.empty(0, dtype=np.int64)
        if len(more):
            job.pagetables = np.concatenate((job.pagetables, more))
        self.shortfall += (n - got) + max(0, nr_pt - len(more))

    def read_files(self) -> None:
        """The job's reads: the headers, then its own source pages (wrapping round the
        tree); misses come into the page cache, each new file page costing a share of a
        dentry/inode slab page."""
        o = self.options
        headers = np.arange(o["headers"], dtype=np.int64)
        n = o["source"]
        span = o["tree"] - o["headers"]
        source = o["headers"] + (self.cursor - o["headers"] + np.arange(n, dtype=np.int64)) % span
        self.cursor = int(o["headers"] + (self.cursor - o["headers"] + n) % span)
        self.dentries.grow(self.cache.read(np.concatenate((headers, np.unique(source)))))

    def _end_job(self, job: Job, write: bool = True) -> None:
        self.procs.put(job.mm)
        self.pagetables.free_slots(job.pagetables)
        self.slab.free_slots(job.slab)
        if job.stack >= 0:
            self.stacks.free_slots([job.stack])
        if write:
            self.cache.write_output(self.options["output"])
            self.jobs_done += 1
            self._link()
        else:
            self.jobs_killed += 1

    def _link(self) -> None:
        """``LD built-in.o``: before v4.13 (thin archives) kbuild linked each directory's
        objects with ``ld -r`` into its ``built-in.o`` and every ``built-in.o`` into its
        parent's, so an object's code was written once more per directory level.  The
        tree is taken as uniform: every ``dir_objects`` finished objects complete a
        directory, every ``dir_objects`` directories their parent, up to ``link_levels``;
        each link writes the sum of its inputs as one new dirty file.  Its inputs are
        assumed still cached (ld reads what the jobs just wrote)."""
        levels = self.options["link_levels"]
        fan = self.options["dir_objects"]
        objects = fan
        for _ in range(levels):
            if self.jobs_done % objects:
                break
            self.cache.write_output(objects * self.options["output"])
            self.links += 1
            objects *= fan

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
        for job in still:
            self._grow(job, end)
        duration = self.options["duration"]
        building = self.running and (duration is None or now < self.t0 + duration)
        while building and len(self.jobs) < self.options["parallelism"]:
            self._start_job(now, end)
        if building and now >= self.next_touch:
            self.next_touch = now + HOT_TOUCH_INTERVAL
            self.cache.touch_resident(np.arange(self.options["headers"], dtype=np.int64))
        self.peak_cache = max(self.peak_cache, len(self.cache.pages))

    def stop(self, now: float) -> None:
        """The build is interrupted: its processes exit without writing their objects
        (the page cache stays, and what is dirty is written back in its time)."""
        self.running = False
        for job in self.jobs:
            self._end_job(job, write=False)
        self.jobs = []

    def idle(self, now: float, dt: float) -> None:
        self.cache.flush(now, self.options["dirty_expire"])

    def stats(self) -> dict[str, int | float]:
        return {
            "jobs_started": self.jobs_started,
            "jobs_done": self.jobs_done,
            "jobs_running": len(self.jobs),
            "jobs_killed": self.jobs_killed,
            "links": self.links,
            "anon_pages": self.procs.resident_pages(),
            "anon_swapped_pages": self.procs.swapped_pages(),
            "page_cache_pages": len(self.cache.pages),
            "page_cache_peak_pages": self.peak_cache,
            "page_cache_dirty_pages": self.cache.nr_dirty(),
            "page_cache_read_pages": self.cache.pages_read,
            "page_cache_written_pages": self.cache.pages_written,
            "slab_reclaimable_pages": len(self.dentries),
            "slab_unreclaimable_pages": len(self.slab),
            "pagetable_pages": len(self.pagetables),
            "stack_pages": len(self.stacks) << STACK_ORDER,
            "alloc_shortfall_pages": self.shortfall,
        }


class PageCache(LruOwner):
    """The build's page cache: source-tree pages (clean once read) and object files
    (dirty until the flusher writes them back), on one reclaimable LRU owner.

    ``where[i]`` is the slot that caches file page ``i`` of the tree and ``index[slot]``
    the tree page a slot holds (-1 for written output); a tree page is cached when
    both agree and the slot is live, so a page that reclaim dropped is read from disk
    again the next time a job needs it, without reclaim having to tell anybody.
    Reads do not move pages to the young end of the list; the build marks its hot
    headers accessed in one batch now and then (:meth:`touch_resident`).
    """

    def __init__(self, machine: Machine, name: str, tree_pages: int) -> None:
        super().__init__(machine, name)
        self.where = np.full(tree_pages, -1, dtype=np.int64)
        self.index = np.full(1024, -1, dtype=np.int64)
        self.written_at = np.full(1024, -1.0)
        self.pages_read = 0
        self.pages_written = 0

    def _room(self) -> None:
        n = len(self.pages.pfn)
        if len(self.index) < n:
            self.index = np.concatenate((self.index, np.full(n - len(self.index), -1, dtype=np.int64)))
            self.written_at = np.concatenate((self.written_at, np.full(n - len(self.written_at), -1.0)))

    def resident(self, idx: np.ndarray) -> np.ndarray:
        """Which of the tree pages ``idx`` are in the cache now."""
        w = self.where[idx]
        out = w >= 0
        wi = w[out]
        out[out] = (self.pages.pfn[wi] >= 0) & (self.index[wi] == idx[out])
        return out

    def touch_resident(self, idx: np.ndarray) -> None:
        """``mark_page_accessed`` for the cached ones among the tree pages ``idx``."""
        hit = idx[self.resident(idx)]
        if len(hit):
            self.touch(self.pages.pfn[self.where[hit]])

    def read(self, idx: np.ndarray) -> int:
        """Bring the tree pages ``idx`` into the cache; returns how many were not there."""
        missing = idx[~self.resident(idx)]
        if not len(missing):
            return 0
        pfns = self.alloc(len(missing), PageKind.FILE, GFP_HIGHUSER_MOVABLE)
        self._room()
        slots = self.machine.pages.private[pfns].astype(np.int64)
        got = missing[: len(slots)]
        self.index[slots] = got
        self.written_at[slots] = -1.0
        self.where[got] = slots
        self.pages_read += len(slots)
        return len(slots)

    def write_output(self, n: int) -> None:
        """An object file: new page-cache pages, dirty."""
        pfns = self.alloc(n, PageKind.FILE, GFP_HIGHUSER_MOVABLE, dirty=True)
        if len(pfns):
            self._room()
            slots = self.machine.pages.private[pfns].astype(np.int64)
            self.index[slots] = -1
            self.written_at[slots] = self.machine.now
            self.pages_written += len(pfns)

    def flush(self, now: float, expire: float) -> None:
        """The flusher: pages dirty for ``expire`` seconds are written back (now clean).
        ``pgpgout`` counts them in KiB, as /proc/vmstat does."""
        due = np.flatnonzero((self.written_at >= 0) & (self.written_at + expire <= now))
        if not len(due):
            return
        self.written_at[due] = -1.0
        pfns = self.pages.pfn[due]
        pfns = pfns[pfns >= 0]
        flags = self.machine.pages.flags
        dirty = pfns[(flags[pfns] & PageFlag.DIRTY) != 0]
        flags[dirty] &= ~np.uint8(PageFlag.DIRTY)
        self.machine.vmstat["pgpgout"] += len(dirty) * (PAGE_SIZE // 1024)

    def nr_dirty(self) -> int:
        pfns = self.pages.pfns()
        return int(np.count_nonzero(self.machine.pages.flags[pfns] & PageFlag.DIRTY))


class DentryCache(TrackedOwner):
    """Dentries and inodes: reclaimable slab that grows with the files cached and
    shrinks through its shrinker (reclaim, ``drop_caches 2``)."""

    def __init__(self, machine: Machine, name: str) -> None:
        super().__init__(machine, name, PageKind.SLAB_RECLAIMABLE, GFP_KERNEL | Gfp.RECLAIMABLE)
        self.objects = 0
        register_shrinker(machine, self)

    def grow(self, new_files: int) -> None:
        self.objects += new_files
        want = self.objects // FILES_PER_DENTRY_PAGE - len(self)
        if want > 0:
            self.alloc(want)

    # Shrinker protocol (pagemig.api.Shrinker)
    def count_objects(self) -> int:
        return len(self)

    def scan_objects(self, nr_to_scan: int) -> int:
        pfns = self.pages.pfns()[:nr_to_scan]
        self.free(pfns)
        self.objects = len(self) * FILES_PER_DENTRY_PAGE
        return len(pfns)
