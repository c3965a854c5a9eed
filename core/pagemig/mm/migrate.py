"""Page migration: ``migrate_pages()`` and the LRU isolation helpers of mm/migrate.c (v6.1).

``migrate_pages`` takes pages its caller isolated and moves each to a page that
``get_new_page`` hands out, the way v6.1 does it (before the v6.3 batched rewrite):

* up to :data:`MIGRATE_PASSES` (10) passes over the list while some page asks to
  be retried; ``-EAGAIN`` keeps a page for the next pass, ``-ENOMEM`` (no target
  page, or a driver out of memory) stops everything at once, any other error fails
  the page for good; pages still retrying after the last pass count as failed;
* LRU pages (anon and file) are migrated by the core: content, kind, owner, the
  owner's slot (``private``) and the dirty bit are copied to the target, the
  source is freed, and each owner hears about its moved pages once per call
  (:meth:`~pagemig.mm.owner.Owner.pages_migrated`), never per page;
* non-LRU movable pages go to their driver through
  :func:`~pagemig.mm.movable.migrate_movable_page`; a driver page that its driver
  freed while it was isolated counts as migrated and is released without a
  driver call (``unmap_and_move``'s "page was freed from under us");
* pages that did not move are put back before returning (``putback_page`` for
  driver pages, back on the LRU for the rest), which is what every kernel caller
  does right after ``migrate_pages`` fails;
* ``pgmigrate_success`` / ``pgmigrate_fail`` count base pages.

The LRU path is vectorised per run of consecutive LRU pages: one NumPy copy per
column for the whole run, targets taken in bulk when the caller offers
``get_new_pages``.  Only driver pages cost a Python call each, because each is a
call into the driver anyway.

Compound pages (THP) are refused: compaction skips them whole, as v6.1 does
(``PageCompound && !cc->alloc_contig``), so nothing in the simulator migrates them.
Writeback is not modelled, so an LRU page never answers ``-EBUSY``; an LRU page
that somebody holds locked answers ``-EAGAIN`` on every pass (in the simulator
nobody unlocks it while the migration waits).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import attrs
import numpy as np

from pagemig.mm import costs
from pagemig.mm.movable import (
    EAGAIN,
    ENOMEM,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    is_orphan,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.pages import (
    ANON,
    BUDDY,
    DIRTY,
    DRIVER,
    FILE,
    FREE,
    HEAD,
    ISOLATED,
    LOCKED,
    NOT_ISOLATED_MASK,
    PINNED,
    TAIL,
    PageArrays,
)

if TYPE_CHECKING:
    from pagemig.mm.machine import Machine
    from pagemig.mm.zone import Zone

MIGRATE_PASSES = 10  # migrate_pages(): "for (pass = 0; pass < 10 && retry; pass++)"

COMPOUND = HEAD | TAIL
# isolate_lru_page() refuses an anon or file page with any of these (compaction's scanner too)
LRU_UNISOLATABLE = PINNED | LOCKED | ISOLATED | COMPOUND | BUDDY

GetNewPage = Callable[[int], int]
GetNewPages = Callable[[int], np.ndarray]
PutNewPage = Callable[[int], None]


class MigrateReason(enum.IntEnum):
    """``enum migrate_reason`` (include/linux/migrate_mode.h, v6.1)."""

    COMPACTION = 0
    MEMORY_FAILURE = 1
    MEMORY_HOTPLUG = 2
    SYSCALL = 3
    MEMPOLICY_MBIND = 4
    NUMA_MISPLACED = 5
    CONTIG_RANGE = 6
    LONGTERM_PIN = 7
    DEMOTION = 8


@attrs.define
class MigrateResult:
    """What one ``migrate_pages`` call did.

    ``rc`` is ``-ENOMEM`` when it stopped for want of memory, else 0; ``err`` is
    what the kernel function returns (``rc`` if set, else the number of pages that
    failed), the value compaction tests to decide whether to put pages back.
    """

    nr_succeeded: int = 0  # base pages migrated, orphans released included (pgmigrate_success)
    nr_failed: int = 0  # pages that failed for good or were still retrying after the last pass
    nr_failed_pages: int = 0  # base pages counted in pgmigrate_fail
    rc: int = 0
    nr_lru: int = 0  # LRU pages moved by the core
    nr_movable: int = 0  # driver pages moved by their driver
    nr_orphans: int = 0  # driver pages freed while isolated, released without a driver call
    nr_retried: int = 0  # -EAGAIN answers over all passes
    passes: int = 0
    putback: list[int] = attrs.field(factory=list)  # pages that did not move (put back unless asked not to)
    seconds: float = 0.0  # simulated time the copies and driver calls cost

    @property
    def err(self) -> int:
        return self.rc if self.rc else self.nr_failed


# ------------------------------------------------------------------ LRU isolation
def _lru_isolatable(kind: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """``isolate_lru_page`` rules as a mask: an anon or file page, not pinned (refcount
    above mapcount), not locked, not already isolated, not part of a compound page
    (compaction leaves THPs alone, and migrate_pages here moves base pages only)."""
    mask: np.ndarray = ((kind == ANON) | (kind == FILE)) & ((flags & LRU_UNISOLATABLE) == 0)
    return mask


def isolate_lru_page(machine: Machine, pfn: int) -> bool:
    """``isolate_lru_page()``: take one page off its LRU for migration (sets ISOLATED)."""
    pages = machine.pages
    k = pages._kind[pfn]
    f = pages._flags[pfn]
    if (k != ANON and k != FILE) or f & LRU_UNISOLATABLE:
        return False
    pages._flags[pfn] = f | ISOLATED
    return True


def isolate_lru_pages(machine: Machine, pfns: Iterable[int] | np.ndarray) -> np.ndarray:
    """Isolate every page of ``pfns`` that may be isolated; returns those that were."""
    arr = np.asarray(pfns, dtype=np.int64)
    if not len(arr):
        return arr
    pages = machine.pages
    ok = _lru_isolatable(pages.kind[arr], pages.flags[arr])
    taken: np.ndarray = arr[ok]
    pages.flags[taken] |= ISOLATED
    return taken


def putback_lru_pages(machine: Machine, pfns: Iterable[int] | np.ndarray) -> None:
    """``putback_lru_page()`` for many pages: clear the isolated state."""
    arr = np.asarray(pfns, dtype=np.int64)
    if len(arr):
        machine.pages.flags[arr] &= NOT_ISOLATED_MASK


def putback_movable_pages(machine: Machine, pfns: Iterable[int] | np.ndarray) -> None:
    """``putback_movable_pages()``: driver pages back to their driver (or released if
    their driver freed them meanwhile), LRU pages back on the LRU."""
    arr = np.asarray(pfns, dtype=np.int64)
    if not len(arr):
        return
    kinds = machine.pages.kind[arr]
    drv = kinds == DRIVER
    if drv.any():
        for pfn in arr[drv].tolist():
            putback_movable_page(machine, pfn)
        arr = arr[~drv]
    putback_lru_pages(machine, arr)


def putback_still_isolated(machine: Machine, pfns: np.ndarray) -> None:
    """After a failure in the middle of a migration: put back those of ``pfns`` that are
    still isolated (the others were migrated and freed, or already put back)."""
    pages = machine.pages
    still = pfns[((pages.flags[pfns] & ISOLATED) != 0) & (pages.kind[pfns] != FREE)]
    putback_movable_pages(machine, still)


# ------------------------------------------------------------------ the core's copy
def move_lru_pages(machine: Machine, src: np.ndarray, dst: np.ndarray) -> None:
    """Copy isolated LRU pages to their targets, one NumPy operation per column
    (``folio_migrate_mapping`` + ``folio_migrate_copy`` + ``folio_migrate_flags``):
    content, kind, owner, the owner's slot and the dirty bit.  The targets come out
    neither isolated nor locked; the sources are left for :func:`free_migrated_sources`."""
    pages = machine.pages
    pages.kind[dst] = pages.kind[src]
    pages.owner[dst] = pages.owner[src]
    pages.private[dst] = pages.private[src]
    pages.token[dst] = pages.token[src]
    pages.flags[dst] = pages.flags[src] & DIRTY


def notify_owners(machine: Machine, src: np.ndarray, dst: np.ndarray) -> None:
    """Tell each owner, once, which of its pages moved where."""
    if not len(dst):
        return
    owner_ids = machine.pages.owner[dst]
    first = int(owner_ids[0])
    if (owner_ids == first).all():
        groups: list[tuple[int, np.ndarray]] = [(first, np.ones(len(dst), dtype=bool))]
    else:
        groups = [(int(o), owner_ids == o) for o in np.unique(owner_ids)]
    for oid, mask in groups:
        owner = machine.owners[oid] if oid < len(machine.owners) else None
        if owner is None:
            raise RuntimeError(f"migrated pages belong to owner id {oid}, which is not registered")
        owner.pages_migrated(src[mask], dst[mask])


def mark_pages_free(pages: PageArrays, pfns: np.ndarray) -> None:
    """The columns of pages about to go back to the buddy allocator: kind FREE, no flags,
    no owner, no private (the token, the content, stays as it was).  The buddy
    allocator's ``free_one_page``/``free_block_range`` then set the free block's head."""
    pages.kind[pfns] = FREE
    pages.flags[pfns] = 0
    pages.owner[pfns] = 0
    pages.private[pfns] = 0


def free_migrated_sources(machine: Machine, src: np.ndarray) -> None:
    """Free the source pages of a migration: marked free with NumPy, then handed to the
    buddy allocator one by one, since each may merge with its buddies differently."""
    if not len(src):
        return
    mark_pages_free(machine.pages, src)
    buddy = machine.buddy
    free_one = buddy.free_one_page
    pb_mt = buddy._pb_mt
    pbo = machine.pageblock_order
    zone: Zone | None = None
    lo = hi = -1
    for pfn in src.tolist():
        if not lo <= pfn < hi:
            zone = machine.zone_of(pfn)
            lo, hi = zone.start_pfn, zone.end_pfn
        assert zone is not None
        zone.pgfree += 1
        free_one(zone, pfn, 0, pb_mt[pfn >> pbo])


# ------------------------------------------------------------------ migrate_pages
def _finish_lru(machine: Machine, lru_src: list[np.ndarray], lru_dst: list[np.ndarray]) -> None:
    """Owners hear where their pages went, then the sources are freed (once per call)."""
    if not lru_src:
        return
    src_all = np.concatenate(lru_src) if len(lru_src) > 1 else lru_src[0]
    dst_all = np.concatenate(lru_dst) if len(lru_dst) > 1 else lru_dst[0]
    lru_src.clear()
    lru_dst.clear()
    notify_owners(machine, src_all, dst_all)
    free_migrated_sources(machine, src_all)


def _take_targets(run: np.ndarray, get_new_page: GetNewPage, get_new_pages: GetNewPages | None) -> np.ndarray:
    n = len(run)
    if get_new_pages is not None:
        out = np.asarray(get_new_pages(n), dtype=np.int64)
        if len(out) > n:
            raise ValueError(f"get_new_pages({n}) returned {len(out)} pages")
        return out
    got: list[int] = []
    for src in run.tolist():
        pfn = int(get_new_page(src))
        if pfn < 0:
            break
        got.append(pfn)
    return np.asarray(got, dtype=np.int64)


def _release_target(machine: Machine, dst: int, put_new_page: PutNewPage | None) -> None:
    if put_new_page is not None:
        put_new_page(dst)
    else:
        machine.free_pages(dst, 0)


def _validate(pages: PageArrays, arr: np.ndarray) -> None:
    if arr.min() < 0 or arr.max() >= pages.nr_pages:
        raise ValueError(f"migrate_pages: pfn out of range 0..{pages.nr_pages - 1}")
    f0 = pages.flags[arr]
    not_iso = arr[(f0 & ISOLATED) == 0]
    if len(not_iso):
        raise ValueError(f"migrate_pages: pfn {int(not_iso[0]):#x} is not isolated "
                         "(isolate it first: isolate_lru_pages or isolate_movable_page)")
    if (f0 & COMPOUND).any():
        bad = int(arr[(f0 & COMPOUND) != 0][0])
        raise ValueError(f"migrate_pages: pfn {bad:#x} is part of a compound page; only base pages migrate")
    if len(np.unique(arr)) != len(arr):
        raise ValueError("migrate_pages: a pfn is listed twice")


def migrate_pages(machine: Machine, pfns: Iterable[int] | np.ndarray, get_new_page: GetNewPage,
                  put_new_page: PutNewPage | None = None, mode: MigrateMode = MigrateMode.ASYNC,
                  reason: MigrateReason = MigrateReason.COMPACTION, *,
                  get_new_pages: GetNewPages | None = None, putback: bool = True,
                  validate: bool = True) -> MigrateResult:
    """``migrate_pages(from, get_new_page, put_new_page, private, mode, reason)``.

    ``pfns`` are isolated pages, in the order the kernel would walk its list.
    ``get_new_page(src_pfn)`` returns a target page the caller holds, or -1 when it
    has none (then the call stops with ``-ENOMEM``); ``put_new_page(dst_pfn)`` takes
    back a target that was not used (``None``: free it).  ``get_new_pages(n)`` is an
    optional bulk form for runs of LRU pages: up to ``n`` targets in the order they
    would have been handed out one by one, fewer meaning "no more".

    Pages that did not move are put back (``putback=False`` leaves them isolated and
    listed in ``result.putback`` for a caller that wants to do it itself).
    ``validate=False`` skips the input checks, for callers (compaction) that built the
    list themselves.  Driver
    faults are counted by the movable-page registry; raising for them
    (``on_driver_error = "fail"``) is the caller's job, once everything is put back.
    """
    pages = machine.pages
    arr = np.asarray(pfns, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError("migrate_pages: pfns must be a flat list of page frame numbers")
    res = MigrateResult()
    if not len(arr):
        return res
    if validate:
        _validate(pages, arr)

    kind = pages.kind
    flags = pages.flags
    lru_src: list[np.ndarray] = []
    lru_dst: list[np.ndarray] = []
    failed: list[int] = []
    pending = arr
    seconds = 0.0
    stopped = False
    try:
        for pass_ in range(MIGRATE_PASSES):
            if not len(pending) or stopped:
                break
            res.passes = pass_ + 1
            retry: list[int] = []
            k = kind[pending]
            f = flags[pending]
            is_lru = ((k == ANON) | (k == FILE)) & ((f & LOCKED) == 0)
            n = len(pending)
            if is_lru.all():
                bounds = [(0, n)]
            else:
                edges = np.flatnonzero(np.diff(np.concatenate(([0], is_lru.astype(np.int8), [0]))))
                bounds = list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))
            # Walk the list: LRU runs in one go, every other page on its own.
            i = 0
            run_iter = iter(bounds)
            next_run = next(run_iter, None)
            while i < n:
                if next_run is not None and i == next_run[0]:
                    a, b = next_run
                    next_run = next(run_iter, None)
                    run = pending[a:b]
                    dst = _take_targets(run, get_new_page, get_new_pages)
                    m = len(dst)
                    if m:
                        move_lru_pages(machine, run[:m], dst)
                        lru_src.append(run[:m])
                        lru_dst.append(dst)
                        res.nr_succeeded += m
                        res.nr_lru += m
                        seconds += m * costs.COST_MIGRATE_PAGE
                    if m < len(run):
                        # -ENOMEM: this page and everything not yet done go back
                        res.rc = -ENOMEM
                        res.nr_failed += 1
                        res.nr_failed_pages += 1 + len(retry)
                        failed.extend(run[m:].tolist())
                        failed.extend(pending[b:].tolist())
                        failed.extend(retry)
                        retry = []
                        stopped = True
                        break
                    i = b
                    continue
                pfn = int(pending[i])
                i += 1
                kp = kind[pfn]
                if kp != DRIVER:  # an LRU page somebody holds locked
                    retry.append(pfn)
                    res.nr_retried += 1
                    continue
                if is_orphan(machine, pfn):
                    machine.release_orphan(pfn)
                    res.nr_succeeded += 1
                    res.nr_orphans += 1
                    continue
                dst_pfn = int(get_new_page(pfn))
                if dst_pfn < 0:
                    rc = -ENOMEM
                    consumed = False
                else:
                    rc, consumed = migrate_movable_page(machine, dst_pfn, pfn, mode)
                    seconds += costs.COST_MIGRATE_DRIVER_PAGE
                if rc == MIGRATEPAGE_SUCCESS:
                    if is_orphan(machine, pfn):  # freed by its driver during the callback
                        machine.release_orphan(pfn)
                    else:
                        machine.free_pages(pfn, 0)
                    res.nr_succeeded += 1
                    res.nr_movable += 1
                    continue
                if dst_pfn >= 0 and not consumed:
                    _release_target(machine, dst_pfn, put_new_page)
                if rc == -EAGAIN:
                    retry.append(pfn)
                    res.nr_retried += 1
                elif rc == -ENOMEM:
                    res.rc = -ENOMEM
                    res.nr_failed += 1
                    res.nr_failed_pages += 1 + len(retry)
                    failed.append(pfn)
                    failed.extend(pending[i:].tolist())
                    failed.extend(retry)
                    retry = []
                    stopped = True
                    break
                else:
                    res.nr_failed += 1
                    res.nr_failed_pages += 1
                    failed.append(pfn)
            pending = np.asarray(retry, dtype=np.int64)
        if len(pending):  # still asking to be retried after the last pass
            res.nr_failed += len(pending)
            res.nr_failed_pages += len(pending)
            failed.extend(pending.tolist())
    except BaseException:
        # a target allocator or an owner raised: finish what was done, put back the rest
        _finish_lru(machine, lru_src, lru_dst)
        putback_still_isolated(machine, arr)
        raise

    _finish_lru(machine, lru_src, lru_dst)

    machine.vmstat["pgmigrate_success"] += res.nr_succeeded
    machine.vmstat["pgmigrate_fail"] += res.nr_failed_pages
    res.putback = failed
    res.seconds = seconds
    if putback and failed:
        putback_movable_pages(machine, failed)
    return res


__all__ = [
    "MIGRATE_PASSES",
    "MigrateReason",
    "MigrateResult",
    "free_migrated_sources",
    "isolate_lru_page",
    "isolate_lru_pages",
    "mark_pages_free",
    "migrate_pages",
    "move_lru_pages",
    "notify_owners",
    "putback_lru_pages",
    "putback_movable_pages",
    "putback_still_isolated",
]
