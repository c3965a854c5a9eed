"""The VM side as the kit drives it: isolate, migrate, put back, compact.

The kit needs finer control than compaction gives: which page, which mode, a fault
injected on a given attempt, an outcome per page, so that a failure can name the
pfn and the rule.  So it isolates pages itself with the core's
:func:`~pagemig.mm.movable.isolate_movable_page` and migrates them with the core's
own :func:`~pagemig.mm.migrate.migrate_pages` (passes, -EAGAIN retries, -ENOMEM,
put back, orphans released), watching each call into the driver through a
temporary wrapper of its ``migrate_page``.  Whole-machine compaction is the
core's :func:`~pagemig.mm.compaction.compact_memory`.
"""

from __future__ import annotations

import contextlib
import errno
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import numpy as np

from pagemig.mm.compaction import compact_memory
from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.machine import Machine
from pagemig.mm.migrate import MIGRATE_PASSES, migrate_pages
from pagemig.mm.movable import (
    EAGAIN,
    EBUSY,
    ENOMEM,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    is_orphan,
    isolate_movable_page,
    putback_movable_page,
)
from pagemig.mm.pages import Page, PageFlag, PageKind

NR_MIGRATE_PASSES = MIGRATE_PASSES
EIO_BAD = -errno.EIO  # recorded for an answer that is not an int (the core turns it into -EIO)
DRIVER = int(PageKind.DRIVER)
MOVABLE = int(PageFlag.MOVABLE)
ISOLATED = int(PageFlag.ISOLATED)

# inject(src_pfn, attempt) -> an errno to answer instead of calling the driver, or None to call it.
Injector = Callable[[int, int], int | None]


@attrs.define
class Outcome:
    """What became of one isolated page: ``rc`` is its last answer, ``dst`` the page it
    now lives in (-1 if it did not move), ``passes`` how many passes it took part in,
    ``orphan`` whether its driver had freed it while it was isolated (it is then
    released, not moved)."""

    src: int
    rc: int = -EAGAIN  # not tried yet: counts as a failure if it never is
    dst: int = -1
    passes: int = 0  # attempts: each pass of migrate_pages that reached this page
    orphan: bool = False
    calls: int = 0  # how many of them reached the driver (the rest were injected)

    @property
    def migrated(self) -> bool:
        """Moved to ``dst`` (a page its driver freed while isolated is released, not moved)."""
        return self.rc == MIGRATEPAGE_SUCCESS and self.dst >= 0


def driver_pages(machine: Machine, owner_id: int) -> np.ndarray:
    """Every page memory says the owner holds (compound tails excluded), sorted."""
    pages = machine.pages
    return np.flatnonzero((pages.owner == owner_id) & (pages.kind == DRIVER)
                          & ((pages.flags & PageFlag.TAIL) == 0))


def movable_idle_pages(machine: Machine, owner_id: int) -> np.ndarray:
    """The owner's pages compaction could isolate now: movable, not isolated, not locked."""
    pages = machine.pages
    f = pages.flags
    return np.flatnonzero((pages.owner == owner_id) & (pages.kind == DRIVER) & ((f & MOVABLE) != 0)
                          & ((f & (ISOLATED | PageFlag.LOCKED)) == 0))


def isolate(machine: Machine, pfns: Iterable[int], mode: MigrateMode = MigrateMode.SYNC) -> list[int]:
    """Try to isolate each page; returns the ones the driver gave up."""
    return [pfn for pfn in (int(p) for p in pfns) if isolate_movable_page(machine, pfn, mode)]


def putback(machine: Machine, pfns: Iterable[int]) -> None:
    """``putback_movable_pages``: every page back to its driver (orphans are released)."""
    for pfn in pfns:
        putback_movable_page(machine, int(pfn))


def _alloc_target(machine: Machine, owner_id: int) -> int:
    """A free page to migrate into, as compaction's free scanner would supply one."""
    return machine.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, owner_id, PageKind.DRIVER)


@contextlib.contextmanager
def _watching(ops: Any, around: Callable[..., int]) -> Iterator[None]:
    """Route ``ops.migrate_page`` through ``around(real, dst, src, mode)`` for the block.

    The wrapper is an attribute of the very ops object the driver registered, so
    ``set_movable(dst, ops)`` inside the callback still finds the same ops.
    """
    real = ops.migrate_page
    had_own = "migrate_page" in getattr(ops, "__dict__", {})
    try:
        ops.migrate_page = lambda dst, src, mode: around(real, dst, src, mode)
    except AttributeError as exc:  # a __slots__ class without the attribute
        raise TypeError(f"{type(ops).__name__}: the kit cannot watch migrate_page on an object "
                        "without a __dict__") from exc
    try:
        yield
    finally:
        if had_own:
            ops.migrate_page = real
        else:
            del ops.migrate_page


def migrate(machine: Machine, pfns: Iterable[int], mode: MigrateMode = MigrateMode.SYNC, *,
            inject: Injector | None = None, before_retry: Callable[[int, int], None] | None = None,
            observe: Callable[[int, int, int], None] | None = None) -> list[Outcome]:
    """Migrate isolated driver pages with the core's ``migrate_pages``; one outcome per page.

    ``inject(src, attempt)`` may answer for the driver (the kit's fault injection: the
    driver is not called, as if it had answered so itself); ``before_retry(src,
    attempt)`` runs before every attempt after the first, so a test can look at a
    page waiting to be retried or change the driver's state; ``observe(src, attempt,
    rc)`` sees every answer.  Every page handed in ends migrated, put back or
    released: nothing stays isolated.
    """
    arr = [int(p) for p in pfns]
    outcomes = {p: Outcome(p) for p in arr}
    if not arr:
        return []
    registry = machine.movable
    owners = {int(machine.pages._owner[p]) for p in arr if not is_orphan(machine, p)}
    orphans_before = {p for p in arr if is_orphan(machine, p)}
    attempts: Counter[int] = Counter()
    dst_of: dict[int, int] = {}
    returned: set[int] = set()

    kit_error: list[BaseException] = []  # raised by the kit's own callbacks: the driver is not to blame

    def around(real: Callable[[Page, Page, MigrateMode], int], dst: Page, src: Page, m: MigrateMode) -> int:
        n = attempts[src.pfn]
        attempts[src.pfn] += 1
        out = outcomes[src.pfn]
        out.passes += 1
        try:
            if kit_error:
                raise kit_error[0]
            if n and before_retry is not None:
                before_retry(src.pfn, n)
            forced = inject(src.pfn, n) if inject is not None else None
            if forced == MIGRATEPAGE_SUCCESS:
                raise ValueError("an injected fault must be an error, not MIGRATEPAGE_SUCCESS")
        except Exception as exc:  # noqa: BLE001 - re-raised once migrate_pages has put every page back
            if not kit_error:
                kit_error.append(exc)
            out.rc = -EBUSY
            return -EBUSY  # fail the page quietly; the core must not count it as the driver's fault
        if forced is not None:
            rc: Any = forced
        else:
            out.calls += 1
            rc = real(dst, src, m)
        out.rc = rc if isinstance(rc, int) and not isinstance(rc, bool) else -EIO_BAD
        if observe is not None:
            observe(src.pfn, n, out.rc)
        return rc

    def get_new_page(src: int) -> int:
        dst = _alloc_target(machine, int(machine.pages._owner[src]) or 1)
        if dst >= 0:
            dst_of[src] = dst
        return dst

    def put_new_page(dst: int) -> None:
        returned.add(dst)
        machine.free_pages(dst)

    with contextlib.ExitStack() as stack:
        for owner_id in owners:
            ops = registry.ops_by_owner.get(owner_id)
            if ops is not None:
                stack.enter_context(_watching(ops, around))
        result = migrate_pages(machine, arr, get_new_page, put_new_page, mode)
    if kit_error:
        raise kit_error[0]
    failed = set(result.putback)
    for p, out in outcomes.items():
        if p in failed:
            if not attempts[p]:
                out.rc = -ENOMEM if result.rc == -ENOMEM else out.rc
            out.orphan = p in orphans_before
        elif p in orphans_before or p not in dst_of or out.rc != MIGRATEPAGE_SUCCESS:
            out.orphan, out.rc = True, MIGRATEPAGE_SUCCESS  # freed by its driver while isolated
        else:
            out.dst = dst_of[p]
    return list(outcomes.values())


def compact_all(machine: Machine) -> None:
    """Full compaction of every zone (``echo 1 > /proc/sys/vm/compact_memory``)."""
    compact_memory(machine)
