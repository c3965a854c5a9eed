"""The virtio balloon, as drivers/virtio/virtio_balloon.c and mm/balloon_compaction.c run it.

A balloon takes guest pages away from the guest and hands their backing back to the
host.  The guest-side driver keeps the pages it took on a list (``vb_dev_info->pages``)
and tells the host their PFNs, at most 256 per request (``VIRTIO_BALLOON_ARRAY_PFNS_MAX``).
Since Linux v3.8 those pages are movable: compaction may isolate one, and the driver's
``migratepage`` swaps it for a fresh page, telling the host to take the new one and
give back the old one.

What is modelled, and why:

* **Inflate** (``fill_balloon``) allocates order-0 pages one at a time with the
  balloon's mask (``GFP_HIGHUSER_MOVABLE | __GFP_NOMEMALLOC | __GFP_NORETRY |
  __GFP_NOWARN``), so inflation competes with every other allocation: it wakes kswapd,
  reclaims and compacts through the machine's slow path, and gives up early instead of
  retrying hard.  A failed allocation ends the batch ("Out of puff!") and the next
  attempt waits 200 ms of simulated time, as the driver's ``msleep(200)`` does.
* **Deflate** (``leak_balloon``) takes pages off the list, most recently inflated
  first (the list is LIFO: ``list_add`` on insert, walk from the head on dequeue),
  skipping isolated pages, tells the host and frees them.
* The **balloon lock** (``vb->balloon_lock``) is held for a whole fill or leak.  An
  allocation inside ``fill_balloon`` can enter direct compaction, which can isolate a
  balloon page and call ``migrate_page``: that call finds the lock taken and answers
  ``-EAGAIN``, exactly the case the kernel's comment in ``virtballoon_migratepage``
  describes.  Isolation and putback only take the list's spinlock in the kernel, so
  they work while the lock is held.
* The **host** records which guest PFNs it has taken back.  Outside a fill or leak
  its record is exactly the balloon's list plus the pages compaction holds isolated
  (they are still ballooned: the host does not know about isolation);
  :meth:`BalloonDriver.check_host` proves it and :meth:`BalloonDriver.stats` asserts it.
* ``movable = false`` is the balloon before v3.8: plain ``GFP_HIGHUSER`` pages (no
  ``__GFP_MOVABLE``), never marked movable, so they sit in UNMOVABLE pageblocks where
  compaction cannot touch them.
* ``deflate_on_oom`` (``VIRTIO_BALLOON_F_DEFLATE_ON_OOM``): the OOM notifier leaks
  ``oom_pages`` (256) pages.  Without it, ballooned pages are also taken out of the
  zone's managed pages (``adjust_managed_page_count(page, -1)``).
* Balloon pages have no content worth keeping (the host dropped their backing), so
  migration copies nothing, as ``virtballoon_migratepage`` copies nothing.  Every
  balloon page carries :data:`BALLOON_TOKEN`, the simulator's stand-in for the page
  type the kernel sets (``__SetPageBalloon``/``PG_offline``), so the checker still
  notices a page that lost its identity.

Not modelled: the stats and free-page-hinting virtqueues, the host's own timing (a
request is acknowledged at once), huge balloon pages.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import structlog

from pagemig.api import (
    EAGAIN,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    MIGRATEPAGE_SUCCESS,
    PAGE_SIZE,
    Driver,
    Gfp,
    Machine,
    MigrateMode,
    Page,
    PageKind,
    PageSet,
    clear_movable,
    register_oom_notifier,
    set_movable,
)

log = structlog.get_logger(__name__)

VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256  # PFNs per request to the host
OOM_VBALLOON_DEFAULT_PAGES = 256  # module parameter oom_pages
OUT_OF_PUFF_DELAY = 0.2  # fill_balloon's msleep(200) after a failed allocation, seconds
BALLOON_TOKEN = 0xBA1100_0000_0000  # what a balloon page "contains": its page type
MIB = 1 << 20
PAGES_PER_MIB = MIB // PAGE_SIZE

# balloon_mapping_gfp_mask() | __GFP_NOMEMALLOC | __GFP_NORETRY (balloon_page_alloc), plus the
# __GFP_NOWARN that virtio_balloon adds since v5.x.
BALLOON_GFP_MOVABLE = int(GFP_HIGHUSER_MOVABLE | Gfp.NOMEMALLOC | Gfp.NORETRY | Gfp.NOWARN)
# Before balloon compaction (v3.8): GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOMEMALLOC | __GFP_NOWARN.
BALLOON_GFP_UNMOVABLE = int(GFP_HIGHUSER | Gfp.NOMEMALLOC | Gfp.NORETRY | Gfp.NOWARN)

DEFAULT_INFLATE_RATE = 256 * PAGES_PER_MIB  # pages per simulated second: 256 MiB/s


class BalloonProtocolError(AssertionError):
    """The host's record and the balloon's list disagree, or the host got a malformed request.

    Either is a bug in the driver (or in whoever drove it), never a state to go on from.
    """


class BalloonHost:
    """The hypervisor's view: which guest PFNs it has taken back (their backing is gone).

    It checks each request as QEMU's ``virtio_balloon_handle_output`` would have to:
    at most 256 PFNs, no PFN inflated twice or deflated without having been inflated.
    """

    def __init__(self, nr_pages: int) -> None:
        self.taken = np.zeros(nr_pages, dtype=bool)
        self.nr_taken = 0
        self.inflate_requests = 0
        self.deflate_requests = 0

    def _check(self, pfns: np.ndarray, what: str) -> None:
        if len(pfns) > VIRTIO_BALLOON_ARRAY_PFNS_MAX:
            raise BalloonProtocolError(f"{what} request of {len(pfns)} PFNs; a request holds at most "
                                       f"{VIRTIO_BALLOON_ARRAY_PFNS_MAX}")
        if len(np.unique(pfns)) != len(pfns):
            raise BalloonProtocolError(f"{what} request names a PFN twice")

    def inflate(self, pfns: Iterable[int]) -> None:
        """The guest gives these pages to the host (the inflate virtqueue)."""
        arr = np.fromiter(pfns, dtype=np.int64)
        self._check(arr, "inflate")
        if self.taken[arr].any():
            bad = int(arr[self.taken[arr]][0])
            raise BalloonProtocolError(f"inflate of pfn {bad:#x}, which the host already holds")
        self.taken[arr] = True
        self.nr_taken += len(arr)
        self.inflate_requests += 1

    def deflate(self, pfns: Iterable[int]) -> None:
        """The guest takes these pages back (the deflate virtqueue)."""
        arr = np.fromiter(pfns, dtype=np.int64)
        self._check(arr, "deflate")
        if not self.taken[arr].all():
            bad = int(arr[~self.taken[arr]][0])
            raise BalloonProtocolError(f"deflate of pfn {bad:#x}, which the host does not hold")
        self.taken[arr] = False
        self.nr_taken -= len(arr)
        self.deflate_requests += 1

    def inflate_one(self, pfn: int) -> None:
        """A one-PFN inflate request (``virtballoon_migratepage`` tells the host about dst
        alone): the same checks as :meth:`inflate` without building arrays, because
        compaction makes one such request per migrated balloon page."""
        if self.taken[pfn]:
            raise BalloonProtocolError(f"inflate of pfn {pfn:#x}, which the host already holds")
        self.taken[pfn] = True
        self.nr_taken += 1
        self.inflate_requests += 1

    def deflate_one(self, pfn: int) -> None:
        """A one-PFN deflate request (src of a balloon page migration)."""
        if not self.taken[pfn]:
            raise BalloonProtocolError(f"deflate of pfn {pfn:#x}, which the host does not hold")
        self.taken[pfn] = False
        self.nr_taken -= 1
        self.deflate_requests += 1

    def pfns(self) -> np.ndarray:
        return np.flatnonzero(self.taken)


class BalloonDriver(Driver):
    """A virtio balloon device and its guest driver, with the host on the other side.

    Options (validated by :func:`pagemig_balloon.plugin.validate_options`):
    ``movable`` (bool, default true), ``deflate_on_oom`` (bool, default false),
    ``inflate_rate`` (pages per simulated second, default 65536, i.e. 256 MiB/s; 0 means
    no limit), ``oom_pages`` (pages released per OOM notification, default 256),
    ``target_mib`` (an initial ``balloon`` target, in MiB of guest memory; default none).
    """

    name = "balloon"

    def __init__(self, machine: Machine, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(machine, options)
        opts = self.options
        self.deflate_on_oom = bool(opts.get("deflate_on_oom", False))
        self.inflate_rate = float(opts.get("inflate_rate", DEFAULT_INFLATE_RATE))
        self.oom_pages = int(opts.get("oom_pages", OOM_VBALLOON_DEFAULT_PAGES))
        self.gfp = BALLOON_GFP_MOVABLE if self.movable else BALLOON_GFP_UNMOVABLE
        self.host = BalloonHost(machine.nr_pages)
        # Every page the balloon holds: on its list or isolated by compaction.
        self.pages = PageSet(machine, capacity=4096)
        self.isolated: set[int] = set()
        # The list's order: a stack of (pfn, generation); an entry is live while the pfn is
        # on the list and its generation matches (isolation and removal retire entries).
        self._stack: list[tuple[int, int]] = []
        self._gen = np.zeros(machine.nr_pages, dtype=np.uint32)
        self.locked = False  # vb->balloon_lock
        self.num_pages = 0  # vb->num_pages: pages the host has been told about
        self.target_pages = 0  # the device's num_pages config field (what the host asks for)
        self._work_pending = False  # update_balloon_size_work queued
        self._retry_at = 0.0
        self._last_tick: float | None = None
        self._credit = 0.0
        self.out_of_puff = 0  # fill_balloon allocation failures
        self.oom_deflated = 0
        self.migrate_eagain = 0
        self.counters = {"balloon_inflate": 0, "balloon_deflate": 0, "balloon_migrate": 0}
        if opts.get("target_mib") is not None:
            self.set_target_mib(int(opts["target_mib"]))
        if self.deflate_on_oom:
            register_oom_notifier(machine, self.oom_notify)

    # ----------------------------------------------------------------- the host's request
    @property
    def guest_pages(self) -> int:
        """QEMU's ``ram_size`` in pages: everything the guest was given, reserved or not."""
        return self.machine.nr_pages

    def set_target_mib(self, mib: int) -> int:
        """QEMU's monitor ``balloon N``: leave the guest N MiB; returns the balloon's target in pages.

        ``virtio_balloon_to_target``: a target above the guest's RAM is clamped to it
        (an empty balloon); the balloon then holds ``ram_size - target``.
        """
        if isinstance(mib, bool) or not isinstance(mib, int | np.integer):
            raise TypeError(f"balloon target must be a whole number of MiB, got {mib!r}")
        if mib <= 0:
            raise ValueError(f"balloon target must be positive MiB of guest memory, got {mib}")
        target_pages = min(int(mib) * PAGES_PER_MIB, self.guest_pages)
        return self.set_target_pages(self.guest_pages - target_pages)

    def set_target_pages(self, pages: int) -> int:
        """Ask for a balloon of ``pages`` pages (the config field ``num_pages``)."""
        if pages < 0 or pages > self.guest_pages:
            raise ValueError(f"balloon size must be 0..{self.guest_pages} pages, got {pages}")
        self.target_pages = int(pages)
        self._work_pending = True  # virtballoon_changed() queues update_balloon_size_work
        log.debug("balloon_target", target_pages=self.target_pages, now=self.machine.now)
        return self.target_pages

    def towards_target(self) -> int:
        return self.target_pages - self.num_pages

    # ----------------------------------------------------------------- the list
    def _push(self, pfn: int) -> None:
        gen = int(self._gen[pfn]) + 1
        self._gen[pfn] = gen
        self._stack.append((pfn, gen))

    def _retire(self, pfn: int) -> None:
        self._gen[pfn] += 1

    def _pop_listed(self) -> int:
        """The page at the list's head, taken off it; -1 if the list is empty."""
        stack = self._stack
        gen = self._gen
        while stack:
            pfn, g = stack.pop()
            if gen[pfn] == g:
                self._retire(pfn)
                return pfn
        return -1

    def listed_pfns(self) -> np.ndarray:
        """The balloon's page list (``vb_dev_info->pages``), sorted by pfn."""
        held = self.pages.pfns()
        if self.isolated:
            held = np.setdiff1d(held, np.fromiter(self.isolated, dtype=np.int64), assume_unique=True)
        return np.sort(held)

    @property
    def nr_listed(self) -> int:
        return len(self.pages) - len(self.isolated)

    # ----------------------------------------------------------------- inflate / deflate
    def fill_balloon(self, num: int) -> int:
        """Inflate by up to ``min(num, 256)`` pages, one host request.  Returns pages added."""
        num = min(num, VIRTIO_BALLOON_ARRAY_PFNS_MAX)
        if num <= 0:
            return 0
        m = self.machine
        self.locked = True
        batch: list[int] = []
        try:
            for _ in range(num):
                pfn = m.alloc_pages(self.gfp, 0, self.owner_id, PageKind.DRIVER)
                if pfn < 0:
                    self.out_of_puff += 1
                    self._retry_at = m.now + OUT_OF_PUFF_DELAY
                    break
                self.pages.add(pfn, BALLOON_TOKEN)
                if self.movable:
                    set_movable(Page(m, pfn), self)
                self._push(pfn)
                batch.append(pfn)
                if not self.deflate_on_oom:
                    m.adjust_managed_page_count(pfn, -1)
            if batch:
                self.host.inflate(batch)
                self.num_pages += len(batch)
                self._count("balloon_inflate", len(batch))
        finally:
            self.locked = False
        return len(batch)

    def leak_balloon(self, num: int) -> int:
        """Deflate by up to ``min(num, 256)`` pages, one host request.  Returns pages freed.

        Isolated pages are not on the list, so they are never chosen: the kernel's
        ``balloon_page_list_dequeue`` skips them too ("raced with isolation").
        """
        num = min(num, VIRTIO_BALLOON_ARRAY_PFNS_MAX)
        if num <= 0:
            return 0
        m = self.machine
        self.locked = True
        batch: list[int] = []
        try:
            while len(batch) < num:
                pfn = self._pop_listed()
                if pfn < 0:
                    break
                batch.append(pfn)
            if batch:
                self.host.deflate(batch)  # MUST_TELL_HOST: tell before the guest reuses them
                self.num_pages -= len(batch)
                arr = np.asarray(batch, dtype=np.int64)
                self.pages.remove_many(arr)
                for pfn in batch:
                    clear_movable(Page(m, pfn))
                    if not self.deflate_on_oom:
                        m.adjust_managed_page_count(pfn, 1)
                m.free_pages_bulk(arr)
                self._count("balloon_deflate", len(batch))
        finally:
            self.locked = False
        return len(batch)

    def update_balloon_size(self, budget: float = math.inf) -> int:
        """``update_balloon_size_func``: fill or leak towards the target, at most ``budget``
        pages, one 256-PFN request at a time.  Returns the pages moved."""
        moved = 0
        while self._work_pending and moved < budget:
            diff = self.towards_target()
            if diff == 0:
                self._work_pending = False
                break
            step = int(min(abs(diff), budget - moved, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
            if step <= 0:
                break
            if diff > 0:
                done = self.fill_balloon(step)
                moved += done
                if done < step:  # out of puff: requeue after 200 ms
                    break
            else:
                done = self.leak_balloon(step)
                moved += done
                if done == 0:  # every page isolated by compaction right now
                    break
        return moved

    def tick(self, now: float) -> None:
        """Run the queued balloon work for the simulated time that passed since the last tick.

        ``inflate_rate`` pages per second bound how fast the device moves towards its
        target in either direction (0 = as fast as allocation allows).  After an
        allocation failure the work waits 200 ms before it tries again.
        """
        last = self._last_tick if self._last_tick is not None else now
        self._last_tick = now
        if not self._work_pending:
            self._credit = 0.0
            return
        if self.inflate_rate > 0:
            self._credit = min(self._credit + max(0.0, now - last) * self.inflate_rate,
                               max(self.inflate_rate, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
            budget: float = math.floor(self._credit)
        else:
            budget = math.inf
        if now < self._retry_at or budget <= 0:
            return
        moved = self.update_balloon_size(budget)
        if self.inflate_rate > 0:
            self._credit -= moved

    def run_to_target(self, max_attempts: int = 1000) -> int:
        """Drive the work to the target without simulated time (for tests and scripted use).

        Stops after ``max_attempts`` rounds without progress; returns the pages moved.
        """
        total = 0
        stalled = 0
        while self._work_pending and stalled < max_attempts:
            moved = self.update_balloon_size()
            total += moved
            stalled = 0 if moved else stalled + 1
        return total

    def oom_notify(self) -> int:
        """``virtballoon_oom_notify``: under OOM, give back ``oom_pages`` if the device allows it."""
        if not self.deflate_on_oom:
            return 0
        freed = 0
        while freed < self.oom_pages:
            done = self.leak_balloon(self.oom_pages - freed)
            if not done:
                break
            freed += done
        self.oom_deflated += freed
        return freed

    def _count(self, counter: str, n: int) -> None:
        self.machine.vmstat[counter] += n
        self.counters[counter] += n

    # ----------------------------------------------------------------- movable operations
    def isolate_page(self, page: Page, mode: MigrateMode) -> bool:
        """``balloon_page_isolate``: take the page off the list (it stays ballooned at the host)."""
        pfn = page.pfn
        if pfn not in self.pages or pfn in self.isolated:
            return False
        self._retire(pfn)
        self.isolated.add(pfn)
        return True

    def putback_page(self, page: Page) -> None:
        """``balloon_page_putback``: back on the list's head."""
        pfn = page.pfn
        self.isolated.discard(pfn)
        self._push(pfn)

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int:
        """``virtballoon_migratepage``: -EAGAIN while a fill or leak holds the lock, else put
        dst in the balloon and inflate it at the host, then deflate src."""
        if self.locked:
            self.migrate_eagain += 1
            return -EAGAIN
        m = self.machine
        self.pages.add(dst.pfn, BALLOON_TOKEN)
        set_movable(dst, self)
        self._push(dst.pfn)
        self.host.inflate_one(dst.pfn)
        self.isolated.discard(src.pfn)
        self.pages.remove(src.pfn)
        self.host.deflate_one(src.pfn)
        if not self.deflate_on_oom:
            m.adjust_managed_page_count(dst.pfn, -1)
            m.adjust_managed_page_count(src.pfn, 1)
        self._count("balloon_migrate", 1)
        return MIGRATEPAGE_SUCCESS

    # ----------------------------------------------------------------- the conformance kit's exerciser
    def populate(self, n: int) -> int:
        """Inflate by ``n`` pages (the host asks for ``n`` more); returns the pages added.

        "More" is counted from the balloon's actual size (virtio's ``actual``, which the
        guest reports back), not from the last target: after a release that compaction's
        isolated pages held up, the target lies below the balloon, and ``target + n``
        would still be a deflation (populate returned -1 here)."""
        before = len(self.pages)
        self.set_target_pages(min(self.num_pages + n, self.guest_pages))
        self.run_to_target(max_attempts=2)
        return len(self.pages) - before

    def release(self, n: int) -> int:
        """Deflate by ``n`` pages, counted from the balloon's actual size as populate counts;
        isolated pages stay (the kernel skips them too), so fewer may go."""
        before = len(self.pages)
        self.set_target_pages(max(self.num_pages - n, 0))
        self.run_to_target(max_attempts=2)
        return before - len(self.pages)

    @contextlib.contextmanager
    def contended(self) -> Iterator[None]:
        """Hold the balloon lock, as a fill or leak in progress does: migrate_page answers -EAGAIN."""
        was = self.locked
        self.locked = True
        try:
            yield
        finally:
            self.locked = was

    def conformance_state(self) -> tuple[object, ...]:
        """The list (as a set: putback relinks at the head, as the kernel's does), the isolated
        pages, the host's record and the counts."""
        return (tuple(self.listed_pfns().tolist()), tuple(sorted(self.isolated)),
                tuple(self.host.pfns().tolist()), self.num_pages, self.target_pages)

    # ----------------------------------------------------------------- checks and figures
    def expected_contents(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pages.contents()

    def check_host(self) -> list[str]:
        """Problems with the host's record: it must equal the list plus the isolated pages,
        and ``num_pages`` must count them."""
        problems: list[str] = []
        if self.locked:
            return problems  # mid-request: the host hears about the batch at its end
        held = np.sort(self.pages.pfns())
        host = self.host.pfns()
        if not np.array_equal(held, host):
            extra = np.setdiff1d(host, held)
            missing = np.setdiff1d(held, host)
            if len(extra):
                problems.append(f"host holds {len(extra)} pages the balloon does not (first {int(extra[0]):#x})")
            if len(missing):
                problems.append(f"balloon holds {len(missing)} pages the host was not told about "
                                f"(first {int(missing[0]):#x})")
        if self.num_pages != len(held):
            problems.append(f"num_pages is {self.num_pages} but the balloon holds {len(held)} pages")
        iso = np.fromiter(self.isolated, dtype=np.int64)
        if len(iso) and not np.all(self.host.taken[iso]):
            problems.append("an isolated balloon page is not held by the host")
        listed = self.listed_pfns()
        if len(listed) + len(iso) != len(held):
            problems.append("the list and the isolated set overlap")
        return problems

    def assert_host_consistent(self) -> None:
        problems = self.check_host()
        if problems:
            raise BalloonProtocolError("balloon and host disagree: " + "; ".join(problems))

    def stats(self) -> dict[str, int | float]:
        """Per-driver figures for the run's result; asserts the host's record on the way."""
        self.assert_host_consistent()
        return {
            **self.counters,
            "balloon_pages": len(self.pages),
            "balloon_mib": len(self.pages) / PAGES_PER_MIB,
            "target_pages": self.target_pages,
            "host_pages": self.host.nr_taken,
            "host_matches_list": 1,
            "isolated_pages": len(self.isolated),
            "inflate_requests": self.host.inflate_requests,
            "deflate_requests": self.host.deflate_requests,
            "migrated_mib": self.counters["balloon_migrate"] / PAGES_PER_MIB,
            "migrate_eagain": self.migrate_eagain,
            "out_of_puff": self.out_of_puff,
            "oom_deflated": self.oom_deflated,
        }
