"""The VM side as the kit drives it: isolate, migrate with passes, put back, one page at a time.

The kit needs finer control than compaction gives: which page, which mode, a fault
injected before a given pass, and an outcome per page, so that a failure can name
the pfn and the rule.  So it calls the core's per-page VM functions
(:func:`~pagemig.mm.movable.isolate_movable_page`,
:func:`~pagemig.mm.movable.migrate_movable_page`,
:func:`~pagemig.mm.movable.putback_movable_page`) the way ``migrate_pages`` does:
up to 10 passes while a page answers -EAGAIN, -ENOMEM stops everything, any other
error fails the page, failed pages are put back, a page the driver freed while
isolated counts as migrated and is released.  Whole-machine compaction, when the
core provides it, is reached through :func:`compact_all`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np

from pagemig.mm.gfp import GFP_HIGHUSER_MOVABLE
from pagemig.mm.machine import Machine
from pagemig.mm.movable import (
    EAGAIN,
    ENOMEM,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    is_orphan,
    isolate_movable_page,
    migrate_movable_page,
    putback_movable_page,
)
from pagemig.mm.pages import PageFlag, PageKind

NR_MIGRATE_PASSES = 10  # migrate_pages(): "for (pass = 0; pass < 10 && retry; pass++)"
DRIVER = int(PageKind.DRIVER)
MOVABLE = int(PageFlag.MOVABLE)
ISOLATED = int(PageFlag.ISOLATED)

# inject(src_pfn, pass) -> an errno to answer instead of calling the driver, or None to call it.
Injector = Callable[[int, int], int | None]


@attrs.define
class Outcome:
    """What became of one isolated page: ``rc`` is its last answer, ``dst`` the page it
    now lives in (-1 if it did not move), ``passes`` how many passes it took part in,
    ``orphan`` whether its driver had freed it while it was isolated."""

    src: int
    rc: int = -EAGAIN  # not tried yet: counts as a failure if it never is
    dst: int = -1
    passes: int = 0
    orphan: bool = False
    calls: int = 0  # how many times the driver's migrate_page was called for it

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


def migrate(machine: Machine, pfns: Iterable[int], mode: MigrateMode = MigrateMode.SYNC, *,
            inject: Injector | None = None, passes: int = NR_MIGRATE_PASSES,
            between_passes: Callable[[int], None] | None = None,
            observe: Callable[[Outcome, int], None] | None = None) -> list[Outcome]:
    """Migrate isolated pages as ``migrate_pages`` does (v4.x passes), then put back the failures.

    ``inject`` answers for the driver on some attempts (the kit's fault injection: a
    page busy at the VM's level, say); ``observe(outcome, pass)`` sees every answer;
    ``between_passes(pass)`` runs after each pass that leaves pages to retry, so a
    test can change the driver's state between retries.  Every page handed in
    ends migrated, put back or released; nothing stays isolated.
    """
    outcomes = {int(p): Outcome(int(p)) for p in pfns}
    pending = list(outcomes)
    aborted = False
    try:
        for pass_ in range(passes):
            if not pending or aborted:
                break
            retry: list[int] = []
            for src in pending:
                out = outcomes[src]
                out.passes += 1
                if aborted:  # -ENOMEM stopped the whole migration: the rest fail untried
                    out.rc = -ENOMEM
                    retry.append(src)
                    continue
                if is_orphan(machine, src):
                    out.rc, out.orphan = MIGRATEPAGE_SUCCESS, True
                    machine.release_orphan(src)
                    if observe is not None:
                        observe(out, pass_)
                    continue
                forced = inject(src, pass_) if inject is not None else None
                if forced == MIGRATEPAGE_SUCCESS:
                    raise ValueError("an injected fault must be an error, not MIGRATEPAGE_SUCCESS")
                if forced is not None:
                    out.rc = forced
                else:
                    owner_id = machine.pages._owner[src]
                    dst = _alloc_target(machine, owner_id)
                    if dst < 0:
                        out.rc = -ENOMEM
                    else:
                        out.calls += 1
                        rc, consumed = migrate_movable_page(machine, dst, src, mode)
                        out.rc = rc
                        if rc == MIGRATEPAGE_SUCCESS:
                            if consumed:
                                out.dst = dst
                                machine.free_pages(src)
                            else:  # an orphan found by the core itself
                                out.orphan = True
                                machine.free_pages(dst)
                                machine.release_orphan(src)
                            if observe is not None:
                                observe(out, pass_)
                            continue
                        if not consumed:
                            machine.free_pages(dst)
                if observe is not None:
                    observe(out, pass_)
                if out.rc == -EAGAIN:
                    retry.append(src)
                elif out.rc == -ENOMEM:
                    aborted = True
                    retry.append(src)
                elif out.rc != MIGRATEPAGE_SUCCESS:
                    putback_movable_page(machine, src)
            pending = retry
            if between_passes is not None and pending:
                between_passes(pass_)
    finally:
        # Pages still retrying after the last pass (or after -ENOMEM) count as failed.
        for src in pending:
            if machine.pages._flags[src] & ISOLATED:
                outcomes[src].orphan = is_orphan(machine, src)  # putback releases those
                putback_movable_page(machine, src)
    return list(outcomes.values())


def compaction_entry() -> Callable[[Machine], Any] | None:
    """Full compaction of every zone (``echo 1 > /proc/sys/vm/compact_memory``) if the core has it."""
    try:
        mod = importlib.import_module("pagemig.mm.compaction")
    except ImportError:
        return None
    fn = getattr(mod, "compact_memory", None) or getattr(mod, "compact_nodes", None)
    return fn if callable(fn) else None


def compact_all(machine: Machine) -> bool:
    """Run full compaction if the core provides it; returns whether it ran."""
    fn = compaction_entry()
    if fn is None:
        return False
    fn(machine)
    return True
