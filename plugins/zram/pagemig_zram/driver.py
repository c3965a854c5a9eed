"""zram: a compressed swap device whose storage is zsmalloc (drivers/block/zram, v4.8).

The device registers itself as the machine's swap device (``swapon``) through the
core's :class:`~pagemig.api.SwapDevice` protocol: reclaim hands it the content
of each anon page it swaps out, zram "compresses" it into a zsmalloc object and
returns the slot; a swap-in reads the object back and must return exactly what was
written (the core's ``LruOwner`` checks it).

Compression is a model, not a codec: a page's compressed length is a fixed function
of its content token and the device's seed, so the same content always compresses
to the same length whatever the order of writes.  A share of pages (``zero_fraction``)
is zero-filled and stored as a flag without any allocation, as zram's ``ZRAM_ZERO``
(``ZRAM_SAME`` from v4.13) does; the rest follow a log-normal length around
``PAGE_SIZE / compression_ratio`` (median) with a spread that gives the long tail of
incompressible pages real zram sees; a page that does not shrink below
``max_zpage_size`` (3/4 of a page, v4.8) is stored whole, in the huge class.

Where pages come from, and why it matters to compaction:

* since v4.8 zram allocates with ``__GFP_MOVABLE`` (first without direct reclaim,
  ``__GFP_KSWAPD_RECLAIM | __GFP_NOWARN | __GFP_HIGHMEM | __GFP_MOVABLE``, then with
  ``GFP_NOIO | __GFP_HIGHMEM | __GFP_MOVABLE``) and marks its zspages movable;
* ``movable = false`` is zram before v4.8: ``GFP_NOIO | __GFP_HIGHMEM``, unmovable
  pages taken wherever the allocator's fallback puts them, scattered over pageblocks;
* a swap-out runs inside reclaim, whose task has ``PF_MEMALLOC``: its allocations try
  the low and min watermarks, then ignore watermarks, and never recurse into reclaim
  or compaction (``__alloc_pages_slowpath``'s ``PF_MEMALLOC`` exit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import numpy as np
import structlog

from pagemig.api import GFP_NOIO, PAGE_SIZE, Driver, Gfp, Machine, MigrateMode, Page, PageKind, register_swap_device
from pagemig_zram.zsmalloc import ZsPool, mix64

log = structlog.get_logger(__name__)

MAX_ZPAGE_SIZE = PAGE_SIZE // 4 * 3  # v4.8 max_zpage_size: larger compressed pages are stored whole
# v4.8 zram_bvec_write: a first try that may not enter direct reclaim, then GFP_NOIO
ZRAM_GFP_FIRST = int(Gfp.KSWAPD_RECLAIM | Gfp.NOWARN | Gfp.HIGHMEM | Gfp.MOVABLE)
ZRAM_GFP_RETRY = int(GFP_NOIO | Gfp.HIGHMEM | Gfp.MOVABLE)
ZRAM_GFP_UNMOVABLE = int(GFP_NOIO | Gfp.HIGHMEM)  # zs_create_pool(name, GFP_NOIO | __GFP_HIGHMEM) before v4.8
LENGTH_SIGMA = 0.55  # log-normal spread of compressed lengths
MIN_COMPRESSED = 24  # even a trivial page costs a few bytes of codec output

SLOT_USED = 1
SLOT_ZERO = 2

_NORMAL = NormalDist()
LENGTH_TABLE_BITS = 12  # the length distribution in 4096 equal-probability steps
_LENGTH_MASK = (1 << LENGTH_TABLE_BITS) - 1
_INV_2_53 = 1.0 / float(1 << 53)


class ZramDevice(Driver):
    """``/dev/zram0`` as a swap device, with its zsmalloc pool.

    Options (see :mod:`pagemig_zram.options`): ``movable``, ``disksize`` (bytes; the
    swap capacity), ``mem_limit`` (bytes of pool memory, 0 = none), ``compression_ratio``,
    ``zero_fraction``, ``priority`` (swap priority), ``seed``.
    """

    name = "zram"

    def __init__(self, machine: Machine, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(machine, options)
        opts = self.options
        managed_bytes = machine.managed_pages * PAGE_SIZE
        disksize = opts.get("disksize")
        if disksize is None:
            disksize = managed_bytes // 2
        elif isinstance(disksize, float):  # a share of memory ("50%")
            disksize = int(disksize * managed_bytes)
        self.disksize = int(disksize) // PAGE_SIZE * PAGE_SIZE
        if self.disksize <= 0:
            raise ValueError("zram: disksize must be at least one page")
        self.mem_limit_pages = int(opts.get("mem_limit", 0)) // PAGE_SIZE
        self.compression_ratio = float(opts.get("compression_ratio", 3.0))
        self.zero_fraction = float(opts.get("zero_fraction", 0.05))
        self.priority = int(opts.get("priority", 100))
        rng = opts.get("_rng")
        seed = opts.get("seed")
        if seed is None:
            seed = int(rng.integers(1 << 62)) if isinstance(rng, np.random.Generator) else 0
        self.seed = int(seed)
        self._mu = math.log(PAGE_SIZE / self.compression_ratio)
        self._lengths = self._length_table()
        self._seed_mix = mix64(self.seed)
        nr_slots = self.disksize // PAGE_SIZE
        self.slot_flags = np.zeros(nr_slots, dtype=np.uint8)
        self.slot_handle = np.zeros(nr_slots, dtype=np.int64)
        self.slot_value = np.zeros(nr_slots, dtype=np.uint64)  # only for zero-filled pages
        self.slot_len = np.zeros(nr_slots, dtype=np.int32)
        self._free_slots: list[int] = list(range(nr_slots - 1, -1, -1))
        self.pool = ZsPool(machine, self.owner_id, self._alloc_page, self, movable=self.movable)
        self._in_reclaim = False
        self.counters = {"num_reads": 0, "num_writes": 0, "failed_writes": 0, "zero_pages": 0,
                         "orig_data_size": 0, "compr_data_size": 0, "mem_used_max": 0, "huge_pages": 0}
        self.swapon = False
        if opts.get("swap", True):
            register_swap_device(machine, self)
            self.swapon = True

    # ------------------------------------------------------------------ where pages come from
    def _alloc_page(self, gfp: int) -> int:
        """One page for a zspage.  Inside reclaim (``PF_MEMALLOC``) it may dip below the
        watermarks and never recurses into reclaim; elsewhere it is an ordinary allocation."""
        m = self.machine
        if not self._in_reclaim:
            return m.alloc_pages(gfp, 0, self.owner_id, PageKind.DRIVER)
        return m.alloc_page_in_reclaim(gfp, self.owner_id, PageKind.DRIVER)

    def _zs_malloc(self, clen: int, value: int) -> int:
        if not self.movable:
            return self.pool.malloc(clen, ZRAM_GFP_UNMOVABLE, value)
        handle = self.pool.malloc(clen, ZRAM_GFP_FIRST, value)
        if not handle:
            handle = self.pool.malloc(clen, ZRAM_GFP_RETRY, value)
        return handle

    # ------------------------------------------------------------------ the compression model
    def _length_table(self) -> list[int]:
        """Compressed lengths at the midpoints of 2^LENGTH_TABLE_BITS equal-probability bins of
        the log-normal (its quantile function, tabulated once), capped as zram stores them."""
        n = 1 << LENGTH_TABLE_BITS
        out = []
        for i in range(n):
            q = _NORMAL.inv_cdf((i + 0.5) / n)
            length = max(MIN_COMPRESSED, int(math.exp(self._mu + LENGTH_SIGMA * q)))
            out.append(PAGE_SIZE if length > MAX_ZPAGE_SIZE else length)  # too big: stored uncompressed
        return out

    def compressed_length(self, token: int) -> int:
        """How many bytes this content compresses to (0: a zero-filled page): a fixed function
        of the content and the device's seed."""
        h = mix64(int(token) ^ self._seed_mix)
        if (h >> 11) * _INV_2_53 < self.zero_fraction:
            return 0
        return self._lengths[h & _LENGTH_MASK]

    # ------------------------------------------------------------------ the block device
    def write(self, token: int) -> int:
        """Store one page (``zram_bvec_write``); returns its slot, or -1 if the device is
        full or its memory ran out."""
        if not self._free_slots:
            self.counters["failed_writes"] += 1
            return -1
        clen = self.compressed_length(token)
        slot = self._free_slots.pop()
        if clen == 0:
            self.slot_flags[slot] = SLOT_USED | SLOT_ZERO
            self.slot_value[slot] = token
            self.slot_len[slot] = 0
            self.counters["zero_pages"] += 1
        else:
            handle = self._zs_malloc(clen, int(token))
            if handle and self.mem_limit_pages and self.pool.pages_allocated > self.mem_limit_pages:
                self.pool.free(handle)  # zram checks its limit after the allocation, and undoes it
                handle = 0
            if not handle:
                self._free_slots.append(slot)
                self.counters["failed_writes"] += 1
                return -1
            self.slot_flags[slot] = SLOT_USED
            self.slot_handle[slot] = handle
            self.slot_len[slot] = clen
            self.counters["compr_data_size"] += clen
            if clen == PAGE_SIZE:
                self.counters["huge_pages"] += 1
        self.counters["num_writes"] += 1
        self.counters["orig_data_size"] += PAGE_SIZE
        used = self.pool.pages_allocated
        if used > self.counters["mem_used_max"]:
            self.counters["mem_used_max"] = used
        return slot

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < len(self.slot_flags) or not self.slot_flags[slot] & SLOT_USED:
            raise KeyError(f"zram: slot {slot} holds nothing")

    def read(self, slot: int) -> int:
        """Read one page back (``zram_bvec_read``): its content token."""
        self._check_slot(slot)
        self.counters["num_reads"] += 1
        if self.slot_flags[slot] & SLOT_ZERO:
            return int(self.slot_value[slot])
        return self.pool.read(int(self.slot_handle[slot]))

    def discard(self, slot: int) -> None:
        """Free one slot (``zram_free_page``: swap_slot_free_notify or discard)."""
        self._check_slot(slot)
        if self.slot_flags[slot] & SLOT_ZERO:
            self.counters["zero_pages"] -= 1
        else:
            clen = int(self.slot_len[slot])
            self.pool.free(int(self.slot_handle[slot]))
            self.counters["compr_data_size"] -= clen
            if clen == PAGE_SIZE:
                self.counters["huge_pages"] -= 1
        self.counters["orig_data_size"] -= PAGE_SIZE
        self.slot_flags[slot] = 0
        self.slot_handle[slot] = 0
        self.slot_value[slot] = 0
        self._free_slots.append(slot)

    @property
    def slots_used(self) -> int:
        return len(self.slot_flags) - len(self._free_slots)

    # ------------------------------------------------------------------ the SwapDevice protocol
    @property
    def capacity(self) -> int:
        """Swap slots: ``disksize`` in pages (the pool may fill earlier; writes then fail)."""
        return len(self.slot_flags)

    def swap_out(self, token: int) -> int | None:
        self._in_reclaim = True
        try:
            slot = self.write(token)
        finally:
            self._in_reclaim = False
        return None if slot < 0 else slot

    def swap_out_many(self, tokens: np.ndarray) -> np.ndarray:
        out = np.full(len(tokens), -1, dtype=np.int64)
        self._in_reclaim = True
        try:
            for i, tok in enumerate(np.asarray(tokens, dtype=np.uint64).tolist()):
                slot = self.write(tok)
                if slot < 0:
                    break
                out[i] = slot
        finally:
            self._in_reclaim = False
        return out

    def swap_in(self, handle: int) -> int:
        return self.read(handle)

    def swap_free(self, handle: int) -> None:
        self.discard(handle)

    # ------------------------------------------------------------------ movable operations
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        return self.pool.isolate_page(page, mode)

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        return self.pool.migrate_page(dst, src, mode)

    def putback_page(self, page: Page) -> None:
        self.pool.putback_page(page)

    # ------------------------------------------------------------------ commands and time
    def compact(self) -> int:
        """``echo 1 > /sys/block/zram0/compact``: zsmalloc's own compaction; pages freed."""
        freed = self.pool.compact()
        log.debug("zram_compact", pages_freed=freed)
        return freed

    def tick(self, now: float) -> None:
        """The pool's deferred work (``async_free_zspage``) runs soon after it is queued."""
        self.pool._async_free_zspages()

    # ------------------------------------------------------------------ the conformance kit's exerciser
    def populate(self, n: int) -> int:
        """Store pages of fresh content until the pool has grown by about ``n`` pages."""
        before = self.pool.pages_allocated
        i = 0
        while self.pool.pages_allocated - before < n and i < 64 * n:
            token = mix64((self.owner_id << 40) ^ (self.counters["num_writes"] + i + 1) ^ 0x5A5A)
            if self.write(token) < 0:
                break
            i += 1
        return max(0, self.pool.pages_allocated - before)

    def release(self, n: int) -> int:
        """Discard stored pages, oldest slot first, until the pool shrank by about ``n`` pages."""
        before = self.pool.pages_allocated
        used = np.flatnonzero(self.slot_flags & SLOT_USED)
        for slot in used.tolist():
            if before - self.pool.pages_allocated >= n:
                break
            self.discard(slot)
        return max(0, before - self.pool.pages_allocated)

    def conformance_state(self) -> tuple[object, ...]:
        """What must survive isolate + putback: each zspage's chain and fullness, every
        slot's handle and where it points (list order may change, as in the kernel)."""
        pool = self.pool
        zspages = tuple((z, tuple(pool.zs_chain[z]), pool.zs_fg[z], pool.zs_inuse[z])
                        for z, c in enumerate(pool.zs_class) if c is not None)
        used = np.flatnonzero(self.slot_flags & SLOT_USED)
        handles = self.slot_handle[used]
        objs = np.where(handles > 0, pool.h_obj[handles], -1)
        return zspages, tuple(used.tolist()), tuple(objs.tolist())

    # ------------------------------------------------------------------ checks and figures
    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pool.pages.contents()

    def verify(self) -> list[str]:
        """The pool's own check, plus every stored slot read back against what was written."""
        problems = self.pool.verify()
        used = np.flatnonzero((self.slot_flags & (SLOT_USED | SLOT_ZERO)) == SLOT_USED)
        handles = self.slot_handle[used]
        if len(handles) != self.pool.nr_handles:
            problems.append(f"{len(handles)} slots hold objects, the pool has {self.pool.nr_handles}")
        lens = self.pool.h_len[handles]
        if not np.array_equal(lens, self.slot_len[used]):
            problems.append("a slot's compressed length differs from its object's")
        if self.counters["compr_data_size"] != int(self.slot_len[used].sum()):
            problems.append("compr_data_size does not add up")
        return problems

    def stats(self) -> dict[str, int | float]:
        """zram's mm_stat and io_stat, and the pool's figures."""
        c = self.counters
        pool = self.pool.stats()
        mem_used = self.pool.pages_allocated * PAGE_SIZE
        return {
            **c,
            "mem_used_total": mem_used,
            "mem_limit": self.mem_limit_pages * PAGE_SIZE,
            "mem_used_max": c["mem_used_max"] * PAGE_SIZE,
            "disksize": self.disksize,
            "slots_used": self.slots_used,
            "compression_ratio": (c["orig_data_size"] / mem_used) if mem_used else 0.0,
            **pool,
        }
