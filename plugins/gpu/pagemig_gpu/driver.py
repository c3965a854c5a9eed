"""A mobile GPU driver (the seed author's Mali, 2015) whose buffer pages are movable.

No upstream GPU driver uses the movable-page framework and the seed's Mali driver was
proprietary, so this is a model of what kernel-mm.md section 5 says such a driver
does, built the way drivers of that kind are built:

* a **buffer** (texture, vertex buffer, render target, scanout) is a set of order-0
  pages allocated one by one (``GFP_HIGHUSER | __GFP_ZERO``, plus ``__GFP_MOVABLE``
  when the driver is movable), mapped into the GPU's own MMU;
* a buffer **pinned for DMA** (a scanout buffer the display engine reads, a camera
  buffer a device writes) cannot be isolated: ``isolate_page`` refuses it, as the
  kernel refuses a page whose refcount exceeds its mapcount;
* a buffer **in flight** (a submitted job uses it) has a fence that signals at a
  simulated time; until then ``migrate_page`` answers ``-EAGAIN`` and the VM retries;
* migrating an idle page copies it, points the GPU MMU's entry at the new page
  (``gpu_remap``) and cleans the caches (``gpu_cache_flush``): both cost simulated
  time, charged to whoever runs the compaction;
* ``movable = false`` is the driver before the seed's series: plain unmovable pages
  that land in UNMOVABLE pageblocks and scatter there;
* ``gpu_compact`` is the driver's **own** compaction of 2015, "not cooperative with
  kernel compaction": it cannot choose where pages go, so it reallocates the pages
  of idle, unpinned buffers from the buddy allocator, copies and remaps them, and
  frees the old ones, lowest pfn first.

The driver also behaves like a GPU workload (its ``tick``): applications allocate and
free buffers until the GPU holds its ``target`` share of memory, buffers live a random
while, and jobs are submitted at ``job_rate`` per second, each using a few buffers for
``job_time`` (writing new content into its render target) before its fence signals.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import numpy as np
import structlog

from pagemig.api import (
    EAGAIN,
    GFP_HIGHUSER,
    MIGRATEPAGE_SUCCESS,
    PAGE_SIZE,
    Driver,
    Gfp,
    Machine,
    MigrateMode,
    Page,
    PageFlag,
    PageKind,
    PageSet,
    clear_movable_many,
    copy_page,
    pin_pages,
    set_movable,
    set_movable_many,
    unpin_pages,
)

log = structlog.get_logger(__name__)

NS = 1e-9
COST_GPU_REMAP = 2_000 * NS  # rewrite one GPU MMU entry and invalidate the GPU TLB for it
COST_GPU_CACHE_FLUSH = 3_000 * NS  # clean and invalidate 4 KiB in the CPU and GPU caches
GPU_GFP = int(GFP_HIGHUSER | Gfp.ZERO)
_MASK64 = (1 << 64) - 1


@attrs.define(eq=False)
class Buffer:
    """One GPU buffer: its pages (slots of the driver's page set) and its state."""

    id: int
    slots: np.ndarray  # PageSet slots, in the buffer's (GPU virtual) page order
    pinned: bool = False  # pinned for DMA: not isolatable
    fence: float = 0.0  # simulated time at which the last job using it completes
    expires: float = math.inf  # when its application frees it (the driver's own workload)
    generation: int = 0  # how many times a job wrote it

    @property
    def nr_pages(self) -> int:
        return len(self.slots)


class GpuDriver(Driver):
    """The GPU driver: buffers of pages, a job queue with fences, and its own compaction.

    Options (see :mod:`pagemig_gpu.options`): ``movable``, ``target`` (share of memory
    the GPU's applications keep allocated; 0 = none of its own workload), ``buffer_min``
    and ``buffer_max`` (pages; sizes log-uniform between), ``buffer_life`` (mean
    seconds a buffer lives), ``pinned_fraction`` (share of buffers pinned for DMA),
    ``job_rate`` (jobs per second), ``job_time`` (seconds until a job's fence
    signals), ``buffers_per_job``.
    """

    name = "gpu"

    def __init__(self, machine: Machine, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(machine, options)
        o = self.options
        self.gfp = self.page_gfp(GPU_GFP)
        self.target = float(o.get("target", 0.0))
        self.buffer_min = int(o.get("buffer_min", 16))
        self.buffer_max = int(o.get("buffer_max", 2048))
        self.buffer_life = float(o.get("buffer_life", 30.0))
        self.pinned_fraction = float(o.get("pinned_fraction", 0.1))
        self.job_rate = float(o.get("job_rate", 60.0))
        self.job_time = float(o.get("job_time", 0.05))
        self.buffers_per_job = int(o.get("buffers_per_job", 3))
        rng = o.get("_rng")
        self.rng: np.random.Generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
            int(o.get("seed", 0)))
        self.pages = PageSet(machine, capacity=4096)
        self._slot_buffer = np.full(4096, -1, dtype=np.int64)
        self.buffers: dict[int, Buffer] = {}
        self._next_id = 1
        self._next_token = 1
        self.isolated: set[int] = set()
        self._last_tick: float | None = None
        self._job_credit = 0.0
        self._contended = False
        self.counters = {"buffers_allocated": 0, "buffers_freed": 0, "alloc_failures": 0, "jobs_submitted": 0,
                         "gpu_migrate": 0, "gpu_migrate_eagain": 0, "isolate_refused_pinned": 0,
                         "gpu_remap": 0, "gpu_cache_flush": 0, "gpu_compact_moved": 0, "gpu_compact_runs": 0,
                         "freed_while_isolated": 0}
        self.migrate_seconds = 0.0

    # ------------------------------------------------------------------ buffers
    def _tokens(self, n: int) -> np.ndarray:
        base = (self.owner_id << 48) | self._next_token
        self._next_token += n
        return np.arange(base, base + n, dtype=np.uint64)

    def _ensure_slot_map(self) -> None:
        need = len(self.pages.pfn)
        if len(self._slot_buffer) < need:
            grown = np.full(need, -1, dtype=np.int64)
            grown[: len(self._slot_buffer)] = self._slot_buffer
            self._slot_buffer = grown

    def alloc_buffer(self, nr_pages: int, *, pinned: bool = False, life: float = math.inf) -> Buffer | None:
        """Allocate a buffer of ``nr_pages`` pages, all or nothing (``kbase_mem_alloc``)."""
        if nr_pages <= 0:
            raise ValueError(f"a buffer needs at least one page, not {nr_pages}")
        m = self.machine
        pfns = m.alloc_pages_bulk(self.gfp, nr_pages, self.owner_id, PageKind.DRIVER)
        if len(pfns) < nr_pages:
            if len(pfns):
                m.free_pages_bulk(pfns)
            self.counters["alloc_failures"] += 1
            return None
        self.pages.add_many(pfns, self._tokens(nr_pages))
        self._ensure_slot_map()
        slots = m.pages.private[pfns].astype(np.int64)
        buf = Buffer(id=self._next_id, slots=slots, pinned=pinned, expires=m.now + life)
        self._next_id += 1
        self._slot_buffer[slots] = buf.id
        self.buffers[buf.id] = buf
        if self.movable:
            self._set_movable_many(pfns)
        if pinned:
            pin_pages(m, pfns)
        self.counters["buffers_allocated"] += 1
        return buf

    def _set_movable_many(self, pfns: np.ndarray) -> None:
        """``__SetPageMovable`` for a whole buffer, in one step."""
        set_movable_many(self.machine, pfns, self)

    def buffer_pfns(self, buf: Buffer) -> np.ndarray:
        """The pages the GPU MMU maps for this buffer, in its order."""
        return self.pages.pfn[buf.slots]

    def free_buffer(self, buf: Buffer) -> None:
        """Free a buffer; a page compaction holds isolated becomes the isolation's orphan."""
        m = self.machine
        pfns = self.buffer_pfns(buf)
        self.pages.remove_many(pfns)
        self._slot_buffer[buf.slots] = -1
        unpin_pages(m, pfns)
        iso = [p for p in pfns.tolist() if p in self.isolated]
        for pfn in iso:
            self.isolated.discard(pfn)
            m.free_pages(pfn)  # the core turns it into an orphan that migration releases
        self.counters["freed_while_isolated"] += len(iso)
        rest = pfns if not iso else np.setdiff1d(pfns, np.asarray(iso, dtype=np.int64))
        clear_movable_many(m, rest)  # __ClearPageMovable, for the whole buffer
        m.free_pages_bulk(rest)
        del self.buffers[buf.id]
        self.counters["buffers_freed"] += 1

    def buffer_of(self, pfn: int) -> Buffer:
        return self.buffers[int(self._slot_buffer[self.machine.pages._private[pfn]])]

    def pin(self, buf: Buffer, pinned: bool = True) -> None:
        """Pin a buffer for DMA (or unpin it): a pinned page cannot be isolated."""
        buf.pinned = pinned
        pfns = self.buffer_pfns(buf)
        if pinned:
            pin_pages(self.machine, pfns)
        else:
            unpin_pages(self.machine, pfns)

    # ------------------------------------------------------------------ jobs
    def submit(self, buffers: list[Buffer], duration: float) -> None:
        """A job that uses these buffers until ``now + duration``; it renders into the first."""
        now = self.machine.now
        for buf in buffers:
            buf.fence = max(buf.fence, now + duration)
        target = buffers[0]
        pfns = self.buffer_pfns(target)
        self.pages.write_many(pfns, self._tokens(len(pfns)))
        target.generation += 1
        self.counters["jobs_submitted"] += 1

    def in_flight(self, buf: Buffer) -> bool:
        return buf.fence > self.machine.now

    # ------------------------------------------------------------------ movable operations
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        """Refuse pages pinned for DMA; take any other page (in flight or not: the fence
        is checked when migrating)."""
        buf = self.buffer_of(page.pfn)
        if buf.pinned:
            self.counters["isolate_refused_pinned"] += 1
            return False
        self.isolated.add(page.pfn)
        return True

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        """-EAGAIN while the buffer's fence has not signalled, while a DMA pin taken after
        isolation holds it (the kernel sees the extra reference), or while the driver is busy;
        else copy, remap the GPU MMU entry to dst and flush the caches."""
        buf = self.buffer_of(src.pfn)
        if self._contended or self.in_flight(buf) or buf.pinned:
            self.counters["gpu_migrate_eagain"] += 1
            return -EAGAIN
        self._move(src.pfn, dst.pfn)
        set_movable(dst, self)
        self.isolated.discard(src.pfn)
        self.counters["gpu_migrate"] += 1
        return MIGRATEPAGE_SUCCESS

    def putback_page(self, page: Page) -> None:
        self.isolated.discard(page.pfn)

    def _move(self, src: int, dst: int, *, charge: bool = True) -> None:
        """Copy a page and point its slot (the GPU MMU entry) at the new page; ``charge``
        puts the remap and flush on the stall clock of the compaction that asked."""
        m = self.machine
        copy_page(Page(m, dst), Page(m, src))
        slot = m.pages._private[src]
        self.pages.pfn[slot] = dst
        Page(m, dst).private = slot
        cost = COST_GPU_REMAP + COST_GPU_CACHE_FLUSH
        self.counters["gpu_remap"] += 1
        self.counters["gpu_cache_flush"] += 1
        self.migrate_seconds += cost
        if charge:
            m.stall_seconds += cost

    # ------------------------------------------------------------------ its own compaction (2015)
    def gpu_compact(self, max_pages: int | None = None) -> int:
        """The driver's internal compaction: give each idle, unpinned buffer new backing pages
        from the buddy allocator (wherever it puts them), copy and remap, then free the old
        ones; buffers whose lowest page lies lowest go first.  Returns pages moved."""
        m = self.machine
        self.counters["gpu_compact_runs"] += 1
        idle = [b for b in self.buffers.values() if not b.pinned and not self.in_flight(b)]
        idle = [b for b in idle if not any(int(p) in self.isolated for p in self.buffer_pfns(b))]
        idle.sort(key=lambda b: int(self.buffer_pfns(b).min()))
        moved = 0
        for buf in idle:
            if max_pages is not None and moved + buf.nr_pages > max_pages:
                break
            new = m.alloc_pages_bulk(self.gfp | Gfp.NORETRY | Gfp.NOWARN, buf.nr_pages, self.owner_id,
                                     PageKind.DRIVER)
            if len(new) < buf.nr_pages:
                if len(new):
                    m.free_pages_bulk(new)
                break
            # read the buffer's pages only now: the allocation may have compacted, and moved some
            old = self.buffer_pfns(buf).copy()
            for src, dst in zip(old.tolist(), new.tolist(), strict=True):
                self._move(src, dst, charge=False)
            if self.movable:
                self._set_movable_many(new)
            clear_movable_many(m, old)
            m.free_pages_bulk(old)
            moved += len(old)
        self.counters["gpu_compact_moved"] += moved
        log.debug("gpu_compact", pages_moved=moved)
        return moved

    # ------------------------------------------------------------------ the GPU's own workload
    def _buffer_size(self) -> int:
        lo, hi = math.log(self.buffer_min), math.log(self.buffer_max)
        return max(1, int(math.exp(self.rng.uniform(lo, hi))))

    def tick(self, now: float) -> None:
        """Buffers expire and are replaced until the GPU holds its target; jobs are submitted."""
        last = self._last_tick if self._last_tick is not None else now
        self._last_tick = now
        if self.target <= 0 and self.job_rate <= 0:
            return
        for buf in [b for b in self.buffers.values() if b.expires <= now and not self.in_flight(b)]:
            self.free_buffer(buf)
        if self.target > 0:
            want = int(self.target * self.machine.managed_pages)
            failures = 0
            while len(self.pages) < want and failures < 3:
                n = min(self._buffer_size(), want - len(self.pages))
                life = self.rng.exponential(self.buffer_life) if self.buffer_life > 0 else math.inf
                if self.alloc_buffer(n, pinned=bool(self.rng.random() < self.pinned_fraction), life=life) is None:
                    failures += 1
        if self.job_rate > 0 and self.buffers:
            self._job_credit += max(0.0, now - last) * self.job_rate
            jobs = int(self._job_credit)
            self._job_credit -= jobs
            ids = np.fromiter(self.buffers, dtype=np.int64)
            for _ in range(jobs):
                k = min(len(ids), self.buffers_per_job)
                pick = self.rng.choice(ids, size=k, replace=False)
                self.submit([self.buffers[int(i)] for i in pick], self.job_time)

    # ------------------------------------------------------------------ the conformance kit's exerciser
    def populate(self, n: int) -> int:
        """Allocate idle, unpinned buffers of up to 32 pages until ``n`` pages were added."""
        added = 0
        while added < n:
            buf = self.alloc_buffer(min(32, n - added))
            if buf is None:
                break
            added += buf.nr_pages
        return added

    def release(self, n: int) -> int:
        """Free whole buffers, oldest first, until at least ``n`` pages were freed."""
        freed = 0
        for buf in list(self.buffers.values()):
            if freed >= n:
                break
            freed += buf.nr_pages
            self.free_buffer(buf)
        return freed

    def release_pfn(self, pfn: int) -> bool:
        """Free the buffer that holds ``pfn`` now, even if compaction holds the page isolated."""
        slot = self.machine.pages._private[pfn]
        if slot >= len(self.pages.pfn) or self.pages.pfn[slot] != pfn:
            return False
        self.free_buffer(self.buffer_of(pfn))
        return True

    @contextlib.contextmanager
    def contended(self) -> Iterator[None]:
        """Every buffer in flight: migrate_page answers -EAGAIN."""
        was = self._contended
        self._contended = True
        try:
            yield
        finally:
            self._contended = was

    def conformance_state(self) -> tuple[object, ...]:
        return tuple((b.id, tuple(self.buffer_pfns(b).tolist()), b.pinned, b.generation)
                     for b in self.buffers.values())

    # ------------------------------------------------------------------ checks and figures
    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pages.contents()

    def verify(self) -> list[str]:
        """Every buffer's pages are the driver's, point back to the buffer, and pinned
        buffers carry the PINNED flag."""
        problems = []
        m = self.machine
        total = 0
        for buf in self.buffers.values():
            pfns = self.buffer_pfns(buf)
            total += len(pfns)
            if np.any(pfns < 0):
                problems.append(f"buffer {buf.id}: a slot maps no page")
                continue
            if np.any(m.pages.owner[pfns] != self.owner_id):
                problems.append(f"buffer {buf.id}: maps a page that is not the driver's")
            if np.any(self._slot_buffer[m.pages.private[pfns].astype(np.int64)] != buf.id):
                problems.append(f"buffer {buf.id}: a page does not point back to it")
            pinned = (m.pages.flags[pfns] & PageFlag.PINNED) != 0
            if not np.all(pinned == buf.pinned):
                problems.append(f"buffer {buf.id}: PINNED flags disagree with pinned={buf.pinned}")
        if total != len(self.pages):
            problems.append(f"buffers hold {total} pages, the page set {len(self.pages)}")
        return problems

    def stats(self) -> dict[str, int | float]:
        pinned = sum(b.nr_pages for b in self.buffers.values() if b.pinned)
        flying = sum(1 for b in self.buffers.values() if self.in_flight(b))
        return {
            **self.counters,
            "buffers": len(self.buffers),
            "gpu_pages": len(self.pages),
            "gpu_mib": len(self.pages) * PAGE_SIZE / (1 << 20),
            "pinned_pages": pinned,
            "buffers_in_flight": flying,
            "migrate_cost_seconds": self.migrate_seconds,
        }
