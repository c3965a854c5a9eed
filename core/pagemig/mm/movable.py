"""The movable-page protocol: how a driver lets compaction move its pages.

This is the contract of Linux v4.8's "Support non-lru page migration" (Minchan Kim,
after Gioh Kim's 2015 RFC), later ``struct movable_operations`` (v6.0):

* a driver marks a page movable with :func:`set_movable` (``__SetPageMovable``);
* the VM try-locks the page and calls ``isolate_page(page, mode) -> bool``; on True
  the VM sets the isolated state and owns the page until it calls back;
* ``migrate_page(dst, src, mode) -> int`` copies src to dst and moves the driver's
  references; it returns ``MIGRATEPAGE_SUCCESS`` (0), ``-EAGAIN`` (retry later) or
  another negative errno (give up for this round);
* ``putback_page(page)`` gives a page whose migration failed back to the driver;
* optionally ``is_isolated(page) -> bool``: whether the page is off the driver's lists
  (isolated).  The kernel has no such callback; the simulator asks it after each
  putback, so that a putback that forgot to relink the page (lost to the driver for
  good: never isolated, migrated or freed through it again) is a fault of its own,
  ``putback/lost``, in a run and not only under the conformance kit.

Every call into a driver goes through this module, which is the one place that
defends the rest of the simulator against a driver that raises, returns nonsense,
or claims success without taking the new page: the page is put back (or
quarantined when even that fails), the fault is counted, and no page is ever lost.

Faults are logged the way the kernel rate-limits a driver's warnings
(``printk_ratelimited``, ``WARN_ONCE``): the first :data:`FAULT_LOG_BURST` of each
kind (driver, callback, fault) as one ``driver_misbehaved`` event each, the rest
only counted; :meth:`MovableRegistry.log_fault_summary` then writes one
``driver_faults_total`` line per kind with the full count at the end of a run.  A
driver that fails on every page would otherwise write a line per page.
"""

from __future__ import annotations

import enum
import errno
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, cast, runtime_checkable

import numpy as np
import structlog

from pagemig.mm.owner import Owner
from pagemig.mm.pages import DRIVER, ISOLATED, LOCKED, MOVABLE, Page, PageArrays, PageKind

log = structlog.get_logger(__name__)

MIGRATEPAGE_SUCCESS = 0
EAGAIN = errno.EAGAIN
EBUSY = errno.EBUSY
ENOMEM = errno.ENOMEM
ENOSYS = errno.ENOSYS
EINVAL = errno.EINVAL
EIO = errno.EIO
KNOWN_ERRNOS = frozenset(errno.errorcode)

FAULT_LOG_BURST = 3  # driver_misbehaved events logged per (driver, callback, fault); the rest are counted
AUDIT_CAP = 1 << 16  # migrated driver pages remembered between two audit_references() calls



class MigrateMode(enum.IntEnum):
    """``enum migrate_mode``: how far migration may block."""

    ASYNC = 0
    SYNC_LIGHT = 1
    SYNC = 2


@runtime_checkable
class MovableOperations(Protocol):
    """What a driver implements (``struct movable_operations``)."""

    def isolate_page(self, page: Page, mode: MigrateMode) -> bool: ...

    def migrate_page(self, dst: Page, src: Page, mode: MigrateMode) -> int: ...

    def putback_page(self, page: Page) -> None: ...


class DriverError(RuntimeError):
    """A driver broke the protocol and the run's policy is ``on_driver_error = "fail"``."""


class DriverFault(enum.Enum):
    """The kinds of misbehaviour the core detects and counts."""

    RAISED = "raised"  # a callback raised an exception
    BAD_RETURN = "bad_return"  # not a bool from isolate, not an int or not a known errno from migrate
    FALSE_SUCCESS = "false_success"  # migrate said success but the driver did not take dst
    KEPT_DST_ON_FAILURE = "kept_dst_on_failure"  # migrate failed but the driver took dst anyway
    PUTBACK_FAILED = "putback_failed"  # putback raised: the page is quarantined
    KEPT_SRC = "kept_src"  # migrate succeeded but the driver still lists src (found by audit_references)
    LOST = "lost"  # after putback the driver still answers is_isolated(page): the page is off its lists


class MovableHost(Protocol):
    """What the movable-page protocol needs of a machine (whose module sits above this
    one): the page columns, this registry, the owners, and a way to free an orphan."""

    @property
    def pages(self) -> PageArrays: ...

    @property
    def movable(self) -> MovableRegistry: ...

    @property
    def owners(self) -> Sequence[Owner | None]: ...

    def release_orphan(self, pfn: int) -> None: ...


class MovableRegistry:
    """The ops registered per owner (the kernel keeps them in ``page->mapping``), the
    quarantine, and the fault counts of one machine."""

    def __init__(self, machine: MovableHost) -> None:
        self.machine = machine
        self.ops_by_owner: dict[int, MovableOperations] = {}
        self.quarantine: set[int] = set()
        self.faults: Counter[tuple[str, str, str]] = Counter()  # (driver, callback, fault)
        # the pfn and detail of the latest fault of each kind, logged or not (the kit names them)
        self.last_fault: dict[tuple[str, str, str], tuple[int, str]] = {}
        self.plugin_of: dict[str, str] = {}  # driver name -> plugin, for the summary lines
        self.log_burst = FAULT_LOG_BURST
        self.migrated: Counter[int] = Counter()  # driver pages moved by their driver, per owner id
        self.on_driver_error = "isolate"
        self.failure: DriverError | None = None
        # (owner, src) of driver pages migrated since the last audit_references(); capped so
        # that a caller that never audits costs bounded memory
        self.migrated_since_audit: list[tuple[int, int]] = []

    def fault(self, owner_id: int, callback: str, kind: DriverFault, pfn: int, detail: str = "") -> None:
        owner = self.machine.owners[owner_id] if owner_id < len(self.machine.owners) else None
        name = getattr(owner, "name", f"owner{owner_id}")
        plugin = getattr(owner, "plugin", "") or name
        key = (name, callback, kind.value)
        self.faults[key] += 1
        self.last_fault[key] = (pfn, detail)
        self.plugin_of[name] = plugin
        n = self.faults[key]
        if n <= self.log_burst:
            extra = {"suppressing": "further faults of this kind are counted, not logged"} \
                if n == self.log_burst else {}
            log.warning("driver_misbehaved", plugin=plugin, driver=name, callback=callback,
                        pfn=pfn, fault=kind.value, detail=detail, **extra)
        if self.on_driver_error == "fail" and self.failure is None:
            self.failure = DriverError(
                f"driver {name!r} (plugin {plugin!r}) broke the movable-page protocol in "
                f"{callback}() on pfn {pfn:#x}: {kind.value}{': ' + detail if detail else ''} "
                "(set on_driver_error = \"isolate\" to quarantine the page and go on)"
            )

    def log_fault_summary(self) -> int:
        """One ``driver_faults_total`` line per kind of fault with its full count (the end of
        a run: what ``printk_ratelimited``'s "N callbacks suppressed" tells).  Returns the
        number of lines written."""
        for (name, callback, fault), n in sorted(self.faults.items()):
            log.warning("driver_faults_total", plugin=self.plugin_of.get(name, name), driver=name,
                        callback=callback, fault=fault, count=n, logged=min(n, self.log_burst))
        return len(self.faults)

    def raise_if_failed(self) -> None:
        """Stop the run under ``on_driver_error = "fail"``.

        Called by whoever drives the VM once its operation has put every page back,
        never from inside a callback wrapper: raising there would strand isolated pages.
        That is also the moment the drivers' structures must be consistent again, so
        the references of the pages migrated since the last call are audited first
        (:meth:`audit_references`).
        """
        self.audit_references()
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def audit_references(self) -> int:
        """Find drivers that still reference a page they migrated away from ("keeps
        referencing src"), once per operation instead of per page.

        A successful ``migrate_page`` must move every reference from src to dst; the VM
        then frees src.  A driver whose ``expected_contents()`` still lists such a src
        while memory says the page is no longer its own is counted and logged as a
        ``kept_src`` fault (one event per driver per audit, naming the first such pfn).
        Nothing can be repaired: the page went back to the allocator, and the checker
        will report the driver's stale record too.  Returns the number of pages found.
        """
        if not self.migrated_since_audit:
            return 0
        entries, self.migrated_since_audit = self.migrated_since_audit, []
        by_owner: dict[int, list[int]] = {}
        for owner_id, src in entries:
            by_owner.setdefault(owner_id, []).append(src)
        pages = self.machine.pages
        found = 0
        for owner_id, srcs in by_owner.items():
            owner = self.machine.owners[owner_id] if owner_id < len(self.machine.owners) else None
            expected = owner.expected_contents() if owner is not None else None
            if expected is None:
                continue
            listed = np.asarray(expected[0], dtype=np.int64)
            src_arr = np.unique(np.asarray(srcs, dtype=np.int64))
            not_mine = (pages.owner[src_arr] != owner_id) | (pages.kind[src_arr] != DRIVER)
            stale = src_arr[not_mine & np.isin(src_arr, listed)]
            if not len(stale):
                continue
            found += len(stale)
            self.fault(owner_id, "migrate_page", DriverFault.KEPT_SRC, int(stale[0]),
                       f"migrated away from {len(stale)} page(s) but expected_contents() still lists them")
            if len(stale) > 1:
                name = getattr(owner, "name", f"owner{owner_id}")
                self.faults[(name, "migrate_page", DriverFault.KEPT_SRC.value)] += len(stale) - 1
        return found

    def migrated_by_driver(self) -> dict[str, int]:
        """Driver pages each driver's ``migrate_page`` moved (orphans released need no driver)."""
        owners = self.machine.owners
        return {getattr(owners[oid], "name", f"owner{oid}"): n for oid, n in sorted(self.migrated.items())}

    def faults_by_kind(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (_, _, kind), n in self.faults.items():
            out[kind] += n
        return dict(out)


# ---------------------------------------------------------------- driver side
def set_movable(page: Page, ops: MovableOperations) -> None:
    """``__SetPageMovable(page, ops)``: offer a driver page to compaction.

    One ops object per owner: the kernel finds the ops through the page's mapping,
    which is per driver too.
    """
    # the page's machine is the one the core made it for: a MovableHost (pages.py, below
    # this module, types a page's machine only by its columns)
    m = cast(MovableHost, page.machine)
    pages = m.pages
    pfn = page.pfn
    if pages._kind[pfn] != DRIVER:
        raise ValueError(f"set_movable: pfn {pfn:#x} is {PageKind(pages._kind[pfn]).name}, not a driver page")
    owner_id = pages._owner[pfn]
    registry = m.movable
    known = registry.ops_by_owner.get(owner_id)
    if known is None:
        registry.ops_by_owner[owner_id] = ops
    elif known is not ops:
        raise ValueError(f"set_movable: owner {owner_id} already registered another ops object")
    pages._flags[pfn] |= MOVABLE


def clear_movable(page: Page) -> None:
    """``__ClearPageMovable``: the page is no longer offered to compaction."""
    page.machine.pages._flags[page.pfn] &= ~MOVABLE & 0xFF


def set_movable_many(machine: MovableHost, pfns: np.ndarray, ops: MovableOperations) -> None:
    """:func:`set_movable` for many pages of one owner at once (a driver's whole buffer):
    every pfn must be a driver page of the same owner.  One NumPy step instead of a call
    per page; the rules are those of :func:`set_movable`."""
    pfns = np.asarray(pfns, dtype=np.int64)
    if not len(pfns):
        return
    set_movable(Page(machine, int(pfns[0])), ops)  # checks the first page, registers the ops
    pages = machine.pages
    if len(pfns) > 1:
        if not (pages.kind[pfns] == DRIVER).all():
            bad = int(pfns[pages.kind[pfns] != DRIVER][0])
            raise ValueError(f"set_movable_many: pfn {bad:#x} is {PageKind(pages.kind[bad]).name}, "
                             "not a driver page")
        owner = pages.owner[pfns[0]]
        if not (pages.owner[pfns] == owner).all():
            bad = int(pfns[pages.owner[pfns] != owner][0])
            raise ValueError(f"set_movable_many: pfn {bad:#x} belongs to owner {int(pages.owner[bad])}, "
                             f"not {int(owner)}")
    pages.flags[pfns] |= np.uint8(MOVABLE)


def clear_movable_many(machine: MovableHost, pfns: np.ndarray) -> None:
    """:func:`clear_movable` for many pages at once (a buffer the driver is about to free)."""
    machine.pages.flags[np.asarray(pfns, dtype=np.int64)] &= np.uint8(~MOVABLE & 0xFF)


def trylock_page(page: Page) -> bool:
    flags = page.machine.pages._flags
    if flags[page.pfn] & LOCKED:
        return False
    flags[page.pfn] |= LOCKED
    return True


def unlock_page(page: Page) -> None:
    page.machine.pages._flags[page.pfn] &= ~LOCKED & 0xFF


def is_orphan(machine: MovableHost, pfn: int) -> bool:
    """A driver page its driver freed while it was isolated: it belongs to the isolation now."""
    pages = machine.pages
    return pages._kind[pfn] == DRIVER and pages._owner[pfn] == 0


# ---------------------------------------------------------------- VM side
def isolate_movable_page(machine: MovableHost, pfn: int, mode: MigrateMode) -> bool:
    """``isolate_movable_page()``: trylock, ask the driver, mark isolated.  Never blocks."""
    pages = machine.pages
    flags = pages._flags
    f = flags[pfn]
    if pages._kind[pfn] != DRIVER or not f & MOVABLE or f & (ISOLATED | LOCKED):
        return False
    owner_id = pages._owner[pfn]
    registry = machine.movable
    ops = registry.ops_by_owner.get(owner_id)
    if ops is None:
        return False
    flags[pfn] = f | LOCKED
    page = Page(machine, pfn)
    try:
        ok = ops.isolate_page(page, mode)
    except Exception as exc:  # noqa: BLE001 - a driver's bug must cost a migration, not the run
        flags[pfn] &= ~(LOCKED | MOVABLE) & 0xFF
        registry.quarantine.add(pfn)
        registry.fault(owner_id, "isolate_page", DriverFault.RAISED, pfn, repr(exc))
        return False
    if not isinstance(ok, bool):
        registry.fault(owner_id, "isolate_page", DriverFault.BAD_RETURN, pfn,
                       f"returned {ok!r}, expected a bool")
        ok = bool(ok)
    if ok:
        flags[pfn] = (flags[pfn] | ISOLATED) & ~LOCKED & 0xFF
    else:
        flags[pfn] &= ~LOCKED & 0xFF
    return ok


def migrate_movable_page(machine: MovableHost, dst_pfn: int, src_pfn: int, mode: MigrateMode) -> tuple[int, bool]:
    """Move one isolated driver page to ``dst_pfn`` (``move_to_new_folio`` for non-LRU pages).

    ``dst_pfn`` is a page the caller took from its free targets.  Returns
    ``(rc, dst_consumed)``: whether dst now belongs to the driver (on success, or
    when a misbehaving driver kept it and it had to be quarantined).  On success
    the caller releases src; on failure it keeps src for the next pass (-EAGAIN)
    or puts it back, and returns an unconsumed dst to its free targets.
    """
    pages = machine.pages
    flags = pages._flags
    registry = machine.movable
    if is_orphan(machine, src_pfn):
        # Freed by its driver while isolated: "migration" succeeds without a driver call.
        return MIGRATEPAGE_SUCCESS, False
    owner_id = pages._owner[src_pfn]
    ops = registry.ops_by_owner[owner_id]
    if flags[src_pfn] & LOCKED:
        return -EAGAIN, False
    flags[src_pfn] |= LOCKED
    # dst starts as a blank page of the driver's, locked, not yet movable.
    pages._kind[dst_pfn] = DRIVER
    pages._owner[dst_pfn] = owner_id
    pages._flags[dst_pfn] = LOCKED
    pages._private[dst_pfn] = 0
    pages._token[dst_pfn] = 0
    try:
        rc = ops.migrate_page(Page(machine, dst_pfn), Page(machine, src_pfn), mode)
    except Exception as exc:  # noqa: BLE001
        flags[src_pfn] &= ~LOCKED & 0xFF
        rc = -EIO
        registry.fault(owner_id, "migrate_page", DriverFault.RAISED, src_pfn, repr(exc))
    else:
        flags[src_pfn] &= ~LOCKED & 0xFF
        if isinstance(rc, bool) or not isinstance(rc, int) or (rc != 0 and -rc not in KNOWN_ERRNOS):
            registry.fault(owner_id, "migrate_page", DriverFault.BAD_RETURN, src_pfn,
                           f"returned {rc!r}, expected 0 or a negative errno")
            rc = -EIO
    flags[dst_pfn] &= ~LOCKED & 0xFF
    dst_taken = bool(flags[dst_pfn] & MOVABLE) and pages._owner[dst_pfn] == owner_id
    if rc == MIGRATEPAGE_SUCCESS:
        if not dst_taken:
            _release_dst(machine, dst_pfn)
            registry.fault(owner_id, "migrate_page", DriverFault.FALSE_SUCCESS, src_pfn,
                           "returned MIGRATEPAGE_SUCCESS without set_movable(dst)")
            return -EIO, False
        flags[src_pfn] &= ~(MOVABLE | ISOLATED) & 0xFF
        registry.migrated[owner_id] += 1
        if len(registry.migrated_since_audit) < AUDIT_CAP:
            registry.migrated_since_audit.append((owner_id, src_pfn))
        return MIGRATEPAGE_SUCCESS, True
    if dst_taken:
        flags[dst_pfn] &= ~MOVABLE & 0xFF
        registry.quarantine.add(dst_pfn)
        registry.fault(owner_id, "migrate_page", DriverFault.KEPT_DST_ON_FAILURE, src_pfn,
                       f"returned {rc} but marked dst {dst_pfn:#x} movable")
        return rc, True
    _release_dst(machine, dst_pfn)
    return rc, False


def _release_dst(machine: MovableHost, dst_pfn: int) -> None:
    """Blank a dst page the driver did not take, so the caller can free it."""
    pages = machine.pages
    pages._kind[dst_pfn] = DRIVER
    pages._owner[dst_pfn] = 0
    pages._flags[dst_pfn] = 0


def putback_movable_page(machine: MovableHost, pfn: int) -> None:
    """``putback_movable_pages()`` for one driver page: the driver relinks it, or, if the
    driver freed it while isolated, the page is simply released."""
    pages = machine.pages
    flags = pages._flags
    flags[pfn] &= ~ISOLATED & 0xFF
    if is_orphan(machine, pfn):
        machine.release_orphan(pfn)
        return
    owner_id = pages._owner[pfn]
    registry = machine.movable
    ops = registry.ops_by_owner[owner_id]
    flags[pfn] |= LOCKED
    page = Page(machine, pfn)
    try:
        ops.putback_page(page)
    except Exception as exc:  # noqa: BLE001
        flags[pfn] &= ~(LOCKED | MOVABLE) & 0xFF
        registry.quarantine.add(pfn)
        registry.fault(owner_id, "putback_page", DriverFault.PUTBACK_FAILED, pfn, repr(exc))
        return
    flags[pfn] &= ~LOCKED & 0xFF
    is_isolated = getattr(ops, "is_isolated", None)
    if is_isolated is None or pages._owner[pfn] != owner_id:  # no answer to ask, or freed in putback
        return
    try:
        still = is_isolated(page)
    except Exception as exc:  # noqa: BLE001
        registry.fault(owner_id, "is_isolated", DriverFault.RAISED, pfn, repr(exc))
        return
    if still:
        # the page stays the driver's and counted as such: only the driver lost track of it
        registry.fault(owner_id, "putback", DriverFault.LOST, pfn,
                       "putback_page returned but is_isolated(page) is still True: the page is off "
                       "the driver's lists")
